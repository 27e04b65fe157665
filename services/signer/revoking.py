"""Revocation and the CRLs that announce it.

A revocation flips the certificate document to `revoked` and stores the
`cert.revoked` event in the same update (outbox). OCSP reads the status
from that document at once; the CRL of the certificate's scope (its CRL
shard, or the issuer's unsharded CRL) is regenerated right after (once per
scope for a burst: a batch of requests, every certificate of a compromised
key, or revocations arriving while a rebuild of that scope runs), and
periodically before its nextUpdate, by the process that holds the CA keys.
The status mode only serves what is stored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from cryptography import x509

from services.signer import monitoring
from services.signer.ca.crl import DEFAULT_SHARDS, CRLScope, build_crl
from services.signer.ca.hierarchy import Hierarchy
from services.signer.ca.revocation import parse_reason
from services.signer.ca.serials import parse_serial_hex
from services.signer.ca.urls import CAUrls
from services.signer.store import CertificateStore, Document
from shared import outbox
from shared.approvals import UNAUTHENTICATED, ApprovalVerifier
from shared.audit import AuditLog
from shared.events import CloudEvent, deterministic_event_id, isoformat, make_event, utcnow
from shared.kafka import Batch, EventProducer, PermanentError
from shared.logging import get_logger
from shared.periodic import Periodic

log = get_logger("services.signer.revoking")
ARL_WARNING = dt.timedelta(days=30)
"""How long before a root's ARL ends the issuing mode starts asking for the ceremony that signs the next."""


class CoalescedRebuild:
    """Single-flight rebuilds of one CRL: at most one runs, at most one waits.

    A caller arriving while a rebuild runs cannot use it (that rebuild may have read the store before the
    caller's revocation was stored), so it joins the one waiting rebuild, which starts when the running one
    ends and reads the store afresh. However many revocations arrive during a rebuild, they cost one more.
    Every caller returns once a rebuild that started after its call has stored its CRL, which keeps "the
    CRL is stored before `cert.revoked` is published". Callers share each rebuild (``asyncio.shield``): one
    caller cancelled does not cancel it for the others; a failure reaches every caller of that rebuild.
    """

    def __init__(self, rebuild: Callable[[], Coroutine[Any, Any, int]]) -> None:
        self._rebuild = rebuild
        self._running: asyncio.Task[int] | None = None
        self._waiting: asyncio.Task[int] | None = None

    async def run(self) -> int:
        """Returns the CRL number of the rebuild this call waited for."""
        if self._waiting is None:
            if self._running is None or self._running.done():
                self._running = asyncio.get_running_loop().create_task(self._rebuild())
                return await asyncio.shield(self._running)
            self._waiting = asyncio.get_running_loop().create_task(self._after(self._running))
        return await asyncio.shield(self._waiting)

    async def _after(self, running: asyncio.Task[int]) -> int:
        await asyncio.wait([running])  # its outcome belongs to its own callers
        self._running, self._waiting = self._waiting, None
        return await self._rebuild()


