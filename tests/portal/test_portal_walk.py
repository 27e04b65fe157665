"""Every portal page a new member and an Assurer reach, checked one by one in a real browser.

A new member joins (with a mistake first), tries to log in before confirming, confirms the address from
the mail, asks for the confirmation link and a password reset link again, logs in (with a wrong password
first), meets the 404 and the support-only page, adds and verifies a domain (through domain_verify's
confirm page), previews a refused and an accepted CSR, gets, renews and revokes a server certificate,
previews a client certificate, opens the password and two-factor pages, the assurance, code-signing and
root pages. An Assurer (two-factor login) looks the member up, records an assurance and sees the code
signing page; the member sees the assurance and logs out. Support staff find the member on the support page.

Each page is checked by tests/portal/page_checks.py (console errors, stylesheet, JSON, internal text,
labels, keyboard focus, 390 px overflow, axe-core at "serious" and above), and screenshotted into
artifacts/screenshots/walk/<NN>-<page>.png and <NN>-<page>-390px.png. Failures are collected over the
whole walk and reported together, page by page.
"""

from __future__ import annotations

import asyncio
import re
from datetime import date
from typing import Any

import pyotp
import pytest

from devstack.mailbox import MailboxClient
from services.registration.bootstrap import bootstrap_member
from tests.portal.browser import (
    DESKTOP,
    NEEDS_CHROMIUM,
    fill_login,
    fill_signup,
    mailed_link,
    make_client_csr,
    make_csr,
    playwright_api,
    wait_for_certificate,
    wait_until_domain_verified,
)
from tests.portal.page_checks import PageWalk, axe_source
from tests.portal.stack import System
from tests.registration.harness import PASSWORD

pytestmark = [pytest.mark.usefixtures("topics"), pytest.mark.integration, NEEDS_CHROMIUM]
WALK_SECONDS = 420


async def test_every_page_a_member_an_assurer_and_support_reach_passes_the_page_checks(
    system: System, browser: Any, stack_env: dict[str, str], unique: str
) -> None:
    script = axe_source()  # before anything starts: a missing axe-core fails here, with how to install it
    PageWalk.reset_folder()
    failures: list[str] = []
    notes: list[str] = []
    counter = [0]

    async def new_page() -> PageWalk:  # a browser of its own per person: own cookies, own session
        page = await (await browser.new_context(viewport=DESKTOP)).new_page()
        return PageWalk(page, script, counter, failures, notes)

    async with asyncio.timeout(WALK_SECONDS):
        mailbox = MailboxClient(stack_env["CACERT_MAILBOX_URL"])
        member = await new_page()
        address = f"ada-{unique}@example.org"
        await new_member(system, member, mailbox, address, f"walk{unique}.example.org")
        assurer = await new_page()
        await an_assurer(system, assurer, unique, address)
        await member.page.goto(system.portal + "/account/assurance")
        await playwright_api.expect(member.page.locator("#received")).to_contain_text("Grace Hopper")
        await member.check("member-assurance-received")
        await member.page.get_by_role("button", name="Log out").click()
        await member.check("logged-out")
        support = await new_page()
        await support_staff(system, support, unique, address)
    if notes:
        print("\naxe findings below \"serious\" (reported, not failed):\n" + "\n".join(notes))
    assert counter[0] >= 55, f"the walk reached only {counter[0]} pages"
    assert not failures, f"{len(failures)} problems:\n" + "\n".join(failures)


