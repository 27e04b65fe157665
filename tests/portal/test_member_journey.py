"""A member's whole journey through the web portal in a real browser (Debian's Chromium via Playwright).

Sign up, confirm the address from the mail, log in, add and verify a domain through the mail to its
hostmaster, paste a CSR, check the preview (names kept, other subject attributes dropped), confirm,
wait for the certificate page, download the certificate, download the Class 1 root from the
relying-party page and verify the certificate against it with `openssl verify`. Screenshots of the
main pages land in artifacts/screenshots/ (see services/registration/README.md).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import pyotp
import pytest
from cryptography import x509

from devstack.dns_zone import LocalZone
from devstack.mailbox import MailboxClient
from services.registration.bootstrap import bootstrap_member
from tests.portal.browser import (
    DESKTOP,
    NEEDS_CHROMIUM,
    PHONE,
    SCREENSHOTS,
    fill_login,
    mailed_link,
    make_csr,
    playwright_api,
    shot,
    sign_up_and_log_in,
    wait_for_certificate,
    wait_until_domain_verified,
)
from tests.portal.stack import System
from tests.registration.harness import PASSWORD

pytestmark = [pytest.mark.usefixtures("topics"), pytest.mark.integration, NEEDS_CHROMIUM]


async def test_member_gets_a_server_certificate_that_verifies_against_the_downloaded_root(
    system: System, browser: Any, stack_env: dict[str, str], unique: str, tmp_path: Path
) -> None:
    async with asyncio.timeout(120):  # a hard deadline even where pytest-timeout is not installed
        await journey(system, browser, stack_env, unique, tmp_path)


async def journey(system: System, browser: Any, stack_env: dict[str, str], unique: str, tmp_path: Path) -> None:
    expect = playwright_api.expect
    address = f"ada-{unique}@example.org"
    domain = f"site{unique}.example.org"
    mailbox = MailboxClient(stack_env["CACERT_MAILBOX_URL"])
    context = await browser.new_context(accept_downloads=True, viewport=DESKTOP)
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{m.text} {m.location}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status == 404 else None)

    await sign_up_and_log_in(system, page, mailbox, address, screenshots=True)

    # Add the domain and verify it through the mail to its hostmaster.
    await page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Domains").click()
    await page.get_by_label("Domain name").fill(domain)
    await page.get_by_role("button", name="Add domain").click()
    await page.get_by_label(f"hostmaster@{domain}").check()
    await page.get_by_role("button", name="Send verification mail").click()
    await expect(page.get_by_role("status")).to_contain_text("We sent the verification mail")
    await shot(page, "05-domain-pending")
    domain_page = page.url
    link = await mailed_link(mailbox, f"hostmaster@{domain}", r"https?://\S+/confirm#token=\S+")
    await page.goto(system.local(link))  # its script posts the fragment's token to the review page
    await page.get_by_role("button", name=re.compile("^Confirm that")).click()
    await expect(page.locator("h1")).to_have_text("Domain confirmed")
    await wait_until_domain_verified(page, domain_page)
    await shot(page, "06-domain-verified")

    # Paste the CSR, check the preview, confirm.
    await page.get_by_role("link", name="Request a server certificate").click()
    await page.get_by_label("Paste the CSR").fill(make_csr(domain))
    await shot(page, "07-new-server-certificate")
    await page.get_by_role("button", name="Preview").click()
    await expect(page.locator("#names")).to_contain_text(f"www.{domain}")
    await expect(page.locator("#names")).to_contain_text(domain)
    await expect(page.locator("#dropped")).to_contain_text("organizationName = Injected Org")
    await expect(page.locator("#dropped")).to_contain_text("localityName = Nowhere")
    await expect(page.locator("#subject")).to_contain_text(f"commonName = www.{domain}")
    await shot(page, "08-preview")
    await page.get_by_role("button", name="Confirm and request the certificate").click()
    await wait_for_certificate(page)
    await expect(page.locator("#certificate-status")).to_have_text("Valid")
    await expect(page.locator("#certificate-issuer")).to_have_text(re.compile(r"^Class [13] root$"))
    await shot(page, "09-certificate")
    async with page.expect_download() as pending:
        await page.get_by_role("link", name="Certificate with chain (PEM)").click()
    leaf = tmp_path / "leaf.pem"
    await (await pending.value).save_as(str(leaf))
    issued = x509.load_pem_x509_certificate(leaf.read_bytes())
    assert issued.subject.rfc4514_string() == f"CN=www.{domain}"
    await expect(page.locator("#apache-client-auth")).to_contain_text("SSLVerifyClient require")
    await expect(page.locator("#root-advice")).to_contain_text("assured members only")

    # Renew opens the new-request form for the same names.
    certificate_page = page.url
    await page.get_by_role("link", name="Renew", exact=True).click()
    await expect(page.locator("#renewing")).to_contain_text(f"www.{domain}")
    await shot(page, "15-renew")
    await page.goto(certificate_page)

    # The relying-party page: the Class 1 root, its fingerprint, and openssl verify.
    await page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Root certificates").click()
    await shot(page, "10-roots")
    async with page.expect_download() as pending:
        await page.get_by_role("link", name="Download class1 (PEM)").click()
    root = tmp_path / "class1.pem"
    await (await pending.value).save_as(str(root))
    class1 = x509.load_pem_x509_certificate((system.ca_dir / "class1.crt.pem").read_bytes())
    assert x509.load_pem_x509_certificate(root.read_bytes()) == class1  # the signer's root, fetched and served
    shown = await page.locator("#class1-sha256").inner_text()
    fingerprint = subprocess.run(["openssl", "x509", "-in", str(root), "-noout", "-fingerprint", "-sha256"],
                                 capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]
    assert shown == fingerprint
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(root), str(leaf)], capture_output=True,
                              text=True, check=False)
    assert verified.returncode == 0 and verified.stdout.strip().endswith(": OK"), verified.stdout + verified.stderr
    async with page.expect_download() as pending:
        await page.get_by_role("link", name="Download class3-root (PEM)").click()
    twin = tmp_path / "cacert-class3-root.pem"
    await (await pending.value).save_as(str(twin))
    assert twin.read_bytes() == (system.ca_dir / "class3-root.crt.pem").read_bytes()  # the self-signed Class 3 root
    await expect(page.locator("#apache-client-auth-class3")).to_contain_text("cacert-class3-root.pem")
    async with page.expect_download() as pending:
        await page.get_by_role("link", name="Class 1 and Class 3 (PKCS#7, .p7b)").click()
    bundle = tmp_path / "cacert-roots.p7b"
    await (await pending.value).save_as(str(bundle))
    printed = subprocess.run(["openssl", "pkcs7", "-inform", "DER", "-in", str(bundle), "-print_certs"],
                             capture_output=True, text=True, check=True).stdout
    assert printed.count("subject=") == 2, printed

    # On a phone (390 px wide) every page fits the screen: nothing is cut off or needs sideways scrolling.
    await page.set_viewport_size(PHONE)
    for path, name in ((certificate_page.removeprefix(system.portal), "19-certificate-390px"),
                       ("/account/server-certs", "20-server-certificates-390px"),
                       ("/roots", "21-roots-390px"), ("/account", "22-account-390px")):
        await page.goto(system.portal + path)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width} px wide at a 390 px viewport"
        await shot(page, name)
    await page.set_viewport_size(DESKTOP)

    # The other main pages, for the screenshots.
    for path, name in (("/account/server-certs", "11-server-certificates"),
                       ("/account/client-certs/new", "12-new-client-certificate"),
                       ("/account/assurance", "13-assurance"),
                       ("/account/code-signing", "16-code-signing")):
        await page.goto(system.portal + path)
        await shot(page, name)

    # Revoking asks first, with the reasons in words.
    await page.goto(certificate_page)
    await page.get_by_role("link", name="Revoke this certificate…").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Revoke this certificate?")
    await page.get_by_label("It has been replaced by a new certificate").check()
    await shot(page, "23-revoke-confirm")
    await page.get_by_role("button", name="Revoke the certificate").click()
    await expect(page.get_by_role("status")).to_contain_text("Revocation requested")
    await expect(page.locator("#certificate-status")).to_contain_text("Revo")
    await expect(page.locator("#certificate-status")).to_contain_text("replaced by a new certificate")

    # Support staff see the admin page for this member.
    assert system.registration.db is not None
    support_totp = pyotp.random_base32()
    await bootstrap_member(system.registration.db, system.registration.settings, email=f"support-{unique}@example.org",
                           name="CA Support", date_of_birth=date(1970, 1, 1), password=PASSWORD,
                           roles=("member", "admin", "assurer"), second_factor_secret=support_totp)
    admin = await (await browser.new_context(viewport=DESKTOP)).new_page()
    await admin.goto(system.portal + "/login")
    await fill_login(admin, f"support-{unique}@example.org", code=pyotp.TOTP(support_totp).now())
    await admin.get_by_role("button", name="Log in").click()
    await admin.get_by_role("link", name="Support (admin)").click()
    await admin.get_by_label("Find a member").fill(address)
    await admin.get_by_role("button", name="Find").click()
    await expect(admin.get_by_role("heading", level=2).first).to_have_text("Ada Lovelace")
    await shot(admin, "14-admin")

    # The same account is an Assurer: it compares Ada's name and date of birth with her documents.
    await admin.goto(system.portal + "/account/assurance")
    await admin.get_by_label("Member's email address").fill(address)
    await admin.get_by_role("button", name="Show the name and date of birth to check").click()
    await expect(admin.locator("#identity")).to_contain_text("Ada Lovelace")
    await expect(admin.locator("#identity")).to_contain_text("10 December 1990")
    await admin.get_by_label("I checked two government-issued photo ID documents").check()
    await admin.get_by_label("Points (0 to 35)").fill("35")
    await admin.get_by_label("Where you met").fill("Berlin")
    await admin.get_by_label("Date of the meeting").fill(date.today().isoformat())
    await shot(admin, "24-assure-member")
    await admin.get_by_role("button", name="Record the assurance").click()
    await expect(admin.locator("#assured")).to_contain_text("You assured Ada Lovelace with 35 points")
    await page.goto(system.portal + "/account/assurance")
    await expect(page.locator("#received")).to_contain_text("CA Support")
    await mailbox.wait_for(to=address, subject="CA Support assured you with 35 points", timeout=30)
    # No CSP violations, script errors or missing resources (domain_verify's page has no icon: not ours).
    verify_icon = f"http://127.0.0.1:{system.domain_verify.http_port}/favicon.ico"
    assert not [p for p in problems if verify_icon not in p], problems
    shutil.copy(leaf, SCREENSHOTS / "issued-certificate.pem")


async def domain_status_after_check(page: Any, domain_page: str, *, until: str) -> str:
    """Press "Check now" and wait until the page shows `until` in #domain-status or a failure."""
    await page.get_by_role("button", name="Check now").click()
    for _ in range(90):
        await page.goto(domain_page)
        status = await page.locator("#domain-status").inner_text()
        if status == until or await page.locator("#domain-failure").count():
            return str(status)
        await page.wait_for_timeout(500)
    return str(await page.locator("#domain-status").inner_text())


