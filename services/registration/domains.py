"""The member's view of their domains: claims, verification requests and their outcomes.

A claim is per member: a domain verified by one member is not verified for
another. Asking for verification queues `domain.verification_requested`
(domain_verify mails the chosen official contact); `domain.verified` and
`domain.verification_failed` from domain_verify update the claim. Outcomes
are matched on the request id, so a late failure of a superseded request
never undoes a newer success, and redelivery changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.registration.context import Context, Document
from services.registration.members import Member
from shared import dns_names
from shared.events import CloudEvent, deterministic_event_id, isoformat
from shared.http import ApiError
from shared.logging import get_logger

log = get_logger("registration.domains")


def checked_domain(raw: str) -> str:
    """The normalised domain a member may claim, or 422 naming the problem."""
    try:
        name = dns_names.normalise_domain(raw)
    except ValueError as exc:
        raise ApiError(422, "invalid_domain", str(exc)) from None
    if not dns_names.is_registrable(name):
        raise ApiError(
            422,
            "public_suffix",
            f"{name} is a public suffix; only names below a public suffix can be verified",
        )
    return name


def public_view(doc: Document, now: datetime) -> Document:
    valid_until = doc.get("valid_until")
    status = doc.get("status", "unverified")
    if status == "verified" and valid_until is not None and valid_until <= now:
        status = "expired"
    return {
        "id": doc["_id"],
        "domain": doc["domain"],
        "display_name": _unicode(doc["domain"]),
        "status": status,
        "contact": doc.get("contact"),
        "request_id": doc.get("request_id"),
        "verified_at": isoformat(doc["verified_at"]) if doc.get("verified_at") else None,
        "valid_until": isoformat(valid_until) if valid_until else None,
        "failure_reason": doc.get("failure_reason"),
    }


def _unicode(name: str) -> str:
    try:
        import idna

        return str(idna.decode(name))
    except (ValueError, UnicodeError):
        return name


class DomainClaims:
    def __init__(self, context: Context) -> None:
        self._ctx = context
        self._store = context.store

    async def add(self, member: Member, raw_domain: str, contact: str | None) -> Document:
        name = checked_domain(raw_domain)
        now = self._ctx.clock()
        doc: Document = {
            "_id": uuid.uuid4().hex,
            "member_id": member.id,
            "domain": name,
            "status": "unverified",
            "request_ids": [],
            "created_at": now,
        }
        if not await self._store.insert_domain(doc):
            raise ApiError(409, "domain_exists", f"{name} is already on your account")
        if contact is not None:
            return await self.request_verification(member, doc["_id"], contact)
        return public_view(doc, now)

    async def get(self, member: Member, claim_id: str) -> Document:
        doc = await self._store.domain(claim_id, member.id)
        if doc is None:
            raise ApiError(404, "not_found", "no such domain on your account")
        return doc

    async def listing(self, member: Member) -> list[Document]:
        now = self._ctx.clock()
        docs = await self._store.domains_of(member.id)
        return [public_view(d, now) for d in sorted(docs, key=lambda d: d["domain"])]

    async def verified_domains(self, member_id: str) -> frozenset[str]:
        now = self._ctx.clock()
        return frozenset(
            d["domain"] for d in await self._store.domains_of(member_id)
            if d.get("status") == "verified" and (d.get("valid_until") is None or d["valid_until"] > now)
        )

    async def request_verification(self, member: Member, claim_id: str, contact: str) -> Document:
        doc = await self.get(member, claim_id)
        domain = doc["domain"]
        try:
            address = dns_names.normalise_email(contact)
        except ValueError as exc:
            raise ApiError(422, "invalid_contact", str(exc)) from None
        if not dns_names.contact_is_official(domain, address):
            raise ApiError(
                422,
                "contact_not_official",
                f"{address} is not an official contact of {domain}",
                {"allowed": dns_names.official_contacts(domain)},
            )
        now = self._ctx.clock()
        request_id = uuid.uuid4().hex
        event = self._ctx.event(
            "domain.verification_requested",
            {
                "request_id": request_id,
                "member_id": member.id,
                "member_name": member.name[:200],
                "domain": domain,
                "contact": address,
                "method": "email",
                "requested_at": isoformat(now),
            },
            event_id=deterministic_event_id("domain.verification_requested", request_id),
        )
        status = "verified" if doc.get("status") == "verified" else "pending"
        await self._store.record_verification_request(
            claim_id, request_id, {"status": status, "contact": address, "requested_at": now, "failure_reason": None},
            event,
        )
        updated = await self.get(member, claim_id)
        return public_view(updated, now)

    async def on_verified(self, event: CloudEvent) -> None:
        data = event.data
        valid_until = datetime.fromisoformat(data["valid_until"].replace("Z", "+00:00"))
        verified_at = datetime.fromisoformat(data["verified_at"].replace("Z", "+00:00"))
        fields = {
            "status": "verified",
            "verified_at": verified_at,
            "valid_until": valid_until,
            "verified_by_request": data["request_id"],
            "failure_reason": None,
        }
        if not await self._store.record_domain_verified(data["request_id"], data["member_id"], data["domain"], fields):
            log.warning(
                "domain.verified for a request this service does not know; ignored",
                request_id=data["request_id"],
            )

    async def on_failed(self, event: CloudEvent) -> None:
        data = event.data
        # Only the current request may fail the claim, and never a claim that is already verified.
        if not await self._store.record_domain_failed(data["request_id"], data["member_id"], data["reason"]):
            log.info(
                "domain.verification_failed for a superseded or settled request; ignored",
                request_id=data["request_id"],
            )

    def view(self, doc: Document) -> Document:
        return public_view(doc, self._ctx.clock())

    def contacts(self, domain: str) -> dict[str, Any]:
        return {"domain": domain, "contacts": dns_names.official_contacts(domain)}
