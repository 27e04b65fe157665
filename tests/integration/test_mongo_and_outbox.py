"""The MongoDB helpers and the outbox against a real FerretDB."""

from __future__ import annotations

import asyncio
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


def _registered(member_id: str, *, hours_ago: float = 0) -> Any:
    at = utcnow() - dt.timedelta(hours=hours_ago)
    event = make_event("member.registered", {"member_id": member_id, "name": "Ada", "email": "a@example.org",
                                             "registered_at": isoformat(at)}, source="test")
    return dataclasses.replace(event, time=isoformat(at))


class _Broker:
    """Records what is published; refuses while `down`."""

    def __init__(self) -> None:
        self.down = False
        self.published: list[str] = []

    async def publish_many(self, events: Any) -> None:
        if self.down:
            raise ConnectionError("broker unreachable")
        self.published += [e.data["member_id"] for e in events]


async def test_a_sweep_with_a_grace_leaves_just_written_events_to_their_writer_and_takes_old_ones(
        db: AsyncDatabase[dict[str, Any]]) -> None:
    await db.members.update_one({"_id": "young"}, {"$push": outbox.pending([_registered("young")])}, upsert=True)
    await db.members.update_one({"_id": "old"}, {"$push": outbox.pending([_registered("old", hours_ago=1)])},
                                upsert=True)
    broker = _Broker()
    box = outbox.Outbox(broker, [db.members])  # type: ignore[arg-type]
    assert await box.sweep(grace=30) == 1
    assert broker.published == ["old"]
    young = await db.members.find_one({"_id": "young"})
    assert young is not None and len(young["_outbox"]) == 1  # still its writer's to flush
    assert await box.sweep() == 1  # recovery takes it however young
    assert broker.published == ["old", "young"]


async def _published(broker: _Broker, member_id: str) -> bool:
    for _ in range(200):
        if member_id in broker.published:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_periodic_sweeps_take_young_events_only_at_start_up_and_after_a_failed_flush(
        db: AsyncDatabase[dict[str, Any]]) -> None:
    broker = _Broker()
    box = outbox.Outbox(broker, [db.members], sweep_every=0.02, idle_sweep_max=0.02)  # type: ignore[arg-type]
    await db.members.update_one({"_id": "left-by-a-crash"},
                                {"$push": outbox.pending([_registered("left-by-a-crash")])}, upsert=True)
    box.start()
    try:
        assert await _published(broker, "left-by-a-crash")  # the first sweep takes everything
        await db.members.update_one({"_id": "in-flight"}, {"$push": outbox.pending([_registered("in-flight")])},
                                    upsert=True)
        assert not await _published(broker, "in-flight")  # 200 periodic sweeps leave it to its writer
        failing = [outbox.entry(_registered("failed-flush"))]
        await db.members.update_one({"_id": "failed-flush"}, {"$push": outbox.push(failing)}, upsert=True)
        broker.down = True
        with pytest.raises(ConnectionError):
            await box.flush(db.members, "failed-flush", failing)
        broker.down = False
        assert await _published(broker, "failed-flush")
        assert "in-flight" in broker.published  # that sweep took every young event
    finally:
        await box.stop()


async def test_a_put_off_pull_is_made_when_due_unless_a_later_write_took_the_entries_out(
        db: AsyncDatabase[dict[str, Any]]) -> None:
    broker = _Broker()
    box = outbox.Outbox(broker, [])  # type: ignore[arg-type]  # sweeps nothing: only the flushes' pulls act
    written = {member_id: [outbox.entry(_registered(member_id))] for member_id in ("pulled", "superseded")}
    for member_id, stored in written.items():
        await db.members.update_one({"_id": member_id}, {"$push": outbox.push(stored)}, upsert=True)
    await box.flush_many(db.members, written, pull_within=0.2)
    assert sorted(broker.published) == ["pulled", "superseded"]  # published at once
    pulled = await db.members.find_one({"_id": "pulled"})
    assert pulled is not None and len(pulled["_outbox"]) == 1  # the pull waits
    box.superseded(db.members, ["superseded"])
    box.start()
    try:
        for _ in range(100):
            pulled = await db.members.find_one({"_id": "pulled"})
            if pulled is not None and pulled["_outbox"] == []:
                break
            await asyncio.sleep(0.05)
        assert pulled is not None and pulled["_outbox"] == []
    finally:
        await box.stop()
    superseded = await db.members.find_one({"_id": "superseded"})
    assert superseded is not None and len(superseded["_outbox"]) == 1  # its pull was dropped (here nothing took it)
