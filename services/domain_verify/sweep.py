"""ExpirySweep: closes challenges whose link ran out, so the member's view does not hang in "pending".

FerretDB has no TTL indexes, and a TTL index would only delete silently
anyway; the member must hear that the request failed. Each run finds pending
challenges past `expires_at` and settles each as `expired` with its
`domain.verification_failed` (reason "expired"); settling is a unique insert
(see store.py), so a challenge is announced once even with several replicas
sweeping or a confirmation racing, and the deterministic event id covers a
crash between the write and the flush.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from services.domain_verify import events
from services.domain_verify.challenge import ChallengeState
from services.domain_verify.store import ChallengeStore
from shared.events import utcnow
from shared.logging import get_logger
from shared.outbox import Outbox
from shared.periodic import Periodic

log = get_logger("domain_verify.sweep")

EXPIRED = "expired"


class ExpirySweep:
    def __init__(self, store: ChallengeStore, outbox: Outbox, *, every: float,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._store = store
        self._outbox = outbox
        self._every = every
        self._clock = clock
        self._periodic: Periodic | None = None

    async def run_once(self) -> int:
        """Expire what ran out; returns how many challenges this run closed."""
        now = self._clock()
        closed = 0
        async for challenge in self._store.expired_pending(now):
            failed = events.verification_failed(
                request_id=challenge.request_id, member_id=challenge.member_id, domain=challenge.domain,
                reason=EXPIRED, failed_at=now)
            if await self._store.settle(challenge.request_id, ChallengeState.EXPIRED, now, failed,
                                        {"ended_at": now}):
                closed += 1
                await self._outbox.flush(self._store.settlements, challenge.request_id)
        if closed:
            log.info("expired challenges closed", count=closed)
        return closed

    def start(self) -> None:
        self._periodic = Periodic("domain-verify-expiry-sweep", self.run_once, self._every)
        self._periodic.start()

    async def stop(self) -> None:
        if self._periodic is not None:
            await self._periodic.stop()
