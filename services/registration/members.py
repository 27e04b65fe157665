"""Member accounts: registration, the member record, roles and code-signing activation.

One member is one stored record (its addresses embedded), so every change
and the event announcing it are written together (store.py's outbox rule).
An address belongs to one account only: it is claimed in the store before
the member is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from datetime import UTC, date, datetime
from typing import Any

from services.registration.context import Context, Document
from services.registration.passwords import hash_async
from shared.events import deterministic_event_id, isoformat
from shared.http import ApiError

ROLES = ("member", "assurer", "admin")
ASSURER_POINTS = 100


def email_id(address: str) -> str:
    """A stable id for an address within an account (URL-safe, no dots for MongoDB paths)."""
    return hashlib.sha256(address.encode()).hexdigest()[:16]


def new_member_id() -> str:
    return uuid.uuid4().hex


@dataclasses.dataclass(frozen=True)
class Member:
    id: str
    name: str
    date_of_birth: str
    primary_email: str
    roles: tuple[str, ...]
    assurer_test_passed: bool
    codesign_enabled: bool
    emails: dict[str, Document]
    codesign_proposed_by: str | None = None
    """The admin who proposed activating code signing, waiting for a second admin to approve."""
    second_factor: bool = False
    """TOTP is on (second_factor.py): the login asks for a code; Assurers and admins need it to act."""

    @classmethod
    def from_document(cls, doc: Document) -> Member:
        return cls(
            id=doc["_id"],
            name=doc["name"],
            date_of_birth=doc.get("date_of_birth", ""),
            primary_email=doc["primary_email"],
            roles=tuple(doc.get("roles", ["member"])),
            assurer_test_passed=bool(doc.get("assurer_test_passed")),
            codesign_enabled=bool(doc.get("codesign_enabled")),
            emails=dict(doc.get("emails", {})),
            codesign_proposed_by=(doc.get("codesign_proposal") or {}).get("by"),
            second_factor=bool(doc.get("second_factor")),
        )

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_assurer(self) -> bool:
        return "assurer" in self.roles

    @property
    def verified_emails(self) -> frozenset[str]:
        return frozenset(e["address"] for e in self.emails.values() if e.get("verified"))

    def emails_confirmed_since(self, cutoff: datetime) -> frozenset[str]:
        """Verified addresses whose (last) confirmation is not older than `cutoff`."""
        return frozenset(e["address"] for e in self.emails.values()
                         if e.get("verified") and not confirmation_stale(e, cutoff))

    def primary_verified(self) -> bool:
        return self.primary_email in self.verified_emails


def confirmation_stale(entry: Document, cutoff: datetime) -> bool:
    """A verified address confirmed before `cutoff` (or at an unknown time) must be confirmed again."""
    verified_at = entry.get("verified_at")
    if not entry.get("verified"):
        return False
    if not isinstance(verified_at, datetime):
        return True
    if verified_at.tzinfo is None:  # MongoDB hands datetimes back naive, in UTC
        verified_at = verified_at.replace(tzinfo=UTC)
    return verified_at < cutoff


def email_entry(address: str, *, primary: bool, verified: bool, now: Any) -> Document:
    return {
        "address": address,
        "primary": primary,
        "verified": verified,
        "added_at": now,
        "verified_at": now if verified else None,
    }


class Members:
    def __init__(self, context: Context) -> None:
        self._ctx = context
        self._store = context.store

    async def audit(self, actor: str, action: str, subject: str, **details: Any) -> None:
        """An audit-log entry for an action on a member (support actions record their admin as actor)."""
        await self._ctx.audit(actor, action, subject, **details)

    async def get(self, member_id: str) -> Member | None:
        doc = await self._store.member(member_id)
        return Member.from_document(doc) if doc else None

    async def by_address(self, address: str) -> Member | None:
        holder = await self._store.address_holder(address)
        return await self.get(holder) if holder else None

    async def claim_address(self, address: str, member_id: str) -> None:
        """Reserve an address for one account; 409 if another live account holds it."""
        holder = await self._store.claim_address(address, email_id(address), member_id, self._ctx.clock())
        if holder == member_id:
            raise ApiError(409, "email_exists", f"{address} is already on your account")
        if holder is not None:
            raise ApiError(409, "email_taken", f"{address} belongs to another account")

    async def create(
        self,
        *,
        name: str,
        date_of_birth: date,
        address: str,
        password: str,
        roles: tuple[str, ...] = ("member",),
        verified: bool = False,
        assurer_test_passed: bool = False,
        member_id: str | None = None,
        pending_events: list[Any] | None = None,
    ) -> Member:
        """Write a new member (after claiming its address) with its registration event queued."""
        member_id = member_id or new_member_id()
        await self.claim_address(address, member_id)
        now = self._ctx.clock()
        registered = self._ctx.event(
            "member.registered",
            {
                "member_id": member_id,
                "name": name,
                "email": address,
                "registered_at": isoformat(now),
            },
            event_id=deterministic_event_id("member.registered", member_id),
        )
        events = [registered, *(pending_events or [])]
        if verified:
            events.append(
                self._ctx.event(
                    "member.email_verified",
                    {
                        "member_id": member_id,
                        "email": address,
                        "primary": True,
                        "verified_at": isoformat(now),
                    },
                    event_id=deterministic_event_id("member.email_verified", member_id, address),
                )
            )
        if set(roles) != {"member"}:
            events.append(self.role_event(member_id, list(roles), False, "bootstrap"))
        doc: Document = {
            "_id": member_id,
            "name": name,
            "date_of_birth": date_of_birth.isoformat(),
            "primary_email": address,
            "password_hash": await hash_async(password),
            "roles": list(roles),
            "assurer_test_passed": assurer_test_passed,
            "codesign_enabled": False,
            "created_at": now,
            "emails": {email_id(address): email_entry(address, primary=True, verified=verified, now=now)},
        }
        await self._store.insert_member_with_events(doc, events)
        return Member.from_document(doc)

    async def password_hash(self, member_id: str) -> str | None:
        return await self._store.password_hash(member_id)

    async def replace_password_hash(self, member_id: str, old: str, new: str) -> bool:
        """Store `new` unless the password changed meanwhile (its hash is no longer `old`)."""
        return await self._store.replace_password_hash(member_id, old, new)

    def role_event(self, member_id: str, roles: list[str], codesign: bool, changed_by: str) -> Any:
        return self._ctx.event(
            "member.role_changed",
            {
                "member_id": member_id,
                "roles": roles,
                "codesign_enabled": codesign,
                "changed_by": changed_by,
                "changed_at": isoformat(self._ctx.clock()),
            },
        )

    async def propose_codesign(self, member: Member, admin_id: str) -> Member:
        """Record that `admin_id` proposes activating code signing (nothing changes until a second admin
        approves; no event, since the member's roles are what they were)."""
        await self._store.update_member_with_events(
            member.id, {"codesign_proposal": {"by": admin_id, "at": self._ctx.clock()}}, [])
        updated = await self.get(member.id)
        assert updated is not None
        return updated

    async def change_roles(
        self,
        member: Member,
        *,
        roles: list[str],
        codesign: bool,
        changed_by: str,
        extra: Document | None = None,
    ) -> Member:
        """Set roles / code signing and queue `member.role_changed` in the same update."""
        event = self.role_event(member.id, roles, codesign, changed_by)
        await self._store.update_member_with_events(
            member.id, {"roles": roles, "codesign_enabled": codesign, **(extra or {})}, [event]
        )
        updated = await self.get(member.id)
        assert updated is not None
        return updated
