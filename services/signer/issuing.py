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

Work is batched (one insert and one producer flush per batch), and the
CPU-bound part (CSR checks, linting, signing) runs in signing worker
processes (`signing.SigningPool`), so the event loop keeps Kafka and MongoDB
I/O going while batches from different partitions are signed in parallel.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from prometheus_client import Histogram

from services.signer.signing import SigningPool
from services.signer.store import CertificateStore
from shared import outbox
from shared.audit import AuditLog, Pending
from shared.events import CloudEvent, utcnow
from shared.kafka import Batch, EventProducer, TransientError
from shared.logging import get_logger

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


class CertificateIssuer:
    """Turns `csr.approved` events into stored certificates and `cert.issued` events."""

    def __init__(
        self,
        signing: SigningPool,
        store: CertificateStore,
        producer: EventProducer,
        *,
        audit: AuditLog | None = None,
    ) -> None:
        self._signing = signing
        self._store = store
        self._producer = producer
        self._audit = audit
        self._instance = uuid.uuid4().hex  # owner of this process's claims

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
            with STAGE_SECONDS.labels("check_lint_sign").time():
                outcomes = await self._signing.decide_all([(e.id, e.data) for e in fresh], utcnow())
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
