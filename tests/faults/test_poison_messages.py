"""A poison message on every input topic of every service lands in the DLQ, and the consumer goes on.

For each (service, input topic) three poisons are sent with the same Kafka key (so the same partition)
as a good event right behind them: bytes that are not JSON under CloudEvents headers, a message with no
CloudEvents headers at all, and a well-formed envelope whose payload breaks the type's schema. Each
must appear on `<topic>.dlq` with a reason and the refusing group, and the good event must be handled.
The services run in-process (as in the integration tests) so their consumer metrics can be read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.signer.service import SignerService
from shared.config import KafkaSettings, MongoSettings
from shared.events import CloudEvent, Topics, isoformat, make_event
from shared.events.access import SERVICES
from shared.events.envelope import header
from shared.kafka import EventProducer
from tests.eventlog import read_topic, wait_until
from tests.faults.cluster import PASSPHRASE, PUBLIC_URL

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.usefixtures("topics")]
NOW = datetime.now(UTC)


def handled(kafka: KafkaSettings, topic: str, type_: str) -> float:
    value = REGISTRY.get_sample_value("cacert_events_consumed_total", {
        "topic": Topics(kafka.topic_prefix).of(topic), "type": type_, "outcome": "handled"})
    return value or 0.0


async def poison_then_good(kafka: KafkaSettings, producer: EventProducer, topic: str, good: CloudEvent,
                           service: str) -> list[str]:
    """Send three poisons then `good` on one partition; wait for the DLQ and for `good` to be handled.
    The DLQ headers name the group the service's consumer really joined: it must be the one
    shared/events/access.py gives the service (the group the KafkaUser ACLs grant)."""
    assert topic in SERVICES[service].reads
    group = SERVICES[service].consumer_group
    name = Topics(kafka.topic_prefix).of(topic)
    key, _, good_headers = good.to_kafka()
    ce_headers = [(k, v) for k, v in good_headers if k != "ce_id"] + [("ce_id", uuid.uuid4().hex.encode())]
    poisons: list[tuple[bytes, list[tuple[str, bytes]]]] = [
        (b"\x00\xffnot json {", ce_headers),
        (b'{"no": "cloudevents headers"}', []),
        (b'{"unexpected": true}', ce_headers),
    ]
    before = handled(kafka, topic, good.type)
    for value, headers in poisons:
        await producer.send_raw(name, key=key, value=value, headers=headers)
    await producer.publish(good)
    records = await read_topic(kafka.bootstrap, name + ".dlq", expected=len(poisons), timeout=30)
    assert len(records) == len(poisons), f"{group}: {len(records)} of {len(poisons)} poisons on {name}.dlq"
    assert sorted(r.value for r in records) == sorted(v for v, _ in poisons)  # copied unchanged
    reasons = []
    for record in records:
        assert header(record.headers, "dlq_consumer_group") == kafka.group_prefix + group
        assert header(record.headers, "dlq_source_topic") == name
        reasons.append(header(record.headers, "dlq_reason") or "")
    assert all(reasons), reasons
    await wait_until(lambda: handled(kafka, topic, good.type) > before, 30, f"{group} handles the good {topic}")
    return reasons


async def test_registration_dead_letters_poison_on_domain_and_cert(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    from tests.registration.harness import running

    async with running(kafka_settings, mongo_settings) as stack:
        verified = make_event("domain.verified", {
            "request_id": "unknown-request", "member_id": "m-1", "domain": "example.org", "method": "email",
            "verified_at": isoformat(NOW), "valid_until": isoformat(NOW + timedelta(days=390))},
            source="domain_verify")
        reasons = await poison_then_good(kafka_settings, stack.producer, "domain", verified, "registration")
        assert any("SchemaError" in r for r in reasons) and any("EnvelopeError" in r for r in reasons), reasons
        revoked = make_event("cert.revoked", {
            "serial": "abc123", "member_id": "m-1", "request_id": "r-1", "issuer": "class1",
            "reason": "key_compromise", "revoked_at": isoformat(NOW)}, source="signer")
        await poison_then_good(kafka_settings, stack.producer, "cert", revoked, "registration")
        assert (await stack.api.call("GET", "/healthz")).status == 200


async def test_domain_verify_dead_letters_poison_on_domain(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    from tests.domain_verify.harness import running

    async with running(kafka_settings, mongo_settings) as harness:
        request = make_event("domain.verification_requested", {
            "request_id": f"req-{uuid.uuid4().hex[:8]}", "member_id": "m-1", "domain": "example.org",
            "contact": "hostmaster@example.org", "requested_at": isoformat(NOW)}, source="registration")
        await poison_then_good(kafka_settings, harness.producer, "domain", request, "domain_verify")
        (mail,) = await harness.mail_commands(1)
        assert mail.data["to"] == "hostmaster@example.org"


async def test_signer_dead_letters_poison_on_csr_and_cert(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, ca_dir: Path) -> None:
    from tests.approval_keys import sign
    from tests.integration.test_signer_service import approved, make_csr, signer_settings

    settings = signer_settings(kafka_settings, mongo_settings, ca_dir)
    settings = dataclasses.replace(settings, ca_passphrase=PASSPHRASE, public_base_url=PUBLIC_URL)
    service = SignerService(settings, lint=False)
    producer = EventProducer(kafka_settings, client_id="poison-driver")
    await service.start()
    await producer.start()
    try:
        request = approved("server", 1, make_csr(["poison.example.org"]), dns=["poison.example.org"],
                           subject={"CN": "poison.example.org"})
        await poison_then_good(kafka_settings, producer, "csr", request, "signer")
        cert_topic = Topics(kafka_settings.topic_prefix).of("cert")
        issued = await _wait_event(kafka_settings.bootstrap, cert_topic, "org.cacert.cert.issued.v1")
        revoke = sign(make_event("cert.revoke_requested", {
            "serial": issued.data["serial"], "member_id": issued.data["member_id"], "reason": "superseded",
            "requested_by": issued.data["member_id"], "requested_at": isoformat(NOW)}, source="registration"))
        await poison_then_good(kafka_settings, producer, "cert", revoke, "signer")
        revoked = await _wait_event(kafka_settings.bootstrap, cert_topic, "org.cacert.cert.revoked.v1")
        assert revoked.data["serial"] == issued.data["serial"]
    finally:
        await producer.stop()
        await service.stop()


async def test_notifier_dead_letters_poison_on_every_input_topic(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    from tests.mail_keys import seal
    from tests.notifier.harness import running

    serial = "0a1b2c"
    good: dict[str, CloudEvent] = {
        "mail.commands": seal(make_event("mail.send_requested", {
            "to": "ada@example.org", "template": "email_confirmation",
            "params": {"link": "https://ca.test/confirm-email#token=x", "name": "Ada"},
            "requested_at": isoformat(NOW)}, source="registration")),
        "member": make_event("member.registered", {
            "member_id": "m-1", "name": "Ada", "email": "ada@example.org", "registered_at": isoformat(NOW)},
            source="registration"),
        "csr": make_event("csr.rejected", {
            "request_id": "r-2", "member_id": "m-1", "reasons": ["no"], "rejected_at": isoformat(NOW)},
            source="registration"),
        "cert": make_event("cert.revoked", {
            "serial": serial, "member_id": "m-1", "request_id": "r-1", "issuer": "class1",
            "reason": "superseded", "revoked_at": isoformat(NOW)}, source="signer"),
        "domain": make_event("domain.verified", {
            "request_id": "d-1", "member_id": "m-1", "domain": "example.org", "method": "email",
            "contact": "admin@example.org", "verified_at": isoformat(NOW),
            "valid_until": isoformat(NOW + timedelta(days=390))}, source="domain_verify"),
    }
    async with running(kafka_settings, mongo_settings) as notifier:
        for topic, event in good.items():
            await poison_then_good(kafka_settings, notifier.producer, topic, event, "notifier")
        await notifier.wait_received(1)


async def _wait_event(bootstrap: str, topic: str, type_: str, timeout: float = 30) -> CloudEvent:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        records = await read_topic(bootstrap, topic, expected=10**6, timeout=1.0)
        for record in records:
            if header(record.headers, "ce_type") == type_:
                return CloudEvent.from_kafka(record.key, record.value, record.headers)
    raise AssertionError(f"no {type_} on {topic}")
