"""MongoDB plumbing on PyMongo's async API (`AsyncMongoClient`).

Works against MongoDB and FerretDB alike, so it stays inside what both
support: single-document atomicity (no multi-document transactions), unique
and sparse indexes (FerretDB v1 has no partial or TTL indexes: expiry is
done by sweeps), no change streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from prometheus_client import Counter
from pymongo import AsyncMongoClient, IndexModel, monitoring
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import AutoReconnect, DuplicateKeyError

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
        retryWrites=False,  # FerretDB v1 does not support retryable writes; our writes are idempotent anyway
        event_listeners=[CommandCount()],
    )
    return client, client[settings.database or service.replace("-", "_")]


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
