"""Account pages: the start page, sign-up, login and logout, my account and its email addresses."""

from __future__ import annotations

import re
from datetime import timedelta

from aiohttp import web

from services.registration.api.accounts import member_view
from services.registration.api.common import email_field
from services.registration.assurance import Assurances
from services.registration.context import Context
from services.registration.email_addresses import EmailAddresses
from services.registration.issuance_policy import ASSURED_POINTS
from services.registration.members import Members
from services.registration.ratelimit import RateLimiter
from services.registration.sessions import Sessions
from services.registration.signup import Signup, SignupProblem, SignupRefused, enrol, parse_signup
from services.registration.web.forms import Form, Route, notice_of, sentence, signed_in, text
from services.registration.web.rendering import render, see_other
from services.registration.web.security import CookieSecurity, Visitor
from shared.http import ApiError, client_address

ROLE_WORDS = {"member": "Member", "assurer": "Assurer", "admin": "Support (admin)"}
_NEXT = re.compile(r"^/account(/[A-Za-z0-9._~/-]*)?$")


def _safe_next(value: str) -> str:
    return value if _NEXT.match(value or "") else "/account"


def signup_error_line(problem: SignupProblem) -> str:
    """The portal's wording of a refused sign-up field; the JSON API answers the same problem as `problem.error`."""
    if problem.rule == "blank_name":
        return "Enter your name as it appears on your identity documents."
    if problem.rule == "unusable_email":
        return f"Email: {sentence(problem.error)}"
    if problem.rule == "not_a_date":
        return "Date of birth: use the form YYYY-MM-DD."
    if problem.rule == "implausible_date":
        return f"Date of birth: it {problem.problem}."
    return f"Password: {problem.problem}"


