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

Work is done in passes: the batches the runner hands over in one event-loop
turn (one per partition) are answered together, with one claim insert, one
signing call per worker, one insert per collection and one producer flush.
The CPU-bound part (CSR checks, linting, signing) runs in signing worker
processes (`signing.SigningPool`). The runner overlaps fetches of the
`csr.approved` topic, so one pass is stored and published while the next is
signed; a request that an earlier pass of this process still has in hand is
retried rather than signed again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

from prometheus_client import Histogram

from services.signer import caa_freshness, monitoring
from services.signer.ca.issuance import ApprovedRequest
from services.signer.revoking import CompromisedKeys
from services.signer.signing import SigningPool, refusal
from services.signer.store import CertificateStore, spki_of_der
from shared import outbox
from shared.approvals import UNAUTHENTICATED, ApprovalVerifier
from shared.audit import AuditLog, Pending
from shared.concurrency import at_once
from shared.events import CloudEvent, deterministic_event_id, isoformat, make_event, utcnow
from shared.kafka import Batch, EventProducer, PermanentError, TransientError
from shared.key_compromise import csr_spki_sha256
from shared.logging import get_logger

CLAIM_TIMEOUT = dt.timedelta(seconds=20)
COMPROMISED_KEY = "compromised_key"
COMPROMISED_DETAIL = ("the key was reported compromised and is blocked (BR 4.9.1.1); a certificate needs a new "
                      "key")
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
        approvals: ApprovalVerifier,
        *,
        audit: AuditLog | None = None,
        compromised_keys: CompromisedKeys | None = None,
    ) -> None:
        self._signing = signing
        self._store = store
        self._producer = producer
        self._approvals = approvals
        self._audit = audit
        self._compromised_keys = compromised_keys
        self._instance = uuid.uuid4().hex  # owner of this process's claims
        self._gathered: list[tuple[list[CloudEvent], asyncio.Future[None]]] = []
        self._passes: set[asyncio.Task[None]] = set()
        self._in_hand: set[str] = set()  # request ids some pass of this process is answering now

    async def handle(self, event: CloudEvent) -> None:
        """One event alone: the runner's fallback that isolates a poison event never shares a pass."""
        (failure,) = await self._answer([[event]], alone=True)
        if failure is not None:
            raise failure

    async def handle_batch(self, batch: Batch) -> None:
        """Batches handed over in the same event-loop turn (the runner gives each partition's batch
        separately, but all at once) share one pass: one claim insert, one signing call per worker,
        one insert per collection and one producer flush for all of them, instead of one each per
        partition. Per-command costs in FerretDB, Kafka and the pool dominate at small batch sizes."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._gathered.append((batch.events, done))
        if len(self._gathered) == 1:
            loop.call_soon(self._start_pass)  # after every partition task of this turn has handed over
        await done

    def _start_pass(self) -> None:
        gathered, self._gathered = self._gathered, []
        task = asyncio.ensure_future(self._pass(gathered))
        self._passes.add(task)
        task.add_done_callback(self._passes.discard)

    async def _pass(self, gathered: list[tuple[list[CloudEvent], asyncio.Future[None]]]) -> None:
        try:
            failures = await self._answer([events for events, _ in gathered])
        except BaseException as exc:  # a failure of the shared work is every batch's failure
            for _, done in gathered:
                if not done.done():
                    done.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for (_, done), failure in zip(gathered, failures, strict=True):
            if done.done():  # the caller was cancelled meanwhile
                continue
            if failure is None:
                done.set_result(None)
            else:
                done.set_exception(failure)

    async def _answer(self, groups: list[list[CloudEvent]], *, alone: bool = False) -> list[Exception | None]:
        """Answer every request of `groups` (batches); returns, per batch, why it must be retried, or None.

        A batch holding a request another live signer is answering is retried on its own; the
        other batches of the pass go on."""
        by_request: dict[str, CloudEvent] = {}
        groups_of: dict[str, set[int]] = {}
        failures: list[Exception | None] = [None] * len(groups)
        refused: list[tuple[CloudEvent, str]] = []
        for index, events in enumerate(groups):
            for event in events:
                # Before anything else: an approval the RA did not sign must neither be signed nor take
                # the request id from the genuine approval it may copy.
                problem = self._approvals.problem(event)
                if problem is not None:
                    refused.append((event, problem))
                    failures[index] = PermanentError(f"{UNAUTHENTICATED}: {problem}")
                    continue
                request_id = event.data["request_id"]
                by_request.setdefault(request_id, event)  # a batch may hold the same request twice
                groups_of.setdefault(request_id, set()).add(index)
        if refused and alone:
            # In a pass, a refused event only fails its batch: the runner then hands each event over
            # alone, and that is when the refusal is announced (once) and the event dead-lettered.
            await self._refuse_unauthenticated(refused)
        for request_id in by_request.keys() & self._in_hand:
            # Passes overlap (the runner pipelines): an earlier one is answering this request right now.
            busy = TransientError(f"request {request_id} is being answered by this signer; retrying")
            for index in groups_of[request_id]:
                failures[index] = busy
        ids = [r for r in by_request if not any(failures[i] for i in groups_of[r])]
        ids = await self._send_back_stale_caa(ids, by_request)
        BATCH_SIZE.observe(len(ids))
        self._in_hand.update(ids)
        try:
            await self._answer_requests(ids, by_request, groups_of, failures)
        finally:
            self._in_hand.difference_update(ids)
        return failures

    async def _answer_requests(
        self,
        ids: list[str],
        by_request: dict[str, CloudEvent],
        groups_of: dict[str, set[int]],
        failures: list[Exception | None],
    ) -> None:
        now = utcnow()
        keys = {r: _key_of(by_request[r].data) for r in ids}
        with STAGE_SECONDS.labels("claim").time():
            seen_before, blocked = await asyncio.gather(
                self._store.claim(ids, self._instance, now),
                self._store.blocked_among({k for k in keys.values() if k}))
            known = await self._store.outcomes_of(list(seen_before)) if seen_before else {}
        for request_id in seen_before - known.keys():
            try:
                await self._take_over_or_wait(request_id, now)
            except TransientError as exc:
                for index in groups_of[request_id]:
                    failures[index] = exc
        active = [r for r in ids if not any(failures[i] for i in groups_of[r])]

        republish = [outbox.stored_event(known[r]["event"]) for r in active if r in known]
        for request_id in active:
            if request_id in known:
                log.info("request already answered; re-publishing the original outcome", request_id=request_id)
                if known[request_id]["kind"] == "issued":
                    await self._store.ensure_status(_status_of(known[request_id]))

        # A key reported compromised (`cert.key_compromised`) is refused before anything is signed.
        outcomes: list[Document] = [
            refusal(ApprovedRequest.from_payload(by_request[r].data), COMPROMISED_KEY, [COMPROMISED_DETAIL])
            for r in active if r not in known and keys[r] in blocked]
        fresh = [by_request[r] for r in active if r not in known and keys[r] not in blocked]
        if fresh:
            with STAGE_SECONDS.labels("check_lint_sign").time():
                outcomes += await self._signing.decide_all([(e.id, e.data) for e in fresh], utcnow())
        with STAGE_SECONDS.labels("store").time():
            raced = await self._store.insert_new(self._store.outcomes, outcomes)
            if raced:  # another replica answered these meanwhile: announce its outcome, not ours
                republish += [
                    outbox.stored_event(d["event"])
                    for d in (await self._store.outcomes_of(list(raced))).values()
                ]
            stored = [d for d in outcomes if d["_id"] not in raced]
            monitoring.count_answers(stored)
            # The statuses and the audit entries are independent: one round trip's wait (issue 21).
            collisions, _ = await at_once(
                self._store.insert_new(self._store.statuses, [_status_of(d) for d in stored if d["kind"] == "issued"]),
                self._audit_issued(stored),
            )
            if collisions:
                # A serial collision (2^-127): the outcome stands without a status; fail loudly, retry repairs.
                raise RuntimeError(f"serial collision for {sorted(collisions)}")
        issued_keys = {d["spki_sha256"] for d in stored if d["kind"] == "issued"}
        with STAGE_SECONDS.labels("publish").time():
            # Asked after the statuses are stored: a key blocked while this pass was signing is seen
            # here, or its blocking (which looks for statuses after storing the block) sees ours.
            _, blocked_meanwhile = await asyncio.gather(
                self._producer.publish_many([outbox.stored_event(d["event"]) for d in stored] + republish),
                self._store.blocked_among(issued_keys))
        for key in blocked_meanwhile:
            if self._compromised_keys is not None:
                await self._compromised_keys.revoke_certificates_of(key, "signer")
        for doc in stored:
            if doc["kind"] == "issued":
                log.info(
                    "certificate issued",
                    request_id=doc["_id"],
                    serial=doc["serial"],
                    issuer=doc["issuer"],
                    profile=doc["profile"],
                )

    async def _audit_issued(self, stored: list[Document]) -> None:
        if self._audit is not None:
            await self._audit.append_many(
                Pending("signer", "certificate.issued", d["serial"],
                        {"request_id": d["_id"], "member_id": d["member_id"], "issuer": d["issuer"],
                         "profile": d["profile"], "fingerprint_sha256": d["fingerprint_sha256"]})
                for d in stored if d["kind"] == "issued")

    async def _refuse_unauthenticated(self, refused: list[tuple[CloudEvent, str]]) -> None:
        """`cert.rejected` (unauthenticated_approval) for each, an audit entry and an alert; nothing is
        stored under the request id, and the runner parks the event in the DLQ (PermanentError), where a
        genuine approval refused by a signer missing the RA's new key waits to be replayed."""
        now = utcnow()
        for event, problem in refused:
            log.error("approval refused: not signed by the RA", alert=True, request_id=event.data["request_id"],
                      event_id=event.id, problem=problem)
        await self._producer.publish_many([make_event(
            "cert.rejected",
            {"request_id": event.data["request_id"], "member_id": event.data["member_id"],
             "reason": UNAUTHENTICATED, "details": [problem], "rejected_at": isoformat(now)},
            source="signer", event_id=deterministic_event_id("signer", UNAUTHENTICATED, event.id),
        ) for event, problem in refused])
        monitoring.count_refused(UNAUTHENTICATED, len(refused))
        if self._audit is not None:
            await self._audit.append_many(
                Pending("signer", "approval.refused", str(event.data["request_id"]),
                        {"reason": UNAUTHENTICATED, "problem": problem, "event_id": event.id})
                for event, problem in refused)

    async def _send_back_stale_caa(self, ids: list[str], by_request: dict[str, CloudEvent]) -> list[str]:
        """Answer approvals whose CAA check is too old with `caa_stale` (nothing stored); the rest go on.

        A request already answered keeps its outcome: a redelivered old approval of an issued
        certificate is re-announced as issued, never sent back."""
        now = utcnow()
        stale = {r: why for r in ids if (why := caa_freshness.problem(by_request[r].data, now))}
        if not stale:
            return ids
        known = await self._store.outcomes_of(list(stale))
        back = {r: why for r, why in stale.items() if r not in known}
        if back:
            await self._producer.publish_many(
                [caa_freshness.stale_answer(by_request[r].data, why, now) for r, why in back.items()])
            monitoring.count_refused(caa_freshness.REASON, len(back))
            for request_id, why in back.items():
                log.warning("approval sent back: CAA check too old", request_id=request_id, detail=why)
        return [r for r in ids if r not in back]

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


def _key_of(approval: dict[str, Any]) -> str | None:
    """The approved key's name: as the RA signed it, or (approvals made before it said so) read here."""
    return approval.get("spki_sha256") or csr_spki_sha256(approval["csr_pem"])


def _status_of(outcome: Document) -> Document:
    """The small per-serial document OCSP, revocation and CRLs read."""
    return {
        "_id": outcome["serial"],
        "issuer": outcome["issuer"],
        "request_id": outcome["_id"],
        "member_id": outcome["member_id"],
        "status": "issued",
        "not_after": outcome["not_after"],
        # Revocation rebuilds this CRL shard only; absent for certificates of the unsharded CRL.
        **({"crl_shard": outcome["crl_shard"]} if "crl_shard" in outcome else {}),
        # Outcomes stored before keys were recorded lack it: read from the certificate then.
        "spki_sha256": outcome.get("spki_sha256") or spki_of_der(outcome["der"]),
    }
