"""MongoDB plumbing on PyMongo's async API (`AsyncMongoClient`).

Works against MongoDB and FerretDB alike, so it stays inside what both
support: single-document atomicity (no multi-document transactions), unique
and sparse indexes (FerretDB v1 has no partial or TTL indexes: expiry is
done by sweeps), no change streams.

One writer per document in a process (`OneWriterDatabase`): FerretDB v1 applies an update by reading
the document and writing it back whole, so two updates of one document at once can lose one (a `$set`
acknowledged with `modified: 1` and gone afterwards; `python -m benchmarks.ferretdb_lost_update`).
Each service owns its database, and its request handlers, consumers and outbox write the same
documents, so `connect` returns a database whose collections let one single-document write per
document (`_id`) run at a time in the process. MongoDB needs none of this and loses nothing by it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, nullcontext
from typing import Any

from prometheus_client import Counter
from pymongo import AsyncMongoClient, IndexModel, UpdateOne, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import AutoReconnect, DuplicateKeyError
from pymongo.results import UpdateResult

from shared.config import MongoSettings

Document = dict[str, Any]

COMMANDS = Counter(
    "cacert_mongo_commands_total",
    "Database commands this process sent, by command and collection (PyMongo command monitoring)",
    ["command", "collection"],
)


class CommandCount(monitoring.CommandListener):
    """Counts every command by name and collection, so a benchmark (benchmarks/e2e_report.py) can
    divide a run's commands by its certificates, and an operator can see which collection a service
    leans on. Only names are recorded: never a filter, a document or a value."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        target = event.command.get("collection") if name == "getMore" else event.command.get(name)
        COMMANDS.labels(name, target if isinstance(target, str) else "-").inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class DocumentWriters:
    """One lock per document being written (by collection and `_id`), dropped when nobody holds or
    waits for it. A write whose filter names no single `_id` is serialised with the collection's other
    such writes."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, Any], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def one_at_a_time(self, collection: str, filter: Mapping[str, Any]) -> AsyncIterator[None]:
        key = (collection, _single_id(filter))
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    @asynccontextmanager
    async def each_of(self, collection: str, filters: Sequence[Mapping[str, Any]]) -> AsyncIterator[None]:
        """The locks of several documents at once, taken in one fixed order (so two writers of
        overlapping sets never wait for each other in a circle)."""
        keys = {_lock_order(_single_id(f)): f for f in filters}
        async with AsyncExitStack() as held:
            for key in sorted(keys):
                await held.enter_async_context(self.one_at_a_time(collection, keys[key]))
            yield

    def __len__(self) -> int:
        return len(self._locks)


ANY_DOCUMENT = object()  # the lock key of a write that names no single document


def _single_id(filter: Mapping[str, Any]) -> Any:
    value = filter.get("_id", ANY_DOCUMENT)
    return value if isinstance(value, str | int | bytes) else ANY_DOCUMENT


def _lock_order(document_id: Any) -> tuple[str, str]:
    return ("", "") if document_id is ANY_DOCUMENT else (type(document_id).__name__, repr(document_id))


class OneWriterCollection(AsyncCollection[Document]):
    """A collection whose single-document writes (`update_one`, `replace_one`, `find_one_and_*`) take
    the document's lock for the time of the command."""

    writers: DocumentWriters

    async def update_one(self, filter: Mapping[str, Any], *args: Any, **kwargs: Any) -> UpdateResult:
        async with self.writers.one_at_a_time(self.name, filter):
            return await super().update_one(filter, *args, **kwargs)

    async def replace_one(self, filter: Mapping[str, Any], *args: Any, **kwargs: Any) -> UpdateResult:
        async with self.writers.one_at_a_time(self.name, filter):
            return await super().replace_one(filter, *args, **kwargs)

    async def find_one_and_update(self, filter: Mapping[str, Any], *args: Any, **kwargs: Any) -> Document | None:
        async with self.writers.one_at_a_time(self.name, filter):
            return await super().find_one_and_update(filter, *args, **kwargs)

    async def find_one_and_replace(self, filter: Mapping[str, Any], *args: Any, **kwargs: Any) -> Document | None:
        async with self.writers.one_at_a_time(self.name, filter):
            return await super().find_one_and_replace(filter, *args, **kwargs)