async def new_member(system: System, walk: PageWalk, mailbox: MailboxClient, address: str, domain: str) -> None:
    expect = playwright_api.expect
    page, portal = walk.page, system.portal

    # Before an account: start page, sign-up with a mistake, then right; log in before confirming.
    await page.goto(portal + "/")
    await walk.check("home")
    await page.get_by_role("link", name="Join").first.click()
    await walk.check("signup")
    await fill_signup(page, address, again="not the same passphrase")
    await page.get_by_role("button", name="Join").click()
    await expect(page.locator("#signup-errors")).to_be_visible()
    await walk.check("signup-errors", status=422)
    await fill_signup(page, address)
    await page.get_by_role("button", name="Join").click()
    await expect(page.get_by_role("status")).to_contain_text("We sent a confirmation link")
    await walk.check("login-after-signup")
    await fill_login(page, address)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#resend-confirmation")).to_be_visible()
    await walk.check("login-unconfirmed", status=await status_of(page))

    # The confirmation mail's page (registration's /confirm-email) and its answer.
    await page.goto(system.local(await mailed_link(mailbox, address, r"https?://\S+/confirm-email#token=\S+")))
    await expect(page.get_by_label("The code from the mail")).to_be_hidden()
    await walk.check("confirm-email")
    await page.get_by_role("button", name="Confirm this address").click()
    await expect(page.locator("#confirmed")).to_contain_text("is now verified")
    await walk.check("email-confirmed")

    # Resend the confirmation link and reset the password, without logging in.
    await page.goto(portal + "/resend-confirmation")
    await walk.check("resend-confirmation")
    await page.get_by_label("Email address you joined with").fill(address)
    await page.get_by_role("button", name="Send the link again").click()
    await expect(page.locator("#resend-sent")).to_be_visible()
    await walk.check("resend-confirmation-sent")
    await page.goto(portal + "/forgot-password")
    await walk.check("forgot-password")
    await page.get_by_label("Email address you joined with").fill(address)
    await page.get_by_role("button", name="Mail me a reset link").click()
    await expect(page.locator("#reset-sent")).to_be_visible()
    await walk.check("forgot-password-sent")
    await page.goto(system.local(await mailed_link(mailbox, address, r"https?://\S+/reset-password#token=\S+")))
    await expect(page.get_by_label("The code from the mail")).to_be_hidden()
    await walk.check("reset-password")

    # Log in: a wrong password first.
    await page.goto(portal + "/login")
    await walk.check("login")
    await fill_login(page, address, password="not the password at all")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_be_visible()
    await walk.check("login-failed", status=await status_of(page))
    await fill_login(page, address)
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(portal + "/account")
    await walk.check("account")
    await page.goto(portal + "/no/such/page")
    await walk.check("not-found", status=404)
    await page.goto(portal + "/account/admin")
    await walk.check("support-only", status=403)

    # Domains: add one, send the mail to its hostmaster, confirm on domain_verify's page.
    await page.goto(portal + "/account/domains")
    await walk.check("domains-none")
    await page.get_by_label("Domain name").fill(domain)
    await page.get_by_role("button", name="Add domain").click()
    await walk.check("domain-added")
    await page.get_by_label(f"hostmaster@{domain}").check()
    await page.get_by_role("button", name="Send verification mail").click()
    await expect(page.get_by_role("status")).to_contain_text("We sent the verification mail")
    await walk.check("domain-mail-sent")
    domain_page = page.url.split("?")[0]
    await page.goto(system.local(await mailed_link(mailbox, f"hostmaster@{domain}", r"https?://\S+/confirm#token=\S+")))
    await expect(page.get_by_role("button", name=re.compile("^Confirm that"))).to_be_visible()
    await walk.check("domain-confirm")
    await page.get_by_role("button", name=re.compile("^Confirm that")).click()
    await expect(page.locator("h1")).to_have_text("Domain confirmed")
    await walk.check("domain-confirmed")
    await wait_until_domain_verified(page, domain_page)
    await walk.check("domain-verified")
    await page.goto(portal + "/account/domains")
    await walk.check("domains")

    # A second domain by a DNS record (BR 3.2.2.4.7): what to publish, then the check under way.
    await page.get_by_label("Domain name").fill(f"dns-{domain}")
    await page.get_by_role("button", name="Add domain").click()
    await page.get_by_label(re.compile("A TXT record at")).check()
    await page.get_by_role("button", name="Show what to publish").click()
    await expect(page.locator("#challenge-record-name")).to_have_text(f"_cacert-challenge.dns-{domain}")
    await walk.check("domain-dns-record")
    await page.get_by_role("button", name="Check now").click()
    await expect(page.get_by_role("status").first).to_be_visible()
    await walk.check("domain-dns-checking")

    # Server certificates: a refused preview, an accepted one, the request, the certificate.
    await page.goto(portal + "/account/server-certs")
    await walk.check("server-certificates-none")
    await page.goto(portal + "/account/server-certs/new")
    await walk.check("server-certificate-new")
    await page.get_by_label("Paste the CSR").fill(make_csr(f"unverified-{domain}"))
    await page.get_by_role("button", name="Preview").click()
    await walk.check("server-certificate-refused", status=await status_of(page))
    await page.goto(portal + "/account/server-certs/new")
    await page.get_by_label("Paste the CSR").fill(make_csr(domain))
    await page.get_by_role("button", name="Preview").click()
    await expect(page.locator("#names")).to_contain_text(f"www.{domain}")
    await walk.check("server-certificate-preview")
    await page.get_by_role("button", name="Confirm and request the certificate").click()
    await page.wait_for_url(re.compile(r"/account/(requests|certificates)/[0-9a-zA-Z_-]+$"))
    if "/account/requests/" in page.url:  # usually: the signer answers after the page has loaded
        await walk.check("certificate-request")
    await wait_for_certificate(page)
    await expect(page.locator("#certificate-status")).to_have_text("Valid")
    await walk.check("certificate")
    certificate_page = page.url
    await page.get_by_role("link", name="Renew", exact=True).click()
    await expect(page.locator("#renewing")).to_be_visible()
    await walk.check("certificate-renew")
    await page.goto(certificate_page)
    await page.get_by_role("link", name="Revoke this certificate…").click()
    await walk.check("certificate-revoke")
    await page.get_by_label("It has been replaced by a new certificate").check()
    await page.get_by_role("button", name="Revoke the certificate").click()
    await expect(page.get_by_role("status")).to_contain_text("Revocation requested")
    await walk.check("certificate-revocation-requested")
    await page.goto(portal + "/account/server-certs")
    await walk.check("server-certificates")

    # Client certificates: the list, the form, the preview.
    await page.goto(portal + "/account/client-certs")
    await walk.check("client-certificates-none")
    await page.goto(portal + "/account/client-certs/new")
    await walk.check("client-certificate-new")
    await page.get_by_label("Paste the CSR").fill(make_client_csr(address))
    await page.get_by_role("button", name="Preview").click()
    await expect(page.locator("#emails")).to_contain_text(address)
    await walk.check("client-certificate-preview")

    # Password and two-factor authentication.
    await page.goto(portal + "/account/password")
    await walk.check("password-change")
    await page.goto(portal + "/account/second-factor")
    await walk.check("second-factor-off")
    await page.get_by_role("button", name="Start turning it on").click()
    secret = await page.locator("#second-factor-secret").inner_text()
    await walk.check("second-factor-start")
    await page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    await page.get_by_role("button", name="Turn on").click()
    await expect(page).to_have_url(re.compile(r"/account\?notice="))
    await walk.check("account-second-factor-on")
    await page.goto(portal + "/account/second-factor")
    await walk.check("second-factor-on")

    # ACME clients: no binding yet, a new one (its key shown once), the list, a revoked one.
    await page.goto(portal + "/account/acme")
    await walk.check("acme-bindings-none")
    await page.get_by_label("Label (optional: which host or cluster uses it)").fill("web server")
    await page.get_by_role("button", name="Create the binding").click()
    await expect(page.locator("#new-binding")).to_contain_text("certbot")
    await walk.check("acme-binding-created")
    await page.goto(portal + "/account/acme")
    await walk.check("acme-bindings")
    await page.get_by_role("button", name="Revoke binding web server").click()
    await walk.check("acme-binding-revoked")

    # Trust and the relying-party page.
    await page.goto(portal + "/account/assurance")
    await walk.check("assurance")
    await page.goto(portal + "/account/code-signing")
    await walk.check("code-signing")
    await page.goto(portal + "/roots")
    await walk.check("roots")


