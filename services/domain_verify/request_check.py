"""Re-checks a verification request before any mail goes out.

Registration checks the same rules when the member asks, but this service
is the one that sends mail on the CA's behalf, so it does not trust its
input: the domain must be a valid registrable name (not a public suffix)
and the contact one of the Baseline Requirements 3.2.2.4.4 constructed
addresses at the domain or a parent below its public suffix. The name rules
themselves live in `shared.dns_names`, shared with registration, so both
sides refuse exactly the same requests.
"""

from __future__ import annotations

import dataclasses

from shared import dns_names


class RequestRefused(Exception):
    """The request can never be verified; the message is the reason published to the member."""


@dataclasses.dataclass(frozen=True)
class CheckedRequest:
    domain: str  # IDNA A-label, lower case
    contact: str  # local part lower case @ A-label domain: the address the link is mailed to


def normalise_contact(contact: str) -> str:
    """`Admin@Bücher.Example` → `admin@xn--bcher-kva.example`; ValueError if it is not an address."""
    return dns_names.normalise_email(contact)


def check_request(domain: str, contact: str) -> CheckedRequest:
    """The normalised domain and contact, or RequestRefused saying what is wrong."""
    try:
        name = dns_names.normalise_domain(domain)
    except ValueError as exc:
        raise RequestRefused(f"invalid domain: {exc}") from None
    if dns_names.is_public_suffix(name):
        raise RequestRefused(f"{name} is a public suffix; only names below a public suffix can be verified")
    try:
        address = normalise_contact(contact)
    except ValueError as exc:
        raise RequestRefused(f"invalid contact: {exc}") from None
    if not dns_names.contact_is_official(name, address):
        allowed = ", ".join(dns_names.official_contacts(name))
        raise RequestRefused(f"contact {address} is not an official contact of {name} "
                             f"(Baseline Requirements 3.2.2.4.4: {allowed})")
    return CheckedRequest(domain=name, contact=address)
