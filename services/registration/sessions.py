"""Login sessions: random bearer tokens stored only as SHA-256 digests, with an expiry.

A login for an unknown address verifies against a dummy hash so both
answers take the same time; only members who confirmed their primary
address may log in. Failed logins slow further attempts for the address
down (login_guard.py), for every front door alike.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.registration import tokens
from services.registration.context import Context
from services.registration.login_guard import LoginGuard
from services.registration.members import Member, Members
from services.registration.passwords import DUMMY_HASH, hash_async, needs_rehash, verify_async
from services.registration.second_factor import SecondFactor
from shared.events import isoformat
from shared.http import ApiError

GUESSES = ("invalid_credentials", "second_factor_invalid")
"""Refusals that count as failed logins: a wrong password, a wrong second-factor code."""


class Sessions:
    def __init__(self, context: Context, members: Members) -> None:
        self._ctx = context
        self._members = members
        self._store = context.store
        self._second_factor = SecondFactor(context, members)
        self._guard = LoginGuard(context)

    async def login(self, address: str, password: str, code: str | None = None, *,
                    client: str = "unknown") -> dict[str, Any]:
        """A session for the right password (and, where turned on, the current second-factor code).
        `client` is the caller's address (shared.http.client_address), which the backoff remembers."""
        known = await self._guard.admit(address, client)
        try:
            session = await self._session_for(address, password, code)
        except ApiError as exc:
            if exc.code in GUESSES:
                await self._guard.failed(address)
            raise
        await self._guard.succeeded(address, client, known=known)
        return session

    async def _session_for(self, address: str, password: str, code: str | None) -> dict[str, Any]:
        member = await self._members.by_address(address)
        stored = (await self._members.password_hash(member.id) if member else None) or DUMMY_HASH
        if not await verify_async(password, stored) or member is None:
            raise ApiError(401, "invalid_credentials", "unknown address or wrong password")
        if needs_rehash(stored):
            # Older hashes (scrypt, or weaker Argon2 parameters) become today's Argon2id at the first
            # login that proves the password: the only moment the plain password is at hand.
            await self._members.replace_password_hash(member.id, stored, await hash_async(password))
        if not member.primary_verified():
            raise ApiError(
                403, "email_unverified", "confirm your primary email address first (see the mail we sent you)"
            )
        await self._second_factor.check_login(member, code)
        now = self._ctx.clock()
        token = tokens.issue(timedelta(hours=self._ctx.settings.session_hours), now)
        await self._store.insert_session(
            {"_id": token.digest, "member_id": member.id, "expires_at": token.expires_at, "created_at": now}
        )
        return {
            "token": token.raw,
            "token_type": "Bearer",
            "expires_at": isoformat(token.expires_at),
            "member_id": member.id,
        }

    async def member_for(self, raw_token: str) -> tuple[Member, str] | None:
        """The member a live session token belongs to (and the token's digest), or None."""
        if not tokens.looks_like_token(raw_token):
            return None
        digest = tokens.digest(raw_token)
        session = await self._store.session(digest)
        if session is None or not tokens.is_live(session["expires_at"], self._ctx.clock()):
            return None
        member = await self._members.get(session["member_id"])
        return (member, digest) if member else None

    async def logout(self, digest: str) -> None:
        await self._store.delete_session(digest)
