"""The member's view of their domains: claims, verification requests and their outcomes.

A claim is per member: a domain verified by one member is not verified for
another. Three methods prove control, each a Baseline Requirements method:
- email (3.2.2.4.4): asking queues `domain.verification_requested` and
  domain_verify mails the chosen official contact a link;
- DNS change (3.2.2.4.7): the member is shown a random value to publish as
  TXT at `_cacert-challenge.<domain>`, then asks for a check;
- website change (3.2.2.4.18): the same value in a file under
  `http://<domain>/.well-known/pki-validation/`, then a check.
The random value is drawn here (>= 112 bits, BR 1.6.1 "Random Value") and
shown in the API and the portal; it is usable for 30 days. Unlike the
mailed link it is no secret: it is published for anyone to see.

`domain.verified` and `domain.verification_failed` from domain_verify update
the claim. Outcomes are matched on the request id, so a late failure of a
superseded request never undoes a newer success, and redelivery changes
nothing. A failure of a checked method says what was found instead.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from services.registration.context import Context, Document
from services.registration.members import Member
from services.registration.ratelimit import RateLimiter
from shared import dns_names
from shared.domain_methods import (
    ACME_METHODS,
    BR_SECTIONS,
    DNS_CHANGE,
    DNS_LABEL,
    EMAIL,
    FQDN_ONLY_METHODS,
    PKI_VALIDATION_PATH,
    RANDOM_VALUE_DAYS,
    WEBSITE_CHANGE,
)
from shared.events import CloudEvent, deterministic_event_id, isoformat
from shared.http import ApiError
from shared.logging import get_logger

log = get_logger("registration.domains")

# Registration offers the methods a member runs by hand; the ACME ones come through the ACME service.
METHODS = (EMAIL, DNS_CHANGE, WEBSITE_CHANGE)
# BR 3.2.2.4.7 / .18: a Random Value may be used for 30 days; a new one is drawn a day before, so a
# check the member starts never meets a value that expires on the way.
RENEW_RANDOM_VALUE_AFTER = timedelta(days=RANDOM_VALUE_DAYS - 1)


def challenge_view(challenge: Document | None, domain: str) -> Document | None:
    """What the member must publish for a DNS or website check (None for email)."""
    if not challenge:
        return None
    created = challenge["created_at"]
    view: Document = {
        "method": challenge["method"],
        "br_section": BR_SECTIONS[challenge["method"]],
        "random_value": challenge["random_value"],
        "created_at": isoformat(created),
        "expires_at": isoformat(created + timedelta(days=RANDOM_VALUE_DAYS)),
    }
    if challenge["method"] == DNS_CHANGE:
        view.update(record_name=f"{DNS_LABEL}.{domain}", record_type="TXT",
                    record=f'{DNS_LABEL}.{domain}. 300 IN TXT "{challenge["random_value"]}"')
    else:
        view.update(url=f"http://{domain}{PKI_VALIDATION_PATH}{challenge['file_name']}",
                    file_name=challenge["file_name"], file_content=challenge["random_value"])
    return view


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
        "failure_found": doc.get("failure_found") or [],
        "method": doc.get("method", EMAIL if doc.get("contact") else None),
        "br_section": doc.get("br_section"),
        "verified_by": doc.get("verified_method"),
        "challenge": challenge_view(doc.get("challenge"), doc["domain"]),
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

    async def add(self, member: Member, raw_domain: str, contact: str | None, method: str | None = None) -> Document:
        name = checked_domain(raw_domain)
        await RateLimiter(self._ctx).hit("domains:member", member.id,
                                         message="too many domains added from this account today")
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
        if method in (DNS_CHANGE, WEBSITE_CHANGE):
            return await self.prepare_challenge(member, doc["_id"], method)
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

    async def verification_methods(self, member_id: str) -> dict[str, str]:
        """Each domain verified (and still valid) for the member -> the method that verified it."""
        now = self._ctx.clock()
        return {
            d["domain"]: d.get("verified_method", EMAIL) for d in await self._store.domains_of(member_id)
            if d.get("status") == "verified" and (d.get("valid_until") is None or d["valid_until"] > now)
        }

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
            claim_id, request_id, {"status": status, "contact": address, "requested_at": now, "failure_reason": None,
                                   "failure_found": [], "method": EMAIL},
            event,
        )
        updated = await self.get(member, claim_id)
        return public_view(updated, now)

    async def prepare_challenge(self, member: Member, claim_id: str, method: str) -> Document:
        """Show the random value for a DNS or website check (drawn now, or the current one if still fresh)."""
        if method not in (DNS_CHANGE, WEBSITE_CHANGE):
            raise ApiError(422, "invalid_method", f"method must be one of {', '.join(METHODS)}")
        doc = await self.get(member, claim_id)
        now = self._ctx.clock()
        current = doc.get("challenge")
        if not current or current["method"] != method or now - current["created_at"] >= RENEW_RANDOM_VALUE_AFTER:
            value = secrets.token_urlsafe(24)  # 192 bits; BR 1.6.1 asks for at least 112
            current = {"method": method, "random_value": value, "created_at": now,
                       "file_name": f"cacert-{secrets.token_hex(8)}.txt"}
            await self._store.update_domain(claim_id, member.id, {"challenge": current, "method": method})
            await self._ctx.audit(member.id, "domain.challenge_prepared", doc["domain"], method=method)
        return public_view(await self.get(member, claim_id), now)

    async def check_now(self, member: Member, claim_id: str) -> Document:
        """Ask domain_verify to look for the published value now (one request, one check)."""
        doc = await self.get(member, claim_id)
        challenge = doc.get("challenge")
        now = self._ctx.clock()
        if not challenge or now - challenge["created_at"] >= timedelta(days=RANDOM_VALUE_DAYS):
            raise ApiError(409, "no_challenge", "choose the DNS or website method first, to get a random value")
        request_id = uuid.uuid4().hex
        data: Document = {
            "request_id": request_id, "member_id": member.id, "member_name": member.name[:200],
            "domain": doc["domain"], "method": challenge["method"], "random_value": challenge["random_value"],
            "random_value_created_at": isoformat(challenge["created_at"]), "requested_at": isoformat(now),
        }
        if challenge["method"] == WEBSITE_CHANGE:
            data["file_name"] = challenge["file_name"]
        event = self._ctx.event("domain.verification_requested", data,
                                event_id=deterministic_event_id("domain.verification_requested", request_id))
        status = "verified" if doc.get("status") == "verified" else "pending"
        await self._store.record_verification_request(
            claim_id, request_id, {"status": status, "requested_at": now, "failure_reason": None,
                                   "failure_found": [], "method": challenge["method"]}, event)
        return public_view(await self.get(member, claim_id), now)

    async def on_verified(self, event: CloudEvent) -> None:
        data = event.data
        valid_until = datetime.fromisoformat(data["valid_until"].replace("Z", "+00:00"))
        verified_at = datetime.fromisoformat(data["verified_at"].replace("Z", "+00:00"))
        fields = {
            "status": "verified",
            "verified_at": verified_at,
            "valid_until": valid_until,
            "verified_by_request": data["request_id"],
            "verified_method": data.get("method", EMAIL),
            "br_section": data.get("br_section", BR_SECTIONS[EMAIL]),
            "failure_reason": None,
            "failure_found": [],
        }
        if await self._store.record_domain_verified(data["request_id"], data["member_id"], data["domain"], fields):
            return
        if fields["verified_method"] in ACME_METHODS:
            # Asked for by the ACME service for this member (an http-01 or dns-01 challenge): the member's
            # view of domains gains (or updates) the claim, so the RA's policy sees what ACME proved; an
            # http-01 (this FQDN only) never replaces a still-valid verification of the same domain that
            # also covers the names below it.
            held = (await self.verification_methods(data["member_id"])).get(data["domain"])
            if fields["verified_method"] in FQDN_ONLY_METHODS and held is not None and held not in FQDN_ONLY_METHODS:
                return
            await self._store.record_acme_verification(
                data["request_id"], data["member_id"], data["domain"], {**fields, "source": "acme"},
                {"_id": uuid.uuid4().hex, "member_id": data["member_id"], "domain": data["domain"],
                 "method": fields["verified_method"], "request_ids": [], "created_at": self._ctx.clock()})
            log.info("domain verified by an ACME challenge", member_id=data["member_id"], domain=data["domain"],
                     method=fields["verified_method"])
        else:
            log.warning(
                "domain.verified for a request this service does not know; ignored",
                request_id=data["request_id"],
            )

    async def on_failed(self, event: CloudEvent) -> None:
        data = event.data
        # Only the current request may fail the claim, and never a claim that is already verified.
        fields = {"failure_reason": data["reason"], "failure_found": list(data.get("found", []))}
        if not await self._store.record_domain_failed(data["request_id"], data["member_id"], fields):
            log.info(
                "domain.verification_failed for a superseded or settled request; ignored",
                request_id=data["request_id"],
            )

    def view(self, doc: Document) -> Document:
        return public_view(doc, self._ctx.clock())

    def contacts(self, domain: str) -> dict[str, Any]:
        return {"domain": domain, "contacts": dns_names.official_contacts(domain)}
