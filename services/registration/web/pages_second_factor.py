"""The second-factor page: turn on TOTP with an authenticator app (scan or type the secret, confirm a code)."""

from __future__ import annotations

from aiohttp import web

from services.registration.context import Context
from services.registration.members import Members
from services.registration.second_factor import SecondFactor
from services.registration.web.forms import Form, Route, sentence, signed_in, text
from services.registration.web.rendering import render, see_other
from services.registration.web.security import Visitor
from shared.http import ApiError


class SecondFactorPages:
    def __init__(self, context: Context, members: Members) -> None:
        self._second_factor = SecondFactor(context, members)

    def routes(self) -> list[Route]:
        return [
            ("GET", "/account/second-factor", self.page, "member"),
            ("POST", "/account/second-factor", self.begin, "member"),
            ("POST", "/account/second-factor/confirm", self.confirm, "member"),
        ]

    async def page(self, request: web.Request, visitor: Visitor, form: Form, *, started: dict[str, str] | None = None,
                   error: str | None = None, status: int = 200) -> web.StreamResponse:
        member = signed_in(visitor)
        return render(visitor, "second_factor.html", title="Two-factor authentication", section="account",
                      on=member.second_factor, started=started, error=error, status=status,
                      staff=member.is_admin or member.is_assurer)

    async def begin(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        try:
            started = await self._second_factor.begin(signed_in(visitor))
        except ApiError as exc:
            return await self.page(request, visitor, form, error=sentence(exc), status=exc.status)
        return await self.page(request, visitor, form, started=started)

    async def confirm(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        try:
            await self._second_factor.confirm(signed_in(visitor), text(form, "code", 16))
        except ApiError as exc:
            return await self.page(request, visitor, form, error=sentence(exc), status=exc.status)
        return see_other("/account?notice=second_factor_on")
