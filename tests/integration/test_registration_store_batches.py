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
        assert _commands("update", db.requests.name) == updates + 2  # the changes, then the outbox pulls
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
