"""Registration's database: every query, index, document shape and outbox write of its aggregates.

The domain classes (members.py, assurance.py, domains.py, ...) ask for what they need by name
(`claim_address`, `insert_request_with_event`, `record_issued`) and get plain documents back;
`RegistrationStore` is that interface, `MongoRegistrationStore` its MongoDB implementation, and
tests/registration/memory_store.py an in-memory one for unit tests.

Collections:

* `members` (`_id` = member id): the account with its addresses embedded (`emails.<email id>`).
* `addresses` (`_id` = the address): which account holds an address; the unique `_id` makes an
  address belong to one account only. It is claimed before the member is written; a claim left by
  a crash in between (its holder's record lacks the address) is taken over by the next claimant.
* `email_tokens`, `sessions` (`_id` = SHA-256 digest of the token), `rate_limits` (one counter per
  limit, key and window): all carry `expires_at`, and `delete_expired` removes them (FerretDB has
  no TTL index).
* `assurances` (`_id` = "assurer:member", and a unique index on the pair): at most one per pair.
* `domains`: one claim per (member, domain) (unique index); `request_ids` lists every
  verification request it made, so outcomes are matched on the request id.
* `requests` (`_id` = request id) and `certificates` (`_id` = serial).
* `acme_bindings` (`_id` = the binding's key id): a member's ACME External Account Bindings (class,
  label, created / revoked); never their HMAC key, which only the member (once) and the ACME service see.
* `audit`: the hash-chained audit log (shared/audit.py).

The outbox rule, in one place (`_announce`): a change and the events announcing it are written in
one document update (the `_outbox` array, shared/outbox.py), then the events are published at once
(from the entries just written, without reading the document back);
if publishing fails the write stands and the outbox sweep publishes later, so an HTTP answer never
depends on Kafka being reachable at that instant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared import outbox
from shared.audit import AuditLog
from shared.concurrency import at_once
from shared.domain_methods import current_request_order
from shared.events import CloudEvent
from shared.logging import get_logger
from shared.mongo import insert_once, update_each
from shared.outbox import Outbox

Document = dict[str, Any]
log = get_logger("registration.store")

INDEXES: dict[str, list[IndexModel]] = {
    "members": [outbox.INDEX],
    "addresses": [IndexModel([("member_id", ASCENDING)], name="member")],
    "email_tokens": [IndexModel([("expires_at", ASCENDING)], name="expiry")],
    "sessions": [
        IndexModel([("expires_at", ASCENDING)], name="expiry"),
        IndexModel([("member_id", ASCENDING)], name="member"),
    ],
    "rate_limits": [IndexModel([("expires_at", ASCENDING)], name="expiry")],
    "login_guard": [IndexModel([("expires_at", ASCENDING)], name="expiry")],
    "assurances": [
        IndexModel([("assurer_id", ASCENDING), ("member_id", ASCENDING)], unique=True, name="once_per_pair"),
        IndexModel([("member_id", ASCENDING)], name="member"),
        outbox.INDEX,
    ],
    "domains": [
        IndexModel([("member_id", ASCENDING), ("domain", ASCENDING)], unique=True, name="member_domain"),
        IndexModel([("request_ids", ASCENDING)], name="request"),
        outbox.INDEX,
    ],
    "requests": [IndexModel([("member_id", ASCENDING)], name="member"), outbox.INDEX],
    "certificates": [
        IndexModel([("member_id", ASCENDING)], name="member"),
        IndexModel([("request_id", ASCENDING)], name="request"),
        outbox.INDEX,
    ],
    "blocked_keys": [outbox.INDEX],
    "acme_bindings": [IndexModel([("member_id", ASCENDING)], name="member"), outbox.INDEX],
    "acme_revocations_waiting": [IndexModel([("serial", ASCENDING)], name="serial")],
}
OUTBOX_COLLECTIONS = ("members", "assurances", "domains", "requests", "certificates", "blocked_keys",
                      "acme_bindings")
EXPIRING_COLLECTIONS = ("sessions", "email_tokens", "rate_limits", "login_guard")
HIDDEN = {outbox.FIELD: 0}
# A request's next change (its CAA verdict, its issuance) usually comes within a second of the event that
# asks for it; that change empties the outbox, so the published event is pulled only if it has not come
# within this many seconds (`Outbox.flush_many`; shorter than the sweep's grace, shared/outbox.py).
REQUEST_PULL_WITHIN = 2.0


@dataclasses.dataclass(frozen=True)
class RequestChange:
    """One request's change with the event announcing it: `fields` set and `event` queued if the request
    still matches `expect` (`update_requests_with_events`)."""

    request_id: str
    expect: Document
    fields: Document
    event: CloudEvent


class RegistrationStore(Protocol):
    """What registration's domain logic asks of its database. Documents come back without `_outbox`."""

    # members and the addresses they hold
    async def member(self, member_id: str) -> Document | None: ...
    async def password_hash(self, member_id: str) -> str | None: ...
    async def replace_password_hash(self, member_id: str, old: str, new: str) -> bool:
        """Compare-and-set of a member's password hash; False when it is no longer `old`."""
    async def address_holder(self, address: str) -> str | None: ...
    async def claim_address(self, address: str, email_id: str, member_id: str, now: datetime) -> str | None:
        """Reserve `address` for `member_id`: None when it is theirs now, else who holds it (`member_id` itself
        when the account already had it)."""
    async def insert_member_with_events(self, doc: Document, events: Sequence[CloudEvent]) -> None: ...
    async def update_member_with_events(self, member_id: str, fields: Document,
                                        events: Sequence[CloudEvent]) -> None: ...
    async def verify_email_with_event(self, member_id: str, email_id: str, now: datetime,
                                      event: CloudEvent, *, stale_before: datetime | None = None) -> bool:
        """Mark an address verified (again) with its event, if it is unverified or was confirmed before
        `stale_before`; False otherwise (already confirmed recently: a replayed link changes nothing)."""

    # bearer tokens and rate-limit windows
    async def insert_email_token(self, doc: Document) -> None: ...
    async def email_token(self, digest: str) -> Document | None: ...
    async def delete_email_token(self, digest: str) -> None: ...
    async def insert_session(self, doc: Document) -> None: ...
    async def session(self, digest: str) -> Document | None: ...
    async def delete_session(self, digest: str) -> None: ...
    async def delete_sessions_of(self, member_id: str, *, keep: str | None) -> int:
        """End every session of a member but `keep` (a digest); returns how many ended."""
    async def count_hit(self, window_id: str, expires_at: datetime) -> int:
        """Add one to a rate-limit window's counter (created at 0 if new); returns the new count."""
    async def delete_expired(self, now: datetime) -> int: ...
    # login backoff (login_guard.py): `_id` = "account:<digest>" or "client:<digest>"
    async def login_guard(self, key: str) -> Document | None: ...
    async def count_login_failure(self, key: str, expires_at: datetime) -> int:
        """One more failed login for the account; returns the count."""
    async def set_login_wait(self, key: str, next_at: datetime) -> None: ...
    async def claim_login_slot(self, key: str, was: datetime | None, next_at: datetime) -> bool:
        """Move the account's next slot from `was` (None: not set yet) to `next_at`; False if another
        attempt took it first."""
    async def forget_login_failures(self, key: str) -> None: ...
    async def remember_login_client(self, key: str, expires_at: datetime) -> None: ...

    # the web of trust
    async def insert_assurance_with_event(self, doc: Document, event: CloudEvent) -> bool:
        """False (nothing written) if this assurer already assured this member."""
    async def assurances_received(self, member_id: str) -> list[Document]: ...
    async def assurances_given(self, assurer_id: str) -> list[Document]: ...

    # domain claims
    async def insert_domain(self, doc: Document) -> bool:
        """False (nothing written) if the member already claims this domain."""
    async def domain(self, claim_id: str, member_id: str) -> Document | None: ...
    async def domains_of(self, member_id: str) -> list[Document]: ...
    async def record_verification_request(self, claim_id: str, request_id: str, fields: Document,
                                          event: CloudEvent) -> None: ...
    async def record_domain_verified(self, request_id: str, member_id: str, domain: str, fields: Document) -> bool:
        """Set the verified state on the claim that made this request; False if no claim did."""
    async def record_acme_verification(self, request_id: str, member_id: str, domain: str, fields: Document,
                                       new_claim: Document) -> None:
        """A verification the ACME service asked for: set it on the member's claim of the domain, making
        the claim (`new_claim`) if there is none; redelivery changes nothing more."""
    async def record_domain_failed(self, request_id: str, member_id: str, fields: Document) -> bool:
        """Fail the claim whose *current* request this is, only while it is pending; False otherwise."""
    async def update_domain(self, claim_id: str, member_id: str, fields: Document) -> None:
        """Set fields on the member's claim (the random value of a DNS or website challenge)."""

    # certificate requests and certificates
    async def insert_request_with_event(self, doc: Document, event: CloudEvent) -> None: ...
    async def request(self, request_id: str, member_id: str) -> Document | None: ...
    async def requests_of(self, member_id: str) -> list[Document]:
        """A member's requests, without their CSR PEM."""
    async def record_issued(self, issued: Sequence[tuple[str, str]], now: datetime) -> None:
        """Mark requests issued, each (request id, serial), in one write."""
    async def record_signer_rejected(self, request_id: str, reasons: list[str], now: datetime) -> None:
        """Mark an approved request failed; a request in any other status stays as it is."""
    async def request_by_id(self, request_id: str) -> Document | None:
        """A request whoever it belongs to (for outcomes arriving as events)."""
    async def requests_by_ids(self, request_ids: Sequence[str]) -> dict[str, Document]:
        """`request_by_id` for a batch: the requests found, by id."""
    async def update_requests_with_events(self, changes: Sequence[RequestChange]) -> set[str]:
        """Each change's `fields` set and its event queued if the request still matches its `expect`, in one
        write and one publish: the ids of the requests that matched (and were changed)."""
    async def record_certificates(self, certificates: Sequence[tuple[str, Document]]) -> None:
        """Store issued certificates, each (serial, fields), in one write: each once; a second record of the
        same serial changes nothing."""
    async def record_revoked(self, serial: str, revoked_at: datetime, reason: str) -> None: ...
    async def certificate(self, serial: str, member_id: str | None) -> Document | None:
        """The certificate with this serial (of this member, unless `member_id` is None)."""
    async def certificates_of(self, member_id: str) -> list[Document]: ...
    async def record_revocation_request(self, serial: str, fields: Document, event: CloudEvent) -> None:
        """Set `fields` and queue the event unless the certificate is revoked already."""

    # keys reported compromised (`_id` = spki_sha256, shared/key_compromise.py)
    async def block_key_with_event(self, doc: Document, event: CloudEvent) -> bool:
        """Store the blocked key with its `cert.key_compromised` queued; False when it was blocked already."""
    async def blocked_key(self, spki_sha256: str) -> Document | None: ...

    # ACME External Account Bindings (`_id` = key id, shared/acme_binding.py)
    async def insert_acme_binding_with_event(self, doc: Document, event: CloudEvent) -> None: ...
    async def acme_binding(self, key_id: str, member_id: str | None) -> Document | None:
        """The binding with this key id (of this member, unless `member_id` is None)."""
    async def acme_bindings_of(self, member_id: str) -> list[Document]: ...
    async def revoke_acme_binding_with_event(self, key_id: str, member_id: str, fields: Document,
                                             event: CloudEvent) -> bool:
        """Set `fields` and queue the event while the member's binding is not revoked; False otherwise."""

    # ACME revocations of serials not recorded yet (`_id` = the ACME request id, acme_requests.py)
    async def park_acme_revocation(self, doc: Document) -> bool:
        """Keep a revocation until its certificate is recorded; False when it is kept already."""
    async def waiting_acme_revocations(self, serials: Sequence[str] | None) -> list[Document]:
        """The revocations kept for these serials (every one kept, when None)."""
    async def drop_acme_revocation(self, request_id: str) -> None: ...

    # the audit log
    async def append_audit(self, actor: str, action: str, subject: str, details: Document) -> None: ...


