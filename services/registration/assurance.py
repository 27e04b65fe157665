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

    def _may_assure(self, assurer: Member, member: Member) -> None:
        if not assurer.is_assurer:
            raise ApiError(403, "not_an_assurer", "only Assurers may record assurances")
        require_for(assurer, "assure anyone")
        if assurer.id == member.id:
            raise ApiError(422, "self_assurance", "you cannot assure yourself")

    async def identity_for_assurer(self, assurer: Member, member: Member) -> dict[str, str]:
        """What the Assurer compares with the identity documents: the name(s) and date of birth the member
        entered at sign-up. Only an Assurer (with the second factor on) who could assure this member sees it,
        only in the assurance flow, and every look-up is in the audit log."""
        self._may_assure(assurer, member)
        await self._ctx.audit(assurer.id, "assurance.identity_shown", member.id)
        return {"id": member.id, "name": member.name, "date_of_birth": member.date_of_birth,
                "email": member.primary_email}

    async def record(
        self, assurer: Member, member: Member, *, points: int, location: str, met_on: date,
        documents_checked: bool,
    ) -> dict[str, Any]:
        """Record one assurance; refuses non-Assurers, self-assurance, a second one per pair, and an Assurer
        who does not confirm having checked the member's identity documents (CAcert's Assurance Policy: two
        government-issued photo IDs compared with the name and date of birth the member entered)."""
        self._may_assure(assurer, member)
        if documents_checked is not True:
            raise ApiError(422, "documents_not_checked",
                           "confirm that you checked two government-issued photo ID documents of the member "
                           "against their name and date of birth")
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
                "assurer_name": assurer.name,
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

    async def received_naming_assurers(self, member_id: str) -> list[Document]:
        """The assurances a member received, each with `assurer_name`: whom the member met (their own page)."""
        out = []
        for doc in await self._store.assurances_received(member_id):
            assurer = await self._store.member(doc["assurer_id"])
            out.append({**_public(doc), "assurer_name": assurer["name"] if assurer else "a former member"})
        return out


def _public(doc: Document) -> Document:
    out = {k: v for k, v in doc.items() if k != "_id"}
    if "recorded_at" in out and hasattr(out["recorded_at"], "isoformat"):
        out["recorded_at"] = isoformat(out["recorded_at"])
    return out