async def an_assurer(system: System, walk: PageWalk, unique: str, member_address: str) -> None:
    """An Assurer (member + assurer, with two-factor authentication, as staff must be) assures the member."""
    expect = playwright_api.expect
    page, portal = walk.page, system.portal
    address, secret = f"grace-{unique}@example.org", pyotp.random_base32()
    assert system.registration.db is not None
    await bootstrap_member(system.registration.db, system.registration.settings, email=address, name="Grace Hopper",
                           date_of_birth=date(1906, 12, 9), password=PASSWORD, roles=("member", "assurer"),
                           second_factor_secret=secret)
    await page.goto(portal + "/login")
    await fill_login(page, address, code=pyotp.TOTP(secret).now())
    await walk.check("assurer-login")
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(portal + "/account")
    await walk.check("assurer-account")
    await page.goto(portal + "/account/assurance")
    await walk.check("assurer-assurance")
    await page.get_by_label("Member's email address").fill(f"nobody-{unique}@example.org")
    await page.get_by_role("button", name="Show the name and date of birth to check").click()
    await walk.check("assurer-member-unknown", status=await status_of(page))
    await page.goto(portal + "/account/assurance")
    await page.get_by_label("Member's email address").fill(member_address)
    await page.get_by_role("button", name="Show the name and date of birth to check").click()
    await expect(page.locator("#identity")).to_contain_text("Ada Lovelace")
    await walk.check("assurer-identity")
    await page.get_by_label("I checked two government-issued photo ID documents").check()
    await page.get_by_label("Points (0 to 35)").fill("35")
    await page.get_by_label("Where you met").fill("Berlin")
    await page.get_by_label("Date of the meeting").fill(date.today().isoformat())
    await page.get_by_role("button", name="Record the assurance").click()
    await expect(page.locator("#assured")).to_contain_text("You assured Ada Lovelace with 35 points")
    await walk.check("assurer-assured")
    await page.goto(portal + "/account/code-signing")
    await walk.check("assurer-code-signing")