class MongoRegistrationStore:
    def __init__(self, db: AsyncDatabase[Document], *, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.outbox: Outbox | None = None  # set once the producer runs; without it events wait for a sweep
        self._audit = AuditLog(db, clock=clock)
        self._members = db["members"]
        self._addresses = db["addresses"]
        self._email_tokens = db["email_tokens"]
        self._sessions = db["sessions"]
        self._rate_limits = db["rate_limits"]
        self._login_guard = db["login_guard"]
        self._assurances = db["assurances"]
        self._domains = db["domains"]
        self._requests = db["requests"]
        self._certificates = db["certificates"]
        self._blocked_keys = db["blocked_keys"]
        self._acme_bindings = db["acme_bindings"]
        self._acme_revocations_waiting = db["acme_revocations_waiting"]

    def outbox_collections(self) -> list[AsyncCollection[Document]]:
        return [self.db[name] for name in OUTBOX_COLLECTIONS]

    async def _announce(self, collection: AsyncCollection[Document], document_id: Any,
                        written: list[Document], *, pull_within: float = 0.0) -> None:
        """Publish what the last write queued (`written`, its stored entries); on failure leave it to the sweep."""
        await self._announce_many(collection, {document_id: written}, pull_within=pull_within)

    async def _announce_many(self, collection: AsyncCollection[Document], written: dict[Any, list[Document]],
                             *, pull_within: float = 0.0) -> None:
        """`_announce` for the documents of one batched write, in one publish (`Outbox.flush_many`)."""
        if self.outbox is None:
            return
        try:
            await self.outbox.flush_many(collection, written, pull_within=pull_within)
        except Exception as exc:
            log.warning("publishing deferred to the outbox sweep", collection=collection.name,
                        error=f"{type(exc).__name__}: {exc}")

    # members and the addresses they hold

    async def member(self, member_id: str) -> Document | None:
        return await self._members.find_one({"_id": member_id}, HIDDEN)

    async def password_hash(self, member_id: str) -> str | None:
        doc = await self._members.find_one({"_id": member_id}, {"password_hash": 1})
        return str(doc["password_hash"]) if doc else None

    async def replace_password_hash(self, member_id: str, old: str, new: str) -> bool:
        result = await self._members.update_one({"_id": member_id, "password_hash": old},
                                                {"$set": {"password_hash": new}})
        return result.modified_count == 1

    async def address_holder(self, address: str) -> str | None:
        claim = await self._addresses.find_one({"_id": address})
        return str(claim["member_id"]) if claim else None

    async def claim_address(self, address: str, email_id: str, member_id: str, now: datetime) -> str | None:
        if await insert_once(self._addresses, {"_id": address, "member_id": member_id, "claimed_at": now}):
            return None
        holder = await self.address_holder(address)
        if holder is None:  # the claim vanished between insert and read: held by no account we know
            return ""
        if holder == member_id:
            return holder
        held = await self._members.find_one({"_id": holder, f"emails.{email_id}": {"$exists": True}}, {"_id": 1})
        if held is not None:
            return holder
        # A claim left by a crash between claiming and writing the member: take it over.
        result = await self._addresses.update_one(
            {"_id": address, "member_id": holder}, {"$set": {"member_id": member_id, "claimed_at": now}}
        )
        return None if result.modified_count == 1 else holder

    async def insert_member_with_events(self, doc: Document, events: Sequence[CloudEvent]) -> None:
        written = [outbox.entry(e) for e in events]
        await self._members.insert_one({**doc, outbox.FIELD: written})
        await self._announce(self._members, doc["_id"], written)

    async def update_member_with_events(self, member_id: str, fields: Document,
                                        events: Sequence[CloudEvent]) -> None:
        written = [outbox.entry(e) for e in events]
        change: Document = {"$push": outbox.push(written)}
        if fields:
            change["$set"] = fields
        if (await self._members.update_one({"_id": member_id}, change)).matched_count:
            await self._announce(self._members, member_id, written)

    async def verify_email_with_event(self, member_id: str, email_id: str, now: datetime,
                                      event: CloudEvent, *, stale_before: datetime | None = None) -> bool:
        unconfirmed: list[Document] = [{f"emails.{email_id}.verified": False}]
        if stale_before is not None:
            unconfirmed.append({f"emails.{email_id}.verified": True,
                                f"emails.{email_id}.verified_at": {"$lt": stale_before}})
        written = [outbox.entry(event)]
        result = await self._members.update_one(
            {"_id": member_id, "$or": unconfirmed},
            {
                "$set": {f"emails.{email_id}.verified": True, f"emails.{email_id}.verified_at": now},
                "$push": outbox.push(written),
            },
        )
        if result.modified_count != 1:
            return False
        await self._announce(self._members, member_id, written)
        return True

    # bearer tokens and rate-limit windows

    async def insert_email_token(self, doc: Document) -> None:
        await self._email_tokens.insert_one(doc)

    async def email_token(self, digest: str) -> Document | None:
        return await self._email_tokens.find_one({"_id": digest})

    async def delete_email_token(self, digest: str) -> None:
        await self._email_tokens.delete_one({"_id": digest})

    async def insert_session(self, doc: Document) -> None:
        await self._sessions.insert_one(doc)

    async def session(self, digest: str) -> Document | None:
        return await self._sessions.find_one({"_id": digest})

    async def delete_session(self, digest: str) -> None:
        await self._sessions.delete_one({"_id": digest})

    async def delete_sessions_of(self, member_id: str, *, keep: str | None) -> int:
        query: Document = {"member_id": member_id}
        if keep is not None:
            query["_id"] = {"$ne": keep}
        return (await self._sessions.delete_many(query)).deleted_count

    async def count_hit(self, window_id: str, expires_at: datetime) -> int:
        for attempt in range(2):
            try:
                doc = await self._rate_limits.find_one_and_update(
                    {"_id": window_id},
                    {"$inc": {"count": 1}, "$setOnInsert": {"expires_at": expires_at}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
                return int((doc or {}).get("count", 0))
            except DuplicateKeyError:  # two first hits raced on the upsert; the second one retries
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def login_guard(self, key: str) -> Document | None:
        return await self._login_guard.find_one({"_id": key})

    async def count_login_failure(self, key: str, expires_at: datetime) -> int:
        for attempt in range(2):
            try:
                doc = await self._login_guard.find_one_and_update(
                    {"_id": key}, {"$inc": {"failures": 1}, "$set": {"expires_at": expires_at}},
                    upsert=True, return_document=ReturnDocument.AFTER)
                return int((doc or {}).get("failures", 0))
            except DuplicateKeyError:  # two first failures raced on the upsert; the second one retries
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def set_login_wait(self, key: str, next_at: datetime) -> None:
        await self._login_guard.update_one({"_id": key}, {"$set": {"next_at": next_at}})

    async def claim_login_slot(self, key: str, was: datetime | None, next_at: datetime) -> bool:
        result = await self._login_guard.update_one({"_id": key, "next_at": was}, {"$set": {"next_at": next_at}})
        return result.modified_count == 1

    async def forget_login_failures(self, key: str) -> None:
        await self._login_guard.delete_one({"_id": key})

    async def remember_login_client(self, key: str, expires_at: datetime) -> None:
        await self._login_guard.update_one({"_id": key}, {"$set": {"expires_at": expires_at}}, upsert=True)

    async def delete_expired(self, now: datetime) -> int:
        removed = 0
        for name in EXPIRING_COLLECTIONS:
            result = await self.db[name].delete_many({"expires_at": {"$lte": now}})
            removed += result.deleted_count
        return removed

    # the web of trust

    async def insert_assurance_with_event(self, doc: Document, event: CloudEvent) -> bool:
        written = [outbox.entry(event)]
        if not await insert_once(self._assurances, {**doc, outbox.FIELD: written}):
            return False
        await self._announce(self._assurances, doc["_id"], written)
        return True

    async def assurances_received(self, member_id: str) -> list[Document]:
        return await self._assurances.find({"member_id": member_id}, HIDDEN).to_list()

    async def assurances_given(self, assurer_id: str) -> list[Document]:
        return await self._assurances.find({"assurer_id": assurer_id}, HIDDEN).to_list()

    # domain claims

    async def insert_domain(self, doc: Document) -> bool:
        return await insert_once(self._domains, doc)

    async def domain(self, claim_id: str, member_id: str) -> Document | None:
        return await self._domains.find_one({"_id": claim_id, "member_id": member_id}, HIDDEN)

    async def domains_of(self, member_id: str) -> list[Document]:
        return await self._domains.find({"member_id": member_id}, HIDDEN).to_list()

    async def record_verification_request(self, claim_id: str, request_id: str, fields: Document,
                                          event: CloudEvent) -> None:
        written = [outbox.entry(event)]
        push = {"$push": {"request_ids": request_id, **outbox.push(written)}}
        # The claim follows the request domain_verify keeps (shared.domain_methods.current_request_order):
        # a request older than the claim's current one (two tries racing) is recorded, not made current.
        requested_at, _ = current_request_order(fields["requested_at"], request_id)
        newer = {"$or": [{"requested_at": {"$lt": requested_at}}, {"requested_at": None},
                         {"requested_at": requested_at, "request_id": {"$lt": request_id}}]}
        result = await self._domains.update_one({"_id": claim_id, **newer},
                                                {"$set": {**fields, "request_id": request_id}, **push})
        if not result.matched_count:
            result = await self._domains.update_one({"_id": claim_id}, push)
        if result.matched_count:
            await self._announce(self._domains, claim_id, written)

    async def record_domain_verified(self, request_id: str, member_id: str, domain: str, fields: Document) -> bool:
        result = await self._domains.update_one(
            {"request_ids": request_id, "member_id": member_id, "domain": domain}, {"$set": fields}
        )
        return result.matched_count > 0

    async def record_acme_verification(self, request_id: str, member_id: str, domain: str, fields: Document,
                                       new_claim: Document) -> None:
        await self._domains.update_one(
            {"member_id": member_id, "domain": domain},
            {"$set": fields, "$addToSet": {"request_ids": request_id},
             "$setOnInsert": {k: v for k, v in new_claim.items() if k not in fields and k != "request_ids"}},
            upsert=True)

    async def record_domain_failed(self, request_id: str, member_id: str, fields: Document) -> bool:
        result = await self._domains.update_one(
            {"request_id": request_id, "member_id": member_id, "status": "pending"},
            {"$set": {"status": "failed", **fields}},
        )
        return result.matched_count > 0

    async def update_domain(self, claim_id: str, member_id: str, fields: Document) -> None:
        await self._domains.update_one({"_id": claim_id, "member_id": member_id}, {"$set": fields})

    # certificate requests and certificates

    async def insert_request_with_event(self, doc: Document, event: CloudEvent) -> None:
        written = [outbox.entry(event)]
        await self._requests.insert_one({**doc, outbox.FIELD: written})
        await self._announce(self._requests, doc["_id"], written, pull_within=REQUEST_PULL_WITHIN)

    async def request(self, request_id: str, member_id: str) -> Document | None:
        return await self._requests.find_one({"_id": request_id, "member_id": member_id}, HIDDEN)

    async def requests_of(self, member_id: str) -> list[Document]:
        return await self._requests.find({"member_id": member_id}, {**HIDDEN, "csr_pem": 0}).to_list()

    async def record_issued(self, issued: Sequence[tuple[str, str]], now: datetime) -> None:
        # An issued request's outbox can only hold published events (its approval reached the signer, and
        # what came before it was answered), so the write empties it: the approval's pull is not needed.
        await update_each(self._requests, [
            ({"_id": request_id},
             {"$set": {"status": "issued", "serial": serial, "updated_at": now, outbox.FIELD: []}})
            for request_id, serial in issued
        ])
        if self.outbox is not None:
            self.outbox.superseded(self._requests, [request_id for request_id, _ in issued])

    async def record_signer_rejected(self, request_id: str, reasons: list[str], now: datetime) -> None:
        await self._requests.update_one(
            {"_id": request_id, "status": "approved"},
            {"$set": {"status": "failed", "reasons": reasons, "updated_at": now}},
        )

    async def request_by_id(self, request_id: str) -> Document | None:
        return await self._requests.find_one({"_id": request_id}, HIDDEN)

    async def requests_by_ids(self, request_ids: Sequence[str]) -> dict[str, Document]:
        # One `_id` equality each, all at once: FerretDB v1 does not push `$in` down to its index and would
        # read the whole collection for every batch.
        found = await at_once(*(self._requests.find_one({"_id": i}, HIDDEN) for i in sorted(set(request_ids))))
        return {doc["_id"]: doc for doc in found if doc is not None}

    async def update_requests_with_events(self, changes: Sequence[RequestChange]) -> set[str]:
        by_id = {change.request_id: change for change in changes}  # a redelivered event twice: once
        if not by_id:
            return set()
        written = {request_id: [outbox.entry(change.event)] for request_id, change in by_id.items()}
        # The outbox is replaced, not pushed to: a request waiting for a CAA verdict holds only the check the
        # verdict answers, an approved one only the approval the signer answered, both published. So the
        # pull of the previous event is not needed (`Outbox.superseded`).
        matched = await update_each(self._requests, [
            ({"_id": request_id, **change.expect}, {"$set": {**change.fields, outbox.FIELD: written[request_id]}})
            for request_id, change in by_id.items()
        ])
        changed = set(by_id) if matched else set()
        if 0 < matched < len(by_id):
            # Another writer got to some first (a second delivery of the same verdict, on another replica):
            # a request was changed by this write if the event it queued is in its outbox. (If a sweep has
            # published and pulled it in the meantime, the event is out, and only the caller's follow-up,
            # such as its audit entry, is skipped.)
            found = await at_once(*(self._requests.find_one({"_id": i}, {outbox.FIELD: 1}) for i in sorted(by_id)))
            queued = {doc["_id"]: {e.get("id") for e in doc.get(outbox.FIELD) or []} for doc in found if doc}
            changed = {i for i in by_id if by_id[i].event.id in queued.get(i, set())}
        if self.outbox is not None:
            self.outbox.superseded(self._requests, changed)
        await self._announce_many(self._requests, {i: written[i] for i in changed}, pull_within=REQUEST_PULL_WITHIN)
        return changed

    async def record_certificates(self, certificates: Sequence[tuple[str, Document]]) -> None:
        await update_each(self._certificates, [({"_id": serial}, {"$setOnInsert": fields})
                                                for serial, fields in certificates], upsert=True)

    async def record_revoked(self, serial: str, revoked_at: datetime, reason: str) -> None:
        await self._certificates.update_one(
            {"_id": serial},
            {"$set": {"status": "revoked", "revoked_at": revoked_at, "revocation_reason": reason}},
        )

    async def certificate(self, serial: str, member_id: str | None) -> Document | None:
        query: Document = {"_id": serial} if member_id is None else {"_id": serial, "member_id": member_id}
        return await self._certificates.find_one(query, HIDDEN)

    async def certificates_of(self, member_id: str) -> list[Document]:
        return await self._certificates.find({"member_id": member_id}, HIDDEN).to_list()

    async def record_revocation_request(self, serial: str, fields: Document, event: CloudEvent) -> None:
        written = [outbox.entry(event)]
        result = await self._certificates.update_one(
            {"_id": serial, "status": {"$ne": "revoked"}}, {"$set": fields, "$push": outbox.push(written)}
        )
        if result.matched_count:
            await self._announce(self._certificates, serial, written)

    # keys reported compromised

    async def block_key_with_event(self, doc: Document, event: CloudEvent) -> bool:
        written = [outbox.entry(event)]
        inserted = await insert_once(self._blocked_keys, {**doc, outbox.FIELD: written})
        if inserted:
            await self._announce(self._blocked_keys, doc["_id"], written)
        return inserted

    async def blocked_key(self, spki_sha256: str) -> Document | None:
        return await self._blocked_keys.find_one({"_id": spki_sha256}, HIDDEN)

    # ACME External Account Bindings

    async def insert_acme_binding_with_event(self, doc: Document, event: CloudEvent) -> None:
        written = [outbox.entry(event)]
        await self._acme_bindings.insert_one({**doc, outbox.FIELD: written})
        await self._announce(self._acme_bindings, doc["_id"], written)

    async def acme_binding(self, key_id: str, member_id: str | None) -> Document | None:
        query: Document = {"_id": key_id} if member_id is None else {"_id": key_id, "member_id": member_id}
        return await self._acme_bindings.find_one(query, HIDDEN)

    async def acme_bindings_of(self, member_id: str) -> list[Document]:
        return await self._acme_bindings.find({"member_id": member_id}, HIDDEN).to_list()

    async def revoke_acme_binding_with_event(self, key_id: str, member_id: str, fields: Document,
                                             event: CloudEvent) -> bool:
        written = [outbox.entry(event)]
        result = await self._acme_bindings.update_one(
            {"_id": key_id, "member_id": member_id, "revoked_at": None},
            {"$set": fields, "$push": outbox.push(written)},
        )
        if result.matched_count == 0:
            return False
        await self._announce(self._acme_bindings, key_id, written)
        return True

    # ACME revocations of serials not recorded yet

    async def park_acme_revocation(self, doc: Document) -> bool:
        return await insert_once(self._acme_revocations_waiting, doc)

    async def waiting_acme_revocations(self, serials: Sequence[str] | None) -> list[Document]:
        query: Document = {} if serials is None else {"serial": {"$in": list(serials)}}
        return await self._acme_revocations_waiting.find(query).to_list()

    async def drop_acme_revocation(self, request_id: str) -> None:
        await self._acme_revocations_waiting.delete_one({"_id": request_id})

    # the audit log

    async def append_audit(self, actor: str, action: str, subject: str, details: Document) -> None:
        await self._audit.append(actor=actor, action=action, subject=subject, details=details)