class AccountPages:
    def __init__(
        self,
        context: Context,
        *,
        members: Members,
        emails: EmailAddresses,
        sessions: Sessions,
        assurances: Assurances,
        limiter: RateLimiter,
        security: CookieSecurity,
    ) -> None:
        self._ctx = context
        self._members = members
        self._emails = emails
        self._sessions = sessions
        self._assurances = assurances
        self._limiter = limiter
        self._security = security

    def routes(self) -> list[Route]:
        return [
            ("GET", "/", self.home, "public"),
            ("GET", "/signup", self.signup_form, "public"),
            ("POST", "/signup", self.signup, "public"),
            ("GET", "/login", self.login_form, "public"),
            ("POST", "/login", self.login, "public"),
            ("POST", "/logout", self.logout, "member"),
            ("GET", "/account", self.account, "member"),
            ("POST", "/account/emails", self.email_add, "member"),
            ("POST", "/account/emails/{email_id}/resend", self.email_resend, "member"),
            ("GET", "/resend-confirmation", self.resend_form, "public"),
            ("POST", "/resend-confirmation", self.resend_confirmation, "public"),
        ]

    async def home(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        if visitor.member is not None:
            return see_other("/account")
        return render(visitor, "home.html", title="CAcert community CA")

    async def signup_form(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        return render(visitor, "signup.html", title="Join", values={}, errors=[])

    async def signup(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        values = {k: text(form, k, 256) for k in ("name", "date_of_birth", "email")}
        password = text(form, "password", 1024)
        signup: Signup | None = None
        problems: tuple[SignupProblem, ...] = ()
        try:
            signup = parse_signup(
                name=values["name"],
                email=values["email"],
                date_of_birth=values["date_of_birth"],
                password=password,
                today=self._ctx.clock().date(),
            )
        except SignupRefused as refused:
            problems = refused.problems
        errors = [signup_error_line(p) for p in problems]
        # Typing the password twice is a form concern only (the API takes it once).
        if not any(p.field == "password" for p in problems) and password != text(form, "password_again", 1024):
            errors.append("The two passwords differ.")
        if errors or signup is None:
            return render(visitor, "signup.html", title="Join", values=values, errors=errors, status=422)
        await self._limiter.hit("signup:client", client_address(request))
        await self._limiter.hit("signup:address", signup.email)
        try:
            await enrol(signup, self._members, self._emails)
        except ApiError as exc:
            return render(
                visitor, "signup.html", title="Join", values=values, errors=[sentence(exc)], status=exc.status
            )
        return see_other("/login?notice=signed_up")

    async def login_form(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        following = _safe_next(request.query.get("next", ""))
        if visitor.member is not None:
            return see_other(following)
        notice = notice_of(request)
        return render(visitor, "login.html", title="Log in", next=following, notice=notice, error=None, email="",
                      unconfirmed=False)

    async def login(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        following = _safe_next(text(form, "next"))
        typed = text(form, "email", 256)
        try:
            address = email_field(typed)
            client = client_address(request)
            await self._limiter.hit("login:client", client)
            session = await self._sessions.login(address, text(form, "password", 1024), text(form, "totp", 16) or None,
                                                 client=client)
        except ApiError as exc:
            message = sentence(exc) if exc.code != "validation_failed" else "Enter the email address you joined with."
            return render(
                visitor,
                "login.html",
                title="Log in",
                next=following,
                notice=None,
                error=message,
                email=typed,
                unconfirmed=exc.code == "email_unverified",
                status=exc.status,
            )
        response = see_other(following)
        self._security.log_in(response, session["token"])
        return response

    async def resend_form(
        self, request: web.Request, visitor: Visitor, form: Form, *, sent_to: str | None = None,
        error: str | None = None, status: int = 200,
    ) -> web.StreamResponse:
        return render(visitor, "resend_confirmation.html", title="Send the confirmation link again",
                      sent_to=sent_to, error=error, typed=text(form, "email", 320), status=status)

    async def resend_confirmation(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        """Mail a new confirmation link to an unconfirmed address, without logging in (the login refuses until
        the address is confirmed). The same answer whether or not the address belongs to an account."""
        try:
            address = email_field(text(form, "email", 320))
        except ApiError:
            return await self.resend_form(request, visitor, form, error="Enter the email address you joined with.",
                                          status=422)
        await self._limiter.hit("confirm:client", client_address(request))
        await self._limiter.hit("mail:address", address)
        member = await self._members.by_address(address)
        if member is not None:
            for eid, entry in member.emails.items():
                if entry.get("address") == address and not entry.get("verified"):
                    await self._emails.resend(member, eid)
        return await self.resend_form(request, visitor, form, sent_to=address)

    async def logout(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        assert visitor.session_digest is not None
        await self._sessions.logout(visitor.session_digest)
        response = see_other("/login?notice=logged_out")
        self._security.log_out(response)
        return response

    async def account(
        self, request: web.Request, visitor: Visitor, form: Form, *, error: str | None = None, status: int = 200
    ) -> web.StreamResponse:
        member = signed_in(visitor)
        cutoff = self._ctx.clock() - timedelta(days=self._ctx.settings.email_reuse_days)
        view = await member_view(member, self._assurances, cutoff)
        return render(
            visitor,
            "account.html",
            title="My account",
            section="account",
            view=view,
            assured_points=ASSURED_POINTS,
            role_words=ROLE_WORDS,
            typed=text(form, "email", 320),
            error=error,
            status=status,
            notice=notice_of(request),
        )

    async def email_add(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        """Add an address: the same limits and confirmation mail as `POST /v1/emails`."""
        member = signed_in(visitor)
        try:
            address = email_field(text(form, "email", 320))
            await self._limiter.hit("mail:account", member.id)
            await self._limiter.hit("mail:address", address)
            await self._emails.add(member, address)
        except ApiError as exc:
            message = sentence(exc)
            return await self.account(request, visitor, form, error=message, status=exc.status)
        return see_other("/account?notice=email_added")

    async def email_resend(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        """Mail the confirmation link of an unconfirmed address again (as `POST /v1/emails/{id}/resend`)."""
        member = signed_in(visitor)
        eid = request.match_info["email_id"]
        entry = member.emails.get(eid)
        if entry is None:
            raise ApiError(404, "not_found", "There is no such address on your account.")
        await self._limiter.hit("mail:account", member.id)
        await self._limiter.hit("mail:address", entry["address"])
        await self._emails.resend(member, eid)
        return see_other("/account?notice=confirmation_resent")
