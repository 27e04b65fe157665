"""Account routes: sign-up, login/logout, the member's own record, email addresses and confirmation."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from services.registration.api.common import SESSION_KEY, Authenticator, email_field, schema
from services.registration.assurance import Assurances
from services.registration.context import Context
from services.registration.email_addresses import CONFIRM_PATH, EmailAddresses
from services.registration.issuance_policy import ASSURED_POINTS
from services.registration.members import Member, Members, confirmation_stale
from services.registration.password_changes import RESET_HOURS, PasswordChanges
from services.registration.ratelimit import RateLimiter
from services.registration.second_factor import SecondFactor
from services.registration.sessions import Sessions
from services.registration.signup import Rule, SignupProblem, SignupRefused, enrol, parse_signup
from services.registration.web.messages import for_error
from services.registration.web.rendering import render_link_page
from shared.events import isoformat
from shared.http import ApiError, client_address, read_json


def email_views(member: Member, reuse_cutoff: datetime | None = None) -> list[dict[str, Any]]:
    """The member's addresses; with `reuse_cutoff`, which must be confirmed again before they count."""
    out = []
    for eid, entry in sorted(
        member.emails.items(), key=lambda kv: (not kv[1].get("primary"), kv[1]["address"])
    ):
        verified_at = entry.get("verified_at")
        out.append(
            {
                "id": eid,
                "address": entry["address"],
                "primary": bool(entry.get("primary")),
                "verified": bool(entry.get("verified")),
                "verified_at": isoformat(verified_at) if verified_at else None,
                "needs_confirmation_again": confirmation_stale(entry, reuse_cutoff) if reuse_cutoff else False,
            }
        )
    return out


async def member_view(member: Member, assurances: Assurances, reuse_cutoff: datetime | None = None
                      ) -> dict[str, Any]:
    points = await assurances.points_of(member.id)
    return {
        "id": member.id,
        "name": member.name,
        "date_of_birth": member.date_of_birth,
        "primary_email": member.primary_email,
        "roles": list(member.roles),
        "points": points,
        "assured": points >= ASSURED_POINTS,
        "assurer_test_passed": member.assurer_test_passed,
        "codesign_enabled": member.codesign_enabled,
        "codesign_proposed_by": member.codesign_proposed_by,
        "second_factor": member.second_factor,
        "emails": email_views(member, reuse_cutoff),
    }


# The API answers one problem per sign-up; when several fields are bad it has always named the first
# of these (the rules themselves live in services/registration/signup.py, shared with the portal).
SIGNUP_PRECEDENCE: tuple[Rule, ...] = (
    "unusable_email",
    "not_a_date",
    "blank_name",
    "implausible_date",
    "weak_password",
)


def first_for_api(refused: SignupRefused) -> SignupProblem:
    """The problem the JSON API answers with for a refused sign-up (the same one as before the rules moved)."""
    return min(refused.problems, key=lambda p: SIGNUP_PRECEDENCE.index(p.rule))


