"""The RA refuses a CSR with more than MAX_SUBJECT_ALT_NAMES (100) subjectAltNames, and stores nothing for it.

The parsing side; tests/integration/test_registration_subject_alt_name_cap.py checks over HTTP that
nothing is stored or published.
"""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from services.registration.csr import MAX_SUBJECT_ALT_NAMES, TooManySubjectAltNames, parse_csr
from services.registration.issuance_policy import IssuancePolicy
from tests.registration.csrs import build_csr, ec_key
from tests.registration.test_issuance_policy import MEMBER

OVER_THE_CAP = "the CSR carries 101 subjectAltNames; at most 100 are allowed per request"


def hosts(count: int) -> list[str]:
    return [f"h{i}.example.org" for i in range(count)]


def test_the_cap_is_100() -> None:
    assert MAX_SUBJECT_ALT_NAMES == 100


def test_a_csr_with_100_subject_alt_names_is_accepted() -> None:
    decision = IssuancePolicy().decide("server", parse_csr(build_csr(dns=hosts(100))), MEMBER)
    assert decision.approved, decision.reasons
    assert len(decision.dns_names) == 100


def test_a_csr_with_101_subject_alt_names_is_refused_naming_the_count_and_the_limit() -> None:
    with pytest.raises(TooManySubjectAltNames) as caught:
        parse_csr(build_csr(dns=hosts(101)))
    assert caught.value.count == 101
    assert caught.value.reasons == [OVER_THE_CAP]


def test_dns_names_ip_addresses_and_email_addresses_count_together() -> None:
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hosts(99)]
    names += [x509.IPAddress(ipaddress.ip_address("192.0.2.1")), x509.RFC822Name("ada@example.org")]
    pem = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ec_key(), hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    with pytest.raises(TooManySubjectAltNames) as caught:
        parse_csr(pem)
    assert caught.value.reasons == [OVER_THE_CAP]
