"""OutgoingMail and MailQueue: the durable mail queue in the notifier's own database.

One document per mail, keyed by the id of the event that asked for it (a
reminder's id derives from certificate serial and threshold). Inserting it
is how the consumer "handles" an event: a redelivered event hits the unique
`_id` and changes nothing, so redelivery never sends twice.

Life of a mail::

    pending --claim--> sending --SMTP ok--> sent      (+ mail.sent in the same update)
       ^                  |  \\--5xx/invalid--> failed (+ mail.failed)
       |                  |
       +--4xx/refused-----+   (attempts + 1, next_attempt_at = now + backoff)

Claiming is one atomic find-and-modify by `_id` that sets a lease (random token
and expiry), so replicas never send the same mail concurrently, and a mail
whose sender died mid-flight becomes claimable again when its lease runs out.
Which mails are due is read in batches (`DUE_BATCH` ids, oldest first), not by
one query per mail: on FerretDB v1 a claim that searched the queue cost 580 ms
with 12,000 mails stored and held the notifier to under two mails a second
(the chaos run's backlog, issue 23); a claim by `_id` costs about 12 ms.
That last case is the at-least-once choice: if the process dies after the
SMTP server accepted the mail but before `mark_sent`, the mail is sent
again (with the same Message-ID). Losing a confirmation link is worse than
a rare duplicate.

Every terminal transition writes its event into the document's `_outbox`
in the same update (see `shared.outbox`) and drops the template context and
a mail command's sealed parameters (the confirmation link, which stays sealed
to the notifier's key while queued: `shared/sealed_mail.py`), and the
certificates nobody needs once the mail is out.
"""

from __future__ import annotations

import dataclasses
import enum
import secrets
from collections import deque
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.notifier.notices import Notice
from shared import outbox
from shared.events import CloudEvent
from shared.mongo import insert_once

COLLECTION = "outgoing_mail"
DUE_BATCH = 100

INDEXES = {
    COLLECTION: [
        IndexModel([("state", ASCENDING), ("next_attempt_at", ASCENDING)], name="state_due"),
        IndexModel([("member_id", ASCENDING), ("state", ASCENDING)], name="member_state"),
        IndexModel([("state", ASCENDING), ("lease_until", ASCENDING)], name="state_lease"),
        outbox.INDEX,
    ],
}


