"""Write-then-publish without losing events: an outbox inside the aggregate document.

MongoDB (and FerretDB) make one document's update atomic, but not two. So a
service that changes an aggregate and must announce the change writes the
CloudEvent *into the same document* (`_outbox` array) in the same update.
After the write it publishes the events and pulls them from the array. If
the process dies in between, `Outbox.sweep()` (run periodically and at
start-up) finds documents with pending events and publishes them. Events
may thus be published twice, never zero times; consumers de-duplicate on
the CloudEvent id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection

from shared.events.envelope import CloudEvent
from shared.kafka.producer import EventProducer
from shared.logging import get_logger
from shared.periodic import Periodic

FIELD = "_outbox"
INDEX = IndexModel([(f"{FIELD}.id", 1)], name="outbox_pending", sparse=True)
log = get_logger("shared.outbox")

Document = dict[str, Any]


def entry(event: CloudEvent) -> dict[str, Any]:
    """The stored form of an event awaiting publication."""
    return {
        "id": event.id, "type": event.type, "source": event.source, "subject": event.subject,
        "time": event.time, "key": event.key, "data": event.data,
    }


def sealed(event: CloudEvent) -> dict[str, Any]:
    """The stored form of an event whose payload will not change: the payload as the JSON bytes
    it is published as. FerretDB's cost per document grows with its number of fields (a nested
    `data` of twenty fields doubles an insert), and one binary field costs little."""
    _, value, _ = event.to_kafka()
    return {
        "id": event.id, "type": event.type, "source": event.source, "subject": event.subject,
        "time": event.time, "key": event.key, "payload": value,
    }


def pending(events: Iterable[CloudEvent]) -> dict[str, Any]:
    """Update fragment: `{"$push": pending(events)}` stores them with the aggregate change."""
    return {FIELD: {"$each": [entry(e) for e in events]}}


def stored_event(stored: dict[str, Any]) -> CloudEvent:
    """The CloudEvent back from its stored form, `entry` or `sealed` (same id: consumers see a
    re-publication as a duplicate)."""
    data = json.loads(stored["payload"]) if "payload" in stored else stored["data"]
    return CloudEvent(type=stored["type"], source=stored["source"], subject=stored["subject"],
                      data=data, id=stored["id"], time=stored["time"], key=stored.get("key"))


class Outbox:
    def __init__(self, producer: EventProducer, collections: Iterable[AsyncCollection[Document]],
                 *, sweep_every: float = 5.0) -> None:
        self._producer = producer
        self._collections = {c.name: c for c in collections}
        self._periodic = Periodic("outbox-sweep", self._sweep_and_report, sweep_every)

    async def flush(self, collection: AsyncCollection[Document], document_id: Any) -> None:
        """Publish a document's pending events now, then remove them from it."""
        doc = await collection.find_one({"_id": document_id}, {FIELD: 1})
        if doc:
            await self._publish(collection, doc)

    async def _publish(self, collection: AsyncCollection[Document], doc: Document) -> None:
        stored = doc.get(FIELD) or []
        if not stored:
            return
        await self._producer.publish_many(stored_event(s) for s in stored)
        # $pullAll with the exact stored entries: FerretDB v1 silently ignores $pull with an $in condition.
        await collection.update_one({"_id": doc["_id"]}, {"$pullAll": {FIELD: stored}})

    async def sweep(self) -> int:
        """Publish everything still pending in every registered collection; returns how many documents."""
        count = 0
        for collection in self._collections.values():
            async for doc in collection.find({f"{FIELD}.0": {"$exists": True}}, {FIELD: 1}):
                await self._publish(collection, doc)
                count += 1
        return count

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()

    async def _sweep_and_report(self) -> None:
        swept = await self.sweep()
        if swept:
            log.info("outbox sweep published pending events", documents=swept)
