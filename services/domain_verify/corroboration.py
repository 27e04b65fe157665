"""Corroboration: the primary's side of Multi-Perspective Issuance Corroboration (BR 3.2.2.9).

A check (a validation method or a CAA check) is first run from the primary
perspective. If it fails there, that is the answer. If it passes and remote
perspectives are configured, the check is stored as `waiting` with a
`perspective.check_requested` in its outbox; each remote perspective repeats
it with its own resolver and answers on the `perspective` topic. When every
perspective has answered, or the deadline passes (a silent perspective counts
as not corroborating), the quorum decides: the primary's determination
stands only if no more than the allowed number of remote perspectives
disagree (BR 3.2.2.9's table: 1 of 2-5, 2 of 6 or more).

What the decision announces depends on the check's purpose: a validation
ends in `domain.verified` / `domain.verification_failed`, a CAA check in
`domain.caa_checked`. The purpose's `Announcer` builds that event from the
stored check, so the decision can be made by whichever of the answer
handler or the deadline sweep gets there first, on any replica.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from prometheus_client import Counter

from services.domain_verify import events
from services.domain_verify.checks import CheckOutcome
from services.domain_verify.settings import DomainVerifySettings
from services.domain_verify.store import CorroborationStore
from services.domain_verify.va import quorum
from shared.audit import AuditLog
from shared.events import CloudEvent, utcnow
from shared.logging import get_logger
from shared.outbox import Outbox
from shared.periodic import Periodic

log = get_logger("domain_verify.corroboration")
GIVE_UP_LAG = timedelta(minutes=5)
"""How long after its deadline a check waits for the `perspective` topic's backlog to be read at most."""

Document = dict[str, Any]

DISAGREEMENTS = Counter("cacert_domain_verify_perspective_disagreements_total",
                        "Remote perspective answers that did not corroborate the primary (or never came)",
                        ["perspective", "kind"])
DECISIONS = Counter("cacert_domain_verify_corroborated_decisions_total",
                    "Decisions of corroborated checks, by kind and result", ["kind", "result"])


class Announcer(Protocol):
    def __call__(self, doc: Document, ok: bool, reason: str, found: list[str],
                 perspectives: dict[str, bool | None], now: datetime) -> CloudEvent: ...