async def support_staff(system: System, walk: PageWalk, unique: str, member_address: str) -> None:
    """Support (an admin, with two-factor authentication) finds the member on the support page."""
    expect = playwright_api.expect
    page, portal = walk.page, system.portal
    address, secret = f"support-{unique}@example.org", pyotp.random_base32()
    assert system.registration.db is not None
    await bootstrap_member(system.registration.db, system.registration.settings, email=address, name="CA Support",
                           date_of_birth=date(1970, 1, 1), password=PASSWORD, roles=("member", "admin"),
                           second_factor_secret=secret)
    await page.goto(portal + "/login")
    await fill_login(page, address, code=pyotp.TOTP(secret).now())
    await page.get_by_role("button", name="Log in").click()
    await expect(page).to_have_url(portal + "/account")
    await page.get_by_role("link", name="Support (admin)").click()
    await walk.check("support")
    await page.get_by_label("Find a member").fill(member_address)
    await page.get_by_role("button", name="Find").click()
    await expect(page.get_by_role("heading", level=2).first).to_have_text("Ada Lovelace")
    await walk.check("support-member")


async def status_of(page: Any) -> int | None:
    """The HTTP status of the document now shown (a form's answer page may be a 4xx)."""
    entries = await page.evaluate("performance.getEntriesByType('navigation').map(e => e.responseStatus)")
    return int(entries[-1]) if entries and entries[-1] else None
