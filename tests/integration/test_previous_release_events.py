"""The upgrade path (issue 20 item 6): events the previous release published are read by today's consumers.

`tests/data/events/previous-release.jsonl` holds real records (key, CloudEvents headers, JSON value) that
the local system published before this release's changes (commit 311589f), two of each type: approvals
without `spki_sha256`, mail commands without sealing, and so on. Confirmation links were replaced by a
placeholder; nothing else was edited. During a rolling upgrade such events sit on the topics, so:

* every one still validates against today's schemas (a schema change within v1 may only add);
* replayed onto fresh topics, today's registration, signer and notifier take each one: the signer
  answers the approvals (signed by the old system's RA key, which it is given) and registration stores
  the certificates. Two dead-letters are expected and nothing else: the revocation requests, whose
  serials this fresh CA never issued (the answer the signer gives any unknown serial), and, once with
  this release, the previous release's mail commands: their links carry the token in the clear and in the
  query, which today's notifier refuses to mail and today's pages no longer read (docs/decisions.md,
  "Mailed tokens"; docs/operations.md, "Upgrades").
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from services.signer.ca.ceremony import bootstrap
from services.signer.ca.urls import CAUrls
from services.signer.service import SignerService
from services.signer.settings import SignerSettings
from shared.config import HttpSettings, KafkaSettings, MongoSettings
from shared.events import BY_TYPE, CloudEvent, Topics, validate
from shared.settings import CommonSettings
from tests.eventlog import read_topic
from tests.integration.test_signer_service import PASSPHRASE
from tests.notifier.harness import running as notifier_running
from tests.registration.harness import running as registration_running

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("topics")]
DATA = Path(__file__).resolve().parents[1] / "data" / "events"
PKI_URL = "http://pki.example.net"


def records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / "previous-release.jsonl").read_text().splitlines() if line]


def event_of(record: dict[str, Any]) -> CloudEvent:
    return CloudEvent.from_kafka(record["key"].encode() if record["key"] else None, record["value"].encode(),
                                 [(k, v.encode()) for k, v in record["headers"]])


def test_every_event_of_the_previous_release_validates_against_todays_schemas() -> None:
    seen = set()
    for record in records():
        event = event_of(record)
        assert event.type in BY_TYPE, f"{event.type} is no longer catalogued"
        validate(event.type, event.data)
        seen.add(BY_TYPE[event.type].name)
    assert {"csr.approved", "cert.issued", "cert.revoked", "mail.send_requested", "member.registered"} <= seen


@pytest.fixture
async def signer(kafka_settings: KafkaSettings, mongo_settings: MongoSettings, tmp_path: Path
                 ) -> AsyncIterator[SignerService]:
    ca_dir = tmp_path / "ca"
    bootstrap(ca_dir, PASSPHRASE, "p256", class1_urls=CAUrls.under(PKI_URL, "class1"))
    database = MongoSettings(url=mongo_settings.url, database=f"{mongo_settings.database}_signer")
    common = CommonSettings(kafka=kafka_settings, mongo=database, http=HttpSettings(host="127.0.0.1", port=0),
                            create_topics=False)
    service = SignerService(SignerSettings(
        common=common, ca_dir=ca_dir, ca_passphrase=PASSPHRASE, public_base_url=PKI_URL,
        ra_public_keys=(DATA / "previous-release-ra-public-key.pem").read_text()), mode="issuing", lint=False)
    await service.start()
    yield service
    await service.stop()


async def _until(check: Any, what: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.5)


async def test_todays_consumers_take_every_event_the_previous_release_left_on_the_topics(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, signer: SignerService) -> None:
    topics = Topics(kafka_settings.topic_prefix)
    old = [(r["topic"], event_of(r), r) for r in records()]
    notifier_db = MongoSettings(url=mongo_settings.url, database=f"{mongo_settings.database}_notifier")
    async with registration_running(kafka_settings, mongo_settings) as registration, \
            notifier_running(kafka_settings, notifier_db):
        producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap)
        await producer.start()
        try:
            for topic, _, record in old:
                await producer.send_and_wait(
                    topics.of(topic), record["value"].encode(),
                    key=record["key"].encode() if record["key"] else None,
                    headers=[(k, v.encode()) for k, v in record["headers"]])
        finally:
            await producer.stop()

        approvals = {e.data["request_id"] for t, e, _ in old if e.type.endswith("csr.approved.v1")}
        commands = {e.id for t, e, _ in old if e.type.endswith("mail.send_requested.v1")}
        issued = {e.data["serial"] for t, e, _ in old if e.type.endswith("cert.issued.v1")}

        async def events(topic: str) -> list[CloudEvent]:
            found = await read_topic(kafka_settings.bootstrap, topics.of(topic), 10**6, timeout=1)
            return [CloudEvent.from_kafka(r.key, r.value, r.headers) for r in found]

        async def signer_answered() -> bool:
            answers = {e.data.get("request_id") for e in await events("cert") if e.source == "signer"}
            return approvals <= answers

        async def notifier_refused() -> bool:
            refused = await read_topic(kafka_settings.bootstrap, topics.dlq("mail.commands"), 10**6, timeout=1)
            return commands <= {CloudEvent.from_kafka(r.key, r.value, r.headers).id for r in refused}

        async def registration_stored() -> bool:
            assert registration.service.context is not None
            store = registration.service.context.store
            return all([await store.certificate(serial, None) is not None for serial in issued])

        await _until(signer_answered, "the signer answers every approval of the previous release")
        await _until(notifier_refused, "the notifier dead-letters the previous release's unsealed mail commands")
        await _until(registration_stored, "registration stores every certificate of the previous release")

        dead: list[tuple[str, CloudEvent]] = []
        for topic in {t for t, _, _ in old}:
            for record in await read_topic(kafka_settings.bootstrap, topics.dlq(topic), 10**6, timeout=1):
                dead.append((topic, CloudEvent.from_kafka(record.key, record.value, record.headers)))
        expected = ("cert.revoke_requested.v1", "mail.send_requested.v1")
        unexpected = [(t, e.type) for t, e in dead if not e.type.endswith(expected)]
        assert not unexpected, f"dead-lettered: {unexpected}"
