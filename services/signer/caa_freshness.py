"""The signer's one CAA rule: a server certificate is signed only within 8 hours of its CAA check.

BR 3.2.2.8: the CA checks CAA "within 8 hours prior to issuance"; a check
older than that must be repeated. The signer makes no lookups (domain_verify
alone does); it only compares the approval's `caa_checked_at` with its
clock. An approval that is stale, or a server approval that carries no CAA
time at all, is answered with `cert.rejected` reason `caa_stale`, which is
not a final outcome: nothing is stored, the RA checks CAA again and approves
the same request anew (a new event id), and that approval is signed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from shared.events import CloudEvent, deterministic_event_id, isoformat, make_event

MAX_AGE = dt.timedelta(hours=8)
REASON = "caa_stale"


def problem(approval: Mapping[str, Any], now: dt.datetime) -> str | None:
    """Why this approval may not be signed now, or None. Only certificates with DNS names need CAA."""
    if not approval.get("dns_names"):
        return None
    raw = approval.get("caa_checked_at")
    if not raw:
        return "the approval carries no CAA check time (BR 3.2.2.8)"
    checked = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    if now - checked > MAX_AGE:
        return f"CAA was checked at {isoformat(checked)}, more than 8 hours before signing (BR 3.2.2.8)"
    return None


def stale_answer(approval: Mapping[str, Any], detail: str, now: dt.datetime) -> CloudEvent:
    """`cert.rejected` (caa_stale); one id per approval's CAA time, so a redelivery answers once."""
    return make_event(
        "cert.rejected",
        {"request_id": approval["request_id"], "member_id": approval["member_id"], "reason": REASON,
         "details": [detail], "rejected_at": isoformat(now)},
        source="signer",
        event_id=deterministic_event_id("signer", REASON, str(approval["request_id"]),
                                        str(approval.get("caa_checked_at", "-"))),
    )