class CRLPublisher:
    """Generates each issuing CA's CRLs (its shards and its unsharded CRL) and keeps them fresh.

    A revocation rebuilds only the CRL of the revoked certificate's scope; rebuilds of one scope are
    coalesced (``CoalescedRebuild``), different scopes rebuild side by side.
    """

    def __init__(
        self,
        hierarchy: Hierarchy,
        store: CertificateStore,
        *,
        validity: dt.timedelta,
        refresh_before: dt.timedelta,
        public_base_url: str,
        shards: int = DEFAULT_SHARDS,
        check_every: float = 60.0,
    ) -> None:
        self._hierarchy = hierarchy
        self._cas = {ca.label: ca for ca in hierarchy.cas.values()}
        # The CAs that sign or signed leaves (the issuing CAs of every generation; the roots of a directory made
        # before them) have shards.
        self._leaf_issuers = set(hierarchy.leaf_issuers)
        self._urls = {label: CAUrls.under(public_base_url, label) for label in self._cas}
        self._store = store
        self._validity = validity
        self._refresh_before = refresh_before
        self._shards = shards
        self._periodic = Periodic("crl-refresh", self.refresh_due, check_every)
        self._rebuilds: dict[CRLScope, CoalescedRebuild] = {}
        self._next_updates: dict[CRLScope, dt.datetime] = {}

    async def regenerate(self, scope: CRLScope) -> int:
        """A CRL of `scope` rebuilt and stored after this call began; returns its CRL number. A root whose key
        is offline has its ARL published instead (`publish_arl`): a revocation under it waits for the next
        ceremony."""
        rebuild = self._rebuilds.get(scope)
        if rebuild is None:
            rebuild = self._rebuilds[scope] = CoalescedRebuild(lambda: self._rebuild(scope))
        return await rebuild.run()

    async def regenerate_all(self, scopes: Iterable[CRLScope]) -> None:
        await asyncio.gather(*(self.regenerate(scope) for scope in set(scopes)))

    async def _rebuild(self, scope: CRLScope) -> int:
        ca = self._cas[scope.issuer]
        if ca.private_key is None:
            if scope.shard is None:
                return await self.publish_arl(scope.issuer)
            log.error("a CRL shard of a CA whose key is offline cannot be signed here", alert=True,
                      issuer=scope.issuer, shard=scope.shard)
            current = await self._store.current_crl(scope)
            return int(current["number"]) if current else 0
        now = utcnow()
        revoked = await self._store.revoked(scope, now)
        entries = [(parse_serial_hex(d["_id"]), d["revoked_at"], d.get("revocation_reason")) for d in revoked]
        number = await self._store.next_crl_number(scope)
        url = self._urls[scope.issuer].crl_shard_url(scope.shard)
        # The unsharded CRL of a CA with shards is a partition too (its scope: certificates issued before).
        partitioned = scope.shard is not None or (self._shards > 0 and scope.issuer in self._leaf_issuers)
        der = build_crl(ca, entries, crl_number=number, now=now, next_update_in=self._validity,
                        distribution_point=url if partitioned else None)
        await self._store.save_crl(scope, number, der, now, now + self._validity, len(entries))
        self._next_updates[scope] = now + self._validity
        self._export_next_update(scope.issuer)
        log.info("crl published", issuer=scope.issuer, shard=scope.shard, crl_number=number,
                 revoked=len(entries), bytes=len(der))
        return number

    async def scopes(self, issuer: str) -> dict[CRLScope, dt.datetime | None]:
        """Every CRL `issuer` publishes, with the nextUpdate of its stored one (None: never published): the
        unsharded CRL, each configured shard of a CA that signs leaves, and every shard published before (the
        shard count may have been lowered; certificates of a shard stay pointed at it until they expire)."""
        wanted: dict[CRLScope, dt.datetime | None] = {CRLScope(issuer, None): None}
        if issuer in self._leaf_issuers:
            wanted.update({CRLScope(issuer, shard): None for shard in range(self._shards)})
        for scope, doc in (await self._store.crl_scopes(issuer)).items():
            wanted[scope] = doc["next_update"]
        return wanted

    async def publish_arl(self, issuer: str) -> int:
        """Store the ARL the ceremony signed for root `issuer` (`arl-<root>.der` in the CA directory) unless
        a newer one is stored; returns the CRL number now current (0: no ARL for it)."""
        der = self._hierarchy.arls.get(issuer)
        current = await self._store.current_crl(CRLScope(issuer))
        if der is None:
            if current is None:
                log.error("no CRL for a root whose key is offline: sign one (`python -m services.signer arl`)",
                          alert=True, issuer=issuer)
            return int(current["number"]) if current else 0
        arl = x509.load_der_x509_crl(der)
        number = arl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        this_update, next_update = arl.last_update_utc, arl.next_update_utc
        assert next_update is not None  # load_hierarchy's check_arl refuses an ARL without one
        if current is None or current["number"] < number:
            await self._store.save_crl(CRLScope(issuer), number, der, this_update, next_update, len(list(arl)))
            log.info("ARL published", issuer=issuer, crl_number=number, revoked=len(list(arl)))
        if next_update - utcnow() <= ARL_WARNING:
            log.error("the root's ARL ends within 30 days: sign a new one at a ceremony (docs/operations.md)",
                      alert=True, issuer=issuer, next_update=next_update.isoformat())
        self._next_updates[CRLScope(issuer)] = next_update
        self._export_next_update(issuer)
        return max(number, int(current["number"]) if current else 0)

    async def refresh_due(self) -> None:
        for issuer, ca in self._cas.items():
            if ca.private_key is None:
                await self.publish_arl(issuer)
                continue
            due = []
            for scope, next_update in (await self.scopes(issuer)).items():
                if next_update is None or next_update - utcnow() <= self._refresh_before:
                    due.append(scope)
                else:
                    self._next_updates[scope] = max(next_update, self._next_updates.get(scope, next_update))
            await self.regenerate_all(due)
            self._export_next_update(issuer)

    def _export_next_update(self, issuer: str) -> None:
        """The metric of a CA is its CRL closest to going stale (``monitoring.crl_next_update``)."""
        moments = [moment for scope, moment in self._next_updates.items() if scope.issuer == issuer]
        if moments:
            monitoring.crl_next_update(issuer, min(moments))

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()


