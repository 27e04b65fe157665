"""The signer's database: one outcome per request, one status per serial, CRLs.

* `outcomes` (`_id` = request id): the certificate or the rejection a request
  got, with the event that announced it. The unique `_id` is what makes "one
  approved request yields exactly one certificate, ever" hold, whoever races.
* `statuses` (`_id` = serial): small documents OCSP, revocation and CRLs read;
  the `_id` also keeps serials unique across the CA.
* `crls`: the current CRL of each scope (`current:<issuer>` for the unsharded CRL, `current:<issuer>/<shard>`
  for each shard, `ca/crl.py`'s `CRLScope`) and its CRL-number counter (`counter:<issuer>`,
  `counter:<issuer>/<shard>`): one per scope (RFC 5280 5.2.3), so rebuilds of different shards never contend
  for one document.
* `blocked_keys` (`_id` = spki_sha256): keys reported compromised (`cert.key_compromised`); no
  certificate is issued for them, and each status carries its key's `spki_sha256` so all
  certificates of a key can be found and revoked.
* `ocsp_signers` (`_id` = `<issuer>:after:<serial of the signer it replaces>`): delegated OCSP signers
  the issuing mode re-issued (`ocsp_signers.py`), the certificate (DER) and its key, encrypted PKCS#8 under
  the OCSP signer passphrase; the status mode reads them and answers with the current one. The `_id`
  makes two issuing replicas renewing the same signer store one successor.
* `claims` (`_id` = request id): written, in one batched insert, *before*
  signing. A request whose claim already exists was seen before (redelivery,
  or a duplicate publication upstream) and is looked up instead of signed, so
  no request is ever signed twice; fresh requests need no lookup at all.

Every lookup on a hot path is by `_id`: FerretDB v1 (the local stack) pushes
only `_id` equality down to SQLite and scans the collection for anything else,
including `$in` and secondary indexes. On MongoDB the secondary index below
serves the CRL query.

There is no outbox here: every write the signer makes is caused by a Kafka
message whose offset is committed only after the write *and* the publish, so a
crash in between is repaired by redelivery, which finds the stored outcome and
re-publishes its event.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from typing import Any

from cryptography import x509
from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from services.signer.ca.crl import CRLScope
from shared.key_compromise import spki_sha256

Document = dict[str, Any]


def spki_of_der(der: bytes) -> str:
    return spki_sha256(x509.load_der_x509_certificate(der).public_key())

INDEXES = {
    "outcomes": [],
    "statuses": [
        IndexModel([("issuer", ASCENDING), ("status", ASCENDING)], name="issuer_status"),
        IndexModel([("issuer", ASCENDING), ("crl_shard", ASCENDING), ("status", ASCENDING)], name="crl_scope"),
        IndexModel([("spki_sha256", ASCENDING)], name="key"),
    ],
    "crls": [],
    "claims": [],
    "blocked_keys": [],
    "ocsp_signers": [],
}


class CertificateStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.outcomes = db.outcomes
        self.statuses = db.statuses
        self.crls = db.crls
        self.claims = db.claims
        self.blocked_keys = db.blocked_keys
        self.ocsp_signers = db.ocsp_signers

    async def claim(self, request_ids: list[str], owner: str, now: datetime) -> set[str]:
        """Claim requests before signing; returns those claimed before (by anyone, this process included)."""
        docs = [{"_id": r, "owner": owner, "at": now} for r in request_ids]
        return {str(r) for r in await self.insert_new(self.claims, docs)}

    async def claim_of(self, request_id: str) -> Document | None:
        return await self.claims.find_one({"_id": request_id})

    async def take_over_claim(self, request_id: str, owner: str, now: datetime) -> None:
        await self.claims.update_one({"_id": request_id}, {"$set": {"owner": owner, "at": now}})

    async def outcomes_of(self, request_ids: list[str]) -> dict[str, Document]:
        found = await asyncio.gather(*(self.outcomes.find_one({"_id": r}) for r in request_ids))
        return {doc["_id"]: doc for doc in found if doc is not None}

    async def insert_new(self, collection: Any, docs: list[Document]) -> set[Any]:
        """Insert what is not there yet; returns the `_id`s that already existed (lost a race)."""
        if not docs:
            return set()
        try:
            await collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            return {docs[e["index"]]["_id"] for e in errors}
        return set()

    async def ensure_status(self, status: Document) -> None:
        """The status of an issued certificate exists (repairs a crash between the two inserts)."""
        with contextlib.suppress(DuplicateKeyError):
            await self.statuses.update_one({"_id": status["_id"]}, {"$setOnInsert": status}, upsert=True)

    async def status(self, serial: str) -> Document | None:
        return await self.statuses.find_one({"_id": serial})

    async def statuses_of(self, serials: list[str]) -> list[Document]:
        found = await asyncio.gather(*(self.statuses.find_one({"_id": s}) for s in serials))
        return [doc for doc in found if doc is not None]

    async def block_key(self, doc: Document) -> bool:
        """Add a key to the blocklist; False when it was there already."""
        try:
            await self.blocked_keys.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def blocked_among(self, keys: set[str]) -> set[str]:
        """Which of `keys` (spki_sha256) are blocked: one query per pass, whatever its size."""
        if not keys:
            return set()
        found = await self.blocked_keys.find({"_id": {"$in": sorted(keys)}}, {"_id": 1}).to_list()
        return {doc["_id"] for doc in found}

    async def issued_with_key(self, spki_sha256: str, now: datetime) -> list[Document]:
        """Unexpired, unrevoked certificates of a key. Statuses stored before keys were recorded get
        theirs first, from the stored certificate (a one-time cost)."""
        async for status in self.statuses.find({"spki_sha256": {"$exists": False}}, {"request_id": 1}):
            outcome = await self.outcomes.find_one({"_id": status["request_id"]}, {"der": 1})
            if outcome is not None:
                await self.statuses.update_one({"_id": status["_id"]},
                                               {"$set": {"spki_sha256": spki_of_der(outcome["der"])}})
        return await self.statuses.find(
            {"spki_sha256": spki_sha256, "status": {"$ne": "revoked"}, "not_after": {"$gt": now}}
        ).to_list()

    async def revoked(self, scope: CRLScope, now: datetime) -> list[Document]:
        """The CRL entries of `scope` at `now`: its revoked certificates that have not expired yet.

        An expired certificate leaves the CRL (RFC 5280 3.3 allows it; TLS BR 4.10.1 forbids removing an
        entry only before the certificate's expiry) and keeps its revoked status here for OCSP and audit,
        so the CRL stops growing with the CA's age.
        """
        shard: Document = {"$exists": False} if scope.shard is None else {"$eq": scope.shard}
        cursor = self.statuses.find(
            {"issuer": scope.issuer, "crl_shard": shard, "status": "revoked",
             "$or": [{"not_after": {"$gte": now}}, {"not_after": {"$exists": False}}]},
            {"revoked_at": 1, "revocation_reason": 1},
        )
        return await cursor.to_list()

    async def next_crl_number(self, scope: CRLScope) -> int:
        """CRL numbers must strictly increase within a CRL's scope (RFC 5280 5.2.3): a counter per scope."""
        for attempt in (1, 2):
            try:
                doc = await self.crls.find_one_and_update(
                    {"_id": f"counter:{scope.name}"},
                    {"$inc": {"number": 1}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
                break
            except DuplicateKeyError:  # another replica's first upsert of this counter won: increment it
                if attempt == 2:
                    raise
        assert doc is not None
        return int(doc["number"])

    async def save_crl(
        self,
        scope: CRLScope,
        number: int,
        der: bytes,
        this_update: datetime,
        next_update: datetime,
        revoked_count: int,
    ) -> None:
        fields = {
            "issuer": scope.issuer,
            "shard": scope.shard,
            "number": number,
            "der": der,
            "this_update": this_update,
            "next_update": next_update,
            "revoked_count": revoked_count,
        }
        # Never replace a newer CRL with an older one (two replicas may generate concurrently).
        key = f"current:{scope.name}"
        await self.crls.update_one({"_id": key, "number": {"$lt": number}}, {"$set": fields})
        with contextlib.suppress(DuplicateKeyError):  # a concurrent first save won the insert
            await self.crls.update_one({"_id": key}, {"$setOnInsert": fields}, upsert=True)

    async def current_crl(self, scope: CRLScope) -> Document | None:
        return await self.crls.find_one({"_id": f"current:{scope.name}"})

    async def crl_scopes(self, issuer: str) -> dict[CRLScope, Document]:
        """Every scope of `issuer` with a stored CRL (without its DER): a few dozen small documents. A shard
        stays here after the shard count is lowered, so its certificates stay covered."""
        found = self.crls.find({"_id": {"$regex": "^current:"}}, {"der": 0})
        scopes: dict[CRLScope, Document] = {}
        async for doc in found:
            name = doc["_id"].removeprefix("current:")
            owner, _, shard = name.partition("/")
            if owner == issuer:
                scopes[CRLScope(issuer, int(shard) if shard else None)] = doc
        return scopes

    async def save_ocsp_signer(self, doc: Document) -> bool:
        """Store a renewed OCSP signer; False when its `_id` (the successor of one signer) exists already."""
        try:
            await self.ocsp_signers.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def ocsp_signer(self, signer_id: str) -> Document | None:
        return await self.ocsp_signers.find_one({"_id": signer_id})

    async def replace_ocsp_signer(self, doc: Document) -> None:
        """Overwrite a stored successor the issuing mode cannot use (see ``ocsp_signers.py``)."""
        await self.ocsp_signers.replace_one({"_id": doc["_id"]}, doc)

    async def ocsp_signers_of(self, issuer: str) -> list[Document]:
        """The stored OCSP signers of one CA (a handful: one per renewal, expired ones removed)."""
        return await self.ocsp_signers.find({"issuer": issuer}).to_list()

    async def remove_ocsp_signers_ended_before(self, moment: datetime) -> int:
        result = await self.ocsp_signers.delete_many({"not_after": {"$lt": moment}})
        return result.deleted_count
