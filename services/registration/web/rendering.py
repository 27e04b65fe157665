"""Jinja2 templates (autoescaped: names, domains and CSR contents are untrusted) and small response helpers."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from cryptography import x509

from services.registration.members import Member
from services.registration.web.security import CSRF_FIELD, LINK_PAGE_HEADERS, Visitor

HERE = Path(__file__).parent
STYLESHEET = HERE / "static" / "portal.css"
FAVICON = HERE / "static" / "favicon.svg"

# The one name of each CA on every page (the Class 3 root is technically signed by Class 1).
CA_NAMES = {1: "Class 1 root", 3: "Class 3 root"}
# Every status a member sees, in words (certificates, requests, domains).
STATUSES = {
    "valid": "Valid",
    "revocation_requested": "Revocation requested",
    "revoked": "Revoked",
    "expired": "Expired",
    "pending": "Waiting for confirmation",
    "approved": "Approved, being issued",
    "caa_pending": "Approved, checking CAA records",
    "issued": "Issued",
    "rejected": "Refused",
    "verified": "Verified",
    "unverified": "Not verified yet",
    "failed": "Verification failed",
    "blocked": "Blocked",
}
# The revocation reasons (RFC 5280 CRLReason) a member may give, in words.
REVOCATION_REASON_WORDS = {
    "unspecified": "No particular reason",
    "key_compromise": "The private key was lost, stolen or exposed (key compromise)",
    "affiliation_changed": "The name or organisation in it no longer applies",
    "superseded": "It has been replaced by a new certificate",
    "cessation_of_operation": "The site, service or address is no longer used",
}

# Why a domain check failed (domain_verify's codes, docs/events.md), in words; a sentence passes as it is.
DOMAIN_FAILURES = {
    "expired": "The verification link expired before it was used. Send the mail again.",
    "superseded": "A newer verification request replaced this one.",
    "not_found": "The CA found no record or file with the value.",
    "wrong_value": "The CA found a different value from the one on this page.",
    "nxdomain": "The name does not exist in the DNS.",
    "servfail": "The domain's DNS servers did not answer properly.",
    "timeout": "The domain's servers did not answer in time.",
    "dnssec_bogus": "The domain's DNSSEC signatures do not validate.",
    "http_status_404": "The website answered 'not found' for the file.",
    "redirect_refused": "The website redirected to another site, which the CA does not follow.",
    "private_address": "The name points to a private network address the CA cannot reach.",
    "perspective_disagreement": "The checks from different networks did not agree; check again in a few minutes.",
}


def failure_words(reason: Any) -> str:
    text = str(reason or "")
    if text in DOMAIN_FAILURES:
        return DOMAIN_FAILURES[text]
    if re.fullmatch(r"[a-z0-9_]+", text):
        return text.replace("_", " ").capitalize() + "."
    return text


def status_words(status: Any) -> str:
    return STATUSES.get(str(status), str(status).replace("_", " ").capitalize())


def reason_words(reason: Any) -> str:
    return REVOCATION_REASON_WORDS.get(str(reason), str(reason).replace("_", " ").capitalize())


def _instant(value: Any) -> datetime | date | None:
    if isinstance(value, datetime | date):
        return value
    if not value:
        return None
    text = str(value).strip().replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text) if "T" in text or " " in text else date.fromisoformat(text[:10])
    except ValueError:
        return None


def day(value: Any) -> str:
    """The one date format of the portal: 3 December 2026."""
    found = _instant(value)
    if found is None:
        return str(value or "")
    return f"{found.day} {found:%B %Y}"


def when(value: Any) -> str:
    """A moment in the portal's date format, with the time in UTC: 3 December 2026, 14:05 UTC."""
    found = _instant(value)
    if not isinstance(found, datetime):
        return day(value)
    if found.tzinfo is not None:
        found = found.astimezone(UTC)
    return f"{day(found)}, {found:%H:%M} UTC"


