"""CAA checking (BR 3.2.2.8, RFC 8659, RFC 8657 account and method binding).

`check_caa` finds the Relevant RRset by climbing from the name towards (not
including) the root and stopping at the first non-empty CAA RRset; the
resolver follows CNAMEs at each step (RFC 8659 3). Then:

* an unknown property with the critical flag forbids issuance (RFC 8659 4.1);
* for a wildcard, `issuewild` properties decide if there are any, `issue`
  ones otherwise; for other names only `issue` decides (RFC 8659 4.2, 4.3);
* a property permits us when its issuer domain name is one of our CAA
  identities (BR 4.2 / CPS: `cacert.example` by default) and its RFC 8657
  parameters hold: `accounturi` must equal the ACME account's URI (a
  non-ACME request has none, so it never matches), `validationmethods`
  must list the method that validated the name;
* `issue ";"` (no issuer) permits nobody; a malformed property matches nobody;
* a lookup that fails (SERVFAIL, timeout, DNSSEC bogus) refuses: BR 3.2.2.8
  allows treating a failure as permission only under conditions we do not
  try to prove, so we never do (`lookup_failed:<why>`).
"""

from __future__ import annotations

import dataclasses
import re

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from services.domain_verify.va.resolver import LookupFailure, Resolver
from shared.domain_methods import CAA_METHOD_LABELS

CRITICAL = 0x80
KNOWN_TAGS = frozenset({"issue", "issuewild", "iodef", "issuemail", "issuevmc", "contactemail", "contactphone"})

_ISSUER = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                     r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_PARAM_TAG = re.compile(r"^[A-Za-z0-9]+$")
_PARAM_VALUE = re.compile(r"^[\x21-\x3a\x3c-\x7e]*$")


@dataclasses.dataclass(frozen=True)
class CaaVerdict:
    allowed: bool
    reason: str
    """no_caa, no_issue_property, permitted | not_permitted, critical_unknown_tag, lookup_failed:<why>"""
    relevant_name: str | None
    records: list[str]
    dnssec: str | None = None


@dataclasses.dataclass(frozen=True)
class CaaProperty:
    flags: int
    tag: str
    value: str

    @property
    def text(self) -> str:
        return f'{self.flags} {self.tag} "{self.value}"'


def parse_record(text: str) -> CaaProperty:
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.CAA, text)
    return CaaProperty(int(rdata.flags), rdata.tag.decode("ascii", errors="replace").lower(),  # type: ignore[attr-defined]
                       rdata.value.decode("utf-8", errors="replace"))  # type: ignore[attr-defined]


def parse_issue_value(value: str) -> tuple[str, dict[str, str]] | None:
    """RFC 8659 4.2: `[issuer-domain-name] [";" parameters]` → (issuer, params); None if malformed.
    An empty issuer ("" or ";") is returned as "" and permits nobody."""
    head, _, rest = value.partition(";")
    issuer = head.strip()
    if issuer and not _ISSUER.match(issuer):
        return None
    params: dict[str, str] = {}
    if rest.strip():
        for part in rest.split(";"):
            tag, eq, val = part.partition("=")
            tag, val = tag.strip(), val.strip()
            if not eq or not _PARAM_TAG.match(tag) or not _PARAM_VALUE.match(val):
                return None
            params[tag.lower()] = val
    return issuer.lower().rstrip("."), params


def _permits(prop: CaaProperty, identities: set[str], account_uri: str | None, method_label: str | None) -> bool:
    parsed = parse_issue_value(prop.value)
    if parsed is None:
        return False
    issuer, params = parsed
    if not issuer or issuer not in identities:
        return False
    if "accounturi" in params and params["accounturi"] != account_uri:
        return False  # RFC 8657 3: bound to one ACME account; a request from elsewhere has no match
    if "validationmethods" in params:
        allowed = {m.strip() for m in params["validationmethods"].split(",")}
        if method_label is None or method_label not in allowed:
            return False  # RFC 8657 4
    return True


async def relevant_rrset(resolver: Resolver, name: str) -> tuple[str | None, list[CaaProperty], str | None]:
    """(relevant name, its CAA properties, dnssec status); LookupFailure is passed on."""
    labels = name.rstrip(".").split(".")
    for i in range(len(labels)):
        candidate = ".".join(labels[i:])
        answer = await resolver.lookup(candidate, "CAA")
        if answer.records:
            props: list[CaaProperty] = []
            for text in answer.records:
                try:
                    props.append(parse_record(text))
                except (dns.exception.DNSException, ValueError):
                    props.append(CaaProperty(0, "issue", "\x00malformed"))  # matches nobody
            return candidate, props, answer.dnssec
    return None, [], None


async def check_caa(resolver: Resolver, name: str, *, identities: list[str], wildcard: bool = False,
                    account_uri: str | None = None, validation_method: str | None = None) -> CaaVerdict:
    """May the CA issue for `name` (`*.name` when `wildcard`)? See the module docstring."""
    try:
        relevant_name, props, dnssec = await relevant_rrset(resolver, name)
    except LookupFailure as exc:
        return CaaVerdict(False, f"lookup_failed:{exc.reason}", None, [exc.detail] if exc.detail else [])
    if relevant_name is None:
        return CaaVerdict(True, "no_caa", None, [])
    records = [p.text for p in props]
    if any(p.flags & CRITICAL and p.tag not in KNOWN_TAGS for p in props):
        return CaaVerdict(False, "critical_unknown_tag", relevant_name, records, dnssec)
    issue = [p for p in props if p.tag == "issue"]
    issuewild = [p for p in props if p.tag == "issuewild"]
    deciding = issuewild if wildcard and issuewild else issue
    if not deciding:
        return CaaVerdict(True, "no_issue_property", relevant_name, records, dnssec)
    ours = {i.lower().rstrip(".") for i in identities}
    label = CAA_METHOD_LABELS.get(validation_method, validation_method) if validation_method else None
    if any(_permits(p, ours, account_uri, label) for p in deciding):
        return CaaVerdict(True, "permitted", relevant_name, records, dnssec)
    return CaaVerdict(False, "not_permitted", relevant_name, [p.text for p in deciding], dnssec)
