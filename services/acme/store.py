"""The ACME service's persistence: nonces, bindings, accounts, orders, authorizations, certificates, the
member's verified domains as domain_verify announced them, and rate windows. Nothing else touches MongoDB.

Every write that must be announced carries its event in the same document (shared/outbox.py): an order
being finalized holds its `acme.csr_submitted`, a challenge being validated its authorization's
`domain.verification_requested`, a revocation its certificate's `acme.revocation_requested`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.events import CloudEvent
from shared.outbox import INDEX as OUTBOX_INDEX
from shared.outbox import entry, push

Document = dict[str, Any]

INDEXES: dict[str, list[IndexModel]] = {
    "nonces": [IndexModel([("expires_at", ASCENDING)], name="expiry")],
    "accounts": [IndexModel([("thumbprint", ASCENDING)], name="thumbprint", unique=True),
                 IndexModel([("binding_key_id", ASCENDING)], name="binding")],
    "orders": [IndexModel([("account_id", ASCENDING)], name="account"), OUTBOX_INDEX],
    "authorizations": [IndexModel([("challenges.id", ASCENDING)], name="challenge"),
                       IndexModel([("account_id", ASCENDING), ("identifier", ASCENDING), ("status", ASCENDING)],
                                  name="reuse"), OUTBOX_INDEX],
    "certificates": [IndexModel([("order_id", ASCENDING)], name="order"),
                     IndexModel([("ari_id", ASCENDING)], name="ari"), OUTBOX_INDEX],
    "verified_domains": [IndexModel([("member_id", ASCENDING)], name="member")],
    "limits": [IndexModel([("expires_at", ASCENDING)], name="expiry")],
}


class AcmeStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.nonces = db["nonces"]
        self.bindings = db["bindings"]
        self.accounts = db["accounts"]
        self.orders = db["orders"]
        self.authorizations = db["authorizations"]
        self.certificates = db["certificates"]
        self.verified_domains = db["verified_domains"]
        self.limits = db["limits"]

    @property
    def outbox_collections(self) -> list[Any]:
        return [self.orders, self.authorizations, self.certificates]

    # -- nonces: single use across replicas (one shared collection; the delete is the use) ---------------

    async def add_nonce(self, nonce: str, expires_at: datetime) -> None:
        await self.nonces.insert_one({"_id": nonce, "expires_at": expires_at})

    async def use_nonce(self, nonce: str, now: datetime) -> bool:
        """True once per nonce: of two replicas deleting it at the same moment, one deletes nothing. (A
        plain delete, not find-and-delete: FerretDB v1 runs find-and-modify as a read then a write, which
        can hand one document to two callers; docs/decisions.md.)"""
        result = await self.nonces.delete_one({"_id": nonce, "expires_at": {"$gt": now}})
        return result.deleted_count == 1

    async def sweep_nonces(self, now: datetime) -> int:
        result = await self.nonces.delete_many({"expires_at": {"$lt": now}})
        deleted = await self.limits.delete_many({"expires_at": {"$lt": now}})
        return int(result.deleted_count) + int(deleted.deleted_count)

    # -- bindings (from registration's events; the HMAC key stays sealed at rest) -------------------------

    async def put_binding(self, doc: Document) -> None:
        """Insert a binding once; a redelivered creation after a revocation does not revive it."""
        try:
            await self.bindings.insert_one(doc)
        except DuplicateKeyError:
            pass

    async def revoke_binding(self, key_id: str, member_id: str, at: datetime) -> None:
        await self.bindings.update_one({"_id": key_id},
                                       {"$set": {"revoked_at": at},
                                        "$setOnInsert": {"member_id": member_id, "revoked_only": True}},
                                       upsert=True)
        await self.accounts.update_many({"binding_key_id": key_id, "status": "valid"},
                                        {"$set": {"status": "deactivated", "deactivated_at": at,
                                                  "deactivated_because": "binding revoked"}})

    async def binding(self, key_id: str) -> Document | None:
        return await self.bindings.find_one({"_id": key_id})

    # -- accounts -----------------------------------------------------------------------------------------

    async def account(self, account_id: str) -> Document | None:
        return await self.accounts.find_one({"_id": account_id})

    async def account_by_thumbprint(self, thumbprint: str) -> Document | None:
        return await self.accounts.find_one({"thumbprint": thumbprint})

    async def accounts_of_binding(self, key_id: str) -> int:
        return int(await self.accounts.count_documents({"binding_key_id": key_id}))

    async def insert_account(self, doc: Document) -> bool:
        try:
            await self.accounts.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def update_account(self, account_id: str, expect: Document, fields: Document) -> Document | None:
        try:
            return await self.accounts.find_one_and_update({"_id": account_id, **expect}, {"$set": fields},
                                                           return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:
            raise KeyInUse() from None

    # -- the member's verified domains (domain.verified, whoever asked) -----------------------------------

    async def record_verified_domain(self, member_id: str, domain: str, valid_until: datetime,
                                     method: str) -> None:
        """One document per member, domain and method: whether it covers the names below the domain
        depends on the method (shared/domain_methods.authorizes)."""
        await self.verified_domains.update_one(
            {"_id": f"{member_id}:{domain}:{method}"},
            {"$max": {"valid_until": valid_until},
             "$set": {"member_id": member_id, "domain": domain, "method": method}},
            upsert=True)

    async def verified_domains_of(self, member_id: str, now: datetime) -> list[tuple[str, str]]:
        """(domain, method) of each verification of the member still inside its reuse period."""
        docs = self.verified_domains.find({"member_id": member_id}, {"domain": 1, "method": 1, "valid_until": 1})
        return [(d["domain"], d["method"]) async for d in docs
                if d["valid_until"].replace(tzinfo=now.tzinfo) > now]

    # -- orders and authorizations ------------------------------------------------------------------------

    async def insert_order(self, order: Document, authorizations: list[Document]) -> None:
        if authorizations:
            await self.authorizations.insert_many(authorizations)
        await self.orders.insert_one(order)

    async def order(self, order_id: str) -> Document | None:
        return await self.orders.find_one({"_id": order_id})

    async def orders_of(self, account_id: str) -> list[Document]:
        return [d async for d in self.orders.find({"account_id": account_id}, {"_id": 1, "created_at": 1})]

    async def orders_with_authz(self, authz_id: str) -> list[Document]:
        return [d async for d in self.orders.find({"authorization_ids": authz_id})]

    async def update_order(self, order_id: str, expect: Document, fields: Document,
                           event: CloudEvent | None = None) -> list[dict[str, Any]] | None:
        return await _update_with_event(self.orders, order_id, expect, fields, event)

    async def reusable_authorization(self, account_id: str, identifier: Document,
                                     now: datetime) -> Document | None:
        """A valid, unexpired authorization of this account for this identifier (RFC 8555 7.4)."""
        async for doc in self.authorizations.find({"account_id": account_id, "identifier": identifier,
                                                   "status": "valid"}):
            if doc["expires"].replace(tzinfo=now.tzinfo) > now:
                return doc
        return None

    async def authorization(self, authz_id: str) -> Document | None:
        return await self.authorizations.find_one({"_id": authz_id})

    async def authorization_by_challenge(self, challenge_id: str) -> Document | None:
        return await self.authorizations.find_one({"challenges.id": challenge_id})

    async def update_authorization(self, authz_id: str, expect: Document, fields: Document,
                                   event: CloudEvent | None = None) -> list[dict[str, Any]] | None:
        return await _update_with_event(self.authorizations, authz_id, expect, fields, event)

    # -- certificates -------------------------------------------------------------------------------------

    async def insert_certificate(self, doc: Document) -> None:
        try:
            await self.certificates.insert_one(doc)
        except DuplicateKeyError:
            pass

    async def certificate(self, serial: str) -> Document | None:
        return await self.certificates.find_one({"_id": serial})

    async def mark_replaced(self, ari_id: str, order_id: str) -> None:
        await self.certificates.update_one({"ari_id": ari_id, "replaced_by": {"$exists": False}},
                                           {"$set": {"replaced_by": order_id}})

    async def certificate_by_ari_id(self, ari_id: str) -> Document | None:
        return await self.certificates.find_one({"ari_id": ari_id})

    async def update_certificate(self, serial: str, expect: Document, fields: Document,
                                 event: CloudEvent | None = None) -> list[dict[str, Any]] | None:
        return await _update_with_event(self.certificates, serial, expect, fields, event)

    # -- rate windows -------------------------------------------------------------------------------------

    async def hit(self, key: str, window: timedelta, now: datetime) -> tuple[int, datetime]:
        """Count one use of `key` in its current fixed window; (count so far, when the window ends)."""
        start = datetime.fromtimestamp(now.timestamp() // window.total_seconds() * window.total_seconds(),
                                       tz=now.tzinfo)
        ends = start + window
        for attempt in (1, 2):  # two first uses at once: one inserts, the other's upsert collides once
            try:
                doc = await self.limits.find_one_and_update(
                    {"_id": f"{key}@{int(start.timestamp())}"},
                    {"$inc": {"count": 1}, "$setOnInsert": {"expires_at": ends}},
                    upsert=True, return_document=ReturnDocument.AFTER)
                break
            except DuplicateKeyError:
                if attempt == 2:
                    raise
        return int((doc or {}).get("count", 1)), ends


async def _update_with_event(collection: Any, document_id: str, expect: Document, fields: Document,
                             event: CloudEvent | None) -> list[dict[str, Any]] | None:
    """Set `fields` (and queue `event` in the document's outbox) if it still matches `expect`: the stored
    event entries for the outbox flush, [] without an event, None when the document had moved on."""
    stored = [entry(event)] if event is not None else []
    update: Document = {"$set": fields}
    if stored:
        update["$push"] = push(stored)
    result = await collection.update_one({"_id": document_id, **expect}, update)
    return stored if result.modified_count else None


class KeyInUse(Exception):
    """Another account already has this key (keyChange, RFC 8555 7.3.5: 409)."""