# Subject attributes by OID, in words (the stored subject is RFC 4514 text, where cryptography spells
# attributes without a short name as dotted OIDs: `2.5.4.4=Hopper`).
SUBJECT_ATTRIBUTE_WORDS = {
    "2.5.4.3": "Common name",
    "2.5.4.42": "Given name",
    "2.5.4.4": "Surname",
    "1.2.840.113549.1.9.1": "Email address",
    "2.5.4.10": "Organization",
    "2.5.4.11": "Organizational unit",
    "2.5.4.6": "Country",
    "2.5.4.8": "State or province",
    "2.5.4.7": "Locality",
    "2.5.4.5": "Serial number",
    "2.5.4.65": "Pseudonym",
}


def subject_attributes(value: Any) -> list[tuple[str, str]]:
    """A certificate subject as (attribute in words, value) pairs, in certificate order; the text itself when it
    cannot be read as RFC 4514."""
    text = str(value or "").strip()
    if not text:
        return []
    try:
        name = x509.Name.from_rfc4514_string(text)
    except ValueError:
        return [("Subject", text)]
    return [(SUBJECT_ATTRIBUTE_WORDS.get(attr.oid.dotted_string, attr.oid._name), str(attr.value)) for attr in name]


def fingerprint(value: Any) -> str:
    """The one fingerprint format: upper-case hex pairs separated by colons (as browsers and openssl show it)."""
    text = str(value or "").replace(":", "").strip()
    return ":".join(text[i:i + 2] for i in range(0, len(text), 2)).upper()


_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters.update(
    failure=failure_words, status=status_words, reason=reason_words, day=day, when=when, fingerprint=fingerprint,
    subject_attributes=subject_attributes,
)
_templates.globals.update(ca_names=CA_NAMES)

# The member menu, CAcert style: (section, label, path); admin entries only for support staff.
MENU = (
    ("account", "My account", "/account"),
    ("domains", "Domains", "/account/domains"),
    ("server", "Server Certificates", "/account/server-certs"),
    ("client", "Client Certificates", "/account/client-certs"),
    ("assurance", "Assurance", "/account/assurance"),
    ("acme", "ACME clients", "/account/acme"),
)
CODESIGN_MENU = (("codesign", "Code Signing", "/account/code-signing"),)  # once support activated it
ADMIN_MENU = (("admin", "Support (admin)", "/account/admin"),)


def menu_for(member: Member | None) -> tuple[tuple[str, str, str], ...]:
    if member is None:
        return ()
    codesign = CODESIGN_MENU if member.is_assurer and member.codesign_enabled else ()
    return MENU + codesign + (ADMIN_MENU if member.is_admin else ())


def render(
    visitor: Visitor, template: str, *, title: str, section: str = "", status: int = 200, **context: Any
) -> web.Response:
    member = visitor.member
    menu = menu_for(member)
    body = _templates.get_template(template).render(
        title=title,
        section=section,
        member=member,
        menu=menu,
        csrf_field=CSRF_FIELD,
        csrf=visitor.csrf,
        **context,
    )
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def render_link_page(template: str, *, title: str, status: int = 200, **context: Any) -> web.Response:
    """A page opened from a mailed link whose URL holds a secret: no visitor, no menu, the strict headers."""
    body = _templates.get_template(template).render(
        title=title, section="", member=None, menu=(), csrf_field=CSRF_FIELD, csrf="", **context
    )
    return web.Response(
        text=body, status=status, content_type="text/html", charset="utf-8", headers=LINK_PAGE_HEADERS
    )


def error_page(
    visitor: Visitor, status: int, title: str, message: str, details: list[str] | None = None
) -> web.Response:
    return render(visitor, "error.html", title=title, status=status, message=message, details=details or [])


def see_other(location: str) -> web.Response:
    """303 to a path of this site (after a POST, so reloading does not post again)."""
    return web.Response(status=303, headers={"Location": location})


async def stylesheet(_: web.Request) -> web.Response:
    return web.Response(
        body=STYLESHEET.read_bytes(),
        content_type="text/css",
        headers={"Cache-Control": "public, max-age=3600"},
    )


async def favicon(_: web.Request) -> web.Response:
    return web.Response(
        body=FAVICON.read_bytes(),
        content_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


async def favicon_ico(_: web.Request) -> web.Response:
    """Browsers ask for /favicon.ico on pages without an icon link (like the API's /confirm-email)."""
    return web.Response(status=301, headers={"Location": "/static/favicon.svg"})
