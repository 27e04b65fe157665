"""The email-confirmation pages lead on to logging in, and a refused login offers a new confirmation link.

Registration runs in-process against the real stack; a cookie-keeping aiohttp client plays the browser
(tests/integration/test_registration_web_portal.py). The confirmation mails are read from the
mail-command topic, as tests/registration/harness.py does.
"""

from __future__ import annotations

import re

import pytest

from tests.integration.test_registration_web_portal import CSRF, Browser, browsers, stack  # noqa: F401 (fixtures)
from tests.registration.harness import PASSWORD, Stack

pytestmark = pytest.mark.usefixtures("topics")


async def _sign_up(stack: Stack, address: str) -> None:  # noqa: F811
    reply = await stack.api.call("POST", "/v1/members", json_body={
        "name": "Nora Newcomer", "date_of_birth": "1990-05-17", "email": address, "password": PASSWORD})
    assert reply.status == 201, reply.body


async def _confirmation_mails(stack: Stack, address: str) -> int:  # noqa: F811
    mails = await stack.events("mail.commands", "mail.send_requested", expected=1, timeout=2)
    return len([m for m in mails if m.data["to"] == address and m.data["template"] == "email_confirmation"])


async def test_a_refused_login_offers_a_new_link_and_the_confirmation_pages_lead_to_the_login(
    stack: Stack, browsers: list[Browser]  # noqa: F811
) -> None:
    browser = browsers[0]
    address = "nora@example.org"
    await _sign_up(stack, address)
    first = await stack.confirmation_token(address)

    csrf = await browser.csrf("/login")
    status, page, _ = await browser.post("/login", {"csrf": csrf, "email": address, "password": PASSWORD})
    assert status == 403 and "Confirm your primary email address first" in page
    assert 'action="/resend-confirmation"' in page and f'name="email" value="{address}"' in page
    form_csrf = CSRF.search(page.split('id="resend-confirmation"', 1)[1]).group(1)  # type: ignore[union-attr]
    status, page, _ = await browser.post("/resend-confirmation", {"csrf": form_csrf, "email": address})
    assert status == 200 and 'id="resend-sent"' in page and 'href="/login"' in page
    second = await stack.confirmation_token(address, nth=2)
    assert second != first

    # The same answer for an address no account has, and no mail.
    csrf = await browser.csrf("/resend-confirmation")
    status, page, _ = await browser.post("/resend-confirmation", {"csrf": csrf, "email": "nobody@example.org"})
    assert status == 200 and 'id="resend-sent"' in page
    assert await _confirmation_mails(stack, "nobody@example.org") == 0
    assert (await browser.post("/resend-confirmation", {"email": address}))[0] == 403, "CSRF as on every form"
    status, page, _ = await browser.post("/resend-confirmation", {"csrf": csrf, "email": "not an address"})
    assert status == 422 and "Enter the email address you joined with." in page

    # The confirm pages: styled like the portal, and on to the login (or to a new link when it failed).
    for path in ("/confirm-email",):
        status, page, headers = await browser.get(path)
        assert '<link rel="stylesheet" href="/static/portal.css">' in page
        assert "style-src 'self'" in headers["Content-Security-Policy"]
    status, page, _ = await browser.post("/confirm-email", {"token": "x" * 43})
    assert status == 404
    assert 'href="/resend-confirmation"' in page and 'href="/login"' in page
    assert re.search(r'id="not-confirmed"><p>[A-Z][^<]*\.</p>', page), page
    status, page, _ = await browser.post("/confirm-email", {"token": second})
    assert status == 200 and f"{address} is now verified." in page
    assert '<a class="button" href="/login" id="to-login">Log in</a>' in page
    status, page, _ = await browser.post("/confirm-email", {"token": second})
    assert status == 404 and "log in" in page

    csrf = await browser.csrf("/login")
    status, _, headers = await browser.post("/login", {"csrf": csrf, "email": address, "password": PASSWORD})
    assert status == 303 and headers["Location"] == "/account"
    assert first  # the first link was mailed too; either link confirms once
