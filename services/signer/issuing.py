"""Issuance: approved requests in, exactly one certificate (or one rejection) out per request.

Exactly once rests on three facts:

* the certificate document's `_id` is the request id, so a second insert for
  the same request fails, whoever races;
* before signing we look the request up, and a known request is answered by
  re-publishing the *stored* `cert.issued` (same event id, same serial);
* the certificate and its `cert.issued` event are written in one document
  (outbox), so a crash after the write re-publishes on restart (sweep) and a
  crash before it leaves nothing signed behind in the store or on the topic.

Work is batched (one lookup, one insert, one producer flush per batch) and
the CPU-bound part (CSR checks, linting, signing) runs on one dedicated
thread per process, so one replica uses about one core for signatures while
its event loop keeps Kafka and MongoDB I/O going; more replicas scale out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client import Histogram
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from services.signer.ca import issuance
from services.signer.ca.hierarchy import Hierarchy
from services.signer.ca.lint import PreIssuanceLinter
from services.signer.ca.profiles import CertificateProfile, get_profile
from services.signer.ca.serials import new_serial_number, serial_hex
from services.signer.ca.urls import CAUrls
from services.signer.store import CertificateStore
from shared import outbox
from shared.events import CloudEvent, deterministic_event_id, isoformat, make_event, utcnow
from shared.kafka import EventProducer
from shared.logging import bound, get_logger

SOURCE = "signer"
log = get_logger("services.signer.issuing")
STAGE_SECONDS = Histogram(
    "cacert_signer_stage_seconds", "Time per batch stage of issuance (where the time goes)", ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BATCH_SIZE = Histogram("cacert_signer_batch_size", "Requests per issuance batch",
                       buckets=(1, 2, 5, 10, 20, 50, 100, 200))

Document = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Issued:
    document: Document


@dataclasses.dataclass(frozen=True)
class Refused:
    document: Document


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

    def __init__(self, hierarchy: Hierarchy, store: CertificateStore, producer: EventProducer, *,
                 public_base_url: str, lint_profiles: Iterable[str], linter: PreIssuanceLinter | None,
                 profiles: Mapping[str, CertificateProfile] | None = None) -> None:
        self._hierarchy = hierarchy
        self._store = store
        self._producer = producer
        self._urls = {c.label: CAUrls.under(public_base_url, c.label) for c in hierarchy.cas.values()}
        self._lint_profiles = frozenset(lint_profiles)
        self._linter = linter
        self._profiles = profiles
        # One signing thread: a replica signs on one core; replicas scale out (see module docstring).
        self._signing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="signing")

    def close(self) -> None:
        self._signing.shutdown(wait=True)

    async def handle(self, event: CloudEvent) -> None:
        await self.handle_batch([event])

    async def handle_batch(self, events: list[CloudEvent]) -> None:
        by_request: dict[str, CloudEvent] = {}
        for event in events:
            by_request.setdefault(event.data["request_id"], event)  # a batch may hold the same request twice
        ids = list(by_request)
        BATCH_SIZE.observe(len(ids))

        with STAGE_SECONDS.labels("lookup").time():
            known = {d["_id"]: d async for d in self._store.certificates.find({"_id": {"$in": ids}},
                                                                              {"issued_event": 1})}
            refused = {d["_id"]: d async for d in self._store.rejections.find({"_id": {"$in": ids}}, {"event": 1})}
        republish = [outbox.stored_event(d["issued_event"]) for d in known.values()]
        republish += [outbox.stored_event(d["event"]) for d in refused.values()]
        for request_id in [*known, *refused]:
            log.info("request already answered; re-publishing the original outcome", request_id=request_id)

        fresh = [by_request[r] for r in ids if r not in known and r not in refused]
        outcomes: list[Issued | Refused] = []
        if fresh:
            loop = asyncio.get_running_loop()
            with STAGE_SECONDS.labels("check_lint_sign").time():
                outcomes = await loop.run_in_executor(self._signing, self._decide_all, fresh, utcnow())
        issued_docs = [o.document for o in outcomes if isinstance(o, Issued)]
        refused_docs = [o.document for o in outcomes if isinstance(o, Refused)]
        with STAGE_SECONDS.labels("store").time():
            republish += await self._insert(self._store.certificates, issued_docs, "issued_event")
            republish += await self._insert(self._store.rejections, refused_docs, "event")

        written = [d for d in issued_docs + refused_docs if not d.get("_duplicate")]
        events_out = [outbox.stored_event(e) for d in written for e in d["_outbox"]]
        with STAGE_SECONDS.labels("publish").time():
            await self._producer.publish_many(events_out + republish)
        with STAGE_SECONDS.labels("clear_outbox").time():
            await self._clear_outboxes(written)
        for doc in issued_docs:
            if not doc.get("_duplicate"):
                log.info("certificate issued", request_id=doc["_id"], serial=doc["serial"], issuer=doc["issuer"],
                         profile=doc["profile"])

    async def _insert(self, collection: Any, docs: list[Document], event_field: str) -> list[CloudEvent]:
        """Insert new documents; for any that lost a race, return the winner's event to re-publish."""
        if not docs:
            return []
        try:
            await collection.insert_many(docs, ordered=False)
            return []
        except BulkWriteError as exc:
            failed = {docs[e["index"]]["_id"]: e for e in exc.details.get("writeErrors", [])}
        republish: list[CloudEvent] = []
        for doc in docs:
            if doc["_id"] not in failed:
                continue
            doc["_duplicate"] = True
            winner = await collection.find_one({"_id": doc["_id"]}, {event_field: 1})
            if winner is None:
                # Not a duplicate request: a serial collision (2^-127) or another write error. Retry the batch.
                raise RuntimeError(f"could not store outcome of request {doc['_id']}: {failed[doc['_id']]}")
            republish.append(outbox.stored_event(winner[event_field]))
        return republish

    async def _clear_outboxes(self, docs: list[Document]) -> None:
        for collection, group in ((self._store.certificates, [d for d in docs if "serial" in d]),
                                  (self._store.rejections, [d for d in docs if "serial" not in d])):
            if group:
                await collection.bulk_write(
                    [UpdateOne({"_id": d["_id"]}, {"$pullAll": {outbox.FIELD: d["_outbox"]}}) for d in group],
                    ordered=False,
                )

    # ---- CPU-bound part: runs on the signing thread -------------------------------------------

    def _decide_all(self, events: list[CloudEvent], now: dt.datetime) -> list[Issued | Refused]:
        outcomes: list[Issued | Refused] = []
        for event in events:
            with bound(event_id=event.id, request_id=event.data["request_id"]):
                outcomes.append(self._decide(event, now))
        return outcomes

    def _decide(self, event: CloudEvent, now: dt.datetime) -> Issued | Refused:
        request = issuance.ApprovedRequest.from_payload(event.data)
        try:
            profile = get_profile(request.profile, self._profiles) if self._profiles else get_profile(request.profile)
            ca = self._hierarchy.issuing_ca(request.cert_class)
            builder = issuance.prepare_certificate(request, ca, profile, self._urls[ca.label], now,
                                                   new_serial_number())
        except issuance.IssuanceRefused as exc:
            log.warning("request refused", reason=exc.reason)
            return self._refusal(request, _rejection_reason(exc), [exc.reason])
        if self._linter is not None and profile.name in self._lint_profiles:
            result = self._linter.lint_tbs(builder, profile, ca.key_algorithm)
            if result.errors:
                log.critical("pre-issuance lint found errors; not signing", findings=result.errors,
                             profile=profile.name, alert=True)
                return self._refusal(request, "lint", result.errors)
        certificate = issuance.sign_certificate(builder, ca)
        problems = issuance.certificate_problems_against_request(certificate, request)
        if problems:
            log.critical("signed certificate differs from the approved request; discarded", problems=list(problems),
                         alert=True)
            return self._refusal(request, "internal", list(problems))
        return Issued(self._certificate_document(request, certificate, now))

    def _certificate_document(self, request: issuance.ApprovedRequest, cert: x509.Certificate,
                              now: dt.datetime) -> Document:
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
        event = make_event("cert.issued", data, source=SOURCE,
                           event_id=deterministic_event_id("cert.issued", request.request_id))
        stored = outbox.entry(event)
        return {
            "_id": request.request_id,
            "serial": serial,
            "issuer": ca.label,
            "member_id": request.member_id,
            "profile": request.profile,
            "status": "issued",
            "not_after": cert.not_valid_after_utc,
            "der": der,
            "issued_at": now,
            "issued_event": stored,
            outbox.FIELD: [stored],
        }

    def _refusal(self, request: issuance.ApprovedRequest, reason: str, details: list[str]) -> Refused:
        data = {"request_id": request.request_id, "member_id": request.member_id, "reason": reason,
                "details": [d[:500] for d in details[:50]], "rejected_at": isoformat(utcnow())}
        event = make_event("cert.rejected", data, source=SOURCE,
                           event_id=deterministic_event_id("cert.rejected", request.request_id))
        stored = outbox.entry(event)
        return Refused({"_id": request.request_id, "reason": reason, "event": stored, outbox.FIELD: [stored]})
