"""The second factor: time-based one-time passwords (TOTP, RFC 6238) from an authenticator app.

Assurers and admins grant trust (points, Assurer status, code signing), so a stolen password alone must
not let anyone do that: they turn on TOTP before they may assure, grant or activate anything
(`require_for`), and from then on their login asks for the 6-digit code. Any member may turn it on.

Turning it on takes two steps, so a mistyped secret never locks anyone out: `begin` draws a secret
(160 bits, base32) and shows it with its `otpauth://` URI; `confirm` enables it once the app's first
code matches. Codes are accepted one 30-second step early or late (clock drift). The secret is stored
with the member and never logged, mailed or put in an event.
"""

from __future__ import annotations

from typing import Any

import pyotp

from services.registration.context import Context
from services.registration.members import Member, Members
from shared.http import ApiError

ISSUER = "CAcert Community CA"
CODE_PATTERN = r"^[0-9]{6}$"


def code_matches(secret: str, code: str | None) -> bool:
    return bool(secret and code) and pyotp.TOTP(secret).verify(str(code).strip(), valid_window=1)


def require_for(member: Member, what: str) -> None:
    """403 unless `member` has turned on the second factor (Assurers and admins, before they act)."""
    if not member.second_factor:
        raise ApiError(403, "second_factor_required",
                       f"turn on two-factor authentication (an authenticator app) before you {what}")


class SecondFactor:
    def __init__(self, context: Context, members: Members) -> None:
        self._ctx = context
        self._members = members
        self._store = context.store

    async def begin(self, member: Member) -> dict[str, Any]:
        if member.second_factor:
            raise ApiError(409, "second_factor_enabled", "two-factor authentication is already on")
        secret = pyotp.random_base32()
        await self._store.update_member_with_events(member.id, {"totp_pending": secret}, [])
        return {"secret": secret,
                "otpauth_uri": pyotp.TOTP(secret).provisioning_uri(name=member.primary_email, issuer_name=ISSUER)}

    async def confirm(self, member: Member, code: str) -> None:
        doc = await self._store.member(member.id) or {}
        pending = doc.get("totp_pending")
        if not pending:
            raise ApiError(409, "second_factor_not_started", "start turning on two-factor authentication first")
        if not code_matches(pending, code):
            raise ApiError(422, "second_factor_invalid", "that code does not match: check the app's clock and "
                                                         "enter the code it shows now")
        await self._store.update_member_with_events(
            member.id, {"totp_secret": pending, "totp_pending": None, "second_factor": True}, [])
        await self._ctx.audit(member.id, "member.second_factor_enabled", member.id)

    async def check_login(self, member: Member, code: str | None) -> None:
        """At login, for a member who turned it on: the current code, or 401."""
        if not member.second_factor:
            return
        if not code:
            raise ApiError(401, "second_factor_required",
                           "this account uses two-factor authentication: send the 6-digit code from your app")
        doc = await self._store.member(member.id) or {}
        if not code_matches(str(doc.get("totp_secret") or ""), code):
            raise ApiError(401, "second_factor_invalid", "the two-factor code is wrong or expired")
