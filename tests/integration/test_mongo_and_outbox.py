"""The MongoDB helpers and the outbox against a real FerretDB."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pymongo import IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from shared import outbox
from shared.config import KafkaSettings, MongoSettings
from shared.events import Topics, isoformat, make_event, utcnow
from shared.kafka import EventProducer
from shared.mongo import connect, ensure_indexes, insert_once, ping
from tests.eventlog import read_topic


async def test_duplicate_idempotency_key_is_refused_cleanly(db: AsyncDatabase[dict[str, Any]]) -> None:
    await ensure_indexes(db, {"handled": [IndexModel([("event_id", 1)], unique=True, name="event_id_unique")]})
    assert await insert_once(db.handled, {"event_id": "e-1", "result": "first"}) is True
    assert await insert_once(db.handled, {"event_id": "e-1", "result": "second"}) is False
    docs = await db.handled.find({}, {"_id": 0}).to_list()
    assert docs == [{"event_id": "e-1", "result": "first"}]


async def test_ping_reports_a_reachable_server(mongo_settings: MongoSettings) -> None:
    client, _ = connect(mongo_settings, service="test")
    assert await ping(client) is True
    await client.close()


@pytest.mark.usefixtures("topics")
async def test_outbox_sweep_publishes_events_left_by_a_crash(db: AsyncDatabase[dict[str, Any]],
                                                              kafka_settings: KafkaSettings) -> None:
    event = make_event("member.registered", {"member_id": "m-9", "name": "Ada", "email": "a@example.org",
                                             "registered_at": "2026-01-01T00:00:00Z"}, source="test")
    # The aggregate and its event are written in one atomic update; the "crash" is that nobody flushes.
    await db.members.update_one({"_id": "m-9"}, {"$set": {"name": "Ada"}, "$push": outbox.pending([event])},
                                upsert=True)
    producer = EventProducer(kafka_settings, client_id="test")
    await producer.start()
    try:
        box = outbox.Outbox(producer, [db.members])
        assert await box.sweep() == 1
        assert await box.sweep() == 0
    finally:
        await producer.stop()
    stored = await db.members.find_one({"_id": "m-9"})
    assert stored is not None and stored["_outbox"] == [] and stored["name"] == "Ada"
    topic = Topics(kafka_settings.topic_prefix).of("member")
    (message,) = await read_topic(kafka_settings.bootstrap, topic, expected=1)
    assert dict(message.headers)["ce_id"].decode() == event.id


class _BrokerDown:
    async def publish_many(self, events: Any) -> None:
        raise ConnectionError("broker unreachable")


@pytest.mark.usefixtures("topics")
async def test_outbox_sweep_reports_how_long_the_oldest_pending_event_has_waited(
        db: AsyncDatabase[dict[str, Any]], kafka_settings: KafkaSettings) -> None:
    def age() -> float | None:
        return REGISTRY.get_sample_value("cacert_outbox_oldest_pending_seconds", {"collection": db.members.name})

    waiting_since = utcnow() - dt.timedelta(hours=2)
    old = make_event("member.registered", {"member_id": "m-7", "name": "Ada", "email": "a@example.org",
                                           "registered_at": isoformat(waiting_since)}, source="test")
    old = dataclasses.replace(old, time=isoformat(waiting_since))
    new = make_event("member.email_verified", {"member_id": "m-8", "email": "b@example.org", "primary": True,
                                               "verified_at": isoformat(utcnow())}, source="test")
    await db.members.update_one({"_id": "m-7"}, {"$push": outbox.pending([old])}, upsert=True)
    await db.members.update_one({"_id": "m-8"}, {"$push": outbox.pending([new])}, upsert=True)

    box = outbox.Outbox(_BrokerDown(), [db.members])  # type: ignore[arg-type]
    assert age() == 0  # the series exists from the start
    with pytest.raises(ConnectionError):
        await box.sweep()
    measured = age()
    assert measured is not None and 2 * 3600 <= measured < 3 * 3600  # the older of the two, still pending

    producer = EventProducer(kafka_settings, client_id="test")
    await producer.start()
    try:
        box = outbox.Outbox(producer, [db.members])
        assert await box.sweep() == 2
        published = age()
        assert published is not None and published >= 2 * 3600  # what this sweep found had waited that long
        assert await box.sweep() == 0
        assert age() == 0
    finally:
        await producer.stop()


def _commands(command: str, collection: str) -> float:
    return REGISTRY.get_sample_value("cacert_mongo_commands_total", {"command": command, "collection": collection}) or 0


@pytest.mark.usefixtures("topics")
async def test_a_flush_of_the_entries_just_written_publishes_and_clears_them_without_reading_back(
        db: AsyncDatabase[dict[str, Any]], kafka_settings: KafkaSettings) -> None:
    event = make_event("member.registered", {"member_id": "m-5", "name": "Ada", "email": "a@example.org",
                                             "registered_at": "2026-01-01T00:00:00Z"}, source="test")
    written = [outbox.entry(event)]
    await db.members.update_one({"_id": "m-5"}, {"$set": {"name": "Ada"}, "$push": outbox.push(written)},
                                upsert=True)
    producer = EventProducer(kafka_settings, client_id="test")
    await producer.start()
    try:
        box = outbox.Outbox(producer, [db.members])
        finds = _commands("find", db.members.name)
        await box.flush(db.members, "m-5", written)
        assert _commands("find", db.members.name) == finds  # published from what the writer handed over
        assert await box.sweep() == 0  # and pulled: nothing left for the sweep
    finally:
        await producer.stop()
    stored = await db.members.find_one({"_id": "m-5"})
    assert stored is not None and stored["_outbox"] == []
    topic = Topics(kafka_settings.topic_prefix).of("member")
    (message,) = await read_topic(kafka_settings.bootstrap, topic, expected=1)
    assert dict(message.headers)["ce_id"].decode() == event.id


async def test_a_failed_flush_wakes_the_idle_sweep(db: AsyncDatabase[dict[str, Any]]) -> None:
    event = make_event("member.registered", {"member_id": "m-6", "name": "Ada", "email": "a@example.org",
                                             "registered_at": "2026-01-01T00:00:00Z"}, source="test")
    written = [outbox.entry(event)]
    await db.members.update_one({"_id": "m-6"}, {"$push": outbox.push(written)}, upsert=True)
    box = outbox.Outbox(_BrokerDown(), [db.members], sweep_every=0.05, idle_sweep_max=30)  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        await box.flush(db.members, "m-6", written)
    assert box.sweep_pause == 0.05
    stored = await db.members.find_one({"_id": "m-6"})
    assert stored is not None and len(stored["_outbox"]) == 1  # the change stands, its event waits
