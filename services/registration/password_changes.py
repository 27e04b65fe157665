"""Changing a password, and resetting a forgotten one by a single-use mailed link.

* Change: the member proves the current password (checked like a login, and counted against the same
  per-account limit); every other session of the account ends, the one in use stays.
* Reset: anyone may ask for a link for an address; the answer is the same whether or not an account
  uses it (no way to learn who is a member). For the primary, verified address of an account, a token
  is drawn (256 bits, stored only as its SHA-256 digest, valid `RESET_HOURS`, purpose
  `password_reset` so the confirm-email endpoint cannot spend it) and its link mailed through the
  outbox. Using it sets the new password, spends the token and ends every session of the account.
Both audit the change. The raw token travels only in the mail command, sealed to the notifier's key, and
in the link's fragment (shared/mailed_links.py), which no request line carries.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.registration import tokens
from services.registration.context import Context
from services.registration.members import Member, Members
from services.registration.passwords import hash_async, password_problem, verify_async
from services.registration.ratelimit import RateLimiter
from shared.events import isoformat
from shared.http import ApiError
from shared.mailed_links import mailed_link, page

RESET_PATH = "/reset-password"
RESET_HOURS = 1
PURPOSE = "password_reset"


class PasswordChanges:
    def __init__(self, context: Context, members: Members) -> None:
        self._ctx = context
        self._members = members
        self._store = context.store
        self._limits = RateLimiter(context)

    async def change(self, member: Member, current: str, new: str, session_digest: str | None) -> None:
        await self._limits.hit("login:account", member.primary_email)
        stored = await self._members.password_hash(member.id)
        if stored is None or not await verify_async(current, stored):
            raise ApiError(403, "wrong_password", "the current password is not right")
        _check(new)
        await self._set(member.id, new, keep_session=session_digest)
        await self._ctx.audit(member.id, "member.password_changed", member.id)

    async def request_reset(self, address: str) -> None:
        """Mail a reset link if `address` is the verified primary address of an account; else nothing."""
        await self._limits.hit("mail:address", address)
        member = await self._members.by_address(address)
        if member is None or member.primary_email != address or not member.primary_verified():
            return
        now = self._ctx.clock()
        token = tokens.issue(timedelta(hours=RESET_HOURS), now)
        await self._store.insert_email_token({
            "_id": token.digest, "purpose": PURPOSE, "member_id": member.id, "address": address,
            "expires_at": token.expires_at, "created_at": now,
        })
        public_url = self._ctx.settings.public_url
        mail = self._ctx.event("mail.send_requested", {  # the context seals link and code to the notifier
            "to": address, "template": "password_reset", "params": {
                "link": mailed_link(public_url, RESET_PATH, token.raw), "code": token.raw,
                "page": page(public_url, RESET_PATH), "name": member.name, "hours": RESET_HOURS},
            "member_id": member.id, "requested_at": isoformat(now),
        })
        await self._store.update_member_with_events(member.id, {}, [mail])
        await self._ctx.audit(member.id, "member.password_reset_requested", member.id)

    async def reset(self, raw_token: str, new: str) -> dict[str, Any]:
        """Set a new password with a mailed token; 404 unknown or used, 410 expired."""
        unknown = ApiError(404, "token_unknown", "this reset link is unknown or was already used; ask for a new one")
        if not tokens.looks_like_token(raw_token):
            raise unknown
        digest = tokens.digest(raw_token)
        stored = await self._store.email_token(digest)
        if stored is None or stored.get("purpose") != PURPOSE:
            raise unknown
        if not tokens.is_live(stored["expires_at"], self._ctx.clock()):
            raise ApiError(410, "token_expired", "this reset link has expired; ask for a new one")
        _check(new)  # before the token is spent: a refused password leaves the link usable
        await self._store.delete_email_token(digest)  # spent before use: a replay finds nothing
        await self._set(stored["member_id"], new, keep_session=None)
        await self._ctx.audit(stored["member_id"], "member.password_reset", stored["member_id"])
        return {"member_id": stored["member_id"]}

    async def _set(self, member_id: str, new: str, *, keep_session: str | None) -> None:
        await self._store.update_member_with_events(member_id, {"password_hash": await hash_async(new)}, [])
        await self._store.delete_sessions_of(member_id, keep=keep_session)


def _check(password: str) -> None:
    problem = password_problem(password)
    if problem:
        raise ApiError(422, "weak_password", problem)
