"""Email addresses of an account and their confirmation by a single-use, expiring mailed link.

The raw token only travels in the mail command, sealed to the notifier's key
(shared/sealed_mail.py), and in the link's fragment, which no request line carries
(shared/mailed_links.py); the store keeps its SHA-256 digest (`email_tokens`). Confirming first marks
the address verified (guarded by "still unverified", so a replay changes
nothing), then deletes the token; an expired token is refused and leaves
everything as it was.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from services.registration import tokens
from services.registration.context import Context
from services.registration.members import Member, Members, confirmation_stale, email_entry, email_id
from shared.events import CloudEvent, deterministic_event_id, isoformat
from shared.http import ApiError
from shared.mailed_links import mailed_link, page

CONFIRM_PATH = "/confirm-email"


class EmailAddresses:
    def __init__(self, context: Context, members: Members) -> None:
        self._ctx = context
        self._members = members
        self._store = context.store

    async def confirmation_mail(self, member_id: str, address: str, name: str | None = None) -> CloudEvent:
        """Store a fresh token's digest and return the mail command carrying its link."""
        now = self._ctx.clock()
        token = tokens.issue(timedelta(hours=self._ctx.settings.email_token_hours), now)
        await self._store.insert_email_token(
            {
                "_id": token.digest,
                "member_id": member_id,
                "email_id": email_id(address),
                "address": address,
                "expires_at": token.expires_at,
                "created_at": now,
            }
        )
        public_url = self._ctx.settings.public_url
        params: dict[str, Any] = {"link": mailed_link(public_url, CONFIRM_PATH, token.raw), "code": token.raw,
                                  "page": page(public_url, CONFIRM_PATH)}  # link and code are sealed
        if name:
            params["name"] = name
        return self._ctx.event(
            "mail.send_requested",
            {
                "to": address,
                "template": "email_confirmation",
                "params": params,
                "member_id": member_id,
                "requested_at": isoformat(now),
            },
        )

    def _reuse_cutoff(self) -> datetime:
        """Confirmations older than this no longer count (CACERT_EMAIL_REUSE_DAYS) and may be renewed."""
        return self._ctx.clock() - timedelta(days=self._ctx.settings.email_reuse_days)

    async def add(self, member: Member, address: str) -> dict[str, Any]:
        """Add an unverified address and mail its confirmation link."""
        if email_id(address) in member.emails:
            raise ApiError(409, "email_exists", f"{address} is already on your account")
        await self._members.claim_address(address, member.id)
        now = self._ctx.clock()
        added = self._ctx.event(
            "member.email_added",
            {"member_id": member.id, "email": address, "added_at": isoformat(now)},
            event_id=deterministic_event_id("member.email_added", member.id, address),
        )
        mail = await self.confirmation_mail(member.id, address, member.name)
        entry = email_entry(address, primary=False, verified=False, now=now)
        await self._store.update_member_with_events(member.id, {f"emails.{email_id(address)}": entry}, [added, mail])
        return {"id": email_id(address), **entry}

    async def resend(self, member: Member, eid: str) -> None:
        entry = member.emails.get(eid)
        if entry is None:
            raise ApiError(404, "not_found", "no such email address on your account")
        if entry.get("verified") and not confirmation_stale(entry, self._reuse_cutoff()):
            raise ApiError(409, "already_verified", f"{entry['address']} is already verified")
        mail = await self.confirmation_mail(member.id, entry["address"], member.name)
        await self._store.update_member_with_events(member.id, {}, [mail])

    async def confirm(self, raw_token: str) -> dict[str, Any]:
        """Verify the address a token was mailed to; 404 unknown/used, 410 expired."""
        if not tokens.looks_like_token(raw_token):
            raise ApiError(404, "token_unknown", "this confirmation token is unknown or was already used")
        digest = tokens.digest(raw_token)
        stored = await self._store.email_token(digest)
        if stored is None or stored.get("purpose", "email") != "email":  # a password-reset token is not this
            raise ApiError(404, "token_unknown", "this confirmation token is unknown or was already used")
        now = self._ctx.clock()
        if not tokens.is_live(stored["expires_at"], now):
            raise ApiError(410, "token_expired", "this confirmation link has expired; ask for a new one")
        eid, address, member_id = stored["email_id"], stored["address"], stored["member_id"]
        member = await self._members.get(member_id)
        primary = bool(member and member.primary_email == address)
        again = bool(member and member.emails.get(eid, {}).get("verified"))  # a re-confirmation
        event = self._ctx.event(
            "member.email_verified",
            {"member_id": member_id, "email": address, "primary": primary, "verified_at": isoformat(now)},
            event_id=deterministic_event_id("member.email_verified", member_id, address,
                                            *([isoformat(now)] if again else [])),
        )
        verified = await self._store.verify_email_with_event(member_id, eid, now, event,
                                                             stale_before=self._reuse_cutoff())
        await self._store.delete_email_token(digest)
        if not verified:
            raise ApiError(404, "token_unknown", "this confirmation token is unknown or was already used")
        return {"email": address, "verified": True, "member_id": member_id}
