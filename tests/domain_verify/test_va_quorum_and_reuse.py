"""BR 3.2.2.9's corroboration table and BR 4.2.1's (SC-081) reuse schedule."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from services.domain_verify.va.quorum import allowed_non_corroborations, decide, required_remote_perspectives
from services.domain_verify.va.reuse import reuse_days


@pytest.mark.parametrize(("count", "allowed"), [(0, 0), (1, 0), (2, 1), (5, 1), (6, 2), (9, 2)])
def test_the_br_table_of_allowed_non_corroborations(count: int, allowed: int) -> None:
    assert allowed_non_corroborations(count) == allowed


def test_one_silent_or_disagreeing_perspective_of_three_is_tolerated_two_are_not() -> None:
    assert decide(True, {"a": True, "b": True, "c": False}).ok
    assert decide(True, {"a": True, "b": None, "c": True}).ok
    two = decide(True, {"a": True, "b": None, "c": False})
    assert not two.ok and two.disagreeing == ["b", "c"]


def test_a_failed_primary_is_never_rescued_by_the_remotes() -> None:
    assert not decide(False, {"a": True, "b": True, "c": True}).ok


def test_an_operator_limit_may_be_stricter_than_the_table_but_not_looser() -> None:
    assert not decide(True, {"a": True, "b": True, "c": False}, limit=0).ok
    assert not decide(True, {"a": True, "b": False, "c": False}, limit=5).ok


def test_with_no_remote_perspectives_the_primary_decides() -> None:
    assert decide(True, {}).ok


@pytest.mark.parametrize(("on", "required"), [
    (date(2025, 9, 14), 0), (date(2025, 9, 15), 2), (date(2026, 3, 15), 3), (date(2026, 6, 14), 3),
    (date(2026, 6, 15), 4), (date(2026, 12, 14), 4), (date(2026, 12, 15), 5), (date(2030, 1, 1), 5),
])
def test_the_br_schedule_of_required_remote_perspectives(on: date, required: int) -> None:
    assert required_remote_perspectives(on) == required


@pytest.mark.parametrize(("when", "days"), [
    (datetime(2026, 3, 14, 23, 59, tzinfo=UTC), 398), (datetime(2026, 3, 15, tzinfo=UTC), 200),
    (datetime(2027, 3, 15, tzinfo=UTC), 100), (datetime(2029, 3, 15, tzinfo=UTC), 10),
    (datetime(2028, 1, 1), 100),
])
def test_the_sc081_reuse_schedule(when: datetime, days: int) -> None:
    assert reuse_days(when) == days


def test_an_override_shortens_but_never_lengthens_the_reuse_period() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    assert reuse_days(now, 30) == 30 and reuse_days(now, 1000) == 200
