"""Domains, CSRs and certificates over real HTTP/Kafka/FerretDB; other services simulated by events."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from shared import certificate_validity
from shared.config import KafkaSettings, MongoSettings
from shared.events import isoformat
from tests.registration.csrs import build_csr, self_signed
from tests.registration.harness import Stack, running

pytestmark = pytest.mark.usefixtures("topics")


@pytest.fixture
async def stack(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Stack]:
    async with running(kafka_settings, mongo_settings) as s:
        yield s


async def verify_domain(stack: Stack, member_id: str, token: str, domain: str) -> str:
    """Add a domain, ask for verification, and answer as domain_verify would; returns the claim id."""
    added = await stack.api.call(
        "POST", "/v1/domains", token=token, json_body={"domain": domain, "contact": f"hostmaster@{domain}"}
    )
    assert added.status == 201 and added.body["status"] == "pending", added.body
    requested = [
        e
        for e in await stack.events("domain", "domain.verification_requested")
        if e.data["domain"] == added.body["domain"]
    ]
    (request,) = requested
    now = datetime.now(UTC)
    await stack.publish(
        "domain.verified",
        {
            "request_id": request.data["request_id"],
            "member_id": member_id,
            "domain": request.data["domain"],
            "method": "email",
            "contact": request.data["contact"],
            "verified_at": isoformat(now),
            "valid_until": isoformat(now + timedelta(days=390)),
        },
        source="domain_verify",
    )

    async def verified() -> bool:
        reply = await stack.api.call("GET", f"/v1/domains/{added.body['id']}", token=token)
        return bool(reply.body["status"] == "verified")

    for _ in range(200):
        if await verified():
            break
        await asyncio.sleep(0.1)
    assert await verified()
    return str(added.body["id"])


async def test_domain_flow_public_suffix_idna_and_contacts(stack: Stack) -> None:
    api = stack.api
    member_id, token = await stack.member("Gus", "gus@example.org")
    for bare in ("co.uk", "github.io"):
        refused = await api.call("POST", "/v1/domains", token=token, json_body={"domain": bare})
        assert refused.status == 422 and refused.body["error"]["code"] == "public_suffix"
    one_label = await api.call("POST", "/v1/domains", token=token, json_body={"domain": "com"})
    assert one_label.status == 422 and one_label.body["error"]["details"] == [  # the DomainName schema
        {"field": "domain", "problem": "is not a domain name"}]
    added = await api.call("POST", "/v1/domains", token=token, json_body={"domain": "Shop.Bücher.Example"})
    assert added.status == 201 and added.body["domain"] == "shop.xn--bcher-kva.example"
    assert added.body["status"] == "unverified"
    again = await api.call(
        "POST", "/v1/domains", token=token, json_body={"domain": "shop.xn--bcher-kva.example"}
    )
    assert again.status == 409
    contacts = (await api.call("GET", f"/v1/domains/{added.body['id']}/contacts", token=token)).body[
        "contacts"
    ]
    assert (
        contacts[0] == "admin@shop.xn--bcher-kva.example" and "postmaster@xn--bcher-kva.example" in contacts
    )
    bad = await api.call(
        "POST",
        f"/v1/domains/{added.body['id']}/verify",
        token=token,
        json_body={"contact": "root@shop.xn--bcher-kva.example"},
    )
    assert bad.status == 422 and bad.body["error"]["code"] == "contact_not_official"
    asked = await api.call(
        "POST",
        f"/v1/domains/{added.body['id']}/verify",
        token=token,
        json_body={"contact": "Webmaster@Bücher.Example"},
    )
    assert asked.status == 202 and asked.body["status"] == "pending"
    (request,) = await stack.events("domain", "domain.verification_requested")
    assert request.data == {
        **request.data,
        "member_id": member_id,
        "domain": "shop.xn--bcher-kva.example",
        "contact": "webmaster@xn--bcher-kva.example",
        "method": "email",
    }
    await stack.publish(
        "domain.verification_failed",
        {
            "request_id": request.data["request_id"],
            "member_id": member_id,
            "domain": request.data["domain"],
            "reason": "expired",
            "failed_at": isoformat(datetime.now(UTC)),
        },
        source="domain_verify",
    )
    for _ in range(100):
        view = (await api.call("GET", f"/v1/domains/{added.body['id']}", token=token)).body
        if view["status"] == "failed":
            break
        await asyncio.sleep(0.1)
    assert view["status"] == "failed" and view["failure_reason"] == "expired"


async def test_csr_policy_end_to_end_and_certificate_lifecycle(stack: Stack) -> None:
    api = stack.api
    member_id, token = await stack.member("Hanna Server", "hanna@example.org")
    other_id, other = await stack.member("Ivan Other", "ivan@example.org")
    await verify_domain(stack, member_id, token, "example.org")

    # A name outside the verified domains: 422 naming it, csr.rejected published.
    outside = build_csr(subject=[("CN", "www.example.org")], dns=["www.example.org", "evil.example.com"])
    refused = await api.call(
        "POST", "/v1/requests", token=token, json_body={"csr_pem": outside, "profile": "server"}
    )
    assert refused.status == 422 and refused.body["error"]["code"] == "csr_rejected"
    assert (
        "evil.example.com is not within a domain you have verified"
        in refused.body["error"]["details"]["reasons"]
    )
    (rejected,) = await stack.events("csr", "csr.rejected")
    assert rejected.data["request_id"] == refused.body["error"]["details"]["request_id"]
    assert any("evil.example.com" in r for r in rejected.data["reasons"])

    # The same domain verified by Hanna is not verified for Ivan.
    not_his = await api.call(
        "POST",
        "/v1/requests",
        token=other,
        json_body={"csr_pem": build_csr(dns=["www.example.org"]), "profile": "server"},
    )
    assert not_his.status == 422

    # Approved: only the CN travels, never O/OU/L/emailAddress.
    pem = build_csr(
        subject=[
            ("CN", "www.example.org"),
            ("O", "ACME"),
            ("OU", "Ops"),
            ("L", "Paris"),
            ("emailAddress", "hanna@example.org"),
        ],
        dns=["www.example.org", "*.example.org"],
    )
    approved = await api.call(
        "POST", "/v1/requests", token=token, json_body={"csr_pem": pem, "profile": "server"}
    )
    # A server request waits for the CAA check (BR 3.2.2.8) before it is announced to the signer.
    assert approved.status == 202 and approved.body["status"] == "caa_pending"
    request_id = approved.body["id"]
    assert await stack.events("csr", "csr.approved", expected=1, timeout=2) == []
    await stack.answer_caa(request_id)
    (event,) = await stack.events("csr", "csr.approved")
    assert event.data["request_id"] == request_id and event.key == request_id
    assert "caa_checked_at" in event.data
    assert (await api.call("GET", f"/v1/requests/{request_id}", token=token)).body["status"] == "approved"
    assert event.data["subject"] == {"CN": "www.example.org"}
    assert event.data["dns_names"] == ["www.example.org", "*.example.org"]
    assert event.data["cert_class"] == 1 and event.data["emails"] == []
    # The days the signer will issue (SC-081 caps the RA's configured 365), shown alike to the member.
    not_before = certificate_validity.not_before_for(datetime.now(UTC))
    server_days = certificate_validity.max_validity_days("server", not_before)
    assert event.data["validity_days"] == min(365, server_days)
    shown = (await api.call("GET", f"/v1/requests/{request_id}", token=token)).body
    assert shown["validity_days"] == event.data["validity_days"]

    # Code signing refused for a member without activation.
    codesign = await api.call(
        "POST",
        "/v1/requests",
        token=token,
        json_body={"csr_pem": build_csr(subject=[("CN", "x")]), "profile": "codesign"},
    )
    assert codesign.status == 422
    assert (
        "code signing certificates are only issued to Assurers"
        in codesign.body["error"]["details"]["reasons"]
    )

    # Client certificate for the verified address: Class 1, CN is the address.
    client = await api.call(
        "POST",
        "/v1/requests",
        token=token,
        json_body={
            "csr_pem": build_csr(subject=[("CN", "Hanna"), ("O", "X")], emails=["hanna@example.org"]),
            "profile": "client",
        },
    )
    assert client.status == 202 and client.body["subject"] == {}

    # The signer issues: publish cert.issued with a real certificate.
    leaf_pem, leaf = self_signed("www.example.org", serial=0xABCDEF01)
    chain_pem, chain = self_signed("Test Class 1 Root", serial=0x01)
    serial = format(leaf.serial_number, "x")
    await stack.publish(
        "cert.issued",
        {
            "request_id": request_id,
            "member_id": member_id,
            "serial": serial,
            "issuer": "class1",
            "cert_class": 1,
            "profile": "server",
            "subject": "CN=www.example.org",
            "dns_names": ["www.example.org", "*.example.org"],
            "ip_addresses": [],
            "emails": [],
            "not_before": isoformat(leaf.not_valid_before_utc),
            "not_after": isoformat(leaf.not_valid_after_utc),
            "fingerprint_sha256": hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest(),
            "certificate_pem": leaf_pem,
            "chain_pem": chain_pem,
            "trust_anchors": ["class1"],
            "issued_at": isoformat(datetime.now(UTC)),
        },
        source="signer",
    )
    # Two handlers read cert.issued (the certificate record and the request's status), in no fixed
    # order: wait for both.
    for _ in range(200):
        listing = (await api.call("GET", "/v1/certificates", token=token)).body["certificates"]
        request_view = (await api.call("GET", f"/v1/requests/{request_id}", token=token)).body
        if listing and request_view["status"] == "issued":
            break
        await asyncio.sleep(0.1)
    assert [c["serial"] for c in listing] == [serial] and listing[0]["status"] == "valid"
    assert request_view["status"] == "issued" and request_view["serial"] == serial
    requests = (await api.call("GET", "/v1/requests", token=token)).body["requests"]
    assert {r["status"] for r in requests} == {"issued", "rejected", "approved"}

    pem_download = await api.call("GET", f"/v1/certificates/{serial}/download?format=pem", token=token)
    assert pem_download.status == 200
    assert x509.load_pem_x509_certificates(pem_download.raw) == [leaf, chain]
    der = await api.call("GET", f"/v1/certificates/{serial}/download?format=der", token=token)
    assert der.status == 200 and x509.load_der_x509_certificate(der.raw) == leaf
    p7b = await api.call("GET", f"/v1/certificates/{serial}/download?format=p7b", token=token)
    # A PKCS#7 SET OF is DER-sorted, so compare without order.
    assert p7b.status == 200 and sorted(pkcs7.load_der_pkcs7_certificates(p7b.raw), key=repr) == sorted(
        [leaf, chain], key=repr
    )
    bad_format = await api.call("GET", f"/v1/certificates/{serial}/download?format=zip", token=token)
    assert bad_format.status == 422

    # Member B sees none of A's things: 404, not 403.
    for path in (
        f"/v1/requests/{request_id}",
        f"/v1/certificates/{serial}",
        f"/v1/certificates/{serial}/download?format=der",
    ):
        assert (await api.call("GET", path, token=other)).status == 404
    assert (
        await api.call("POST", f"/v1/certificates/{serial}/revoke", token=other, json_body={})
    ).status == 404
    assert (await api.call("GET", "/v1/certificates", token=other)).body["certificates"] == []
    assert other_id != member_id

    # Revocation: own certificate → cert.revoke_requested; then the signer's cert.revoked.
    revoked = await api.call(
        "POST", f"/v1/certificates/{serial}/revoke", token=token, json_body={"reason": "key_compromise"}
    )
    assert revoked.status == 202 and revoked.body["status"] == "revocation_requested"
    (ask,) = await stack.events("cert", "cert.revoke_requested")
    assert ask.data == {
        **ask.data,
        "serial": serial,
        "member_id": member_id,
        "reason": "key_compromise",
        "requested_by": member_id,
    }
    await stack.publish(
        "cert.revoked",
        {
            "serial": serial,
            "member_id": member_id,
            "request_id": request_id,
            "issuer": "class1",
            "reason": "key_compromise",
            "revoked_at": isoformat(datetime.now(UTC)),
        },
        source="signer",
    )
    for _ in range(200):
        view = (await api.call("GET", f"/v1/certificates/{serial}", token=token)).body
        if view["status"] == "revoked":
            break
        await asyncio.sleep(0.1)
    assert view["status"] == "revoked"
    assert (
        await api.call("POST", f"/v1/certificates/{serial}/revoke", token=token, json_body={})
    ).status == 409


async def test_admin_may_revoke_any_certificate(stack: Stack) -> None:
    member_id, _ = await stack.member("Jo", "jo@example.org")
    _, admin = await stack.founder("Support", "support@example.org", ("member", "admin"))
    leaf_pem, leaf = self_signed("jo@example.org", serial=0x1234)
    now = datetime.now(UTC)
    await stack.publish(
        "cert.issued",
        {
            "request_id": "r-jo",
            "member_id": member_id,
            "serial": "1234",
            "issuer": "class1",
            "cert_class": 1,
            "profile": "client",
            "subject": "CN=jo@example.org",
            "dns_names": [],
            "ip_addresses": [],
            "emails": ["jo@example.org"],
            "not_before": isoformat(now),
            "not_after": isoformat(now + timedelta(days=1)),
            "fingerprint_sha256": "0" * 64,
            "certificate_pem": leaf_pem,
            "chain_pem": "",
            "trust_anchors": ["class1"],
            "issued_at": isoformat(now),
        },
        source="signer",
    )
    for _ in range(200):
        reply = await stack.api.call("POST", "/v1/certificates/1234/revoke", token=admin, json_body={})
        if reply.status != 404:
            break
        await asyncio.sleep(0.1)
    assert reply.status == 202
    (ask,) = await stack.events("cert", "cert.revoke_requested")
    assert ask.data["member_id"] == member_id and ask.data["requested_by"] != member_id
    p7b = await stack.api.call("GET", "/v1/certificates/1234/download?format=p7b", token=admin)
    assert p7b.status == 200 and pkcs7.load_der_pkcs7_certificates(p7b.raw) == [leaf]
