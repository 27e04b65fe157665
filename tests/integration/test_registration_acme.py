"""Registration's side of ACME over the real Kafka and FerretDB: bindings announced (their key sealed) on
`acme.bindings`, CSRs and revocations the ACME service puts on `acme` decided by the RA under the ACME request
id; and the same bindings from the `cacert` command line and the portal."""

from __future__ import annotations

import base64
import dataclasses
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.config import KafkaSettings, MongoSettings
from shared.events import CloudEvent, isoformat, make_event
from tests.acme_keys import OPENER
from tests.approval_keys import RA_PUBLIC_PEM
from tests.integration.test_registration_certificates import verify_domain
from tests.integration.test_registration_cli import cacert
from tests.integration.test_registration_web_portal import Browser
from tests.registration.csrs import build_csr
from tests.registration.harness import Stack, running
from tests.security.test_authorization_matrix import owned_certificate

pytestmark = pytest.mark.usefixtures("topics")


@pytest.fixture
async def stack(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Stack]:
    async with running(kafka_settings, mongo_settings) as s:
        yield s


async def about(stack: Stack, topic: str, type_suffix: str, key: str, expected: int = 1) -> list[CloudEvent]:
    """The events of one type on a topic whose Kafka key is `key`, waiting until `expected` arrived."""
    found: list[CloudEvent] = []
    for _ in range(20):
        found = [e for e in await stack.events(topic, type_suffix, expected=1, timeout=2) if e.key == key]
        if len(found) >= expected:
            break
    return found


async def test_a_binding_is_announced_on_acme_bindings_with_a_key_only_the_acme_service_opens(stack: Stack) -> None:
    member_id, token = await stack.member("Ada Acme", "ada@example.org")
    created = await stack.api.call("POST", "/v1/acme-bindings", token=token, json_body={"label": "k8s prod"})
    assert created.status == 201, created.body
    key_id, hmac_key = created.body["key_id"], created.body["hmac_key"]

    [announced] = await about(stack, "acme.bindings", "acme.binding_created", key_id)
    assert announced.data["member_id"] == member_id and announced.data["label"] == "k8s prod"
    opened = OPENER.open(key_id, member_id, announced.data["hmac_key"])
    assert opened == base64.urlsafe_b64decode(hmac_key + "=")
    assert hmac_key not in str(announced.data)

    listed = await stack.api.call("GET", "/v1/acme-bindings", token=token)
    assert listed.status == 200 and [b["key_id"] for b in listed.body["bindings"]] == [key_id]
    assert "hmac_key" not in str(listed.body)
    revoked = await stack.api.call("DELETE", f"/v1/acme-bindings/{key_id}", token=token)
    assert revoked.status == 200 and revoked.body["status"] == "revoked"
    [gone] = await about(stack, "acme.bindings", "acme.binding_revoked", key_id)
    assert gone.data["member_id"] == member_id
    # what registration stored holds no key either
    assert stack.service.db is not None
    stored = await stack.service.db["acme_bindings"].find_one({"_id": key_id})
    assert stored is not None and hmac_key not in str(stored)
    assert base64.urlsafe_b64decode(hmac_key + "=").hex() not in str(stored)


def csr_submitted(member_id: str, key_id: str, names: list[str], csr_pem: str) -> dict[str, Any]:
    return {"request_id": f"acme-{uuid.uuid4().hex}", "member_id": member_id, "binding_key_id": key_id,
            "account_id": "acct-7", "order_id": f"order-{uuid.uuid4().hex[:8]}", "cert_class": 1,
            "csr_pem": csr_pem, "dns_names": names, "submitted_at": isoformat(datetime.now(UTC))}


async def test_an_acme_csr_on_kafka_is_approved_or_rejected_under_its_own_request_id(stack: Stack) -> None:
    from shared.approvals import ApprovalVerifier

    member_id, token = await stack.member("Ada Acme", "ada@example.org")
    await verify_domain(stack, member_id, token, "example.org")
    key_id = (await stack.api.call("POST", "/v1/acme-bindings", token=token, json_body={})).body["key_id"]
    good = csr_submitted(member_id, key_id, ["www.example.org"], build_csr(dns=["www.example.org"]))
    bad = csr_submitted(member_id, key_id, ["www.example.net"], build_csr(dns=["www.example.net"]))
    await stack.publish("acme.csr_submitted", good, source="acme")
    await stack.publish("acme.csr_submitted", bad, source="acme")

    [caa] = await about(stack, "domain", "domain.caa_check_requested", good["request_id"])
    assert caa.data["names"] == ["www.example.org"] and caa.data["member_id"] == member_id
    await stack.answer_caa(good["request_id"])
    [approved] = await about(stack, "csr", "csr.approved", good["request_id"])
    assert approved.data["dns_names"] == ["www.example.org"] and approved.data["member_id"] == member_id
    assert ApprovalVerifier.from_pem(RA_PUBLIC_PEM).problem(approved) is None
    [rejected] = await about(stack, "csr", "csr.rejected", bad["request_id"])
    assert rejected.data["reasons"] == ["www.example.net is not within a domain you have verified"]

    # Redelivered (a new ce_id, the same request), then a marker on the same partition: once the marker is
    # answered, the redelivery has been handled, and it made nothing new.
    await stack.publish("acme.csr_submitted", good, source="acme")
    marker = csr_submitted(member_id, key_id, ["marker.example.net"], build_csr(dns=["marker.example.net"]))
    event = make_event("acme.csr_submitted", marker, source="acme")
    await stack.producer.publish(dataclasses.replace(event, key=good["request_id"]))
    assert await about(stack, "csr", "csr.rejected", marker["request_id"])
    assert len(await about(stack, "domain", "domain.caa_check_requested", good["request_id"])) == 1
    assert len(await about(stack, "csr", "csr.approved", good["request_id"])) == 1

    requests = (await stack.api.call("GET", "/v1/requests", token=token)).body["requests"]
    assert sorted(r["id"] for r in requests) == sorted([good["request_id"], bad["request_id"], marker["request_id"]])
    assert all(r["source"] == "acme" and r["acme"]["binding_key_id"] == key_id for r in requests)


