"""The RA refuses a CSR with more than MAX_SUBJECT_ALT_NAMES (100) subjectAltNames, and stores nothing for it."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from services.registration.csr import MAX_SUBJECT_ALT_NAMES, TooManySubjectAltNames, parse_csr
from services.registration.issuance_policy import IssuancePolicy
from shared.config import KafkaSettings, MongoSettings
from tests.integration.test_registration_certificates import verify_domain
from tests.registration.csrs import build_csr, ec_key
from tests.registration.harness import Stack, running
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


@pytest.fixture
async def stack(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Stack]:
    async with running(kafka_settings, mongo_settings) as s:
        yield s


@pytest.mark.usefixtures("topics")
async def test_a_request_over_the_cap_gets_422_and_nothing_is_stored_or_published(stack: Stack) -> None:
    api = stack.api
    member_id, token = await stack.member("Sam Sans", "sam@example.org")
    await verify_domain(stack, member_id, token, "example.org")

    over = await api.call("POST", "/v1/requests", token=token,
                          json_body={"csr_pem": build_csr(dns=hosts(101)), "profile": "server"})
    assert over.status == 422, over.body
    error = over.body["error"]
    assert error["code"] == "csr_rejected"
    assert error["message"] == f"the certificate request was refused: {OVER_THE_CAP}"
    assert error["details"] == {"reasons": [OVER_THE_CAP]}  # no request id: there is no request
    assert (await api.call("GET", "/v1/requests", token=token)).body["requests"] == []
    assert stack.service.db is not None
    assert await stack.service.db["requests"].count_documents({}) == 0
    assert await stack.service.db["audit"].count_documents({"action": {"$regex": "^csr\\."}}) == 0

    # The control: 100 names are approved, and that request is the only thing on the csr topic.
    at_cap = await api.call("POST", "/v1/requests", token=token,
                            json_body={"csr_pem": build_csr(dns=hosts(100)), "profile": "server"})
    assert at_cap.status == 202, at_cap.body
    assert len(at_cap.body["dns_names"]) == 100
    published = await stack.events("csr", "")
    assert [(e.type, e.data["request_id"]) for e in published] == [
        ("org.cacert.csr.approved.v1", at_cap.body["id"])
    ]
