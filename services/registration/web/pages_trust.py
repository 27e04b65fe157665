"""Trust pages: my assurance points, recording an assurance (Assurers), and code signing (activated Assurers)."""

from __future__ import annotations

from datetime import date

from aiohttp import web

from services.registration.assurance import MAX_POINTS, Assurances
from services.registration.context import Context
from services.registration.issuance_policy import ASSURED_POINTS
from services.registration.members import ASSURER_POINTS, Members
from services.registration.web.forms import Form, Route, member_by_reference, notice_of, sentence, signed_in, text
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
        self, request: web.Request, visitor: Visitor, form: Form, *, error: str | None = None, status: int = 200
    ) -> web.StreamResponse:
        member = signed_in(visitor)
        listing = await self._assurances.listing(member.id)
        total = sum(int(a["points"]) for a in listing["received"])
        return render(
            visitor,
            "assurance.html",
            title="Assurance",
            section="assurance",
            listing=listing,
            total=total,
            assured=total >= ASSURED_POINTS,
            assured_points=ASSURED_POINTS,
            assurer_points=ASSURER_POINTS,
            max_points=MAX_POINTS,
            error=error,
            status=status,
            today=self._ctx.clock().date().isoformat(),
            notice=notice_of(request),
        )

    async def assure(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        assurer = signed_in(visitor)
        if not assurer.is_assurer:
            raise ApiError(403, "not_an_assurer", "Only Assurers may record assurances.")
        try:
            points = int(text(form, "points", 4))
            met_on = date.fromisoformat(text(form, "date", 10))
        except ValueError:
            return await self.assurance(
                request,
                visitor,
                form,
                status=422,
                error=f"Enter points as a number 0..{MAX_POINTS} and the date as YYYY-MM-DD.",
            )
        location = " ".join(text(form, "location", 200).split())
        if not location:
            return await self.assurance(request, visitor, form, error="Enter where you met.", status=422)
        try:
            target = await member_by_reference(self._members, text(form, "member", 320))
            await self._assurances.record(assurer, target, points=points, location=location, met_on=met_on)
        except ApiError as exc:
            return await self.assurance(request, visitor, form, error=sentence(exc), status=exc.status)
        return see_other("/account/assurance?notice=assured")
