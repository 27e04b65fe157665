"""What the browser tests of the portal share: Debian's Chromium through Playwright, the screenshot folder,
CSRs for the forms, mailed links, and the sign-up + confirm + log-in steps every walk starts with."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devstack.mailbox import MailboxClient
from tests.portal.stack import System
from tests.registration.harness import PASSWORD

playwright_api = pytest.importorskip("playwright.async_api")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
NEEDS_CHROMIUM = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason="needs Debian's chromium: apt-get install chromium (./dev test does)")
DESKTOP = {"width": 1200, "height": 900}
PHONE = {"width": 390, "height": 844}


def make_csr(domain: str) -> str:
    """A server CSR for www.<domain> and <domain>, with subject attributes the CA must drop."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, f"www.{domain}"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Injected Org"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "Nowhere"),
    ])
    san = x509.SubjectAlternativeName([x509.DNSName(f"www.{domain}"), x509.DNSName(domain)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).add_extension(san, critical=False)
    return csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def make_client_csr(address: str) -> str:
    """A client (S/MIME) CSR naming `address` in subjectAltName."""
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.RFC822Name(address)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "me")])).add_extension(san, critical=False)
    return csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


async def mailed_link(mailbox: MailboxClient, to: str, pattern: str) -> str:
    message = await mailbox.wait_for(lambda m: re.search(pattern, m["text"] or "") is not None, to=to, timeout=30)
    match = re.search(pattern, message["text"] or "")
    assert match is not None
    return match.group(0)


async def shot(page: Any, name: str) -> None:
    """A full-page PNG of what the browser shows, as artifacts/screenshots/<name>.png (name may hold a folder)."""
    path = SCREENSHOTS / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(path), full_page=True)


async def fill_signup(page: Any, address: str, *, again: str = PASSWORD) -> None:
    await page.get_by_label("Full name").fill("Ada Lovelace")
    await page.get_by_label("Date of birth").fill("1990-12-10")
    await page.get_by_label("Email address").fill(address)
    await page.get_by_label("Password (at least").fill(PASSWORD)
    await page.get_by_label("Password again").fill(again)


async def fill_login(page: Any, address: str, password: str = PASSWORD, code: str | None = None) -> None:
    await page.get_by_label("Email address").fill(address)
    await page.get_by_label("Password").fill(password)
    if code is not None:
        await page.get_by_label("Authentication code").fill(code)


async def sign_up_and_log_in(system: System, page: Any, mailbox: MailboxClient, address: str, *,
                             screenshots: bool = False) -> None:
    """Join, confirm the address from the mail, log in: the member lands on My account."""
    expect = playwright_api.expect

    async def maybe_shot(page: Any, name: str) -> None:
        if screenshots:
            await shot(page, name)

    # Sign up.
    await page.goto(system.portal + "/")
    await maybe_shot(page, "01-home")
    await page.get_by_role("link", name="Join").first.click()
    await fill_signup(page, address)
    await maybe_shot(page, "02-signup")
    await page.get_by_role("button", name="Join").click()
    await expect(page.get_by_role("status")).to_contain_text("We sent a confirmation link")

    # Confirm the address from the mail (registration's /confirm-email page), then log in.
    link = await mailed_link(mailbox, address, r"https?://\S+/confirm-email#token=\S+")
    token = link.split("#token=", 1)[1]
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    await page.goto(system.local(link))
    await expect(page.get_by_label("The code from the mail")).to_be_hidden()  # the script filled it in
    assert "#token" not in page.url, "the script takes the token out of the address bar"
    styled = "getComputedStyle(document.querySelector('header.site')).backgroundColor"
    assert await page.evaluate(styled) == "rgb(15, 81, 50)", "the page has the portal's stylesheet"
    await maybe_shot(page, "24-confirm-email")
    await page.get_by_role("button", name="Confirm this address").click()
    await expect(page.locator("#confirmed")).to_contain_text("is now verified")
    assert await page.evaluate(styled) == "rgb(15, 81, 50)"
    await maybe_shot(page, "25-email-confirmed")
    assert requested and not [url for url in requested if token in url], "no request line carries the token"
    await page.locator("#to-login").click()  # the way on: the login page
    await expect(page).to_have_url(system.portal + "/login")
    await fill_login(page, address)
    await maybe_shot(page, "03-login")
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(system.portal + "/account")
    await expect(page.get_by_role("heading", level=1)).to_have_text("My account")
    await maybe_shot(page, "04-account")


async def wait_for_certificate(page: Any, *, seconds: float = 60) -> None:
    """From the request page, ask again ("Show the status again") until it leads to the certificate page."""
    certificate = re.compile(r"/account/certificates/[0-9a-f]+$")
    for _ in range(int(seconds * 2)):
        if certificate.search(page.url):
            return
        await page.wait_for_timeout(500)
        if not certificate.search(page.url):
            await page.get_by_role("link", name="Show the status again").click()
            await page.wait_for_load_state("load")
    await page.wait_for_url(certificate, timeout=1)


async def wait_until_domain_verified(page: Any, domain_page: str) -> None:
    """Reload the domain's page until it says Verified (registration hears of it by an event)."""
    for _ in range(60):
        await page.goto(domain_page)
        if (await page.locator("#domain-status").inner_text()) == "Verified":
            break
        await page.wait_for_timeout(500)
    await playwright_api.expect(page.locator("#domain-status")).to_have_text("Verified")
