"""Header-safe recipients, senders and subjects: header injection is impossible by construction.

Everything that reaches a header comes from events, i.e. from members. It
passes through here first: control characters (CR and LF above all) are
removed from free text, and addresses must be plain `local@domain` with an
ASCII dot-atom local part and a DNS domain, which is converted to its IDNA
A-label so the message needs no SMTPUTF8. The results are
`email.headerregistry.Address` objects, which the `email` package encodes
(RFC 2047 for non-ASCII display names) instead of us concatenating strings.
"""

from __future__ import annotations

import email.policy
import re
import unicodedata
from email.headerregistry import Address

import idna

MAX_ADDRESS = 254
MAX_LOCAL_PART = 64
MAX_DISPLAY_NAME = 200
MAX_SUBJECT = 250

# RFC 5322 dot-atom: atext runs separated by single dots.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"^{_ATEXT}(\.{_ATEXT})*$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_SPACES = re.compile(r"\s+")


class InvalidAddress(ValueError):
    """An address no SMTP server could accept: a permanent failure for that mail."""


def header_text(value: str, limit: int) -> str:
    """One line of display text: control characters (CR, LF, NUL, ...) become spaces, runs collapse.

    Format characters (bidi overrides, zero-width joiners) are dropped too, so a
    name cannot visually reorder the subject a member reads.
    """
    cleaned = "".join(" " if unicodedata.category(ch) == "Cc" else ch
                      for ch in value if unicodedata.category(ch) not in ("Cf", "Cs", "Co", "Cn"))
    cleaned = _SPACES.sub(" ", cleaned).strip()
    return cleaned[:limit].rstrip()


def subject_text(value: str) -> str:
    return header_text(value, MAX_SUBJECT)


def display_name(value: str | None) -> str:
    return header_text(value or "", MAX_DISPLAY_NAME)


def normalise_address(value: str) -> str:
    """`local@domain` with the domain as lower-case A-label; InvalidAddress says what is wrong."""
    if not isinstance(value, str) or not value:
        raise InvalidAddress("empty address")
    if any(unicodedata.category(ch) == "Cc" or ch.isspace() for ch in value):
        raise InvalidAddress("address contains whitespace or control characters")
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise InvalidAddress("address must be local-part@domain")
    if len(local) > MAX_LOCAL_PART or not _DOT_ATOM.match(local):
        raise InvalidAddress("local part is not a plain ASCII dot-atom")
    try:
        ascii_domain = idna.encode(domain.rstrip("."), uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidAddress(f"domain is not a valid host name: {exc}") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise InvalidAddress("domain must be a fully qualified host name")
    address = f"{local}@{ascii_domain}"
    if len(address) > MAX_ADDRESS:
        raise InvalidAddress(f"address longer than {MAX_ADDRESS} characters")
    return address


def mailbox(name: str | None, address: str) -> Address:
    """A header-safe `Address`; the display name is cleaned, the address validated."""
    local, _, domain = normalise_address(address).rpartition("@")
    try:
        return Address(display_name=display_name(name), username=local, domain=domain)
    except (ValueError, IndexError) as exc:  # email's own checks, should ours ever miss something
        raise InvalidAddress(str(exc)) from None


def parse_mailbox(value: str) -> Address:
    """`Name <local@domain>` or a bare address (the configured sender)."""
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise InvalidAddress("control characters (CR, LF, ...) are not allowed")
    try:
        parsed = email.policy.default.header_factory("From", value).addresses
    except (ValueError, IndexError) as exc:
        raise InvalidAddress(f"cannot parse {value!r}: {exc}") from None
    if len(parsed) != 1 or not parsed[0].addr_spec:
        raise InvalidAddress(f"{value!r} must be exactly one address")
    return mailbox(parsed[0].display_name, parsed[0].addr_spec)
