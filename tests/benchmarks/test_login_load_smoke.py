"""Smoke test of the login-burst benchmark: a tiny run reports both sides and the ratio (no timing bound:
speed is what the benchmark prints, not what a test asserts)."""

from __future__ import annotations

import pytest

from benchmarks import login_load

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_a_tiny_login_burst_reports_calls_alone_and_during_logins(stack_env: dict[str, str]) -> None:
    result = await login_load.measure(stack_env["CACERT_KAFKA_BOOTSTRAP"], stack_env["CACERT_MONGO_URL"],
                                      logins=3, calls=10)
    assert result["logins_in_flight"] == 3 and result["calls"] == 10
    for side in ("me_alone", "me_during_logins"):
        assert 0 < result[side]["p50_ms"] <= result[side]["p90_ms"] <= result[side]["max_ms"]
    assert result["ratio_p50"] > 0 and result["logins_per_s_during"] > 0