async def test_an_acme_revocation_on_kafka_becomes_the_ras_signed_revocation_request(stack: Stack) -> None:
    member_id, token = await stack.member("Ada Acme", "ada@example.org")
    serial = await owned_certificate(stack, member_id, token)
    await stack.publish("acme.revocation_requested", {
        "request_id": "acme-revoke-1", "serial": serial, "member_id": member_id, "proof": "account",
        "account_id": "acct-7", "reason": "superseded", "requested_at": isoformat(datetime.now(UTC))}, source="acme")

    [asked] = await about(stack, "cert", "cert.revoke_requested", serial)
    assert asked.data["requested_by"] == "acme:acct-7" and asked.data["member_id"] == member_id
    assert asked.data["reason"] == "superseded" and asked.data["ra_signature"]


async def test_bindings_from_the_command_line(stack: Stack, tmp_path: Path) -> None:
    _, token = await stack.member("Cli Acme", "cli@example.org")
    token_file = tmp_path / "session"
    token_file.write_text(token + "\n")
    code, out, err = await cacert(stack, token_file, "acme-binding", "create", "--label", "laptop")
    assert code == 0, err
    key_id = re.search(r"key id: +(\S+)", out)
    hmac_key = re.search(r"HMAC key: +(\S+)", out)
    assert key_id and hmac_key and f"--eab-kid {key_id.group(1)}" in out and "shown this once" in out
    code, out, err = await cacert(stack, token_file, "acme-binding", "create", "--class", "3")
    assert code == 1 and "not_assured" in err
    code, out, _ = await cacert(stack, token_file, "acme-binding", "list")
    assert code == 0 and key_id.group(1) in out and "laptop" in out and hmac_key.group(1) not in out
    code, out, _ = await cacert(stack, token_file, "acme-binding", "revoke", key_id.group(1))
    assert code == 0 and f"revoked {key_id.group(1)}" in out
    code, out, _ = await cacert(stack, token_file, "acme-binding", "revoke", "no-such-binding-00000")
    assert code == 1


async def test_bindings_in_the_portal(stack: Stack) -> None:
    await stack.member("Web Acme", "web@example.org")
    browser = Browser(stack.api.base)
    try:
        await browser.login("web@example.org")
        status, page, _ = await browser.get("/account/acme")
        assert status == 200 and 'href="/account/acme" aria-current="page"' in page
        assert "You have no bindings yet." in page and "Class 3 bindings are for Assured members" in page
        csrf = await browser.csrf("/account/acme")
        refused, _, _ = await browser.post("/account/acme", {"label": "no token"})
        assert refused == 403
        status, page, headers = await browser.post("/account/acme", {"csrf": csrf, "label": "web <server>"})
        assert status == 200 and headers["Cache-Control"] == "no-store"
        key_id = re.search(r'id="binding-key-id">([^<]+)<', page)
        hmac_key = re.search(r'id="binding-hmac-key">([^<]+)<', page)
        assert key_id and hmac_key
        assert (f"certbot certonly --server http://127.0.0.1:8089/directory \\\n  --eab-kid {key_id.group(1)} \\\n"
                f"  --eab-hmac-key {hmac_key.group(1)}") in page
        assert f"keyID: {key_id.group(1)}" in page and f"secret: {hmac_key.group(1)}" in page
        assert "web &lt;server&gt;" in page  # escaped
        status, page, _ = await browser.get("/account/acme")
        assert key_id.group(1) in page and hmac_key.group(1) not in page  # never shown again
        status, _, headers = await browser.post(f"/account/acme/{key_id.group(1)}/revoke", {"csrf": csrf})
        assert status == 303 and headers["Location"] == "/account/acme?notice=acme_binding_revoked"
        status, page, _ = await browser.get(headers["Location"])
        assert "The binding is revoked" in page and "Revoked" in page
        status, _, _ = await browser.post("/account/acme/not-a-binding-000000/revoke", {"csrf": csrf})
        assert status == 404
    finally:
        await browser.close()
