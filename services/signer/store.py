"""The signer's database: issued certificates, rejections, revocations, CRLs.

The certificate document is keyed by the *request id*: that unique `_id`
is what makes "one approved request yields exactly one certificate, ever"
hold even when two replicas race on a redelivered request. The serial has
its own unique index, so a serial is never reused across the CA.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared import outbox

Document = dict[str, Any]

INDEXES = {
    "certificates": [
        IndexModel([("serial", ASCENDING)], unique=True, name="serial_unique"),
        IndexModel([("issuer", ASCENDING), ("status", ASCENDING)], name="issuer_status"),
        outbox.INDEX,
    ],
    "rejections": [outbox.INDEX],
    "crls": [],
}


class CertificateStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.certificates = db.certificates
        self.rejections = db.rejections
        self.crls = db.crls

    async def by_request(self, request_id: str) -> Document | None:
        return await self.certificates.find_one({"_id": request_id}, {"_outbox": 0})

    async def by_serial(self, serial: str) -> Document | None:
        return await self.certificates.find_one({"serial": serial}, {"_outbox": 0})

    async def rejection(self, request_id: str) -> Document | None:
        return await self.rejections.find_one({"_id": request_id}, {"_outbox": 0})

    async def revoked(self, issuer: str) -> list[Document]:
        cursor = self.certificates.find({"issuer": issuer, "status": "revoked"},
                                        {"serial": 1, "revoked_at": 1, "revocation_reason": 1})
        return await cursor.to_list()

    async def revocation_count(self, issuer: str) -> int:
        return await self.certificates.count_documents({"issuer": issuer, "status": "revoked"})

    async def next_crl_number(self, issuer: str) -> int:
        """CRL numbers must strictly increase (RFC 5280 5.2.3): a counter per issuer."""
        doc = await self.crls.find_one_and_update(
            {"_id": f"counter:{issuer}"}, {"$inc": {"number": 1}}, upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None
        return int(doc["number"])

    async def save_crl(self, issuer: str, number: int, der: bytes, this_update: datetime,
                       next_update: datetime, revoked_count: int) -> None:
        # Never replace a newer CRL with an older one (two replicas may generate concurrently).
        await self.crls.update_one(
            {"_id": f"current:{issuer}", "number": {"$lt": number}},
            {"$set": {"number": number, "der": der, "this_update": this_update, "next_update": next_update,
                      "revoked_count": revoked_count}},
        )
        with contextlib.suppress(DuplicateKeyError):  # a concurrent first save won the insert
            await self.crls.update_one(
                {"_id": f"current:{issuer}"},
                {"$setOnInsert": {"number": number, "der": der, "this_update": this_update,
                                  "next_update": next_update, "revoked_count": revoked_count}},
                upsert=True,
            )

    async def current_crl(self, issuer: str) -> Document | None:
        return await self.crls.find_one({"_id": f"current:{issuer}"})
