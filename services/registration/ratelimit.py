"""Fixed-window rate limits kept in the store (MongoDB), so every replica shares the same counters.

One counter per (limit, key, window), incremented atomically by the store;
an over-limit call raises `RateLimited` carrying the seconds until the window
ends (the HTTP layer answers 429 with Retry-After).
Keys are hashed so addresses and IPs are not stored in clear.
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta

from services.registration.context import Context


class RateLimited(Exception):
    def __init__(self, what: str, retry_after: int, message: str | None = None) -> None:
        self.what = what
        self.retry_after = retry_after
        self.human = message or f"too many {what} attempts"
        """What was refused, in words (lower case, no retry hint): the portal builds its sentence on it."""
        super().__init__(f"{self.human}; retry in {retry_after} s")


class RateLimiter:
    def __init__(self, context: Context) -> None:
        self._ctx = context
        self._store = context.store

    async def hit(self, limit_name: str, key: str, *, message: str | None = None) -> None:
        """Count one call against `limit_name` for `key`; raise RateLimited (saying `message`, if given)
        when over the limit."""
        limit = self._ctx.settings.rate_limits[limit_name]
        now = self._ctx.clock()
        epoch = int(now.timestamp())
        window_start = epoch - epoch % limit.window_seconds
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        doc_id = f"{limit_name}:{digest}:{window_start}"
        expires_at = now + timedelta(seconds=window_start + limit.window_seconds - epoch)
        if await self._store.count_hit(doc_id, expires_at) > limit.limit:
            retry_after = max(1, math.ceil(window_start + limit.window_seconds - now.timestamp()))
            raise RateLimited(limit_name.split(":")[0], retry_after, message)
