"""The notifier's pace with a large queue (the chaos long run, issue 23: 9,583 of 12,061 notices still queued
when the run stopped waiting). A claim used to search the whole queue for the oldest due mail, which on
FerretDB v1 meant reading every stored mail for every mail sent. Due mails are now read in batches of ids and
claimed by `_id`: the queries that search the queue grow with the mails claimed divided by the batch, not with
the mails claimed, and every due mail is still claimed once, oldest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient, monitoring

from services.notifier.outgoing import DUE_BATCH, INDEXES, MailQueue, MailState
from shared.config import MongoSettings
from shared.mongo import OneWriterDatabase, ensure_indexes

DUE = 250


class Searches(monitoring.CommandListener):
    """Counts the commands on the queue that look for mails by anything but `_id`."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        if event.command_name in ("find", "findAndModify") and command.get(event.command_name) == "outgoing_mail":
            if "_id" not in (command.get("filter") or command.get("query") or {}):
                self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_notifier_backlog_claims_each_due_mail_once_searching_the_queue_once_a_batch(
        mongo_settings: MongoSettings) -> None:
    searches = Searches()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_settings.url, tz_aware=True,
                                                                event_listeners=[searches])
    db = OneWriterDatabase(client, mongo_settings.database)
    queue = MailQueue(db)
    now = datetime.now(UTC)
    try:
        await ensure_indexes(db, INDEXES)
        sent = [{"_id": f"s{i}", "source_type": "x", "template": "t", "created_at": now,
                 "state": MailState.SENT.value, "attempts": 1} for i in range(500)]
        due = [{"_id": f"p{i:03d}", "source_type": "x", "template": "t", "created_at": now,
                "state": MailState.PENDING.value, "next_attempt_at": now - timedelta(seconds=DUE - i), "attempts": 0}
               for i in range(DUE)]
        later = [{"_id": "later", "source_type": "x", "template": "t", "created_at": now,
                  "state": MailState.PENDING.value, "next_attempt_at": now + timedelta(hours=1), "attempts": 0}]
        lapsed = [{"_id": "lapsed", "source_type": "x", "template": "t", "created_at": now,
                   "state": MailState.SENDING.value, "lease": "old", "lease_until": now - timedelta(seconds=1),
                   "attempts": 1}]
        await queue.collection.insert_many(sent + due + later + lapsed)
        # Another replica takes one of the due mails between the batch read and the claim.
        searches_before = searches.count
        first = await queue.claim(now, timedelta(seconds=60))
        await queue.collection.update_one({"_id": "p001"}, {"$set": {"state": MailState.SENDING.value,
                                                                     "lease_until": now + timedelta(minutes=5)}})
        claimed = [first]
        while (mail := await queue.claim(now, timedelta(seconds=60))) is not None:
            claimed.append(mail)
        ids = [m.id for m in claimed if m is not None]
        assert ids[0] == "lapsed"  # a lease that ran out comes first
        assert ids[1:] == [f"p{i:03d}" for i in range(DUE) if i != 1]  # oldest first, each once
        assert all(m is not None and m.state is MailState.SENDING for m in claimed)
        batches = -(-(DUE + 1) // DUE_BATCH)
        assert searches.count - searches_before <= 2 * (batches + 1)
    finally:
        await client.drop_database(db.name)
        await client.close()