def crl_scope_of(status: Document) -> CRLScope:
    """The CRL that lists a certificate once revoked: its shard, stored at issuance, or the unsharded CRL."""
    return CRLScope(status["issuer"], status.get("crl_shard"))


class Revoker:
    """Handles `cert.revoke_requested`, and revokes for `CompromisedKeys`.

    The status flip stores the `cert.revoked` event with it; if the process dies
    before publishing, the request is redelivered (offset not committed), finds
    the certificate revoked and re-publishes the stored event.
    """

    def __init__(self, store: CertificateStore, producer: EventProducer, crls: CRLPublisher,
                 approvals: ApprovalVerifier, audit: AuditLog | None = None) -> None:
        self._store = store
        self._producer = producer
        self._crls = crls
        self._approvals = approvals
        self._audit = audit

    async def refuse_unsigned(self, event: CloudEvent, subject: str) -> None:
        """Only the RA may ask for a revocation (issue 19): refuse, keep it in the DLQ, alert."""
        problem = self._approvals.problem(event)
        if problem is None:
            return
        log.error("revocation request refused: not signed by the RA", alert=True, subject=subject,
                  event_type=event.type, problem=problem)
        if self._audit is not None:
            await self._audit.append(actor="signer", action="revocation.refused", subject=subject,
                                     details={"reason": UNAUTHENTICATED, "problem": problem, "event_id": event.id})
        raise PermanentError(f"{UNAUTHENTICATED}: {problem}")

    async def handle(self, event: CloudEvent) -> None:
        await self.revoke_all([await self._checked(event)])

    async def handle_batch(self, batch: Batch) -> None:
        """A burst of revocation requests: each certificate revoked, each CA's CRL rebuilt once.

        Any request that fails a check sends the batch back to the runner, which then handles the
        requests one by one (so the refusal is audited and dead-lettered for that request alone)."""
        if any(self._approvals.problem(event) is not None for event in batch.events):
            raise RuntimeError("a revocation request in the batch is not signed by the RA")
        await self.revoke_all([await self._checked(event) for event in batch.events])

    async def _checked(self, event: CloudEvent) -> tuple[Document, str, str]:
        """(status, reason, requested_by) of a revocation request that passes every check."""
        serial = event.data["serial"]
        await self.refuse_unsigned(event, str(serial))
        try:
            parse_reason(event.data["reason"])
        except ValueError as exc:
            raise PermanentError(str(exc)) from None
        status = await self._store.status(serial)
        if status is None:
            raise PermanentError(f"no certificate with serial {serial} was issued by this CA")
        owner = event.data.get("member_id")
        if owner and owner != status["member_id"]:
            raise PermanentError(f"certificate {serial} does not belong to member {owner}")
        return status, event.data["reason"], event.data["requested_by"]

    async def revoke_all(self, items: list[tuple[Document, str, str]]) -> None:
        """Revoke each (status, reason, requested_by) once, rebuild the CRL of each scope concerned once
        (a burst of revocations costs one rebuild per CRL shard, not one per certificate; concurrent bursts
        share rebuilds, `CoalescedRebuild`), then announce each.

        The CRLs are rebuilt before any `cert.revoked` is published, so a consumer of the event that
        fetches the certificate's CRL finds the certificate on it."""
        revoked: list[Document] = []
        scopes: set[CRLScope] = set()
        for status, reason, requested_by in items:
            if status["status"] != "revoked":
                status = await self._flip(status, reason, requested_by)
                scopes.add(crl_scope_of(status))
            revoked.append(status)
        await self._crls.regenerate_all(scopes)
        # The stored events, also on redelivery or after losing a race: always the same id and time.
        await self._producer.publish_many([outbox.stored_event(s["revoked_event"]) for s in revoked])

    async def _flip(self, status: Document, reason: str, requested_by: str) -> Document:
        """Mark the certificate revoked with its `cert.revoked` stored beside; the status as now stored."""
        serial = status["_id"]
        revoked_at = utcnow().replace(microsecond=0)
        data = {
            "serial": serial,
            "member_id": status["member_id"],
            "request_id": status["request_id"],
            "issuer": status["issuer"],
            "reason": reason,
            "revoked_at": isoformat(revoked_at),
        }
        revoked = make_event(
            "cert.revoked", data, source="signer", event_id=deterministic_event_id("cert.revoked", serial)
        )
        flipped = await self._store.statuses.update_one(
            {"_id": serial, "status": "issued"},
            {
                "$set": {
                    "status": "revoked",
                    "revoked_at": revoked_at,
                    "revocation_reason": reason,
                    "revoked_event": outbox.entry(revoked),
                }
            },
        )
        status = await self._store.status(serial) or status
        log.info("certificate revoked", serial=serial, reason=status.get("revocation_reason"))
        if flipped.modified_count and self._audit is not None:
            await self._audit.append(actor="signer", action="certificate.revoked", subject=serial, details={
                "reason": reason, "member_id": status["member_id"],
                "request_id": status["request_id"], "issuer": status["issuer"],
                "requested_by": requested_by})
        return status


