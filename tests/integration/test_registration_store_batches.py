"""The registration store's batched writes against a real FerretDB and Kafka: a batch of request changes is
one write and one publish, and a request another writer changed first is neither changed nor announced."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY
from pymongo.asynchronous.database import AsyncDatabase

from services.registration.store import MongoRegistrationStore, RequestChange
from shared.config import KafkaSettings
from shared.events import Topics, isoformat, make_event, utcnow
from shared.kafka import EventProducer
from shared.outbox import Outbox
from tests.eventlog import read_topic


def _commands(command: str, collection: str) -> float:
    return REGISTRY.get_sample_value("cacert_mongo_commands_total", {"command": command, "collection": collection}) or 0


def _rejection(request_id: str) -> Any:
    return make_event("csr.rejected", {"request_id": request_id, "member_id": "m-1", "profile": "server",
                                       "reasons": ["caa: refused"], "rejected_at": isoformat(utcnow())},
                      source="registration")


@pytest.mark.usefixtures("topics")
async def test_a_batch_of_request_changes_is_one_write_and_one_publish_and_skips_a_request_changed_first(
        db: AsyncDatabase[dict[str, Any]], kafka_settings: KafkaSettings) -> None:
    for request_id in ("r-1", "r-2", "r-3"):
        await db.requests.insert_one({"_id": request_id, "member_id": "m-1", "status": "caa_pending",
                                      "caa_check_id": request_id})
    await db.requests.update_one({"_id": "r-3"}, {"$set": {"status": "rejected"}})  # the other writer, first
    producer = EventProducer(kafka_settings, client_id="test")
    await producer.start()
    try:
        store = MongoRegistrationStore(db, clock=utcnow)
        store.outbox = Outbox(producer, store.outbox_collections())
        events = {request_id: _rejection(request_id) for request_id in ("r-1", "r-2", "r-3")}
        changes = [RequestChange(request_id, {"status": "caa_pending", "caa_check_id": request_id},
                                 {"status": "rejected", "reasons": ["caa: refused"]}, event)
                   for request_id, event in events.items()]
        updates = _commands("update", db.requests.name)

        assert await store.update_requests_with_events(changes) == {"r-1", "r-2"}
        assert _commands("update", db.requests.name) == updates + 1  # the changes; their pull waits
        await store.outbox.stop()  # which pulls what waits
        assert _commands("update", db.requests.name) == updates + 2  # the outbox pulls, in one command
    finally:
        await producer.stop()
    docs = {doc["_id"]: doc async for doc in db.requests.find({})}
    assert all(docs[i]["status"] == "rejected" and docs[i]["reasons"] == ["caa: refused"] for i in ("r-1", "r-2"))
    assert all(not doc.get("_outbox") for doc in docs.values())  # published and pulled; none queued for r-3
    assert "reasons" not in docs["r-3"]
    topic = Topics(kafka_settings.topic_prefix).of("csr")
    messages = await read_topic(kafka_settings.bootstrap, topic, expected=2)
    assert sorted(dict(m.headers)["ce_id"].decode() for m in messages) == sorted(
        events[i].id for i in ("r-1", "r-2"))


def _check_requested(request_id: str) -> Any:
    return make_event("domain.caa_check_requested", {"check_id": request_id, "request_id": request_id,
                                                     "member_id": "m-1", "names": ["www.example.org"],
                                                     "requested_at": isoformat(utcnow())}, source="registration")


@pytest.mark.usefixtures("topics")
async def test_a_request_written_check_verdict_issuance_is_three_writes_each_next_write_empties_the_last_event(
        db: AsyncDatabase[dict[str, Any]], kafka_settings: KafkaSettings) -> None:
    """Issue 21: the event each step publishes is pulled by the step after it, not by a write of its own."""
    producer = EventProducer(kafka_settings, client_id="test")
    await producer.start()
    store = MongoRegistrationStore(db, clock=utcnow)
    store.outbox = Outbox(producer, store.outbox_collections())
    try:
        writes = _commands("insert", db.requests.name) + _commands("update", db.requests.name)
        check = _check_requested("r-9")
        await store.insert_request_with_event({"_id": "r-9", "member_id": "m-1", "status": "caa_pending",
                                               "caa_check_id": "r-9"}, check)
        verdict = _rejection("r-9")  # (an issuance after a rejection only stands in for the signer's answer)
        assert await store.update_requests_with_events([RequestChange(
            "r-9", {"status": "caa_pending", "caa_check_id": "r-9"}, {"status": "rejected"}, verdict)]) == {"r-9"}
        stored = await db.requests.find_one({"_id": "r-9"})
        assert stored is not None and [e["id"] for e in stored["_outbox"]] == [verdict.id]  # the check is gone
        await store.record_issued([("r-9", "5e9")], utcnow())
        await store.outbox.stop()  # pulls whatever still waits for its pull: nothing
        assert _commands("insert", db.requests.name) + _commands("update", db.requests.name) == writes + 3
    finally:
        await producer.stop()
    stored = await db.requests.find_one({"_id": "r-9"})
    assert stored is not None and stored["status"] == "issued" and stored["_outbox"] == []
    published = {dict(m.headers)["ce_id"].decode()
                 for topic in ("domain", "csr")
                 for m in await read_topic(kafka_settings.bootstrap, Topics(kafka_settings.topic_prefix).of(topic),
                                           expected=1)}
    assert published == {check.id, verdict.id}