async def test_member_verifies_a_domain_by_a_dns_record_in_the_portal_and_sees_what_was_found_when_wrong(
    system: System, browser: Any, stack_env: dict[str, str], unique: str
) -> None:
    """BR 3.2.2.4.7 from the member's side: the portal shows the exact TXT record, "Check now" asks the
    validation authority, a wrong record is reported with what the CA found, the right one verifies."""
    async with asyncio.timeout(150):
        expect = playwright_api.expect
        address, domain = f"grace-{unique}@example.org", f"dns{unique}.example.org"
        zone = LocalZone.from_env(stack_env)
        context = await browser.new_context(viewport=DESKTOP)
        page = await context.new_page()
        await sign_up_and_log_in(system, page, MailboxClient(stack_env["CACERT_MAILBOX_URL"]), address)

        await page.get_by_role("navigation", name="Main menu").get_by_role("link", name="Domains").click()
        await page.get_by_label("Domain name").fill(domain)
        await page.get_by_role("button", name="Add domain").click()
        await page.get_by_label(re.compile("A TXT record at")).check()
        await page.get_by_role("button", name="Show what to publish").click()
        record_name = await page.locator("#challenge-record-name").inner_text()
        value = await page.locator("#challenge-value").inner_text()
        assert record_name == f"_cacert-challenge.{domain}"
        assert len(value) >= 32, "a random value with at least 112 bits of entropy (BR 1.6.1)"
        await shot(page, "17-domain-dns-record")
        domain_page = page.url.split("#")[0].split("?")[0]

        await zone.publish(record_name, "TXT", '"a-stale-value"')
        assert await domain_status_after_check(page, domain_page, until="Verified") != "Verified"
        await expect(page.locator("#domain-failure")).to_contain_text("a-stale-value")
        await shot(page, "18-domain-dns-wrong-value")

        await zone.publish(record_name, "TXT", f'"{value}"')
        assert await domain_status_after_check(page, domain_page, until="Verified") == "Verified"
        await expect(page.locator("#domain-verified-by")).to_contain_text("DNS TXT record")
        await expect(page.locator("#domain-verified-by")).to_contain_text("3.2.2.4.7")