class CompromisedKeys:
    """Handles `cert.key_compromised`: the key joins the signer's blocklist (issuance refuses it,
    `CertificateIssuer`), and every unexpired certificate with it is revoked with reason
    keyCompromise (BR 4.9.1.1 item 3). Redelivery repeats both harmlessly."""

    def __init__(self, store: CertificateStore, revoker: Revoker, audit: AuditLog | None = None) -> None:
        self._store = store
        self._revoker = revoker
        self._audit = audit

    async def handle(self, event: CloudEvent) -> None:
        key = event.data["spki_sha256"]
        await self._revoker.refuse_unsigned(event, key)
        requested_by = event.data["requested_by"]
        if await self._store.block_key({"_id": key, "blocked_at": utcnow(), "evidence": event.data["evidence"],
                                        "requested_by": requested_by, "event_id": event.id}):
            log.warning("key blocked as compromised", spki_sha256=key, evidence=event.data["evidence"])
            if self._audit is not None:
                await self._audit.append(actor="signer", action="key.blocked", subject=key,
                                         details={"evidence": event.data["evidence"], "requested_by": requested_by})
        await self.revoke_certificates_of(key, requested_by)

    async def revoke_certificates_of(self, key: str, requested_by: str) -> int:
        """Revoke every unexpired certificate of `key`; returns how many were still unrevoked."""
        statuses = await self._store.issued_with_key(key, utcnow())
        if statuses:
            await self._revoker.revoke_all([(status, "key_compromise", requested_by) for status in statuses])
        if statuses:
            log.warning("certificates of a compromised key revoked", spki_sha256=key, count=len(statuses))
        return len(statuses)
