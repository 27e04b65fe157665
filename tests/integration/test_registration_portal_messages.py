"""The portal's errors in the member's words, and HTML error pages for the portal (the API keeps JSON).

Registration runs in-process against the real stack (tests/registration/harness.py); a cookie-keeping
aiohttp client plays the browser (tests/integration/test_registration_web_portal.py).
"""

from __future__ import annotations

import html
import re

import aiohttp
import pytest

from shared.ca_certificates import CaCertificates
from shared.http import ApiError
from tests.integration.test_registration_web_portal import Browser, browsers, stack  # noqa: F401 (fixtures)
from tests.registration.harness import Stack

pytestmark = pytest.mark.usefixtures("topics")
LEAKS = ("csr_pem", "cryptography.io", "http://", "https://", "ParseError", "asn1", "Codepoint", "U+", "idna",
         "Traceback")


def _alerts(page: str) -> list[str]:
    """The texts of the page's error messages and refusal reasons."""
    found = re.findall(r'<p class="error" role="alert">([^<]+)</p>', page)
    found += re.findall(r"<li><strong>([^<]+)</strong>", page)
    found += re.findall(r'<div class="error" role="alert">\s*<p>([^<]+)</p>', page)
    return [html.unescape(f).strip() for f in found]


def _plain(page: str, where: str) -> list[str]:
    alerts = _alerts(page)
    assert alerts, f"{where}: no error shown"
    for line in alerts:
        first = line.split(" ", 1)[0]
        assert line[:1].isupper() or not first.isalpha(), (where, line)  # a name may start lower case
        assert line.endswith((".", ":")), (where, line)
    for leak in LEAKS:
        assert leak not in page.replace('href="http', ""), (where, leak)
    return alerts


async def test_errors_a_member_causes_are_plain_sentences(stack: Stack, browsers: list[Browser]) -> None:  # noqa: F811
    browser = browsers[0]
    await stack.member("Pia Plain", "pia@example.org")
    await browser.login("pia@example.org")

    csrf = await browser.csrf("/account/server-certs/new")
    broken = "-----BEGIN CERTIFICATE REQUEST-----\nMIIBbroken0000\n-----END CERTIFICATE REQUEST-----\n"
    for csr in (broken, "hello, this is not a CSR"):
        status, page, _ = await browser.post("/account/server-certs/new",
                                             {"csrf": csrf, "profile": "server", "csr_pem": csr})
        assert status == 422
        assert "<title>This CSR cannot be certified" in page and "Check before you confirm" not in page
        alerts = _plain(page, "csr")
        assert any(a.startswith("The CSR ") for a in alerts), alerts

    csrf = await browser.csrf("/account/domains")
    for typed in ("\U0001f4a9.example.org", "a..b.example", "com"):
        status, page, _ = await browser.post("/account/domains", {"csrf": csrf, "domain": typed})
        assert status == 422, (typed, status)
        _plain(page, typed)

    csrf = await browser.csrf("/account")
    status, page, _ = await browser.post("/account/emails", {"csrf": csrf, "email": "not an address"})
    assert status == 422
    assert "is not an email address" in " ".join(_plain(page, "email")), page

    status, page, _ = await browser.get("/account/certificates/ffff")
    assert status == 404 and "No such certificate on your account." in page


def test_api_errors_are_worded_for_the_portal_without_internals() -> None:
    from services.registration.web.messages import for_error, plain

    library = ("csr_pem is not a readable certificate request: Valid PEM but no BEGIN CERTIFICATE REQUEST/END "
               "CERTIFICATE REQUEST delimiters. Are you sure this is a CSR? See https://cryptography.io/en/latest/"
               "faq/#why-can-t-i-import-my-pem-file for more details.")
    assert plain(library) == "The CSR is not a readable certificate request."
    idna = ApiError(422, "invalid_domain", "'\U0001f4a9.org' is not a valid domain name: Codepoint U+1F4A9 "
                    "not allowed at position 1 in '\U0001f4a9'")
    assert for_error(idna).startswith("'\U0001f4a9.org' is not a valid domain name. Use letters")
    assert for_error(ApiError(404, "not_found", "no such domain on your account")) == \
        "No such domain on your account."
    assert "spki_sha256" not in for_error(ApiError(422, "invalid_key_hash", "spki_sha256 must be 64 hex digits"))


async def test_unknown_portal_addresses_answer_html_pages_and_the_api_keeps_json(
    stack: Stack, browsers: list[Browser], monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    browser = browsers[0]
    for path in ("/no-such-page", "/account/nothing-here", "/static/nothing.css"):
        status, page, headers = await browser.get(path)
        assert status == 404 and headers["Content-Type"].startswith("text/html"), path
        assert "<title>Page not found" in page and "default-src 'self'" in headers["Content-Security-Policy"]
        assert not page.lstrip().startswith("{")
    status, page, headers = await browser.get("/logout")  # POST only
    assert status == 405 and headers["Content-Type"].startswith("text/html") and "Not available this way" in page
    async with aiohttp.ClientSession() as http:
        for path in ("/v1/no-such-thing", "/v1/members/x/y"):
            async with http.get(stack.api.base + path) as reply:
                assert reply.status in (404, 405) and reply.content_type == "application/json", path
                assert (await reply.json())["error"]["code"]
        async with http.get(stack.api.base + "/openapi.json") as reply:
            assert reply.status == 200 and reply.content_type == "application/json"

    async def broken(self: CaCertificates) -> object:
        raise RuntimeError("internal detail that must not show")

    monkeypatch.setattr(CaCertificates, "all", broken)
    status, page, headers = await browser.get("/roots")
    assert status == 500 and headers["Content-Type"].startswith("text/html")
    assert "Something went wrong" in page and "internal detail" not in page
    assert headers["X-Request-ID"] in page, "the page quotes the reference support can find in the logs"
