"""No forged approval issues a certificate (issue 19): the signer over real Kafka and FerretDB, fed
approvals and revocation requests straight onto its topics as an attacker with produce rights would.

Unsigned, foreign-key, altered and re-wrapped approvals are refused with `cert.rejected` reason
`unauthenticated_approval`, parked in the DLQ, and never take the request id from the genuine
approval; a replayed genuine approval is answered with the one certificate it already got; an
unsigned revocation request revokes nothing; the issuing mode does not start without RA keys.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.signer.ca.ceremony import bootstrap
from services.signer.ca.urls import CAUrls
from services.signer.service import SignerService
from shared.approvals import SIGNATURE_FIELD, ApprovalSigner
from shared.config import KafkaSettings, MongoSettings
from shared.events import CloudEvent, Topics, isoformat, make_event, utcnow
from shared.events.envelope import header
from shared.kafka import EventProducer
from tests.approval_keys import sign
from tests.eventlog import read_topic
from tests.integration.test_signer_service import PASSPHRASE, approved, make_csr, signer_settings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("topics")]
MALLORY = ApprovalSigner(Ed25519PrivateKey.generate())  # a key the signer was never told about


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ca")
    bootstrap(directory, PASSPHRASE, "p256", class1_urls=CAUrls.under("http://pki.example.net", "class1"))
    return directory


@pytest.fixture
async def signer(kafka_settings: KafkaSettings, mongo_settings: MongoSettings, ca_dir: Path
                 ) -> AsyncIterator[SignerService]:
    service = SignerService(signer_settings(kafka_settings, mongo_settings, ca_dir), lint=False)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[EventProducer]:
    producer = EventProducer(kafka_settings, client_id="attacker")
    await producer.start()
    yield producer
    await producer.stop()


def unsigned(name: str = "forged.example.org", request_id: str | None = None) -> CloudEvent:
    event = approved("server", 3, make_csr([name]), dns=[name], subject={"CN": name}, request_id=request_id)
    return dataclasses.replace(event, data={k: v for k, v in event.data.items() if k != SIGNATURE_FIELD})


async def topic_events(kafka: KafkaSettings, topic: str, expected: int, timeout: float = 30) -> list[CloudEvent]:
    records = await read_topic(kafka.bootstrap, Topics(kafka.topic_prefix).of(topic), expected, timeout=timeout)
    return [CloudEvent.from_kafka(r.key, r.value, r.headers) for r in records]


async def answers(kafka: KafkaSettings, request_ids: set[str], timeout: float = 30) -> list[CloudEvent]:
    """One answer per request id on the cert topic (at-least-once: a repeated event id counts once)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        events = list({e.id: e for e in await topic_events(kafka, "cert", len(request_ids), timeout=2)}.values())
        answered = {e.data.get("request_id") for e in events}
        if request_ids <= answered or asyncio.get_running_loop().time() > deadline:
            return [e for e in events if e.data.get("request_id") in request_ids]
        await asyncio.sleep(0.5)


async def test_forged_approvals_issue_nothing_and_each_is_refused_and_dead_lettered(
        kafka_settings: KafkaSettings, signer: SignerService, producer: EventProducer) -> None:
    genuine = approved("server", 1, make_csr(["www.example.org"]), dns=["www.example.org"],
                       subject={"CN": "www.example.org"})
    widened = dataclasses.replace(genuine, id="widened", data={
        **genuine.data, "request_id": "widened-1", "dns_names": ["www.example.org", "bank.example"]})
    forgeries = {
        "unsigned": unsigned(),
        "signed by an unknown key": MALLORY.sign(unsigned("mallory.example.org")),
        "a signed approval with a name added": widened,
        "a signed approval re-sent under a new event id": dataclasses.replace(
            approved("client", 1, make_csr([], email="ada@example.org"), emails=["ada@example.org"]),
            id="re-wrapped"),
    }
    for event in forgeries.values():
        await producer.publish(event)
    await producer.publish(genuine)  # the control: it is issued
    events = await answers(kafka_settings, {e.data["request_id"] for e in [genuine, *forgeries.values()]})
    issued = [e for e in events if e.type == "org.cacert.cert.issued.v1"]
    refused = [e for e in events if e.type == "org.cacert.cert.rejected.v1"]
    assert [e.data["request_id"] for e in issued] == [genuine.data["request_id"]]
    assert sorted(e.data["request_id"] for e in refused) == sorted(e.data["request_id"] for e in forgeries.values())
    assert {e.data["reason"] for e in refused} == {"unauthenticated_approval"}
    problems = " | ".join(d for e in refused for d in e.data["details"])
    for words in ("not signed by the RA", "does not trust", "does not verify"):
        assert words in problems, problems
    dead = await read_topic(kafka_settings.bootstrap, Topics(kafka_settings.topic_prefix).dlq("csr"),
                            len(forgeries))
    assert len(dead) == len(forgeries)
    assert all("unauthenticated_approval" in (header(r.headers, "dlq_reason") or "") for r in dead)
    # Nothing was stored under the forged request ids; the audit log names each refusal.
    assert signer.store is not None
    for event in forgeries.values():
        assert await signer.store.outcomes_of([event.data["request_id"]]) == {}
    actions = [d["action"] async for d in signer.store.db["audit"].find({"action": "approval.refused"})]
    assert len(actions) >= len(forgeries)