class OneWriterDatabase(AsyncDatabase[Document]):
    """A service's database whose collections are `OneWriterCollection`s sharing one `DocumentWriters`."""

    def __init__(self, client: AsyncMongoClient[Document], name: str) -> None:
        super().__init__(client, name)
        self.writers = DocumentWriters()

    def __getitem__(self, name: str) -> AsyncCollection[Document]:
        return self.get_collection(name)

    def get_collection(self, name: str, *args: Any, **kwargs: Any) -> AsyncCollection[Document]:
        collection = OneWriterCollection(self, name, False, *args, **kwargs)
        collection.writers = self.writers
        return collection


def connect(settings: MongoSettings, *, service: str) -> tuple[AsyncMongoClient[Document], AsyncDatabase[Document]]:
    """A client and the service's own database (each service owns exactly one)."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(
        settings.url,
        appname=service,
        tz_aware=True,
        serverSelectionTimeoutMS=5000,
        connectTimeoutMS=5000,
        # Without it PyMongo waits forever for an answer: one stuck query would hang the service instead of
        # failing and being retried.
        socketTimeoutMS=int(settings.socket_timeout_seconds * 1000),
        maxPoolSize=settings.max_pool_size,
        retryWrites=False,  # FerretDB v1 does not support retryable writes; our writes are idempotent anyway
        event_listeners=[CommandCount()],
    )
    return client, OneWriterDatabase(client, settings.database or service.replace("-", "_"))


async def ensure_indexes(db: AsyncDatabase[Document], indexes: Mapping[str, Sequence[IndexModel]]) -> None:
    """Create every collection's missing indexes at start-up (idempotent).

    Only indexes whose name does not exist yet are sent: FerretDB v1 crashes the
    connection when createIndexes repeats an existing sparse index.
    """
    for collection, models in indexes.items():
        if not models:
            continue
        for attempt in (1, 2, 3):
            existing = {index["name"] async for index in await db[collection].list_indexes()}
            missing = [m for m in models if m.document["name"] not in existing]
            if not missing:
                break
            try:
                await db[collection].create_indexes(missing)
                break
            except AutoReconnect:
                # FerretDB v1 drops the connection instead of answering (another process may have just
                # created the same index): look again at what exists, then create only what is missing.
                if attempt == 3:
                    raise
                await asyncio.sleep(0.5 * attempt)


async def update_each(collection: AsyncCollection[Document],
                      changes: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]], *, upsert: bool = False) -> int:
    """Several single-document updates (filter, update) in one command (an unordered `bulk_write`): one
    round trip for a batch of events. Changes naming the same document `_id` (a redelivered event twice in
    one batch) are sent once, the last of them: two upserts of one `_id` in one unordered write could both
    insert. On a `OneWriterDatabase` every document's lock is held meanwhile. Returns how many of the sent
    changes matched a document (upserts not counted)."""
    by_document: dict[Any, tuple[Mapping[str, Any], Mapping[str, Any]]] = {}
    for index, (query, update) in enumerate(changes):
        document_id = _single_id(query)
        by_document[index if document_id is ANY_DOCUMENT else _lock_order(document_id)] = (query, update)
    if not by_document:
        return 0
    operations = [UpdateOne(dict(f), dict(u), upsert=upsert) for f, u in by_document.values()]
    writers: DocumentWriters | None = getattr(collection, "writers", None)
    held = (writers.each_of(collection.name, [f for f, _ in by_document.values()]) if writers is not None
            else nullcontext())
    async with held:
        result = await collection.bulk_write(operations, ordered=False)
    return result.matched_count


async def insert_once(collection: AsyncCollection[Document], document: Document) -> bool:
    """Insert unless a unique index (event id, request id, ...) already holds the key.

    Returns False for the duplicate instead of raising: a redelivered event
    or a retried request is the normal case for an at-least-once system.
    """
    try:
        await collection.insert_one(document)
    except DuplicateKeyError:
        return False
    return True


async def ping(client: AsyncMongoClient[Document]) -> bool:
    try:
        await client.admin.command("ping")
    except Exception:
        return False
    return True
