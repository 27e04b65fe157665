"""Over HTTP, a CSR over the subjectAltName cap gets 422 and nothing is stored or published (the parsing side:
tests/registration/test_subject_alt_name_cap.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.config import KafkaSettings, MongoSettings
from tests.integration.test_registration_certificates import verify_domain
from tests.registration.csrs import build_csr
from tests.registration.harness import Stack, running
from tests.registration.test_subject_alt_name_cap import OVER_THE_CAP, hosts


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
    await stack.answer_caa(at_cap.body["id"])
    published = await stack.events("csr", "")
    assert [(e.type, e.data["request_id"]) for e in published] == [
        ("org.cacert.csr.approved.v1", at_cap.body["id"])
    ]
