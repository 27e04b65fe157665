"""Domain-name rules shared by registration (which asks) and domain_verify (which mails).

Both services must refuse exactly the same names, so the rules live here once:

* a name is stored and compared as IDNA A-labels in lower case, so the
  Unicode form (`bücher.example`) and the punycode form
  (`xn--bcher-kva.example`) are the same domain;
* a bare public suffix (`com`, `co.uk`, `github.io`) can never be verified:
  nobody controls it for the CA's purposes. The list ships with the
  `publicsuffixlist` package, so no network is needed at run time. Both the
  ICANN and the private section count, which is the conservative choice;
* the official contacts are the CA/Browser Forum Baseline Requirements
  3.2.2.4.4 constructed addresses (admin, administrator, webmaster,
  hostmaster, postmaster) at the domain or any parent below its public suffix;
* a verified domain covers itself and every name below it; a wildcard
  `*.B` is covered only when its base `B` is covered, so `*.example.org`
  needs `example.org` itself (not merely `www.example.org`), and a wildcard
  directly below a public suffix (`*.co.uk`) is never covered.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import idna
from publicsuffixlist import PublicSuffixList

CONTACT_LOCAL_PARTS: tuple[str, ...] = ("admin", "administrator", "webmaster", "hostmaster", "postmaster")
WILDCARD_PREFIX = "*."
MAX_NAME_LENGTH = 253
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@functools.cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def normalise_domain(name: str) -> str:
    """The lower-case A-label form of a host name; ValueError saying why it is not one.

    Accepts Unicode or punycode input, upper case and a trailing root dot.
    Refuses wildcards (use `normalise_dns_name`), IP addresses, underscores,
    empty labels and over-long names.
    """
    if not isinstance(name, str):
        raise ValueError("a domain name must be a string")
    text = name.strip()
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    if not text:
        raise ValueError("the domain name is empty")
    if len(text) > 4 * MAX_NAME_LENGTH:
        raise ValueError("the domain name is too long")
    if "*" in text:
        raise ValueError(f"{name!r}: a wildcard is not a domain name")
    try:
        encoded = idna.encode(text, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"{name!r} is not a valid domain name: {exc}") from None
    if len(encoded) > MAX_NAME_LENGTH:
        raise ValueError(f"{name!r} is longer than {MAX_NAME_LENGTH} characters")
    labels = encoded.split(".")
    for label in labels:
        if not _LABEL.match(label):
            raise ValueError(f"{name!r} is not a valid domain name: bad label {label!r}")
    if labels[-1].isdigit():
        raise ValueError(f"{name!r} looks like an IP address, not a domain name")
    return encoded


def normalise_dns_name(name: str) -> str:
    """Like `normalise_domain` but a single left-most `*.` wildcard label is allowed."""
    if isinstance(name, str) and name.strip().startswith(WILDCARD_PREFIX):
        base = normalise_domain(name.strip()[len(WILDCARD_PREFIX) :])
        return WILDCARD_PREFIX + base
    return normalise_domain(name)


def normalise_email(address: str) -> str:
    """`Ada@Bücher.Example` → `ada@xn--bcher-kva.example`; ValueError if it is not an address.

    The whole address is lower-cased: mailbox names are case-insensitive in
    practice, and comparing addresses one way everywhere avoids two accounts
    owning "the same" mailbox.
    """
    if not isinstance(address, str):
        raise ValueError("an email address must be a string")
    local, at, host = address.strip().rpartition("@")
    if not at or not local or not host:
        raise ValueError(f"{address!r} is not an email address")
    if len(local) > 64 or any(c.isspace() or c in '@<>()[]\\,;:"' for c in local) or not local.isascii():
        raise ValueError(f"{address!r} has an invalid local part")
    if not local.isprintable():
        raise ValueError(f"{address!r} has an invalid local part")
    normalised = f"{local.lower()}@{normalise_domain(host)}"
    if len(normalised) > 254:
        raise ValueError(f"{address!r} is longer than 254 characters")
    return normalised


def is_public_suffix(domain: str) -> bool:
    """True for a bare public suffix (`com`, `co.uk`, an unlisted TLD): never verifiable."""
    return bool(_psl().is_public(domain))


def registrable_domain(domain: str) -> str | None:
    """The shortest name below the public suffix (`www.example.co.uk` → `example.co.uk`)."""
    result = _psl().privatesuffix(domain)
    return str(result) if result else None


def is_registrable(domain: str) -> bool:
    """True when the (normalised) name sits below a public suffix, so someone can own it."""
    return not is_public_suffix(domain) and registrable_domain(domain) is not None


def authorization_domains(domain: str) -> list[str]:
    """The domain and each parent down to its registrable domain, most specific first."""
    registrable = registrable_domain(domain)
    if registrable is None or is_public_suffix(domain):
        raise ValueError(f"{domain} is a public suffix")
    labels = domain.split(".")
    stop = len(registrable.split("."))
    return [".".join(labels[i:]) for i in range(len(labels) - stop + 1)]


def official_contacts(domain: str) -> list[str]:
    """BR 3.2.2.4.4 constructed addresses for `domain` (normalised): one of these may verify it."""
    return [f"{local}@{name}" for name in authorization_domains(domain) for local in CONTACT_LOCAL_PARTS]


def contact_is_official(domain: str, contact: str) -> bool:
    """True when `contact` is one of the official contacts of the normalised `domain`."""
    try:
        address = normalise_email(contact)
        return address in official_contacts(domain)
    except ValueError:
        return False


def covers(verified_domain: str, name: str) -> bool:
    """Whether one verified domain authorises a (normalised, possibly wildcard) name."""
    if name.startswith(WILDCARD_PREFIX):
        base = name[len(WILDCARD_PREFIX) :]
        return not is_public_suffix(base) and covers(verified_domain, base)
    return name == verified_domain or name.endswith("." + verified_domain)


def is_covered(name: str, verified_domains: Iterable[str]) -> bool:
    """Whether any of the member's verified domains authorises `name`."""
    return any(covers(domain, name) for domain in verified_domains)