async def test_a_forgery_racing_a_genuine_approval_for_the_same_request_neither_blocks_nor_issues(
        kafka_settings: KafkaSettings, signer: SignerService, producer: EventProducer) -> None:
    """An attacker who copies a pending request id first must not occupy it: the RA's approval still
    gets its one certificate, the forgery none."""
    genuine = approved("server", 1, make_csr(["shop.example.org"]), dns=["shop.example.org"],
                       subject={"CN": "shop.example.org"})
    await producer.publish(unsigned("shop.example.org", request_id=genuine.data["request_id"]))
    await producer.publish(genuine)
    events = await topic_events(kafka_settings, "cert", 2)
    events = list({e.id: e for e in events}.values())
    kinds = sorted((e.type.split(".")[-2], e.data.get("reason", "")) for e in events)
    assert kinds == [("issued", ""), ("rejected", "unauthenticated_approval")]
    (issued,) = [e for e in events if e.type.endswith("cert.issued.v1")]
    assert issued.data["request_id"] == genuine.data["request_id"]


async def test_a_replayed_genuine_approval_is_answered_with_the_certificate_it_already_got(
        kafka_settings: KafkaSettings, signer: SignerService, producer: EventProducer) -> None:
    genuine = approved("server", 1, make_csr(["replay.example.org"]), dns=["replay.example.org"],
                       subject={"CN": "replay.example.org"})
    await producer.publish(genuine)
    (first,) = await topic_events(kafka_settings, "cert", 1)
    for _ in range(3):
        await producer.publish(genuine)
    events = await topic_events(kafka_settings, "cert", 4, timeout=15)
    assert {e.data["serial"] for e in events} == {first.data["serial"]}
    assert {e.id for e in events} == {first.id}
    assert signer.store is not None
    assert await signer.store.statuses.count_documents({"request_id": genuine.data["request_id"]}) == 1


async def test_an_unsigned_revocation_request_revokes_nothing(
        kafka_settings: KafkaSettings, signer: SignerService, producer: EventProducer) -> None:
    await producer.publish(approved("server", 1, make_csr(["keep.example.org"]), dns=["keep.example.org"],
                                    subject={"CN": "keep.example.org"}))
    (issued,) = await topic_events(kafka_settings, "cert", 1)
    revoke = {"serial": issued.data["serial"], "member_id": issued.data["member_id"], "reason": "key_compromise",
              "requested_by": "mallory", "requested_at": isoformat(utcnow())}
    await producer.publish(make_event("cert.revoke_requested", revoke, source="attacker"))
    await producer.publish(MALLORY.sign(make_event("cert.revoke_requested", revoke, source="attacker")))
    dead = await read_topic(kafka_settings.bootstrap, Topics(kafka_settings.topic_prefix).dlq("cert"), 2)
    assert len(dead) == 2 and all("unauthenticated_approval" in (header(r.headers, "dlq_reason") or "")
                                  for r in dead)
    assert signer.store is not None
    status = await signer.store.status(issued.data["serial"])
    assert status is not None and status["status"] == "issued"
    # ...while the RA's own request does revoke it
    await producer.publish(sign(make_event("cert.revoke_requested", {**revoke, "requested_by": "m"},
                                           source="registration")))
    # on the cert topic: issued, the three revocation requests, then revoked
    events = await topic_events(kafka_settings, "cert", 5)
    assert any(e.type.endswith("cert.revoked.v1") for e in events), [e.type for e in events]


def test_the_issuing_mode_does_not_start_without_the_ra_public_keys(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, ca_dir: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CACERT_")},
           "CACERT_KAFKA_BOOTSTRAP": kafka_settings.bootstrap, "CACERT_MONGO_URL": mongo_settings.url,
           "CACERT_CA_DIR": str(ca_dir), "CACERT_CA_PASSPHRASE": PASSPHRASE.decode()}
    result = subprocess.run([sys.executable, "-m", "services.signer", "issuing"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "configuration error: CACERT_SIGNER_RA_PUBLIC_KEYS is required in issuing mode (nor "
        "CACERT_SIGNER_RA_PUBLIC_KEYS_FILE): the signer acts only on approvals the RA signed"]
    bad = subprocess.run([sys.executable, "-m", "services.signer", "issuing"], capture_output=True, text=True,
                         env={**env, "CACERT_SIGNER_RA_PUBLIC_KEYS": "not a key"}, timeout=60, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("configuration error: CACERT_SIGNER_RA_PUBLIC_KEYS ")


def test_registration_does_not_serve_without_its_signing_key(kafka_settings: KafkaSettings,
                                                             mongo_settings: MongoSettings) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CACERT_")},
           "CACERT_KAFKA_BOOTSTRAP": kafka_settings.bootstrap, "CACERT_MONGO_URL": mongo_settings.url}
    result = subprocess.run([sys.executable, "-m", "services.registration"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("configuration error: CACERT_RA_SIGNING_KEY is required to serve"), line
