"""The portal shows statuses, reasons, dates, fingerprints and CA names in one way, in words; revoking asks first.

Registration runs in-process against the real stack; a cookie-keeping aiohttp client plays the browser
(tests/integration/test_registration_web_portal.py).
"""

from __future__ import annotations

import re

import pytest

from tests.integration.test_registration_web_portal import (  # noqa: F401 (fixtures)
    CSRF,
    Browser,
    assured_member,
    browsers,
    issued_server_certificate,
    stack,
)
from tests.registration.harness import Stack

pytestmark = pytest.mark.usefixtures("topics")
RAW = ("revocation_requested", "key_compromise", "cessation_of_operation", "affiliation_changed", "caa_pending",
       "Class 1 CA", "Class 3 CA")
ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
DAY = r"\d{1,2} (January|February|March|April|May|June|July|August|September|October|November|December) \d{4}"


def _visible(page: str) -> str:
    """The page's text without tags and attribute values (form values may carry codes)."""
    return re.sub(r"<[^>]+>", " ", page)


async def test_revoking_asks_first_with_reasons_in_words_and_statuses_read_as_words(
    stack: Stack, browsers: list[Browser]  # noqa: F811
) -> None:
    browser = browsers[0]
    member_id, token = await assured_member(stack, "Rita Revoke", "rita@example.org")
    await browser.login("rita@example.org")
    serial = await issued_server_certificate(stack, member_id, token, ["www.rita.example"], 3)

    status, page, _ = await browser.get(f"/account/certificates/{serial}")
    assert status == 200
    text = _visible(page)
    assert re.search(r'id="certificate-status">Valid<', page)
    assert re.search(rf'id="certificate-validity">{DAY}, \d\d:\d\d UTC to {DAY}, \d\d:\d\d UTC<', page), page
    assert re.search(r'id="certificate-sha256">([0-9A-F]{2}:){31}[0-9A-F]{2}<', page)
    assert 'id="certificate-issuer">Class 3 root<' in page
    assert not ISO.search(text) and not any(raw in text for raw in RAW)
    # The certificate page only links to the confirmation; nothing is revoked by one click.
    assert f'href="/account/certificates/{serial}/revoke"' in page
    assert f'action="/account/certificates/{serial}/revoke"' not in page

    status, page, _ = await browser.get(f"/account/certificates/{serial}/revoke")
    assert status == 200 and "<title>Revoke this certificate?" in page and "cannot be undone" in page
    for words in ("The private key was lost, stolen or exposed (key compromise)",
                  "It has been replaced by a new certificate", "No particular reason"):
        assert words in page
    csrf = CSRF.search(page).group(1)  # type: ignore[union-attr]
    status, page, _ = await browser.post(f"/account/certificates/{serial}/revoke", {"csrf": csrf})
    assert status == 422 and "Choose why you revoke the certificate." in page
    assert (await stack.api.call("GET", f"/v1/certificates/{serial}", token=token)).body["status"] == "valid"
    status, _, headers = await browser.post(f"/account/certificates/{serial}/revoke",
                                            {"csrf": csrf, "reason": "superseded"})
    assert status == 303 and headers["Location"] == f"/account/certificates/{serial}?notice=revocation_requested"
    assert (await stack.api.call("GET", f"/v1/certificates/{serial}", token=token)).body["status"] == \
        "revocation_requested"

    status, page, _ = await browser.get(f"/account/certificates/{serial}")
    assert re.search(r'id="certificate-status">Revocation requested \(reason: it has been replaced by a new '
                     r"certificate\)<", page), page
    assert f'href="/account/certificates/{serial}/revoke"' not in page
    status, page, _ = await browser.get(f"/account/certificates/{serial}/revoke")
    assert status == 303, "a certificate that is no longer valid is not offered for revocation again"
    status, page, _ = await browser.get("/account/server-certs")
    text = _visible(page)
    assert "Revocation requested" in text and "Class 3 root" in text and re.search(DAY, text)
    assert not ISO.search(text) and not any(raw in text for raw in RAW)


async def test_the_home_title_is_not_doubled_and_sentences_have_their_spaces(
    stack: Stack, browsers: list[Browser]  # noqa: F811
) -> None:
    browser = browsers[0]
    status, page, _ = await browser.get("/")
    assert status == 200 and "<title>CAcert community CA</title>" in page
    await stack.member("Uma Unassured", "uma@example.org")
    await browser.login("uma@example.org")
    status, page, _ = await browser.get("/account/assurance")
    assert status == 200 and "you become Assured. An Assurer needs" in page
    status, page, _ = await browser.get("/roots")
    assert "Class 1 CA" not in page and "Class 3 CA" not in page
