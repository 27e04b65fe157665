"""ChallengeStore: the challenges collection, and each challenge's one final outcome with its event.

Why outcomes are *inserted*, not conditional updates: a challenge ends once
(confirmed, expired or superseded), and the confirm endpoint, the expiry
sweep and a newer request may race to end it, on several replicas. On real
MongoDB `update_one({"state": "pending"}, ...)` would decide the race, but
FerretDB v1's SQLite backend runs an update's query and write outside one
transaction (FerretDB issue #3040), so two racers can both "win" (seen in
tests: two confirmations of one link). A unique `_id` is enforced by both
databases, so the final outcome is claimed by inserting a `settlements`
document keyed by the request id, carrying the announcing event in its own
outbox (one atomic write: outcome and event together). The challenge's
`state` is then set for readers; should that write be lost (a crash, or a
concurrent update on FerretDB), readers overlay the settlement, so the
settlement is the truth.

New challenges are a single insert with their mail command (or refusal) in
the challenge document's outbox; a duplicate request id is refused by `_id`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.domain_verify.challenge import ChallengeState, DomainChallenge
from shared import outbox
from shared.events import CloudEvent
from shared.mongo import insert_once

COLLECTION = "challenges"
SETTLEMENTS = "settlements"

INDEXES = {
    COLLECTION: [
        # Sparse: refused requests have no token. Unique: a hash collision would be a bug, not a token.
        IndexModel([("token_hash", ASCENDING)], name="token_hash_unique", unique=True, sparse=True),
        IndexModel([("member_id", ASCENDING), ("domain", ASCENDING), ("state", ASCENDING)],
                   name="member_domain_state"),
        IndexModel([("state", ASCENDING), ("expires_at", ASCENDING)], name="state_expiry"),
        outbox.INDEX,
    ],
    SETTLEMENTS: [outbox.INDEX],
}

Document = dict[str, Any]


class ChallengeStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection: AsyncCollection[Document] = db[COLLECTION]
        self.settlements: AsyncCollection[Document] = db[SETTLEMENTS]

    async def create(self, challenge: DomainChallenge, events: list[CloudEvent]) -> bool:
        """Store a new request with its events; False if this request id is already stored (redelivery)."""
        doc = challenge.to_document()
        doc[outbox.FIELD] = [outbox.entry(e) for e in events]
        return await insert_once(self.collection, doc)

    async def _overlay(self, doc: Document | None) -> DomainChallenge | None:
        """The challenge with its settled state, even if writing that state to the challenge was lost."""
        if doc is None:
            return None
        if doc["state"] == ChallengeState.PENDING.value:
            settled = await self.settlements.find_one({"_id": doc["_id"]}, {"state": 1})
            if settled:
                doc["state"] = settled["state"]
        return DomainChallenge.from_document(doc)

    async def get(self, request_id: str) -> DomainChallenge | None:
        return await self._overlay(await self.collection.find_one({"_id": request_id}, {outbox.FIELD: 0}))

    async def by_token_hash(self, digest: str) -> DomainChallenge | None:
        return await self._overlay(await self.collection.find_one({"token_hash": digest}, {outbox.FIELD: 0}))

    async def pending_for(self, member_id: str, domain: str) -> list[DomainChallenge]:
        cursor = self.collection.find({"member_id": member_id, "domain": domain,
                                       "state": ChallengeState.PENDING.value}, {outbox.FIELD: 0})
        found = [await self._overlay(doc) async for doc in cursor]
        return [c for c in found if c is not None and c.state is ChallengeState.PENDING]

    async def settle(self, request_id: str, state: ChallengeState, now: datetime, event: CloudEvent,
                     changes: Document | None = None) -> bool:
        """Claim the challenge's final outcome with its event; False if it already had one.

        The caller has checked that the challenge was pending (and, to confirm, unexpired) when it
        read it; whichever racer inserts first decides. Callers flush `settlements` afterwards.
        """
        won = await insert_once(self.settlements, {"_id": request_id, "state": state.value, "at": now,
                                                   outbox.FIELD: [outbox.entry(event)]})
        if won:
            await self.collection.update_one({"_id": request_id},
                                             {"$set": {"state": state.value, **(changes or {})}})
            return True
        # Someone settled it first: make sure the challenge shows it (repairs a lost state write).
        existing = await self.settlements.find_one({"_id": request_id}, {"state": 1})
        if existing:
            await self.collection.update_one({"_id": request_id, "state": ChallengeState.PENDING.value},
                                             {"$set": {"state": existing["state"]}})
        return False

    async def expired_pending(self, now: datetime, limit: int = 500) -> AsyncIterator[DomainChallenge]:
        """Pending challenges past their expiry, oldest first (what the sweep must close)."""
        cursor = self.collection.find(
            {"state": ChallengeState.PENDING.value, "expires_at": {"$lte": now}}, {outbox.FIELD: 0}
        ).sort("expires_at", ASCENDING).limit(limit)
        docs = await cursor.to_list()
        for doc in docs:
            yield DomainChallenge.from_document(doc)


CORROBORATIONS = "corroborations"
CORROBORATION_OUTCOMES = "corroboration_outcomes"
INDEXES[CORROBORATIONS] = [
    IndexModel([("state", ASCENDING), ("deadline", ASCENDING)], name="state_deadline"),
    outbox.INDEX,
]
INDEXES[CORROBORATION_OUTCOMES] = [outbox.INDEX]


class CorroborationStore:
    """Checks run by the primary and corroborated by remote perspectives (BR 3.2.2.9).

    One document per check (`_id` the check id) holds the primary's outcome, the perspectives asked
    and each answer; the final decision is claimed, as challenges' outcomes are, by inserting an
    outcome document carrying the announcing event (the first insert wins on every database).
    """

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection: AsyncCollection[Document] = db[CORROBORATIONS]
        self.outcomes: AsyncCollection[Document] = db[CORROBORATION_OUTCOMES]

    async def get(self, check_id: str) -> Document | None:
        return await self.collection.find_one({"_id": check_id}, {outbox.FIELD: 0})

    async def create(self, doc: Document, events: list[CloudEvent]) -> bool:
        """Store a new check with the events asking the perspectives; False on redelivery."""
        stored = dict(doc)
        stored[outbox.FIELD] = [outbox.entry(e) for e in events]
        return await insert_once(self.collection, stored)

    async def record_answer(self, check_id: str, perspective: str, answer: Document) -> bool:
        """Keep a perspective's first answer (a redelivered or re-run answer changes nothing)."""
        result = await self.collection.update_one(
            {"_id": check_id, f"answers.{perspective}": {"$exists": False}},
            {"$set": {f"answers.{perspective}": answer}},
        )
        return result.modified_count == 1

    async def settle(self, check_id: str, now: datetime, decision: Document, event: CloudEvent) -> bool:
        """Claim the check's decision with its event; False if it was already decided."""
        won = await insert_once(self.outcomes, {"_id": check_id, "at": now, **decision,
                                                outbox.FIELD: [outbox.entry(event)]})
        await self.collection.update_one({"_id": check_id}, {"$set": {"state": "decided", "decided_at": now}})
        return won

    async def overdue(self, now: datetime, limit: int = 200) -> list[Document]:
        """Checks still waiting for perspectives past their deadline: the sweep decides them."""
        cursor = self.collection.find({"state": "waiting", "deadline": {"$lte": now}}, {outbox.FIELD: 0})
        return await cursor.sort("deadline", ASCENDING).limit(limit).to_list()
