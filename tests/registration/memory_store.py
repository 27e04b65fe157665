"""An in-memory RegistrationStore for unit tests of registration's domain logic (no MongoDB, no Kafka).

It keeps what the domain relies on: one account per address, one claim per (member, domain), one
assurance per (assurer, member), "only while" conditions of the conditional updates, and the events
each write queued (`events()` reads them back; nothing publishes them, as with no outbox attached).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from services.registration.context import Context
from services.registration.members import Member
from services.registration.settings import RegistrationSettings
from services.registration.store import RegistrationStore, RequestChange
from shared.config import HttpSettings, KafkaSettings, MongoSettings
from shared.domain_methods import current_request_order
from shared.events import BY_NAME, CloudEvent
from shared.settings import CommonSettings
from tests.acme_keys import ACME_SEALER
from tests.approval_keys import RA
from tests.mail_keys import SEALER

Document = dict[str, Any]


def _set(doc: Document, fields: Document) -> None:
    """MongoDB's `$set` with dotted paths (`emails.<id>.verified`)."""
    for path, value in fields.items():
        *parents, leaf = path.split(".")
        target = doc
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = copy.deepcopy(value)


class MemoryStore:
    def __init__(self) -> None:
        self.collections: dict[str, dict[Any, Document]] = {
            name: {} for name in ("members", "addresses", "email_tokens", "sessions", "rate_limits", "login_guard",
                                  "assurances", "domains", "requests", "certificates", "blocked_keys",
                                  "acme_bindings", "acme_revocations_waiting")
        }
        self.queued: list[tuple[str, Any, CloudEvent]] = []  # (collection, document id, event)
        self.audit: list[Document] = []

    def events(self, name: str | None = None) -> list[CloudEvent]:
        """The queued events, oldest first; only those of event `name` ("csr.approved") if given."""
        return [e for _, _, e in self.queued if name is None or e.type == BY_NAME[name].type]

    def _queue(self, collection: str, doc_id: Any, events: Sequence[CloudEvent]) -> None:
        self.queued.extend((collection, doc_id, e) for e in events)

    def _get(self, collection: str, doc_id: Any, **conditions: Any) -> Document | None:
        doc = self.collections[collection].get(doc_id)
        if doc is None or any(doc.get(k) != v for k, v in conditions.items()):
            return None
        return copy.deepcopy(doc)

    def _all(self, collection: str, **conditions: Any) -> list[Document]:
        return [copy.deepcopy(d) for d in self.collections[collection].values()
                if all(d.get(k) == v for k, v in conditions.items())]

    # members and the addresses they hold

    async def member(self, member_id: str) -> Document | None:
        return self._get("members", member_id)

    async def password_hash(self, member_id: str) -> str | None:
        doc = self.collections["members"].get(member_id)
        return str(doc["password_hash"]) if doc else None

    async def replace_password_hash(self, member_id: str, old: str, new: str) -> bool:
        doc = self.collections["members"].get(member_id)
        if doc is None or doc.get("password_hash") != old:
            return False
        doc["password_hash"] = new
        return True

    async def address_holder(self, address: str) -> str | None:
        claim = self.collections["addresses"].get(address)
        return str(claim["member_id"]) if claim else None

    async def claim_address(self, address: str, email_id: str, member_id: str, now: datetime) -> str | None:
        claims = self.collections["addresses"]
        claim = claims.get(address)
        if claim is None:
            claims[address] = {"_id": address, "member_id": member_id, "claimed_at": now}
            return None
        holder = str(claim["member_id"])
        if holder == member_id:
            return holder
        holder_doc = self.collections["members"].get(holder)
        if holder_doc is not None and email_id in holder_doc.get("emails", {}):
            return holder
        claims[address] = {"_id": address, "member_id": member_id, "claimed_at": now}  # a crash's leftover
        return None

    async def insert_member_with_events(self, doc: Document, events: Sequence[CloudEvent]) -> None:
        if doc["_id"] in self.collections["members"]:
            raise KeyError(f"duplicate member {doc['_id']}")
        self.collections["members"][doc["_id"]] = copy.deepcopy(doc)
        self._queue("members", doc["_id"], events)

    async def update_member_with_events(self, member_id: str, fields: Document,
                                        events: Sequence[CloudEvent]) -> None:
        doc = self.collections["members"].get(member_id)
        if doc is None:
            return
        _set(doc, fields)
        self._queue("members", member_id, events)

    async def verify_email_with_event(self, member_id: str, email_id: str, now: datetime,
                                      event: CloudEvent, *, stale_before: datetime | None = None) -> bool:
        doc = self.collections["members"].get(member_id)
        entry = (doc or {}).get("emails", {}).get(email_id)
        if entry is None:
            return False
        stale = stale_before is not None and entry.get("verified") is True and entry["verified_at"] < stale_before
        if entry.get("verified") is not False and not stale:
            return False
        entry.update(verified=True, verified_at=now)
        self._queue("members", member_id, [event])
        return True

    # bearer tokens and rate-limit windows

    async def insert_email_token(self, doc: Document) -> None:
        self.collections["email_tokens"][doc["_id"]] = copy.deepcopy(doc)

    async def email_token(self, digest: str) -> Document | None:
        return self._get("email_tokens", digest)

    async def delete_email_token(self, digest: str) -> None:
        self.collections["email_tokens"].pop(digest, None)

    async def insert_session(self, doc: Document) -> None:
        self.collections["sessions"][doc["_id"]] = copy.deepcopy(doc)

    async def session(self, digest: str) -> Document | None:
        return self._get("sessions", digest)

    async def delete_session(self, digest: str) -> None:
        self.collections["sessions"].pop(digest, None)

    async def delete_sessions_of(self, member_id: str, *, keep: str | None) -> int:
        ended = [d for d, s in self.collections["sessions"].items() if s["member_id"] == member_id and d != keep]
        for digest in ended:
            del self.collections["sessions"][digest]
        return len(ended)

    async def count_hit(self, window_id: str, expires_at: datetime) -> int:
        window = self.collections["rate_limits"].setdefault(
            window_id, {"_id": window_id, "count": 0, "expires_at": expires_at}
        )
        window["count"] += 1
        return int(window["count"])

    async def delete_expired(self, now: datetime) -> int:
        removed = 0
        for name in ("sessions", "email_tokens", "rate_limits", "login_guard"):
            docs = self.collections[name]
            for key in [k for k, d in docs.items() if d["expires_at"] <= now]:
                del docs[key]
                removed += 1
        return removed

    # login backoff

    async def login_guard(self, key: str) -> Document | None:
        return self._get("login_guard", key)

    async def count_login_failure(self, key: str, expires_at: datetime) -> int:
        doc = self.collections["login_guard"].setdefault(key, {"_id": key, "failures": 0})
        doc["failures"] += 1
        doc["expires_at"] = expires_at
        return int(doc["failures"])

    async def set_login_wait(self, key: str, next_at: datetime) -> None:
        if key in self.collections["login_guard"]:
            self.collections["login_guard"][key]["next_at"] = next_at

    async def claim_login_slot(self, key: str, was: datetime | None, next_at: datetime) -> bool:
        doc = self.collections["login_guard"].get(key)
        if doc is None or doc.get("next_at") != was:
            return False
        doc["next_at"] = next_at
        return True

    async def forget_login_failures(self, key: str) -> None:
        self.collections["login_guard"].pop(key, None)

    async def remember_login_client(self, key: str, expires_at: datetime) -> None:
        self.collections["login_guard"].setdefault(key, {"_id": key})["expires_at"] = expires_at

    # the web of trust

    async def insert_assurance_with_event(self, doc: Document, event: CloudEvent) -> bool:
        pair = (doc["assurer_id"], doc["member_id"])
        docs = self.collections["assurances"]
        if doc["_id"] in docs or any((d["assurer_id"], d["member_id"]) == pair for d in docs.values()):
            return False
        docs[doc["_id"]] = copy.deepcopy(doc)
        self._queue("assurances", doc["_id"], [event])
        return True

    async def assurances_received(self, member_id: str) -> list[Document]:
        return self._all("assurances", member_id=member_id)

    async def assurances_given(self, assurer_id: str) -> list[Document]:
        return self._all("assurances", assurer_id=assurer_id)

    # domain claims

    async def insert_domain(self, doc: Document) -> bool:
        docs = self.collections["domains"]
        if doc["_id"] in docs or self._all("domains", member_id=doc["member_id"], domain=doc["domain"]):
            return False
        docs[doc["_id"]] = copy.deepcopy(doc)
        return True

    async def domain(self, claim_id: str, member_id: str) -> Document | None:
        return self._get("domains", claim_id, member_id=member_id)

    async def domains_of(self, member_id: str) -> list[Document]:
        return self._all("domains", member_id=member_id)

    async def record_verification_request(self, claim_id: str, request_id: str, fields: Document,
                                          event: CloudEvent) -> None:
        doc = self.collections["domains"].get(claim_id)
        if doc is None:
            return
        current = doc.get("requested_at")
        if current is None or current_request_order(current, doc["request_id"]) < current_request_order(
                fields["requested_at"], request_id):
            _set(doc, {**fields, "request_id": request_id})
        doc.setdefault("request_ids", []).append(request_id)
        self._queue("domains", claim_id, [event])

    async def record_domain_verified(self, request_id: str, member_id: str, domain: str, fields: Document) -> bool:
        for doc in self.collections["domains"].values():
            if request_id in doc.get("request_ids", []) and doc["member_id"] == member_id and doc["domain"] == domain:
                _set(doc, fields)
                return True
        return False

    async def record_acme_verification(self, request_id: str, member_id: str, domain: str, fields: Document,
                                       new_claim: Document) -> None:
        for doc in self.collections["domains"].values():
            if (doc["member_id"], doc["domain"]) == (member_id, domain):
                break
        else:
            doc = copy.deepcopy(new_claim)
            self.collections["domains"][doc["_id"]] = doc
        _set(doc, fields)
        if request_id not in doc.setdefault("request_ids", []):
            doc["request_ids"].append(request_id)

    async def record_domain_failed(self, request_id: str, member_id: str, fields: Document) -> bool:
        for doc in self.collections["domains"].values():
            if (doc.get("request_id"), doc["member_id"], doc.get("status")) == (request_id, member_id, "pending"):
                doc.update(status="failed", **copy.deepcopy(fields))
                return True
        return False

    async def update_domain(self, claim_id: str, member_id: str, fields: Document) -> None:
        doc = self.collections["domains"].get(claim_id)
        if doc is not None and doc["member_id"] == member_id:
            _set(doc, fields)

    # certificate requests and certificates

    async def insert_request_with_event(self, doc: Document, event: CloudEvent) -> None:
        if doc["_id"] in self.collections["requests"]:
            raise KeyError(f"duplicate request {doc['_id']}")
        self.collections["requests"][doc["_id"]] = copy.deepcopy(doc)
        self._queue("requests", doc["_id"], [event])

    async def request(self, request_id: str, member_id: str) -> Document | None:
        return self._get("requests", request_id, member_id=member_id)

    async def requests_of(self, member_id: str) -> list[Document]:
        return [{k: v for k, v in d.items() if k != "csr_pem"} for d in self._all("requests", member_id=member_id)]

    async def record_issued(self, issued: Sequence[tuple[str, str]], now: datetime) -> None:
        for request_id, serial in issued:
            doc = self.collections["requests"].get(request_id)
            if doc is not None:
                doc.update(status="issued", serial=serial, updated_at=now)

    async def record_signer_rejected(self, request_id: str, reasons: list[str], now: datetime) -> None:
        doc = self.collections["requests"].get(request_id)
        if doc is not None and doc.get("status") == "approved":
            doc.update(status="failed", reasons=list(reasons), updated_at=now)

    async def request_by_id(self, request_id: str) -> Document | None:
        doc = self.collections["requests"].get(request_id)
        return copy.deepcopy(doc) if doc is not None else None

    async def requests_by_ids(self, request_ids: Sequence[str]) -> dict[str, Document]:
        return {i: copy.deepcopy(self.collections["requests"][i])
                for i in request_ids if i in self.collections["requests"]}

    async def update_requests_with_events(self, changes: Sequence[RequestChange]) -> set[str]:
        changed = set()
        for change in changes:
            doc = self.collections["requests"].get(change.request_id)
            if doc is None or any(doc.get(k) != v for k, v in change.expect.items()):
                continue
            _set(doc, change.fields)
            self._queue("requests", change.request_id, [change.event])
            changed.add(change.request_id)
        return changed

    async def record_certificates(self, certificates: Sequence[tuple[str, Document]]) -> None:
        for serial, fields in certificates:
            self.collections["certificates"].setdefault(serial, {"_id": serial, **copy.deepcopy(fields)})

    async def record_revoked(self, serial: str, revoked_at: datetime, reason: str) -> None:
        doc = self.collections["certificates"].get(serial)
        if doc is not None:
            doc.update(status="revoked", revoked_at=revoked_at, revocation_reason=reason)

    async def certificate(self, serial: str, member_id: str | None) -> Document | None:
        return self._get("certificates", serial) if member_id is None else \
            self._get("certificates", serial, member_id=member_id)

    async def certificates_of(self, member_id: str) -> list[Document]:
        return self._all("certificates", member_id=member_id)

    async def record_revocation_request(self, serial: str, fields: Document, event: CloudEvent) -> None:
        doc = self.collections["certificates"].get(serial)
        if doc is not None and doc.get("status") != "revoked":
            _set(doc, fields)
            self._queue("certificates", serial, [event])

    # keys reported compromised

    async def block_key_with_event(self, doc: Document, event: CloudEvent) -> bool:
        if doc["_id"] in self.collections["blocked_keys"]:
            return False
        self.collections["blocked_keys"][doc["_id"]] = copy.deepcopy(doc)
        self._queue("blocked_keys", doc["_id"], [event])
        return True

    async def blocked_key(self, spki_sha256: str) -> Document | None:
        return self._get("blocked_keys", spki_sha256)

    # ACME External Account Bindings

    async def insert_acme_binding_with_event(self, doc: Document, event: CloudEvent) -> None:
        if doc["_id"] in self.collections["acme_bindings"]:
            raise KeyError(f"duplicate binding {doc['_id']}")
        self.collections["acme_bindings"][doc["_id"]] = copy.deepcopy(doc)
        self._queue("acme_bindings", doc["_id"], [event])

    async def acme_binding(self, key_id: str, member_id: str | None) -> Document | None:
        return self._get("acme_bindings", key_id) if member_id is None else \
            self._get("acme_bindings", key_id, member_id=member_id)

    async def acme_bindings_of(self, member_id: str) -> list[Document]:
        return self._all("acme_bindings", member_id=member_id)

    async def revoke_acme_binding_with_event(self, key_id: str, member_id: str, fields: Document,
                                             event: CloudEvent) -> bool:
        doc = self.collections["acme_bindings"].get(key_id)
        if doc is None or doc["member_id"] != member_id or doc.get("revoked_at") is not None:
            return False
        _set(doc, fields)
        self._queue("acme_bindings", key_id, [event])
        return True

    # ACME revocations of serials not recorded yet

    async def park_acme_revocation(self, doc: Document) -> bool:
        if doc["_id"] in self.collections["acme_revocations_waiting"]:
            return False
        self.collections["acme_revocations_waiting"][doc["_id"]] = copy.deepcopy(doc)
        return True

    async def waiting_acme_revocations(self, serials: Sequence[str] | None) -> list[Document]:
        waiting = self._all("acme_revocations_waiting")
        return waiting if serials is None else [w for w in waiting if w["serial"] in serials]

    async def drop_acme_revocation(self, request_id: str) -> None:
        self.collections["acme_revocations_waiting"].pop(request_id, None)

    # the audit log

    async def append_audit(self, actor: str, action: str, subject: str, details: Document) -> None:
        self.audit.append({"actor": actor, "action": action, "subject": subject, "details": copy.deepcopy(details)})


def _satisfies_the_protocol(store: MemoryStore) -> RegistrationStore:
    return store  # mypy checks MemoryStore against RegistrationStore here


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def settings() -> RegistrationSettings:
    """Registration settings for unit tests: nothing in them is ever connected to."""
    common = CommonSettings(kafka=KafkaSettings(bootstrap="unused"), mongo=MongoSettings(url="unused"),
                            http=HttpSettings(port=0), create_topics=False)
    return RegistrationSettings(common=common)


def context(store: MemoryStore, now: datetime = NOW) -> Context:
    return Context(store, settings(), lambda: now, RA, SEALER, ACME_SEALER)


def with_second_factor(store: MemoryStore, member: Member) -> Member:
    """Staff as the bootstrap commands make them: TOTP on (a fixed test secret)."""
    doc = store.collections["members"][member.id]
    doc.update(totp_secret="JBSWY3DPEHPK3PXP", second_factor=True)
    return Member.from_document(doc)
