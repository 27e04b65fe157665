"""The web of trust: Assurers award points to members they met; totals derive from the records.

An assurance is one record per (assurer, member) pair (the store keeps
"at most once per pair" under races). A member's points are
always the sum of the records, never a stored counter that could drift.
The event announcing an assurance is written with the record, in one
insert (store.py's outbox rule).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from services.registration.context import Context, Document
from services.registration.issuance_policy import ASSURED_POINTS
from services.registration.members import Member
from services.registration.second_factor import require_for
from shared.events import deterministic_event_id, isoformat
from shared.http import ApiError

MAX_POINTS = 35


class Assurances:
    def __init__(self, context: Context) -> None:
        self._ctx = context
        self._store = context.store

    async def points_of(self, member_id: str) -> int:
        docs = await self._store.assurances_received(member_id)
        return sum(int(doc.get("points", 0)) for doc in docs)

    async def record(
        self, assurer: Member, member: Member, *, points: int, location: str, met_on: date
    ) -> dict[str, Any]:
        """Record one assurance; refuses non-Assurers, self-assurance and a second one per pair."""
        if not assurer.is_assurer:
            raise ApiError(403, "not_an_assurer", "only Assurers may record assurances")
        require_for(assurer, "assure anyone")
        if assurer.id == member.id:
            raise ApiError(422, "self_assurance", "you cannot assure yourself")
        if not 0 <= points <= MAX_POINTS:
            raise ApiError(422, "invalid_points", f"points must be between 0 and {MAX_POINTS}")
        if met_on > self._ctx.clock().date():
            raise ApiError(422, "invalid_date", "the date of the meeting cannot be in the future")
        now = self._ctx.clock()
        total = await self.points_of(member.id) + points
        doc_id = f"{assurer.id}:{member.id}"
        event = self._ctx.event(
            "member.assurance_recorded",
            {
                "member_id": member.id,
                "assurer_id": assurer.id,
                "points": points,
                "total_points": total,
                "assured": total >= ASSURED_POINTS,
                "location": location,
                "date": met_on.isoformat(),
                "recorded_at": isoformat(now),
            },
            event_id=deterministic_event_id("member.assurance_recorded", assurer.id, member.id),
        )
        doc: Document = {
            "_id": doc_id,
            "assurer_id": assurer.id,
            "member_id": member.id,
            "points": points,
            "location": location,
            "date": met_on.isoformat(),
            "recorded_at": now,
        }
        if not await self._store.insert_assurance_with_event(doc, event):
            raise ApiError(409, "already_assured", "you have already assured this member")
        await self._ctx.audit(assurer.id, "assurance.recorded", member.id, points=points, total_points=total,
                              location=location, date=met_on.isoformat())
        return {
            "assurer_id": assurer.id,
            "member_id": member.id,
            "points": points,
            "location": location,
            "date": met_on.isoformat(),
            "recorded_at": isoformat(now),
            "total_points": total,
            "assured": total >= ASSURED_POINTS,
        }

    async def listing(self, member_id: str) -> dict[str, list[Document]]:
        """Assurances a member received and gave."""
        received = await self._store.assurances_received(member_id)
        given = await self._store.assurances_given(member_id)
        return {"received": [_public(d) for d in received], "given": [_public(d) for d in given]}


def _public(doc: Document) -> Document:
    out = {k: v for k, v in doc.items() if k != "_id"}
    if "recorded_at" in out and hasattr(out["recorded_at"], "isoformat"):
        out["recorded_at"] = isoformat(out["recorded_at"])
    return out
