"""Issuance limits over HTTP: the member API answers 429 `rate_limited` with Retry-After and a sentence
saying which limit, and nothing is stored or queued for the refused request."""

from __future__ import annotations

import pytest

from shared.config import KafkaSettings, MongoSettings
from tests.registration.csrs import build_csr
from tests.registration.harness import running

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("topics")]


async def test_the_api_answers_429_with_retry_after_past_the_request_and_domain_limits(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    async with running(kafka_settings, mongo_settings, requests_per_member=1, domain_claims_per_member=1) as stack:
        _, token = await stack.member("Rita Limit", "rita@example.org")
        body = {"csr_pem": build_csr(emails=["rita@example.org"]), "profile": "client"}
        first = await stack.api.call("POST", "/v1/requests", token=token, json_body=body)
        assert first.status == 202, first.body
        second = await stack.api.call("POST", "/v1/requests", token=token, json_body=body)
        assert second.status == 429, second.body
        error = second.body["error"]
        assert error["code"] == "rate_limited"
        assert error["message"].startswith("too many certificate requests from this account today; retry in ")
        assert int(second.headers["Retry-After"]) == error["details"]["retry_after"] > 0
        listing = await stack.api.call("GET", "/v1/requests", token=token)
        assert len(listing.body["requests"]) == 1

        assert (await stack.api.call("POST", "/v1/domains", token=token, json_body={"domain": "one.example"})
                ).status == 201
        refused = await stack.api.call("POST", "/v1/domains", token=token, json_body={"domain": "two.example"})
        assert refused.status == 429 and "too many domains added" in refused.body["error"]["message"]