class MailState(enum.StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class OutgoingMail:
    id: str
    source_type: str
    template: str
    context: dict[str, Any]
    member_id: str | None
    to: str | None
    to_name: str | None
    created_at: datetime
    state: MailState = MailState.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    lease: str | None = None
    last_error: str | None = None
    sealed: dict[str, Any] | None = None  # a command's secret params, opened only to render

    @classmethod
    def from_notice(cls, mail_id: str, source_type: str, notice: Notice, now: datetime) -> OutgoingMail:
        return cls(id=mail_id, source_type=source_type, template=notice.template, context=notice.context,
                   member_id=notice.member_id, to=notice.to, to_name=notice.to_name, created_at=now,
                   next_attempt_at=now, sealed=notice.sealed)

    def to_document(self) -> dict[str, Any]:
        document = {
            "_id": self.id, "source_type": self.source_type, "template": self.template,
            "context": self.context, "member_id": self.member_id, "to": self.to, "to_name": self.to_name,
            "created_at": self.created_at, "state": self.state.value, "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at or self.created_at,
        }
        if self.sealed is not None:
            document["sealed"] = self.sealed
        return document

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> OutgoingMail:
        return cls(id=doc["_id"], source_type=doc["source_type"], template=doc["template"],
                   context=doc.get("context") or {}, member_id=doc.get("member_id"), to=doc.get("to"),
                   to_name=doc.get("to_name"), created_at=doc["created_at"], state=MailState(doc["state"]),
                   attempts=doc.get("attempts", 0), next_attempt_at=doc.get("next_attempt_at"),
                   lease=doc.get("lease"), last_error=doc.get("last_error"), sealed=doc.get("sealed"))


def _due(now: datetime) -> dict[str, Any]:
    return {"state": MailState.PENDING.value, "next_attempt_at": {"$lte": now}}


def _lease_over(now: datetime) -> dict[str, Any]:
    return {"state": MailState.SENDING.value, "lease_until": {"$lte": now}}


class MailQueue:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.collection: AsyncCollection[dict[str, Any]] = db[COLLECTION]
        self._due: deque[str] = deque()

    async def enqueue(self, mail: OutgoingMail) -> bool:
        """Queue a mail; False if a mail with this id exists already (a redelivered event)."""
        return await insert_once(self.collection, mail.to_document())

    async def claim(self, now: datetime, lease_for: timedelta) -> OutgoingMail | None:
        """Take the next due mail (or one whose sender's lease expired) for sending, atomically.

        Ids come from the last batch read (`_due`); a mail of the batch that another replica took, or that
        is no longer due, is skipped. An empty batch is read again once per call."""
        for refilled in (False, True):
            while self._due:
                doc = await self.collection.find_one_and_update(
                    {"_id": self._due.popleft(), "$or": [_due(now), _lease_over(now)]},
                    {"$set": {"state": MailState.SENDING.value, "lease": secrets.token_hex(8),
                              "lease_until": now + lease_for}},
                    return_document=ReturnDocument.AFTER,  # no projection: FerretDB v1's findAndModify lacks it
                )
                if doc:
                    return OutgoingMail.from_document(doc)
            if refilled:
                break
            self._due.extend(await self._due_ids(now))
        return None

    async def _due_ids(self, now: datetime) -> list[str]:
        """Up to DUE_BATCH ids of claimable mails: leases that ran out first, then the longest due."""
        expired = [d["_id"] async for d in self.collection.find(_lease_over(now), {"_id": 1}).limit(DUE_BATCH)]
        due = [d["_id"] async for d in self.collection.find(
            _due(now), {"_id": 1}, sort=[("next_attempt_at", ASCENDING)]).limit(DUE_BATCH - len(expired))
               ] if len(expired) < DUE_BATCH else []
        return expired + due

    async def _finish(self, mail: OutgoingMail, changes: dict[str, Any], event: CloudEvent) -> bool:
        result = await self.collection.update_one(
            {"_id": mail.id, "state": MailState.SENDING.value, "lease": mail.lease},
            {"$set": changes, "$unset": {"context": "", "sealed": "", "lease": "", "lease_until": ""},
             "$push": {outbox.FIELD: outbox.entry(event)}},
        )
        return result.modified_count == 1

    async def mark_sent(self, mail: OutgoingMail, *, now: datetime, to: str, subject: str,
                        event: CloudEvent) -> bool:
        """Sent, with its mail.sent event; False if this sender no longer held the lease."""
        return await self._finish(mail, {"state": MailState.SENT.value, "sent_at": now, "sent_to": to,
                                         "subject": subject, "attempts": mail.attempts + 1}, event)

    async def mark_failed(self, mail: OutgoingMail, *, now: datetime, reason: str,
                          event: CloudEvent) -> bool:
        """Given up, with its mail.failed event; False if this sender no longer held the lease."""
        return await self._finish(mail, {"state": MailState.FAILED.value, "failed_at": now,
                                         "last_error": reason, "attempts": mail.attempts + 1}, event)

    async def retry_later(self, mail: OutgoingMail, *, at: datetime, error: str, count_attempt: bool = True
                          ) -> bool:
        """Back to pending until `at` (this mail only: the others keep going)."""
        result = await self.collection.update_one(
            {"_id": mail.id, "state": MailState.SENDING.value, "lease": mail.lease},
            {"$set": {"state": MailState.PENDING.value, "next_attempt_at": at, "last_error": error,
                      "attempts": mail.attempts + (1 if count_attempt else 0)},
             "$unset": {"lease": "", "lease_until": ""}},
        )
        return result.modified_count == 1

    async def release_member(self, member_id: str, now: datetime) -> int:
        """Make a member's mails that were waiting for an address due now (the address just arrived)."""
        result = await self.collection.update_many(
            {"member_id": member_id, "state": MailState.PENDING.value, "to": None,
             "next_attempt_at": {"$gt": now}},
            {"$set": {"next_attempt_at": now}},
        )
        return result.modified_count

    async def get(self, mail_id: str) -> dict[str, Any] | None:
        return await self.collection.find_one({"_id": mail_id})
