"""Issuance: approved requests in, exactly one certificate (or one rejection) out per request.

Exactly once rests on three facts:

* the outcome document's `_id` is the request id, so a second insert for the
  same request fails, whoever races, and the loser announces the winner's;
* before signing, every request is claimed (one batched insert of tiny
  documents keyed by request id); a request claimed before is looked up and
  answered by re-publishing the *stored* `cert.issued` (same event id, same
  serial), so a redelivery or a duplicate publication never signs again;
* the offset of `csr.approved` is committed only after the outcome is stored
  *and* published: a crash after the write is repaired by redelivery (the
  lookup finds the outcome), a crash before it leaves nothing behind.

Work is batched (one insert and one producer flush per batch) and
the CPU-bound part (CSR checks, linting, signing) runs on one dedicated
thread per process, so one replica uses about one core for signatures while
its event loop keeps Kafka and MongoDB I/O going; more replicas scale out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client import Histogram

from services.signer.ca import issuance
from services.signer.ca.hierarchy import Hierarchy
from services.signer.ca.lint import PreIssuanceLinter
from services.signer.ca.profiles import CertificateProfile, get_profile
from services.signer.ca.serials import new_serial_number, serial_hex
from services.signer.ca.urls import CAUrls
from services.signer.store import CertificateStore
from shared import outbox
from shared.audit import AuditLog, Pending
from shared.events import CloudEvent, deterministic_event_id, isoformat, make_event, utcnow
from shared.kafka import Batch, EventProducer, TransientError
from shared.logging import bound, get_logger

SOURCE = "signer"
CLAIM_TIMEOUT = dt.timedelta(seconds=20)
log = get_logger("services.signer.issuing")
STAGE_SECONDS = Histogram(
    "cacert_signer_stage_seconds",
    "Time per batch stage of issuance (where the time goes)",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_SIZE = Histogram(
    "cacert_signer_batch_size", "Requests per issuance batch", buckets=(1, 2, 5, 10, 20, 50, 100, 200)
)

Document = dict[str, Any]


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode()


def _rejection_reason(exc: issuance.IssuanceRefused) -> str:
    if isinstance(exc, issuance.CSRRejected):
        text = exc.reason.lower()
        if any(word in text for word in ("key", "exponent", "curve", "bits")):
            return "weak_key"
        return "csr_invalid"
    return "policy"


class CertificateIssuer:
    """Turns `csr.approved` events into stored certificates and `cert.issued` events."""

    def __init__(
        self,
        hierarchy: Hierarchy,
        store: CertificateStore,
        producer: EventProducer,
        *,
        public_base_url: str,
        lint_profiles: Iterable[str],
        linter: PreIssuanceLinter | None,
        profiles: Mapping[str, CertificateProfile] | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self._hierarchy = hierarchy
        self._store = store
        self._producer = producer
        self._urls = {c.label: CAUrls.under(public_base_url, c.label) for c in hierarchy.cas.values()}
        self._lint_profiles = frozenset(lint_profiles)
        self._linter = linter
        self._profiles = profiles
        self._audit = audit
        self._instance = uuid.uuid4().hex  # owner of this process's claims
        # One signing thread: a replica signs on one core; replicas scale out (see module docstring).
        self._signing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="signing")

    def close(self) -> None:
        self._signing.shutdown(wait=True)

    async def handle(self, event: CloudEvent) -> None:
        await self._answer([event])

    async def handle_batch(self, batch: Batch) -> None:
        await self._answer(batch.events)

    async def _answer(self, events: list[CloudEvent]) -> None:
        by_request: dict[str, CloudEvent] = {}
        for event in events:
            by_request.setdefault(event.data["request_id"], event)  # a batch may hold the same request twice
        ids = list(by_request)
        BATCH_SIZE.observe(len(ids))

        now = utcnow()
        with STAGE_SECONDS.labels("claim").time():
            seen_before = await self._store.claim(ids, self._instance, now)
            known = await self._store.outcomes_of(list(seen_before)) if seen_before else {}
        republish = [outbox.stored_event(doc["event"]) for doc in known.values()]
        for doc in known.values():
            log.info("request already answered; re-publishing the original outcome", request_id=doc["_id"])
            if doc["kind"] == "issued":
                await self._store.ensure_status(_status_of(doc))
        for request_id in seen_before - known.keys():
            await self._take_over_or_wait(request_id, now)

        fresh = [by_request[r] for r in ids if r not in known]
        outcomes: list[Document] = []
        if fresh:
            loop = asyncio.get_running_loop()
            with STAGE_SECONDS.labels("check_lint_sign").time():
                outcomes = await loop.run_in_executor(self._signing, self._decide_all, fresh, utcnow())
        with STAGE_SECONDS.labels("store").time():
            raced = await self._store.insert_new(self._store.outcomes, outcomes)
            if raced:  # another replica answered these meanwhile: announce its outcome, not ours
                republish += [
                    outbox.stored_event(d["event"])
                    for d in (await self._store.outcomes_of(list(raced))).values()
                ]
            stored = [d for d in outcomes if d["_id"] not in raced]
            collisions = await self._store.insert_new(
                self._store.statuses, [_status_of(d) for d in stored if d["kind"] == "issued"]
            )
            if collisions:
                # A serial collision (2^-127): the outcome stands without a status; fail loudly, retry repairs.
                raise RuntimeError(f"serial collision for {sorted(collisions)}")
        if self._audit is not None:
            await self._audit.append_many(
                Pending("signer", "certificate.issued", d["serial"],
                        {"request_id": d["_id"], "member_id": d["member_id"], "issuer": d["issuer"],
                         "profile": d["profile"], "fingerprint_sha256": d["event"]["data"]["fingerprint_sha256"]})
                for d in stored if d["kind"] == "issued")
        with STAGE_SECONDS.labels("publish").time():
            await self._producer.publish_many([outbox.stored_event(d["event"]) for d in stored] + republish)
        for doc in stored:
            if doc["kind"] == "issued":
                log.info(
                    "certificate issued",
                    request_id=doc["_id"],
                    serial=doc["serial"],
                    issuer=doc["issuer"],
                    profile=doc["profile"],
                )

    async def _take_over_or_wait(self, request_id: str, now: dt.datetime) -> None:
        """Claimed but unanswered: our own earlier attempt (go on), a claimer that died before storing
        (take over), or another live signer (wait).

        A claimer that died took its unstored certificate with it, so signing now still leaves exactly
        one certificate; a live claimer answers within seconds, so the batch is retried until then.
        """
        claim = await self._store.claim_of(request_id)
        if claim is None or claim.get("owner") == self._instance:
            return
        if now - claim["at"] < CLAIM_TIMEOUT:
            raise TransientError(f"request {request_id} is being answered by another signer; retrying")
        log.warning("taking over a stale claim", request_id=request_id, previous_owner=claim.get("owner"))
        await self._store.take_over_claim(request_id, self._instance, now)

    # ---- CPU-bound part: runs on the signing thread -------------------------------------------

    def _decide_all(self, events: list[CloudEvent], now: dt.datetime) -> list[Document]:
        outcomes: list[Document] = []
        for event in events:
            with bound(event_id=event.id, request_id=event.data["request_id"]):
                outcomes.append(self._decide(event, now))
        return outcomes

    def _decide(self, event: CloudEvent, now: dt.datetime) -> Document:
        request = issuance.ApprovedRequest.from_payload(event.data)
        try:
            profile = (
                get_profile(request.profile, self._profiles)
                if self._profiles
                else get_profile(request.profile)
            )
            ca = self._hierarchy.issuing_ca(request.cert_class)
            builder = issuance.prepare_certificate(
                request, ca, profile, self._urls[ca.label], now, new_serial_number()
            )
        except issuance.IssuanceRefused as exc:
            log.warning("request refused", reason=exc.reason)
            return self._refusal(request, _rejection_reason(exc), [exc.reason])
        if self._linter is not None and profile.name in self._lint_profiles:
            result = self._linter.lint_tbs(builder, profile, ca.key_algorithm)
            if result.errors:
                log.critical(
                    "pre-issuance lint found errors; not signing",
                    findings=result.errors,
                    profile=profile.name,
                    alert=True,
                )
                return self._refusal(request, "lint", result.errors)
        certificate = issuance.sign_certificate(builder, ca)
        problems = issuance.certificate_problems_against_request(certificate, request)
        if problems:
            log.critical(
                "signed certificate differs from the approved request; discarded",
                problems=list(problems),
                alert=True,
            )
            return self._refusal(request, "internal", list(problems))
        return self._certificate_document(request, certificate, now)

    def _certificate_document(
        self, request: issuance.ApprovedRequest, cert: x509.Certificate, now: dt.datetime
    ) -> Document:
        ca = self._hierarchy.issuing_ca(request.cert_class)
        serial = serial_hex(cert.serial_number)
        der = cert.public_bytes(Encoding.DER)
        chain = "".join(_pem(c) for c in ca.chain[:-1])  # intermediates only: never the root
        data = {
            "request_id": request.request_id,
            "member_id": request.member_id,
            "serial": serial,
            "issuer": ca.label,
            "cert_class": request.cert_class,
            "profile": request.profile,
            "subject": cert.subject.rfc4514_string(),
            "dns_names": request.dns_names,
            "ip_addresses": request.ip_addresses,
            "emails": request.emails,
            "not_before": isoformat(cert.not_valid_before_utc),
            "not_after": isoformat(cert.not_valid_after_utc),
            "fingerprint_sha256": hashlib.sha256(der).hexdigest(),
            "certificate_pem": _pem(cert),
            "chain_pem": chain,
            "trust_anchors": [c.label for c in self._hierarchy.trust_anchors_for(request.cert_class)],
            "issued_at": isoformat(now),
        }
        event = make_event(
            "cert.issued",
            data,
            source=SOURCE,
            event_id=deterministic_event_id("cert.issued", request.request_id),
        )
        return {
            "_id": request.request_id,
            "kind": "issued",
            "serial": serial,
            "issuer": ca.label,
            "member_id": request.member_id,
            "profile": request.profile,
            "not_after": cert.not_valid_after_utc,
            "der": der,
            "issued_at": now,
            "event": outbox.entry(event),
        }

    def _refusal(self, request: issuance.ApprovedRequest, reason: str, details: list[str]) -> Document:
        data = {
            "request_id": request.request_id,
            "member_id": request.member_id,
            "reason": reason,
            "details": [d[:500] for d in details[:50]],
            "rejected_at": isoformat(utcnow()),
        }
        event = make_event(
            "cert.rejected",
            data,
            source=SOURCE,
            event_id=deterministic_event_id("cert.rejected", request.request_id),
        )
        return {
            "_id": request.request_id,
            "kind": "rejected",
            "member_id": request.member_id,
            "reason": reason,
            "event": outbox.entry(event),
        }


def _status_of(outcome: Document) -> Document:
    """The small per-serial document OCSP, revocation and CRLs read."""
    return {
        "_id": outcome["serial"],
        "issuer": outcome["issuer"],
        "request_id": outcome["_id"],
        "member_id": outcome["member_id"],
        "status": "issued",
        "not_after": outcome["not_after"],
    }
