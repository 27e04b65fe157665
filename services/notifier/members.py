"""MemberDirectory: the notifier's own view of each member's name and primary address.

Built only from `member.registered` and `member.email_verified` (no other
service's database is ever read). Member events are keyed by member id, so
they arrive in order; the updates are still written to be harmless when
replayed: registration sets the address only if none is known, and a
verified primary address always wins. Secondary addresses are not mailed.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

COLLECTION = "members"
INDEXES: dict[str, list[Any]] = {COLLECTION: []}


@dataclasses.dataclass(frozen=True)
class MemberContact:
    member_id: str
    name: str | None
    email: str | None


class MemberDirectory:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.collection: AsyncCollection[dict[str, Any]] = db[COLLECTION]

    async def registered(self, member_id: str, name: str, email: str, now: datetime) -> None:
        await self.collection.update_one(
            {"_id": member_id},
            {"$set": {"name": name, "updated_at": now}, "$setOnInsert": {"email": email}},
            upsert=True,
        )

    async def email_verified(self, member_id: str, email: str, primary: bool | None, now: datetime) -> bool:
        """A verified primary address becomes the one we mail; other addresses do not matter here."""
        if not primary:
            return False
        await self.collection.update_one({"_id": member_id},
                                         {"$set": {"email": email, "updated_at": now}}, upsert=True)
        return True

    async def get(self, member_id: str) -> MemberContact | None:
        doc = await self.collection.find_one({"_id": member_id})
        if doc is None:
            return None
        return MemberContact(member_id=member_id, name=doc.get("name"), email=doc.get("email"))
