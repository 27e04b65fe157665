"""Trust pages: my assurance points, recording an assurance (Assurers), and code signing (activated Assurers)."""

from __future__ import annotations

from datetime import date

from aiohttp import web

from services.registration.assurance import MAX_POINTS, Assurances
from services.registration.context import Context, Document
from services.registration.issuance_policy import ASSURED_POINTS
from services.registration.members import ASSURER_POINTS, Members
from services.registration.web.forms import (
    EMPTY,
    Form,
    Route,
    member_by_reference,
    notice_of,
    sentence,
    signed_in,
    text,
)
from services.registration.web.rendering import render, see_other
from services.registration.web.security import Visitor
from shared.http import ApiError


class TrustPages:
    def __init__(self, context: Context, members: Members, assurances: Assurances) -> None:
        self._ctx = context
        self._members = members
        self._assurances = assurances

    def routes(self) -> list[Route]:
        return [
            ("GET", "/account/assurance", self.assurance, "member"),
            ("POST", "/account/assurance", self.assure, "member"),
            ("POST", "/account/assurance/member", self.look_up, "member"),
            ("GET", "/account/code-signing", self.code_signing, "member"),
        ]

    async def code_signing(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        """The form for code-signing CSRs once support activated it; before that, the rule."""
        member = signed_in(visitor)
        return render(
            visitor,
            "code_signing.html",
            title="Code signing",
            section="codesign",
            active=member.is_assurer and member.codesign_enabled,
            assurer=member.is_assurer,
            assurer_points=ASSURER_POINTS,
        )

    async def assurance(
        self,
        request: web.Request,
        visitor: Visitor,
        form: Form,
        *,
        error: str | None = None,
        status: int = 200,
        identity: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        """My points and whom I met; for Assurers the two steps of an assurance: look the member up, then (with
        `identity`: the name and date of birth to compare with the documents) record it."""
        member = signed_in(visitor)
        listing = await self._assurances.listing(member.id)
        received = await self._assurances.received_naming_assurers(member.id)
        total = sum(int(a["points"]) for a in received)
        return render(
            visitor,
            "assurance.html",
            title="Assurance",
            section="assurance",
            listing=listing,
            received=received,
            total=total,
            assured=total >= ASSURED_POINTS,
            assured_points=ASSURED_POINTS,
            assurer_points=ASSURER_POINTS,
            max_points=MAX_POINTS,
            error=error,
            status=status,
            today=self._ctx.clock().date().isoformat(),
            notice=notice_of(request),
            identity=identity,
            typed=form,
            recorded=await self._recorded(member.id, listing, request.query.get("assured", "")),
        )

    async def _recorded(self, assurer_id: str, listing: dict[str, list[Document]], member_id: str
                        ) -> dict[str, object] | None:
        """After recording: whom the Assurer assured, with how many points (only an assurance they gave)."""
        given = next((a for a in listing["given"] if a["member_id"] == member_id), None) if member_id else None
        if given is None:
            return None
        assured = await self._members.get(member_id)
        return {"name": assured.name if assured else "the member", "points": given["points"],
                "total": await self._assurances.points_of(member_id)}

    async def look_up(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        """Step 1 of an assurance: the member's name(s) and date of birth, to compare with their documents."""
        assurer = signed_in(visitor)
        if not assurer.is_assurer:  # before the look-up: no one else learns which addresses have accounts
            raise ApiError(403, "not_an_assurer", "Only Assurers may record assurances.")
        try:
            target = await member_by_reference(self._members, text(form, "member", 320))
            identity = await self._assurances.identity_for_assurer(assurer, target)
        except ApiError as exc:
            return await self.assurance(request, visitor, form, error=sentence(exc), status=exc.status)
        return await self.assurance(request, visitor, EMPTY, identity=identity)

    async def assure(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        """Step 2: record the assurance; the Assurer must confirm they checked the documents."""
        assurer = signed_in(visitor)
        if not assurer.is_assurer:
            raise ApiError(403, "not_an_assurer", "Only Assurers may record assurances.")
        try:
            target = await member_by_reference(self._members, text(form, "member", 320))
            identity = await self._assurances.identity_for_assurer(assurer, target)
        except ApiError as exc:
            return await self.assurance(request, visitor, EMPTY, error=sentence(exc), status=exc.status)

        async def again(error: str, status: int = 422) -> web.StreamResponse:
            return await self.assurance(request, visitor, form, error=error, status=status, identity=identity)

        try:
            points = int(text(form, "points", 4))
            met_on = date.fromisoformat(text(form, "date", 10))
        except ValueError:
            return await again(f"Enter points as a number 0..{MAX_POINTS} and the date as YYYY-MM-DD.")
        location = " ".join(text(form, "location", 200).split())
        if not location:
            return await again("Enter where you met.")
        try:
            await self._assurances.record(assurer, target, points=points, location=location, met_on=met_on,
                                          documents_checked=text(form, "documents_checked", 3) == "yes")
        except ApiError as exc:
            return await again(sentence(exc), exc.status)
        return see_other(f"/account/assurance?assured={target.id}")
