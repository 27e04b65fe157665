"""Revocation and the CRLs that announce it.

A revocation flips the certificate document to `revoked` and stores the
`cert.revoked` event in the same update (outbox). OCSP reads the status
from that document at once; the CRL of the issuer is regenerated right
after (once per CA for a burst: a batch of requests, or every certificate of
a compromised key), and periodically before its nextUpdate, by the process
that holds the CA keys. The status mode only serves what is stored.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from cryptography import x509

from services.signer import monitoring
from services.signer.ca.crl import build_crl
from services.signer.ca.hierarchy import Hierarchy
from services.signer.ca.revocation import parse_reason
from services.signer.ca.serials import parse_serial_hex
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


class CRLPublisher:
    """Generates each issuing CA's CRL and keeps it fresh."""

    def __init__(
        self,
        hierarchy: Hierarchy,
        store: CertificateStore,
        *,
        validity: dt.timedelta,
        refresh_before: dt.timedelta,
        check_every: float = 60.0,
    ) -> None:
        self._hierarchy = hierarchy
        self._store = store
        self._validity = validity
        self._refresh_before = refresh_before
        self._periodic = Periodic("crl-refresh", self.refresh_due, check_every)
        self._lock = asyncio.Lock()

    async def regenerate(self, issuer: str) -> int:
        """Build and store a new CRL for `issuer`; returns its CRL number. A root whose key is offline has
        its ARL published instead (`publish_arl`): a revocation under it waits for the next ceremony."""
        async with self._lock:
            ca = self._hierarchy.cas[issuer]
            if ca.private_key is None:
                return await self.publish_arl(issuer)
            now = utcnow()
            revoked = await self._store.revoked(issuer, now)
            entries = [
                (parse_serial_hex(d["_id"]), d["revoked_at"], d.get("revocation_reason")) for d in revoked
            ]
            number = await self._store.next_crl_number(issuer)
            der = build_crl(ca, entries, crl_number=number, now=now, next_update_in=self._validity)
            await self._store.save_crl(issuer, number, der, now, now + self._validity, len(entries))
            monitoring.crl_next_update(issuer, now + self._validity)
            log.info("crl published", issuer=issuer, crl_number=number, revoked=len(entries))
            return number

    async def publish_arl(self, issuer: str) -> int:
        """Store the ARL the ceremony signed for root `issuer` (`arl-<root>.der` in the CA directory) unless
        a newer one is stored; returns the CRL number now current (0: no ARL for it)."""
        der = self._hierarchy.arls.get(issuer)
        current = await self._store.current_crl(issuer)
        if der is None:
            if current is None:
                log.error("no CRL for a root whose key is offline: sign one (`python -m services.signer arl`)",
                          alert=True, issuer=issuer)
            return int(current["number"]) if current else 0
        arl = x509.load_der_x509_crl(der)
        number = arl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        this_update, next_update = arl.last_update_utc, arl.next_update_utc
        assert next_update is not None  # check_arl: every CRL this CA signs has one
        if current is None or current["number"] < number:
            await self._store.save_crl(issuer, number, der, this_update, next_update, len(list(arl)))
            log.info("ARL published", issuer=issuer, crl_number=number, revoked=len(list(arl)))
        if next_update - utcnow() <= ARL_WARNING:
            log.error("the root's ARL ends within 30 days: sign a new one at a ceremony (docs/operations.md)",
                      alert=True, issuer=issuer, next_update=next_update.isoformat())
        monitoring.crl_next_update(issuer, next_update)
        return max(number, int(current["number"]) if current else 0)

    async def refresh_due(self) -> None:
        for ca in self._hierarchy.cas.values():
            if ca.private_key is None:
                await self.publish_arl(ca.label)
                continue
            current = await self._store.current_crl(ca.label)
            if current is None or current["next_update"] - utcnow() <= self._refresh_before:
                await self.regenerate(ca.label)
            else:
                monitoring.crl_next_update(ca.label, current["next_update"])

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()


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
        """Revoke each (status, reason, requested_by) once, rebuild the CRL of each CA concerned once
        (a burst of revocations costs one rebuild per CA, not one per certificate), then announce each.

        The CRLs are rebuilt before any `cert.revoked` is published, so a consumer of the event that
        fetches the CRL finds the certificate on it."""
        revoked: list[Document] = []
        issuers: set[str] = set()
        for status, reason, requested_by in items:
            if status["status"] != "revoked":
                status = await self._flip(status, reason, requested_by)
                issuers.add(status["issuer"])
            revoked.append(status)
        for issuer in sorted(issuers):
            await self._crls.regenerate(issuer)
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
