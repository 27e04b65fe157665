"""Password pages: change it (signed in), ask for a reset link, and set a new one from the mailed link."""

from __future__ import annotations

from aiohttp import web

from services.registration.api.common import email_field
from services.registration.context import Context
from services.registration.members import Members
from services.registration.password_changes import RESET_HOURS, RESET_PATH, PasswordChanges
from services.registration.ratelimit import RateLimiter
from services.registration.web.forms import Form, Route, notice_of, sentence, signed_in, text
from services.registration.web.rendering import render, see_other
from services.registration.web.security import LINK_PAGE_HEADERS, Visitor
from shared.http import ApiError, client_address


class PasswordPages:
    def __init__(self, context: Context, members: Members, limiter: RateLimiter) -> None:
        self._passwords = PasswordChanges(context, members)
        self._limiter = limiter

    def routes(self) -> list[Route]:
        return [
            ("GET", "/account/password", self.change_form, "member"),
            ("POST", "/account/password", self.change, "member"),
            ("GET", "/forgot-password", self.forgot_form, "public"),
            ("POST", "/forgot-password", self.forgot, "public"),
            ("GET", RESET_PATH, self.reset_form, "public"),
            ("POST", RESET_PATH, self.reset, "public"),
        ]

    async def change_form(self, request: web.Request, visitor: Visitor, form: Form, *, error: str | None = None,
                          status: int = 200) -> web.StreamResponse:
        return render(visitor, "password_change.html", title="Change your password", section="account",
                      error=error, notice=notice_of(request), status=status)

    async def change(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        member = signed_in(visitor)
        new = text(form, "new_password")
        if new != text(form, "new_password_again"):
            return await self.change_form(request, visitor, form, error="The two new passwords differ.", status=422)
        try:
            await self._passwords.change(member, text(form, "current_password"), new, visitor.session_digest)
        except ApiError as exc:
            message = "The current password is not right." if exc.code == "wrong_password" else sentence(exc)
            return await self.change_form(request, visitor, form, error=message, status=exc.status)
        return see_other("/account?notice=password_changed")

    async def forgot_form(self, request: web.Request, visitor: Visitor, form: Form, *,
                          sent_to: str | None = None, error: str | None = None, status: int = 200
                          ) -> web.StreamResponse:
        return render(visitor, "password_forgot.html", title="Forgot your password?", sent_to=sent_to,
                      hours=RESET_HOURS, error=error, status=status)

    async def forgot(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        typed = text(form, "email", 256)
        try:
            address = email_field(typed)
        except ApiError:
            return await self.forgot_form(request, visitor, form, error="Enter the email address you joined with.",
                                          status=422)
        await self._limiter.hit("confirm:client", client_address(request))
        await self._passwords.request_reset(address)
        return await self.forgot_form(request, visitor, form, sent_to=address)

    async def reset_form(self, request: web.Request, visitor: Visitor, form: Form, *, error: str | None = None,
                         status: int = 200) -> web.StreamResponse:
        # The mailed link's token is in its fragment: the page's script (or the person) puts it into the form;
        # the server never reads it from the URL (shared/mailed_links.py).
        page = render(visitor, "password_reset.html", title="Choose a new password", token=text(form, "token", 256),
                      error=error, status=status)
        page.headers.update(LINK_PAGE_HEADERS)
        return page

    async def reset(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        new = text(form, "new_password")
        if new != text(form, "new_password_again"):
            return await self.reset_form(request, visitor, form, error="The two passwords differ.", status=422)
        await self._limiter.hit("confirm:client", client_address(request))
        try:
            await self._passwords.reset(text(form, "token", 256).strip(), new)
        except ApiError as exc:
            return await self.reset_form(request, visitor, form, error=sentence(exc), status=exc.status)
        return see_other("/login?notice=password_reset")
