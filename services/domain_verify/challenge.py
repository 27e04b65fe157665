"""DomainChallenge: one verification request and where it stands.

One document per `domain.verification_requested` (its `_id` is the request
id), so a redelivered request finds its document and creates nothing new.
A request that fails the name/contact checks is kept too (status `refused`,
no token), which makes its failure event as idempotent as a challenge.

States: `pending` (link mailed, waiting) → `confirmed` (the contact clicked
and confirmed), or `expired` (the sweep found it past `expires_at`), or
`superseded` (a newer request for the same member and domain replaced it).
Only `pending` and not past its expiry can be confirmed; every other state
is final.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime, timedelta
from typing import Any


class ChallengeState(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"
    REFUSED = "refused"


@dataclasses.dataclass(frozen=True)
class DomainChallenge:
    request_id: str
    member_id: str
    domain: str  # IDNA A-label, lower case
    contact: str  # local@a-label, the address the link was mailed to
    state: ChallengeState
    requested_at: datetime
    created_at: datetime
    expires_at: datetime | None  # None for refused requests (nothing to expire)
    member_name: str | None = None
    token_hash: str | None = None
    confirmed_at: datetime | None = None

    def effective_state(self, now: datetime) -> ChallengeState:
        """The state as a visitor sees it: a pending challenge past its expiry is expired even
        before the sweep has recorded it."""
        if self.state is ChallengeState.PENDING and self.expires_at is not None and now >= self.expires_at:
            return ChallengeState.EXPIRED
        return self.state

    def can_confirm(self, now: datetime) -> bool:
        return self.effective_state(now) is ChallengeState.PENDING

    def supersedes(self, other: DomainChallenge) -> bool:
        """Whether this request is the newer of two for the same member and domain.

        Requests are keyed by request id, so two requests for one domain may sit in different
        partitions and arrive out of order; ordering by when the member asked (then by id, for
        a total order) makes every replica pick the same survivor whatever the arrival order.
        """
        return (self.requested_at, self.request_id) > (other.requested_at, other.request_id)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> DomainChallenge:
        return cls(
            request_id=doc["_id"], member_id=doc["member_id"], domain=doc["domain"],
            contact=doc["contact"], state=ChallengeState(doc["state"]),
            requested_at=doc["requested_at"], created_at=doc["created_at"],
            expires_at=doc.get("expires_at"), member_name=doc.get("member_name"),
            token_hash=doc.get("token_hash"), confirmed_at=doc.get("confirmed_at"),
        )

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "_id": self.request_id, "member_id": self.member_id, "domain": self.domain,
            "contact": self.contact, "state": self.state.value, "requested_at": self.requested_at,
            "created_at": self.created_at,
        }
        for name in ("expires_at", "member_name", "token_hash", "confirmed_at"):
            value = getattr(self, name)
            if value is not None:
                doc[name] = value
        return doc


def expiry(created_at: datetime, hours: float) -> datetime:
    """When a challenge created at `created_at` stops being usable."""
    return created_at + timedelta(hours=hours)


def valid_until(verified_at: datetime, days: int) -> datetime:
    """When a verification made at `verified_at` must be renewed."""
    return verified_at + timedelta(days=days)
