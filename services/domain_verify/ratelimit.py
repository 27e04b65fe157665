"""AttemptLimiter: caps confirm-link requests per client address.

Tokens are 256-bit, so guessing is hopeless anyway; the limit is there to
keep scanners and scripted abuse from turning the endpoint into a cheap way
to load the database. A fixed window per address is enough for that and
needs no shared state: each replica limits what reaches it (a replica count
multiplies the effective limit, which is acceptable for this purpose).
Memory is bounded by forgetting the oldest addresses first.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class AttemptLimiter:
    def __init__(self, attempts: int, window_seconds: float, *, max_clients: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._attempts = attempts
        self._window = window_seconds
        self._max_clients = max_clients
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}

    def allow(self, client: str) -> float | None:
        """Count one attempt; None if allowed, else the seconds until the client may try again."""
        now = self._clock()
        started, count = self._windows.pop(client, (now, 0))
        if now - started >= self._window:
            started, count = now, 0
        count += 1
        self._windows[client] = (started, count)  # re-inserted last: dict order is recency order
        while len(self._windows) > self._max_clients:
            del self._windows[next(iter(self._windows))]
        if count > self._attempts:
            return max(0.0, started + self._window - now)
        return None
