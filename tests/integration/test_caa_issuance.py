"""The RA and the validation authority together, over the real DNS: a domain verified by a TXT record gets
its certificate approved, and a CAA record published after the validation stops the next issuance."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from devstack.dns_zone import LocalZone
from shared.config import KafkaSettings, MongoSettings
from tests.domain_verify.harness import running as domain_verify
from tests.registration.csrs import build_csr
from tests.registration.harness import Stack
from tests.registration.harness import running as registration

pytestmark = pytest.mark.integration


async def wait_for(stack: Stack, token: str, path: str, done: Any, what: str, timeout: float = 40) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        body = (await stack.api.call("GET", path, token=token)).body
        if done(body):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what}: last seen {body}")


async def test_a_caa_record_added_after_validation_stops_issuance_and_the_member_sees_why(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, stack_env: dict[str, str]) -> None:
    zone = LocalZone.from_env(stack_env)
    domain = f"shop{uuid.uuid4().hex[:8]}.example.org"
    dv_mongo = MongoSettings(url=mongo_settings.url, database=mongo_settings.database + "_dv")
    async with registration(kafka_settings, mongo_settings) as stack, \
            domain_verify(kafka_settings, dv_mongo, resolvers=[stack_env["CACERT_DNS_RESOLVER"]]):
        _, token = await stack.member("Carla CAA", "carla@example.org")

        # The DNS-change method: the API shows the record, the member publishes it and asks for a check.
        claim = (await stack.api.call("POST", "/v1/domains", token=token,
                                      json_body={"domain": domain, "method": "dns_change"})).body
        challenge = claim["challenge"]
        assert challenge["record_name"] == f"_cacert-challenge.{domain}" and challenge["record_type"] == "TXT"
        await zone.publish(challenge["record_name"], "TXT", f'"{challenge["random_value"]}"')
        checked = await stack.api.call("POST", f"/v1/domains/{claim['id']}/check", token=token)
        assert checked.status == 202 and checked.body["status"] == "pending"
        verified = await wait_for(stack, token, f"/v1/domains/{claim['id']}", lambda b: b["status"] != "pending",
                                  "the DNS check")
        assert verified["status"] == "verified" and verified["verified_by"] == "dns_change", verified
        assert verified["br_section"] == "3.2.2.4.7"

        # No CAA record: the request is approved once CAA is checked, and announced to the signer.
        first = (await stack.api.call("POST", "/v1/requests", token=token, json_body={
            "csr_pem": build_csr(dns=[f"www.{domain}"]), "profile": "server"})).body
        assert first["status"] == "caa_pending"
        approved = await wait_for(stack, token, f"/v1/requests/{first['id']}",
                                  lambda b: b["status"] != "caa_pending", "the first CAA check")
        assert approved["status"] == "approved" and approved["caa"]["verdict"] == "allowed", approved

        # The domain owner now allows only another CA: the domain is still verified, issuance stops.
        await zone.publish(domain, "CAA", '0 issue "other-ca.example"')
        second = (await stack.api.call("POST", "/v1/requests", token=token, json_body={
            "csr_pem": build_csr(dns=[f"www.{domain}"]), "profile": "server"})).body
        refused = await wait_for(stack, token, f"/v1/requests/{second['id']}",
                                 lambda b: b["status"] != "caa_pending", "the second CAA check")
        assert refused["status"] == "rejected", refused
        assert any("other-ca.example" in r and f"www.{domain}" in r for r in refused["reasons"]), refused

        rejected = [e for e in await stack.events("csr", "csr.rejected") if e.data["request_id"] == second["id"]]
        assert rejected and rejected[0].data["code"] == "caa"
        approvals = [e.data["request_id"] for e in await stack.events("csr", "csr.approved")]
        assert approvals == [first["id"]], "the refused request never reached the signer"
