"""When to remind a member of an expiring certificate: pure rules, tested with a fake clock.

A certificate gets at most one reminder per threshold (default 14 and 3
days before `not_after`). If the notifier first looks when several
thresholds have already passed (it was down, or the certificate was short
lived), only the nearest one is mailed and the others count as done: one
mail saying "3 days left" beats two at once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from datetime import datetime, timedelta

DAY = timedelta(days=1)


@dataclasses.dataclass(frozen=True)
class ReminderDue:
    threshold: int  # the threshold this mail is for (the unique key with the serial)
    settles: tuple[int, ...]  # every threshold this mail settles, itself included
    days_left: int


def due(not_after: datetime, now: datetime, thresholds: Iterable[int],
        done: Iterable[int]) -> ReminderDue | None:
    """The reminder to send now, or None (expired, not yet within a threshold, or already reminded)."""
    left = not_after - now
    if left <= timedelta(0):
        return None
    done_set = set(done)
    reached = sorted({d for d in thresholds if left <= d * DAY and d not in done_set})
    if not reached:
        return None
    return ReminderDue(threshold=reached[0], settles=tuple(reached), days_left=days_left(not_after, now))


def days_left(not_after: datetime, now: datetime) -> int:
    """Whole days left, rounded up: 2 days and 1 hour is "3 days", as a member would count."""
    return max(0, math.ceil((not_after - now) / DAY))


def names_key(dns_names: Iterable[str], emails: Iterable[str], ip_addresses: Iterable[str] = ()) -> str:
    """The set of names a certificate covers, order- and case-insensitive: what a renewal repeats."""
    names = {n.strip().lower() for n in (*dns_names, *emails, *ip_addresses) if n and n.strip()}
    return "\n".join(sorted(names))


def horizon(now: datetime, thresholds: Iterable[int]) -> datetime:
    """Certificates expiring after this cannot be due for any threshold yet."""
    return now + max(thresholds, default=0) * DAY
