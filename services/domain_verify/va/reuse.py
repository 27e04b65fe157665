"""How long a domain validation may be reused (BR 4.2.1 as amended by ballot SC-081).

    validations completed          may be reused for
    before 2026-03-15              398 days
    from 2026-03-15                200 days
    from 2027-03-15                100 days
    from 2029-03-15                 10 days

The period is fixed when the validation completes: a validation done on
2026-12-02 is good for 200 days even after 2027-03-15.
"""

from __future__ import annotations

from datetime import UTC, datetime

SCHEDULE = (
    (datetime(2029, 3, 15, tzinfo=UTC), 10),
    (datetime(2027, 3, 15, tzinfo=UTC), 100),
    (datetime(2026, 3, 15, tzinfo=UTC), 200),
)
BEFORE_SC081 = 398


def reuse_days(validated_at: datetime, override: int | None = None) -> int:
    """Days a validation completed at `validated_at` may be reused; `override` (an operator's shorter
    setting) wins when given, but never beyond the BR period."""
    when = validated_at if validated_at.tzinfo else validated_at.replace(tzinfo=UTC)
    days = next((d for start, d in SCHEDULE if when >= start), BEFORE_SC081)
    return days if override is None else min(override, days)
