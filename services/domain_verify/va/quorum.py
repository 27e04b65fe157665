"""Multi-Perspective Issuance Corroboration: does the quorum agree with the primary? (BR 3.2.2.9)

The primary's determination stands only if enough remote perspectives
corroborate it. A remote perspective that did not answer in time counts as
not corroborating. BR 3.2.2.9's table of allowed non-corroborations:

    remote perspectives used   allowed non-corroborations
    2 - 5                      1
    6 or more                  2

Fewer than two remote perspectives is below what the BR requires of a
publicly-trusted CA; it is allowed here (a dev stack, a community CA's first
deployment) with no disagreement tolerated, and with none the primary alone
decides. An operator may set a stricter limit (CACERT_DOMAIN_VERIFY_MAX_DISAGREEMENTS).
"""

from __future__ import annotations

import dataclasses
from datetime import date

# BR 3.2.2.9 (ballot SC-067): the fewest remote Network Perspectives a publicly-trusted CA must use, from
# each date on (before the first, a failed corroboration did not yet have to stop issuance).
REMOTE_PERSPECTIVES_REQUIRED = (
    (date(2025, 9, 15), 2),
    (date(2026, 3, 15), 3),
    (date(2026, 6, 15), 4),
    (date(2026, 12, 15), 5),
)


@dataclasses.dataclass(frozen=True)
class QuorumDecision:
    ok: bool
    disagreeing: list[str]
    """Remote perspectives that did not corroborate (False or no answer), sorted."""
    allowed: int


def allowed_non_corroborations(remote_count: int) -> int:
    if remote_count >= 6:
        return 2
    if remote_count >= 2:
        return 1
    return 0


def decide(primary_ok: bool, remote: dict[str, bool | None], limit: int | None = None) -> QuorumDecision:
    """`remote` maps each remote perspective to its result (None: no answer); `limit` overrides the table
    (never above it: a looser limit than the BR's is clamped)."""
    table = allowed_non_corroborations(len(remote))
    allowed = table if limit is None else max(0, min(limit, table))
    if not primary_ok:
        return QuorumDecision(False, [], allowed)
    disagreeing = sorted(p for p, ok in remote.items() if ok is not True)
    return QuorumDecision(len(disagreeing) <= allowed, disagreeing, allowed)


def required_remote_perspectives(on: date) -> int:
    """How many remote perspectives BR 3.2.2.9 requires on `on` (0 before the requirement took effect)."""
    required = 0
    for since, count in REMOTE_PERSPECTIVES_REQUIRED:
        if on >= since:
            required = count
    return required
