"""The domain validation methods the CA uses, with their Baseline Requirements sections and names.

Registration shows a member what to publish and domain_verify looks for it:
both must agree on the method names, the BR section each is recorded under,
and where a value goes, so those live here (as `dns_names.py` does for names).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from shared import dns_names

EMAIL = "email"                      # BR 3.2.2.4.4 Constructed Email to Domain Contact
DNS_CHANGE = "dns_change"            # BR 3.2.2.4.7 DNS Change
WEBSITE_CHANGE = "website_change"    # BR 3.2.2.4.18 Agreed-Upon Change to Website v2
ACME_HTTP_01 = "acme_http_01"        # BR 3.2.2.4.19 Agreed-Upon Change to Website - ACME
ACME_DNS_01 = "acme_dns_01"          # BR 3.2.2.4.7 DNS Change, by ACME dns-01 (RFC 8555 8.4)

METHODS = (EMAIL, DNS_CHANGE, WEBSITE_CHANGE, ACME_HTTP_01, ACME_DNS_01)
CHECKED_METHODS = (DNS_CHANGE, WEBSITE_CHANGE, ACME_HTTP_01, ACME_DNS_01)
ACME_METHODS = (ACME_HTTP_01, ACME_DNS_01)
"""Methods only the ACME service asks for (its challenges); registration offers the others."""
"""Methods domain_verify checks by looking (DNS or HTTP), as opposed to mailing a link."""

FQDN_ONLY_METHODS = (WEBSITE_CHANGE, ACME_HTTP_01)
"""BR 3.2.2.4.18 and 3.2.2.4.19: a validation by a change to the website authorizes the validated FQDN
alone; the CA "MUST NOT issue Certificates for other FQDNs that end with all the labels of the validated
FQDN" without validating them separately, and no wildcard. The other methods validate an Authorization
Domain Name, which covers the names below it."""


def authorizes(name: str, verified: Iterable[tuple[str, str]]) -> bool:
    """Whether a (normalised, possibly wildcard) name is authorized by the member's verifications,
    given as (domain, method) pairs: the one rule registration's policy and the ACME service share."""
    for domain, method in verified:
        if method in FQDN_ONLY_METHODS:
            if name == domain:
                return True
        elif dns_names.covers(domain, name):
            return True
    return False


BR_SECTIONS = {
    EMAIL: "3.2.2.4.4",
    DNS_CHANGE: "3.2.2.4.7",
    WEBSITE_CHANGE: "3.2.2.4.18",
    ACME_HTTP_01: "3.2.2.4.19",
    ACME_DNS_01: "3.2.2.4.7",
}

DNS_LABEL = "_cacert-challenge"
"""BR 3.2.2.4.7: the Random Value goes in TXT at this underscore label under the Authorization Domain Name."""
ACME_DNS_LABEL = "_acme-challenge"
PKI_VALIDATION_PATH = "/.well-known/pki-validation/"
ACME_CHALLENGE_PATH = "/.well-known/acme-challenge/"

CAA_METHOD_LABELS = {
    # RFC 8657 4: a `validationmethods` CAA parameter names ACME challenge types, or CA-specific labels
    # prefixed "ca-" for methods that are not ACME's.
    EMAIL: "ca-email",
    DNS_CHANGE: "ca-dns-change",
    WEBSITE_CHANGE: "ca-website-change",
    ACME_HTTP_01: "http-01",
    ACME_DNS_01: "dns-01",
}

RANDOM_VALUE_DAYS = 30
"""BR 3.2.2.4.7 / 3.2.2.4.18: a Random Value may be used for 30 days after it was drawn."""


def current_request_order(requested_at: datetime, request_id: str) -> tuple[datetime, str]:
    """Which of a member's verification requests for one domain is current: the one with the latest
    ``requested_at``, then (two at the same moment, to the millisecond the databases keep) the greatest request
    id. domain_verify supersedes every other pending one; registration's claim follows the same one, whatever
    order their writes land in (two tries of one request racing, issue 23), so a superseded request never fails
    the claim while the current one is pending."""
    return requested_at.replace(microsecond=requested_at.microsecond // 1000 * 1000), request_id
