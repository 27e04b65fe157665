"""AttemptLimiter: a fixed window per client address, bounded memory."""

from __future__ import annotations

from services.domain_verify.ratelimit import AttemptLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allows_the_budget_then_refuses_with_retry_after_then_resets() -> None:
    clock = Clock()
    limiter = AttemptLimiter(3, 60, clock=clock)
    assert [limiter.allow("10.0.0.1") for _ in range(3)] == [None, None, None]
    clock.now += 10
    assert limiter.allow("10.0.0.1") == 50
    assert limiter.allow("10.0.0.2") is None  # other addresses are not affected
    clock.now += 50
    assert limiter.allow("10.0.0.1") is None


def test_memory_is_bounded_by_forgetting_the_least_recent_clients() -> None:
    limiter = AttemptLimiter(1, 60, max_clients=2, clock=Clock())
    limiter.allow("a")
    limiter.allow("b")
    limiter.allow("c")
    assert limiter.allow("a") is None  # "a" was forgotten, so it starts afresh
    assert limiter.allow("c") is not None
