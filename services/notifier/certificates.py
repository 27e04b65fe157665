"""CertificateSchedule: the notifier's view of issued certificates, for expiry reminders.

Built from `cert.issued` and `cert.revoked` (both keyed by serial, so they
arrive in order for one certificate). Only what reminders need is kept: no
PEM. A revocation is stored even if the issue event was never seen, so a
late replay of `cert.issued` cannot bring a revoked certificate back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.notifier.reminder_policy import names_key

COLLECTION = "certificates"

INDEXES = {
    COLLECTION: [
        IndexModel([("not_after", ASCENDING)], name="not_after"),
        IndexModel([("member_id", ASCENDING), ("profile", ASCENDING), ("names_key", ASCENDING)],
                   name="member_profile_names"),
    ],
}


@dataclasses.dataclass(frozen=True)
class ScheduledCertificate:
    serial: str
    member_id: str
    profile: str
    subject: str
    names: list[str]
    names_key: str
    not_after: datetime
    reminded: tuple[int, ...]

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ScheduledCertificate:
        return cls(serial=doc["_id"], member_id=doc["member_id"], profile=doc["profile"],
                   subject=doc.get("subject", ""), names=list(doc.get("names") or []),
                   names_key=doc["names_key"], not_after=doc["not_after"],
                   reminded=tuple(doc.get("reminded") or ()))


class CertificateSchedule:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.collection: AsyncCollection[dict[str, Any]] = db[COLLECTION]

    async def issued(self, data: dict[str, Any]) -> None:
        names = [*data.get("dns_names", []), *data.get("emails", []), *data.get("ip_addresses", [])]
        await self.collection.update_one({"_id": data["serial"]}, {"$set": {
            "member_id": data["member_id"], "profile": data["profile"], "subject": data.get("subject", ""),
            "cert_class": data.get("cert_class"), "names": names,
            "names_key": names_key(data.get("dns_names", []), data.get("emails", []),
                                   data.get("ip_addresses", [])),
            "not_before": datetime.fromisoformat(data["not_before"]),
            "not_after": datetime.fromisoformat(data["not_after"]),
        }}, upsert=True)

    async def revoked(self, serial: str, member_id: str, revoked_at: datetime) -> None:
        await self.collection.update_one({"_id": serial},
                                          {"$set": {"revoked_at": revoked_at, "member_id": member_id}},
                                          upsert=True)

    async def expiring(self, now: datetime, until: datetime) -> AsyncIterator[ScheduledCertificate]:
        """Unrevoked certificates with `now < not_after <= until`."""
        cursor = self.collection.find({"revoked_at": None, "not_after": {"$gt": now, "$lte": until}})
        async for doc in cursor:
            if "names_key" in doc:  # a revocation seen without its issue event is not scheduled
                yield ScheduledCertificate.from_document(doc)

    async def renewal_of(self, cert: ScheduledCertificate) -> str | None:
        """The serial of an unrevoked newer certificate for the same member, profile and names."""
        doc = await self.collection.find_one({
            "member_id": cert.member_id, "profile": cert.profile, "names_key": cert.names_key,
            "_id": {"$ne": cert.serial}, "revoked_at": None, "not_after": {"$gt": cert.not_after},
        }, {"_id": 1})
        return doc["_id"] if doc else None

    async def settle(self, serial: str, thresholds: Iterable[int]) -> None:
        """Record thresholds as done, so they are never mailed (again)."""
        await self.collection.update_one({"_id": serial},
                                         {"$addToSet": {"reminded": {"$each": list(thresholds)}}})