class AccountRoutes:
    def __init__(
        self,
        context: Context,
        members: Members,
        emails: EmailAddresses,
        sessions: Sessions,
        assurances: Assurances,
        auth: Authenticator,
        limiter: RateLimiter,
    ) -> None:
        self._ctx = context
        self._members = members
        self._emails = emails
        self._passwords = PasswordChanges(context, members)
        self._second_factor = SecondFactor(context, members)
        self._sessions = sessions
        self._assurances = assurances
        self._auth = auth
        self._limiter = limiter

    def install(self, app: web.Application) -> None:
        app.router.add_post("/v1/members", self.signup)
        app.router.add_post("/v1/sessions", self.login)
        app.router.add_delete("/v1/sessions/current", self.logout)
        app.router.add_get("/v1/me", self.me)
        app.router.add_get("/v1/emails", self.list_emails)
        app.router.add_post("/v1/emails", self.add_email)
        app.router.add_post("/v1/emails/confirm", self.confirm)
        app.router.add_post("/v1/emails/{email_id}/resend", self.resend)
        app.router.add_get(CONFIRM_PATH, self.confirm_page)
        app.router.add_post(CONFIRM_PATH, self.confirm_form)
        app.router.add_post("/v1/me/password", self.change_password)
        app.router.add_post("/v1/me/second-factor", self.begin_second_factor)
        app.router.add_post("/v1/me/second-factor/confirm", self.confirm_second_factor)
        app.router.add_post("/v1/password-resets", self.request_password_reset)
        app.router.add_post("/v1/password-resets/confirm", self.reset_password)

    async def begin_second_factor(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        return web.json_response(await self._second_factor.begin(member), status=201)

    async def confirm_second_factor(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        body = await read_json(request, schema("SecondFactorConfirm"))
        await self._limiter.hit("login:account", member.primary_email)
        await self._second_factor.confirm(member, body["code"])
        return web.json_response({"second_factor": True})

    async def change_password(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        body = await read_json(request, schema("ChangePasswordRequest"))
        await self._passwords.change(member, body["current_password"], body["new_password"], request[SESSION_KEY])
        return web.Response(status=204)

    async def request_password_reset(self, request: web.Request) -> web.Response:
        body = await read_json(request, schema("PasswordResetRequest"))
        address = email_field(body["email"])
        await self._limiter.hit("confirm:client", client_address(request))
        await self._passwords.request_reset(address)
        return web.json_response({"status": "accepted", "message": (
            f"if {address} is the verified address of an account, a reset link (valid {RESET_HOURS} hour) "
            "is on its way")}, status=202)

    async def reset_password(self, request: web.Request) -> web.Response:
        body = await read_json(request, schema("PasswordResetConfirm"))
        await self._limiter.hit("confirm:client", client_address(request))
        await self._passwords.reset(body["token"], body["new_password"])
        return web.json_response({"status": "password_reset", "message": "log in with the new password"})

    async def signup(self, request: web.Request) -> web.Response:
        body = await read_json(request, schema("SignupRequest"))
        try:
            signup = parse_signup(
                name=body["name"],
                email=body["email"],
                date_of_birth=body["date_of_birth"],
                password=body["password"],
                today=self._ctx.clock().date(),
            )
        except SignupRefused as refused:
            raise first_for_api(refused).error from None
        address = signup.email
        await self._limiter.hit("signup:client", client_address(request))
        await self._limiter.hit("signup:address", address)
        member = await enrol(signup, self._members, self._emails)
        return web.json_response(
            {
                "member_id": member.id,
                "email": address,
                "email_verified": False,
                "message": f"we sent a confirmation link to {address}",
            },
            status=201,
        )

    async def login(self, request: web.Request) -> web.Response:
        body = await read_json(request, schema("LoginRequest"))
        address = email_field(body["email"])
        client = client_address(request)
        await self._limiter.hit("login:client", client)
        return web.json_response(await self._sessions.login(address, body["password"], body.get("totp"), client=client),
                                 status=201)

    async def logout(self, request: web.Request) -> web.Response:
        await self._auth.member(request)
        await self._sessions.logout(request[SESSION_KEY])
        return web.Response(status=204)

    def _reuse_cutoff(self) -> datetime:
        return self._ctx.clock() - timedelta(days=self._ctx.settings.email_reuse_days)

    async def me(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        return web.json_response(await member_view(member, self._assurances, self._reuse_cutoff()))

    async def list_emails(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        return web.json_response({"emails": email_views(member, self._reuse_cutoff())})

    async def add_email(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        body = await read_json(request, schema("AddEmailRequest"))
        address = email_field(body["email"])
        await self._limiter.hit("mail:account", member.id)
        await self._limiter.hit("mail:address", address)
        entry = await self._emails.add(member, address)
        return web.json_response(
            {"id": entry["id"], "address": address, "primary": False, "verified": False, "verified_at": None},
            status=201,
        )

    async def resend(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        eid = request.match_info["email_id"]
        entry = member.emails.get(eid)
        if entry is None:
            raise ApiError(404, "not_found", "no such email address on your account")
        await self._limiter.hit("mail:account", member.id)
        await self._limiter.hit("mail:address", entry["address"])
        await self._emails.resend(member, eid)
        return web.json_response({"status": "sent", "address": entry["address"]}, status=202)

    async def confirm(self, request: web.Request) -> web.Response:
        body = await read_json(request, schema("ConfirmEmailRequest"))
        await self._limiter.hit("confirm:client", client_address(request))
        return web.json_response(await self._emails.confirm(body["token"]))

    async def confirm_page(self, request: web.Request) -> web.Response:
        """The link in the mail: a page with a button, so link scanners that fetch it confirm nothing. The token
        is in the link's fragment, which the page's script puts into the form; the URL is never read."""
        return render_link_page("confirm_email.html", title="Confirm your email address", action=CONFIRM_PATH)

    async def confirm_form(self, request: web.Request) -> web.Response:
        try:
            form = await request.post()
        except (ValueError, web.HTTPException):
            form = {}  # type: ignore[assignment]
        token = form.get("token") if form else None
        token = token.strip() if isinstance(token, str) else ""  # typed in from the mail: spaces around
        await self._limiter.hit("confirm:client", client_address(request))
        try:
            result = await self._emails.confirm(token)
        except ApiError as exc:
            return render_link_page(
                "email_confirmed.html", title="Not confirmed", status=exc.status, message=for_error(exc), address=None
            )
        return render_link_page(
            "email_confirmed.html", title="Address confirmed", message=None, address=result["email"]
        )
