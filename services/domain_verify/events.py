"""The events this service emits, each with an id derived from the fact it announces.

Deterministic ids make every emission idempotent end to end: a handler
re-run after a crash, an outbox sweep racing a flush, or a redelivered
request re-create the *same* CloudEvent id, and consumers (the notifier
above all: it must not mail twice) de-duplicate on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.domain_methods import BR_SECTIONS
from shared.events import CloudEvent, deterministic_event_id, isoformat, make_event
from shared.mailed_links import mailed_link, page

SOURCE = "domain_verify"
CHALLENGE_TEMPLATE = "domain_challenge"
CONFIRM_PATH = "/confirm"  # the page a challenge link opens (confirm.py); the token is in the fragment


def challenge_mail(*, request_id: str, member_id: str, to: str, public_url: str, token: str, domain: str,
                   expires_at: datetime, requested_at: datetime, member_name: str | None) -> CloudEvent:
    """The mail command carrying the confirm link: the only event that ever holds the token, and only until
    the issuer seals it to the notifier (shared/sealed_mail.py), before it is stored or published."""
    params: dict[str, str] = {"link": mailed_link(public_url, CONFIRM_PATH, token), "code": token,
                              "page": page(public_url, CONFIRM_PATH), "domain": domain,
                              "expires_at": isoformat(expires_at)}
    if member_name:
        params["member_name"] = member_name
    return make_event(
        "mail.send_requested",
        {"to": to, "template": CHALLENGE_TEMPLATE, "params": params, "member_id": member_id,
         "requested_at": isoformat(requested_at)},
        source=SOURCE, event_id=deterministic_event_id(SOURCE, "challenge-mail", request_id),
        subject=request_id,
    )


# The Baseline Requirements section of each validation method, stored on every outcome.


def verified(*, request_id: str, member_id: str, domain: str, verified_at: datetime, valid_until: datetime,
             method: str = "email", contact: str | None = None,
             evidence: dict[str, Any] | None = None) -> CloudEvent:
    data: dict[str, Any] = {
        "request_id": request_id, "member_id": member_id, "domain": domain, "method": method,
        "br_section": BR_SECTIONS[method], "verified_at": isoformat(verified_at),
        "valid_until": isoformat(valid_until),
    }
    if contact is not None:
        data["contact"] = contact
    if evidence:
        data["evidence"] = evidence
    return make_event("domain.verified", data, source=SOURCE,
                      event_id=deterministic_event_id(SOURCE, "verified", request_id))


def verification_failed(*, request_id: str, member_id: str, domain: str, reason: str,
                        failed_at: datetime, method: str = "email",
                        found: list[str] | None = None) -> CloudEvent:
    """A request's failure. One id per request whatever the reason: a request fails at most once."""
    data: dict[str, Any] = {
        "request_id": request_id, "member_id": member_id, "domain": domain, "reason": reason,
        "failed_at": isoformat(failed_at), "method": method, "br_section": BR_SECTIONS.get(method, "3.2.2.4.4"),
    }
    if found:
        data["found"] = [f[:512] for f in found[:20]]
    return make_event("domain.verification_failed", data, source=SOURCE,
                      event_id=deterministic_event_id(SOURCE, "failed", request_id))


def caa_checked(*, check_id: str, request_id: str, member_id: str, allowed: bool, reason: str,
                names: list[dict[str, Any]], perspectives: dict[str, bool | None],
                checked_at: datetime) -> CloudEvent:
    return make_event(
        "domain.caa_checked",
        {"check_id": check_id, "request_id": request_id, "member_id": member_id,
         "verdict": "allowed" if allowed else "refused", "reason": reason, "names": names,
         "perspectives": perspectives, "checked_at": isoformat(checked_at)},
        source=SOURCE, event_id=deterministic_event_id(SOURCE, "caa-checked", check_id),
    )


def check_requested(*, check_id: str, kind: str, params: dict[str, Any], perspectives: list[str],
                    requested_at: datetime) -> CloudEvent:
    return make_event(
        "perspective.check_requested",
        {"check_id": check_id, "kind": kind, "params": params, "perspectives": perspectives,
         "requested_at": isoformat(requested_at)},
        source=SOURCE, event_id=deterministic_event_id(SOURCE, "check-requested", check_id),
    )


def check_answered(*, check_id: str, perspective: str, ok: bool, reason: str, found: list[str],
                   details: dict[str, Any], checked_at: datetime) -> CloudEvent:
    """One perspective's answer; its id is per (check, perspective), so a re-run answers once."""
    return make_event(
        "perspective.check_answered",
        {"check_id": check_id, "perspective": perspective, "ok": ok, "reason": reason,
         "found": found[:20], "details": details, "checked_at": isoformat(checked_at)},
        source=f"{SOURCE}.{perspective}",
        event_id=deterministic_event_id(SOURCE, "check-answered", check_id, perspective),
    )
