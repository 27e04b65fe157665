"""ChallengeIssuer: turns a `domain.verification_requested` into a mailed challenge, or a refusal.

Idempotency: the challenge document's `_id` is the request id and the mail
command's id is derived from it, so a redelivered request finds its document,
re-flushes whatever the first attempt may have left in the outbox, and
neither draws a second token nor asks for a second mail.

Supersession: a newer request for the same member and domain replaces an
older pending one, which is closed with `domain.verification_failed`
(reason "superseded") so the member's view does not hang in "pending"; its
link stops working at once. Another member's request for the same domain
never touches this member's challenge: challenges are bound to
member + domain + contact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from services.domain_verify import events
from services.domain_verify.challenge import ChallengeState, DomainChallenge, expiry
from services.domain_verify.request_check import RequestRefused, check_request
from services.domain_verify.settings import DomainVerifySettings
from services.domain_verify.store import ChallengeStore
from services.domain_verify.tokens import new_token, token_hash
from shared.domain_methods import current_request_order
from shared.events import CloudEvent, utcnow
from shared.logging import get_logger
from shared.outbox import Outbox
from shared.sealed_mail import MailSealer

log = get_logger("domain_verify.issuer")

SUPERSEDED = "superseded"


class ChallengeIssuer:
    def __init__(self, store: ChallengeStore, outbox: Outbox, settings: DomainVerifySettings, sealer: MailSealer,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._store = store
        self._outbox = outbox
        self._settings = settings
        self._sealer = sealer
        self._clock = clock

    async def handle(self, event: CloudEvent) -> None:
        """Handler for `domain.verification_requested` (the payload is schema-valid already)."""
        data = event.data
        request_id: str = data["request_id"]
        if await self._store.get(request_id) is not None:
            log.info("request already handled; re-flushing its outbox", request_id=request_id)
            await self._outbox.flush(self._store.collection, request_id)
            return
        now = self._clock()
        base = DomainChallenge(
            request_id=request_id, member_id=data["member_id"], domain=data["domain"],
            contact=data.get("contact", ""), state=ChallengeState.REFUSED,
            requested_at=datetime.fromisoformat(data["requested_at"]), created_at=now, expires_at=None,
            member_name=_member_name(data),
        )
        try:
            if data.get("method", "email") != "email":
                raise RequestRefused(f"verification method {data['method']!r} is not offered; use 'email'")
            checked = check_request(data["domain"], data["contact"])
        except RequestRefused as refusal:
            await self._refuse(base, str(refusal), now)
            return
        candidate = _with(base, domain=checked.domain, contact=checked.contact)
        pending = await self._store.pending_for(candidate.member_id, candidate.domain)
        if any(other.supersedes(candidate) for other in pending):
            # Arrived after a newer request for the same domain (another partition): never mail it.
            await self._refuse(_with(candidate, state=ChallengeState.SUPERSEDED), SUPERSEDED, now)
            return
        await self._issue(candidate, now)
        await self._supersede_older(candidate.member_id, candidate.domain, now)

    async def _issue(self, candidate: DomainChallenge, now: datetime) -> None:
        token = new_token()
        expires_at = expiry(now, self._settings.challenge_hours)
        challenge = _with(candidate, state=ChallengeState.PENDING, expires_at=expires_at,
                          token_hash=token_hash(token))
        mail = self._sealer.seal(events.challenge_mail(
            request_id=challenge.request_id, member_id=challenge.member_id, to=challenge.contact,
            public_url=self._settings.public_url, token=token, domain=challenge.domain,
            expires_at=expires_at, requested_at=now, member_name=challenge.member_name,
        ))
        if await self._store.create(challenge, [mail]):
            log.info("challenge mailed", request_id=challenge.request_id, domain=challenge.domain,
                     contact=challenge.contact, expires_at=expires_at.isoformat())
        await self._outbox.flush(self._store.collection, challenge.request_id)

    async def _refuse(self, challenge: DomainChallenge, reason: str, now: datetime) -> None:
        failed = events.verification_failed(request_id=challenge.request_id, member_id=challenge.member_id,
                                            domain=challenge.domain, reason=reason, failed_at=now)
        if await self._store.create(challenge, [failed]):
            log.info("verification request refused", request_id=challenge.request_id,
                     domain=challenge.domain, reason=reason)
        await self._outbox.flush(self._store.collection, challenge.request_id)

    async def _supersede_older(self, member_id: str, domain: str, now: datetime) -> None:
        pending = await self._store.pending_for(member_id, domain)
        if len(pending) < 2:
            return
        newest = max(pending, key=lambda c: current_request_order(c.requested_at, c.request_id))
        for old in pending:
            if old.request_id == newest.request_id:
                continue
            failed = events.verification_failed(request_id=old.request_id, member_id=old.member_id,
                                                domain=old.domain, reason=SUPERSEDED, failed_at=now)
            if await self._store.settle(old.request_id, ChallengeState.SUPERSEDED, now, failed,
                                        {"ended_at": now}):
                log.info("challenge superseded", request_id=old.request_id, by=newest.request_id)
                await self._outbox.flush(self._store.settlements, old.request_id)


def _member_name(data: dict[str, Any]) -> str | None:
    name = data.get("member_name")
    return name if isinstance(name, str) and name.strip() else None


def _with(challenge: DomainChallenge, **changes: Any) -> DomainChallenge:
    return dataclasses.replace(challenge, **changes)