class Corroboration:
    def __init__(self, store: CorroborationStore, outbox: Outbox, settings: DomainVerifySettings,
                 announcers: dict[str, Announcer], *, audit: AuditLog | None = None,
                 clock: Callable[[], datetime] = utcnow,
                 answers_read_until: Callable[[], Awaitable[datetime | None]] | None = None) -> None:
        self._store = store
        self._answers_read_until = answers_read_until
        self._outbox = outbox
        self._settings = settings
        self._announcers = announcers
        self._audit = audit
        self._clock = clock
        self._periodic: Periodic | None = None

    @property
    def perspectives(self) -> list[str]:
        return list(self._settings.perspectives)

    async def known(self, check_id: str) -> bool:
        """True (and its pending events re-flushed) if this check was stored before: a redelivery."""
        if await self._store.get(check_id) is None:
            return False
        await self._outbox.flush(self._store.collection, check_id)
        await self._outbox.flush(self._store.outcomes, check_id)
        return True

    async def begin(self, *, check_id: str, purpose: str, kind: str, params: Document, subject: Document,
                    primary: CheckOutcome) -> None:
        """Record the primary's outcome; decide now if it failed or no perspective is configured."""
        now = self._clock()
        remote = self.perspectives if primary.ok else []
        doc: Document = {
            "_id": check_id, "purpose": purpose, "kind": kind, "params": params, "subject": subject,
            "primary": primary.to_document(), "perspectives": remote, "answers": {},
            "state": "waiting" if remote else "deciding", "created_at": now,
            "deadline": now + timedelta(seconds=self._settings.perspective_timeout_seconds),
        }
        asks = [events.check_requested(check_id=check_id, kind=kind, params=params, perspectives=remote,
                                       requested_at=now)] if remote else []
        await self._store.create(doc, asks)
        await self._outbox.flush(self._store.collection, check_id)
        if not remote:
            await self._decide(doc)

    async def on_answer(self, event: CloudEvent) -> None:
        """Handler for `perspective.check_answered`: keep the answer; decide once all are in."""
        data = event.data
        check_id, perspective = data["check_id"], data["perspective"]
        doc = await self._store.get(check_id)
        if doc is None or perspective not in doc.get("perspectives", []):
            log.info("answer for a check this primary did not ask; ignored", check_id=check_id,
                     perspective=perspective)
            return
        answer = {"ok": data["ok"], "reason": data["reason"], "found": data.get("found", []),
                  "details": data.get("details", {}), "checked_at": data["checked_at"]}
        await self._store.record_answer(check_id, perspective, answer)
        doc = await self._store.get(check_id)
        if doc is not None and doc["state"] == "waiting" and set(doc["perspectives"]) <= set(doc["answers"]):
            await self._decide(doc)

    async def sweep_once(self) -> int:
        """Decide every check whose perspectives did not all answer before the deadline.

        "Before the deadline" is judged by what the answers say when they were written, not when this
        replica got round to reading them: a primary paused or restarted past a deadline (or one whose
        group lags) first reads the `perspective` topic up to the deadline (`answers_read_until`: when the
        consumer group had handled everything written before), and only checks whose deadline is before
        that are decided. A check overdue by more than `GIVE_UP_LAG` is decided anyway, so a group that
        never catches up cannot keep a request waiting for ever."""
        now = self._clock()
        cutoff = now
        if self._answers_read_until is not None:
            read_until = await self._answers_read_until()
            cutoff = min(now, read_until) if read_until is not None else now - GIVE_UP_LAG
        decided = 0
        for doc in await self._store.overdue(cutoff):
            if await self._decide(doc):
                decided += 1
        return decided

    async def _decide(self, doc: Document) -> bool:
        now = self._clock()
        primary = CheckOutcome.from_document(doc["primary"])
        answers: dict[str, Document] = doc.get("answers", {})
        remote: dict[str, bool | None] = {
            p: (bool(answers[p]["ok"]) if p in answers else None) for p in doc.get("perspectives", [])
        }
        limit = None if self._settings.max_disagreements < 0 else self._settings.max_disagreements
        decision = quorum.decide(primary.ok, remote, limit)
        found = list(primary.found)
        reason = primary.reason
        if primary.ok and not decision.ok:
            reason = "perspective_disagreement"
            found = [f"{p}: {answers[p]['reason'] if p in answers else 'no answer in time'}"
                     for p in decision.disagreeing]
        for p in decision.disagreeing:
            DISAGREEMENTS.labels(p, doc["kind"]).inc()
        DECISIONS.labels(doc["kind"], "ok" if decision.ok else "failed").inc()
        event = self._announcers[doc["purpose"]](doc, decision.ok, reason, found, remote, now)
        won = await self._store.settle(doc["_id"], now, {"ok": decision.ok, "reason": reason,
                                                         "perspectives": remote}, event)
        if won:
            log.info("check decided", check_id=doc["_id"], kind=doc["kind"], ok=decision.ok, reason=reason,
                     perspectives=remote)
            if self._audit is not None:
                await self._audit.append(
                    actor="domain_verify", action=f"check.{doc['kind']}.{'passed' if decision.ok else 'failed'}",
                    subject=str(doc["subject"].get("domain") or doc["_id"]),
                    details={"check_id": doc["_id"], "reason": reason, "primary": doc["primary"],
                             "perspectives": {p: answers.get(p) for p in remote},
                             **{k: v for k, v in doc["subject"].items() if k in ("member_id", "request_id")}})
        await self._outbox.flush(self._store.outcomes, doc["_id"])
        return won

    def start(self, every: float) -> None:
        self._periodic = Periodic("domain-verify-corroboration-sweep", self.sweep_once, every)
        self._periodic.start()

    async def stop(self) -> None:
        if self._periodic is not None:
            await self._periodic.stop()
