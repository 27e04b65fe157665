"""The events this service emits, each with an id derived from the fact it announces.

Deterministic ids make every emission idempotent end to end: a handler
re-run after a crash, an outbox sweep racing a flush, or a redelivered
request re-create the *same* CloudEvent id, and consumers (the notifier
above all: it must not mail twice) de-duplicate on it.
"""

from __future__ import annotations

from datetime import datetime

from shared.events import CloudEvent, deterministic_event_id, isoformat, make_event

SOURCE = "domain_verify"
CHALLENGE_TEMPLATE = "domain_challenge"


def challenge_mail(*, request_id: str, member_id: str, to: str, link: str, domain: str,
                   expires_at: datetime, requested_at: datetime, member_name: str | None) -> CloudEvent:
    """The mail command carrying the confirm link: the only event that ever holds the token."""
    params: dict[str, str] = {"link": link, "domain": domain, "expires_at": isoformat(expires_at)}
    if member_name:
        params["member_name"] = member_name
    return make_event(
        "mail.send_requested",
        {"to": to, "template": CHALLENGE_TEMPLATE, "params": params, "member_id": member_id,
         "requested_at": isoformat(requested_at)},
        source=SOURCE, event_id=deterministic_event_id(SOURCE, "challenge-mail", request_id),
        subject=request_id,
    )


def verified(*, request_id: str, member_id: str, domain: str, contact: str, verified_at: datetime,
             valid_until: datetime) -> CloudEvent:
    return make_event(
        "domain.verified",
        {"request_id": request_id, "member_id": member_id, "domain": domain, "method": "email",
         "contact": contact, "verified_at": isoformat(verified_at), "valid_until": isoformat(valid_until)},
        source=SOURCE, event_id=deterministic_event_id(SOURCE, "verified", request_id),
    )


def verification_failed(*, request_id: str, member_id: str, domain: str, reason: str,
                        failed_at: datetime) -> CloudEvent:
    """A request's failure. One id per request whatever the reason: a request fails at most once."""
    return make_event(
        "domain.verification_failed",
        {"request_id": request_id, "member_id": member_id, "domain": domain, "reason": reason,
         "failed_at": isoformat(failed_at)},
        source=SOURCE, event_id=deterministic_event_id(SOURCE, "failed", request_id),
    )
