"""The checked BR 3.2.2.4 methods: one function each, a `CheckResult` out, no events, no storage.

Each looks from this process's network view (its resolver, its HTTP
client); corroboration by other perspectives (BR 3.2.2.9) happens above.
A failure says why in `reason` (a code: `not_found`, `wrong_value`,
`dnssec_bogus`, `http_status_404`, `private_address`, ...) and what was
seen instead in `found`, so a member can tell "I have not published it
yet" from "I published something else".
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
from typing import Any

from services.domain_verify.va.http_fetch import Fetcher, FetchFailure
from services.domain_verify.va.resolver import LookupFailure, Resolver
from shared.domain_methods import (
    ACME_CHALLENGE_PATH,
    ACME_DNS_LABEL,
    BR_SECTIONS,
    DNS_LABEL,
    PKI_VALIDATION_PATH,
)

# Characters allowed in a path segment we build a URL from (base64url tokens, our file names).
_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
_SHOWN = 200  # at most this many characters of a wrong file are echoed back


@dataclasses.dataclass(frozen=True)
class CheckResult:
    ok: bool
    reason: str
    found: list[str]
    br_section: str
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)


def _segment(value: str, what: str) -> str:
    if not _SAFE_SEGMENT.match(value) or ".." in value:
        raise ValueError(f"{what} {value!r} is not a safe URL path segment")
    return value


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


async def _txt_check(resolver: Resolver, name: str, expected: str, method: str) -> CheckResult:
    section = BR_SECTIONS[method]
    try:
        answer = await resolver.lookup(name, "TXT")
    except LookupFailure as exc:
        return CheckResult(False, exc.reason, [], section, {"name": name, "detail": exc.detail})
    evidence = {"name": name, "dnssec": answer.dnssec, "records": answer.records}
    if answer.cname_chain:
        evidence["cname_chain"] = answer.cname_chain
    if any(_equal(record.strip(), expected) for record in answer.records):
        return CheckResult(True, "found", [], section, evidence)
    if not answer.records:
        return CheckResult(False, "not_found", [], section, evidence)
    return CheckResult(False, "wrong_value", list(answer.records), section, evidence)


async def check_dns_change(resolver: Resolver, domain: str, random_value: str) -> CheckResult:
    """BR 3.2.2.4.7 (DNS Change): the Random Value in a TXT record at `_cacert-challenge.<domain>`."""
    return await _txt_check(resolver, f"{DNS_LABEL}.{domain}", random_value, "dns_change")


def acme_dns_digest(key_authorization: str) -> str:
    """RFC 8555 8.4: base64url(SHA-256(key authorization)), no padding."""
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def check_acme_dns_01(resolver: Resolver, domain: str, key_authorization: str) -> CheckResult:
    """BR 3.2.2.4.7 via ACME dns-01 (RFC 8555 8.4): the digest in TXT at `_acme-challenge.<domain>`."""
    return await _txt_check(resolver, f"{ACME_DNS_LABEL}.{domain}", acme_dns_digest(key_authorization),
                            "acme_dns_01")


async def _http_check(fetcher: Fetcher, domain: str, path: str, expected: str, method: str, *,
                      exact: bool) -> CheckResult:
    section = BR_SECTIONS[method]
    url = fetcher.url_for(domain, path)
    try:
        fetched = await fetcher.get(url)
    except FetchFailure as exc:
        return CheckResult(False, exc.reason, [], section, {"url": url, "detail": exc.detail})
    evidence = {"url": url, "final_url": fetched.url, "status": fetched.status, "address": fetched.address,
                "redirects": fetched.redirects}
    # BR 3.2.2.4.18 / .19: "a successful HTTP response (meaning a 2xx HTTP status code)".
    if not 200 <= fetched.status < 300:
        return CheckResult(False, f"http_status_{fetched.status}", [], section, evidence)
    text = fetched.body.decode("utf-8", errors="replace")
    # RFC 8555 8.3: trailing whitespace is ignored; the BR file may hold the value among other content.
    matched = _equal(text.rstrip(), expected) if exact else expected in text
    if matched:
        return CheckResult(True, "found", [], section, evidence)
    if not text.strip():
        return CheckResult(False, "not_found", [], section, evidence)
    return CheckResult(False, "wrong_value", [text.strip()[:_SHOWN]], section, evidence)


async def check_website_change(fetcher: Fetcher, domain: str, random_value: str, file_name: str) -> CheckResult:
    """BR 3.2.2.4.18 (Agreed-Upon Change to Website v2): the Random Value in the file under
    `/.well-known/pki-validation/` (the request never carries the value itself)."""
    path = PKI_VALIDATION_PATH + _segment(file_name, "file name")
    return await _http_check(fetcher, domain, path, random_value, "website_change", exact=False)


async def check_acme_http_01(fetcher: Fetcher, domain: str, token: str, key_authorization: str) -> CheckResult:
    """BR 3.2.2.4.19 (Agreed-Upon Change to Website - ACME, RFC 8555 8.3): the key authorization is the
    body of `/.well-known/acme-challenge/<token>`."""
    path = ACME_CHALLENGE_PATH + _segment(token, "token")
    return await _http_check(fetcher, domain, path, key_authorization, "acme_http_01", exact=True)
