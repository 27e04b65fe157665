"""Write-then-publish without losing events: an outbox inside the aggregate document.

MongoDB (and FerretDB) make one document's update atomic, but not two. So a
service that changes an aggregate and must announce the change writes the
CloudEvent *into the same document* (`_outbox` array) in the same update.
After the write it publishes the events and pulls them from the array
(`flush`; a writer that hands over the entries it wrote saves reading them
back; one whose document's next write usually follows within a second lets
that write take them out, `flush_many(pull_within=)`). If the process dies
in between, `Outbox.sweep()` (run at start-up and periodically) finds
documents with pending events and publishes them. Events
may thus be published twice, never zero times; consumers de-duplicate on
the CloudEvent id.

The sweep is for recovery only, off the hot path: it runs every `sweep_every` seconds while it
finds work, backs off to `idle_sweep_max` seconds while it finds none, and a flush that fails
wakes it at once (shared/periodic.py). A periodic sweep leaves alone the documents whose pending
events are all younger than `SWEEP_GRACE` seconds: their writers are flushing them inline, so under load
such a sweep would only publish duplicates and, finding "work" every time, never back off (issue 21:
every sweep reads every pending document, and on FerretDB v1, which cannot use an index for it,
every document of the collection). The first sweep after start-up (what a crash left) and the
sweep a failed flush wakes take everything pending, however young.

The sweep asks for `_outbox.id` to exist, which the sparse `outbox_pending` index answers on
MongoDB: a sweep reads the documents with pending events, not the whole collection.

Each sweep also measures how long the oldest event it found pending had been waiting
(`cacert_outbox_oldest_pending_seconds{collection}`, 0 when nothing was pending): right after a write
it is a fraction of a second; a value that grows means events are not being published (the broker is
unreachable or refuses this service), so the rest of the system is not hearing about changes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Gauge
from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection

from shared.events.envelope import CloudEvent, utcnow
from shared.kafka.producer import EventProducer
from shared.logging import get_logger
from shared.mongo import update_each
from shared.periodic import Periodic

FIELD = "_outbox"
INDEX = IndexModel([(f"{FIELD}.id", 1)], name="outbox_pending", sparse=True)
log = get_logger("shared.outbox")
OLDEST_PENDING = Gauge(
    "cacert_outbox_oldest_pending_seconds",
    "Age of the oldest event the last outbox sweep found unpublished, per collection (0: none)",
    ["collection"],
)
# Served by INDEX on MongoDB (a sparse index answers `$exists: true`); every stored entry has an id.
PENDING = {f"{FIELD}.id": {"$exists": True}}
SWEEP_GRACE = 30.0  # seconds a periodic sweep leaves a just-written event to the writer's inline flush
PULL_TICK = 0.25  # seconds between looks for published entries whose pull is due (`flush_many(pull_within=)`)

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
    return push([entry(e) for e in events])


def push(stored: list[dict[str, Any]]) -> dict[str, Any]:
    """Update fragment for entries already in stored form (kept by the writer to hand to `flush`)."""
    return {FIELD: {"$each": stored}}


def stored_event(stored: dict[str, Any]) -> CloudEvent:
    """The CloudEvent back from its stored form, `entry` or `sealed` (same id: consumers see a
    re-publication as a duplicate)."""
    data = json.loads(stored["payload"]) if "payload" in stored else stored["data"]
    return CloudEvent(type=stored["type"], source=stored["source"], subject=stored["subject"],
                      data=data, id=stored["id"], time=stored["time"], key=stored.get("key"))


class Outbox:
    def __init__(self, producer: EventProducer, collections: Iterable[AsyncCollection[Document]],
                 *, sweep_every: float = 5.0, idle_sweep_max: float = 60.0) -> None:
        self._producer = producer
        self._collections = {c.name: c for c in collections}
        self._take_all = True  # the next periodic sweep takes young events too: start-up, or a failed flush
        self._periodic = Periodic("outbox-sweep", self._sweep_and_report, sweep_every,
                                  idle_backoff_to=idle_sweep_max)
        # Published entries whose pull waits (`flush_many(pull_within=...)`): (collection, document id) ->
        # (when it is due, the collection, the entries).
        self._pulls: dict[tuple[str, Any], tuple[float, AsyncCollection[Document], list[dict[str, Any]]]] = {}
        self._puller = Periodic("outbox-pull", self._pull_due, PULL_TICK)
        for name in self._collections:
            OLDEST_PENDING.labels(name).set(0)

    async def flush(self, collection: AsyncCollection[Document], document_id: Any,
                    written: list[dict[str, Any]] | None = None) -> None:
        """Publish a document's pending events now, then remove them from it.

        `written`: the stored entries (`entry`/`sealed`) the caller has just written, published without
        reading the document back; anything older still pending there is left to the sweep. A failure
        wakes the sweep and is raised.
        """
        if written is not None:
            await self.flush_many(collection, {document_id: written})
            return
        try:
            doc = await collection.find_one({"_id": document_id}, {FIELD: 1})
            if doc:
                await self._publish(collection, doc)
        except Exception:
            self._recover_now()
            raise

    async def flush_many(self, collection: AsyncCollection[Document], written: dict[Any, list[dict[str, Any]]],
                         *, pull_within: float = 0.0) -> None:
        """`flush` for several documents, each with the entries just written to it: one publish for all of
        them, then one command that pulls each document's entries. A failure wakes the sweep and is raised.

        `pull_within` > 0 (the outbox started): the entries are published now and pulled within that many
        seconds, with every other pull then due in one command, unless the document's next write replaces
        its outbox first and says so (`superseded`), which saves the pull. For a document whose next change
        usually follows within a second (a request and its CAA verdict, an approval and its issuance), that
        is one write of the document less (issue 21). Until pulled, the entries are published events a
        crash would have the start-up sweep publish again (a duplicate, which consumers drop); a periodic
        sweep leaves them alone as long as `pull_within` is shorter than its grace."""
        written = {document_id: stored for document_id, stored in written.items() if stored}
        if not written:
            return
        try:
            await self._producer.publish_many(stored_event(s) for stored in written.values() for s in stored)
            if pull_within > 0:
                due = time.monotonic() + pull_within
                for document_id, stored in written.items():
                    key = (collection.name, document_id)
                    waiting = self._pulls.get(key)
                    self._pulls[key] = ((waiting[0], collection, [*waiting[2], *stored]) if waiting
                                        else (due, collection, stored))
                return
            await update_each(collection, [({"_id": document_id}, {"$pullAll": {FIELD: stored}})
                                           for document_id, stored in written.items()])
        except Exception:
            self._recover_now()
            raise

    async def _publish(self, collection: AsyncCollection[Document], doc: Document) -> None:
        stored = doc.get(FIELD) or []
        if not stored:
            return
        await self._producer.publish_many(stored_event(s) for s in stored)
        # $pullAll with the exact stored entries: FerretDB v1 silently ignores $pull with an $in condition.
        await collection.update_one({"_id": doc["_id"]}, {"$pullAll": {FIELD: stored}})

    def superseded(self, collection: AsyncCollection[Document], document_ids: Iterable[Any]) -> None:
        """The documents' outboxes were just replaced by a write that knew their entries to be published:
        their waiting pulls are not needed."""
        for document_id in document_ids:
            self._pulls.pop((collection.name, document_id), None)

    async def _pull_due(self, *, everything: bool = False) -> int:
        """Pull the published entries whose time has come (all of them: `everything`), one command per
        collection. A failure leaves them to a later sweep, which publishes them again and pulls them."""
        now = time.monotonic()
        due = [key for key, (at, _, _) in self._pulls.items() if everything or at <= now]
        by_collection: dict[str, list[tuple[AsyncCollection[Document], Any, list[dict[str, Any]]]]] = {}
        for key in due:
            _, collection, stored = self._pulls.pop(key)
            by_collection.setdefault(key[0], []).append((collection, key[1], stored))
        for name, pulls in by_collection.items():
            try:
                await update_each(pulls[0][0], [({"_id": document_id}, {"$pullAll": {FIELD: stored}})
                                                 for _, document_id, stored in pulls])
            except Exception as exc:
                log.warning("published outbox entries not pulled; a sweep will publish them again",
                            collection=name, documents=len(pulls), error=f"{type(exc).__name__}: {exc}")
        return len(due)

    def _recover_now(self) -> None:
        """A flush failed: sweep now, taking its events however young they are."""
        self._take_all = True
        self._periodic.wake()

    async def sweep(self, grace: float = 0.0) -> int:
        """Publish what is pending in every registered collection; returns how many documents.

        A document whose pending events are all younger than `grace` seconds is left to its writer (and
        still counts for the oldest-pending gauge)."""
        count = 0
        cutoff = utcnow() - timedelta(seconds=grace)
        for name, collection in self._collections.items():
            oldest: datetime | None = None
            try:
                async for doc in collection.find(PENDING, {FIELD: 1}):
                    doc_oldest = _oldest(doc, None)
                    oldest = min(filter(None, (oldest, doc_oldest)), default=None)
                    if grace > 0 and doc_oldest is not None and doc_oldest > cutoff:
                        continue
                    await self._publish(collection, doc)
                    count += 1
            except Exception:
                # Not published: measure everything still pending (times only, not the payloads). If the
                # database is what failed, this fails too and the gauge keeps its last value.
                async for doc in collection.find(PENDING, {f"{FIELD}.time": 1}):
                    oldest = _oldest(doc, oldest)
                _report_age(name, oldest)
                raise
            _report_age(name, oldest)
        return count

    @property
    def sweep_pause(self) -> float:
        """Seconds between sweeps now: short while there is work, longer while idle."""
        return self._periodic.pause

    def start(self) -> None:
        self._periodic.start()
        self._puller.start()

    async def stop(self) -> None:
        """Stop sweeping, after pulling every published entry still waiting for its pull."""
        await self._puller.stop()
        await self._pull_due(everything=True)
        await self._periodic.stop()

    async def _sweep_and_report(self) -> int:
        take_all, self._take_all = self._take_all, False
        try:
            swept = await self.sweep(0.0 if take_all else SWEEP_GRACE)
        except Exception:
            self._take_all = True
            raise
        if swept:
            log.info("outbox sweep published pending events", documents=swept)
        return swept


def _oldest(doc: Document, oldest: datetime | None) -> datetime | None:
    """The earlier of `oldest` and the time of the document's oldest pending event."""
    for stored in doc.get(FIELD) or []:
        try:
            created = datetime.fromisoformat(stored["time"])
        except (KeyError, TypeError, ValueError):
            continue
        if oldest is None or created < oldest:
            oldest = created
    return oldest


def _report_age(collection: str, oldest: datetime | None) -> None:
    OLDEST_PENDING.labels(collection).set(0 if oldest is None else max(0.0, (utcnow() - oldest).total_seconds()))
