"""Login backoff per account: guessing gets slower and slower, and the member still gets in.

A fixed window per address (N attempts per 15 minutes, the right password refused too) lets anyone
who knows a member's address lock them out for good by sending N bad guesses every window. Instead:

* The first `CACERT_LOGIN_FREE_FAILURES` failed logins for an address cost nothing. After that,
  each further attempt must wait: 1 s after the next failure, doubling with each one, at most
  `CACERT_LOGIN_MAX_DELAY_SECONDS` (15 min). An attempt during the wait is answered 429 with
  Retry-After *without* checking the password (no oracle) and does not lengthen the wait. The first
  attempt after it is checked: the right password gets in and clears the count; a wrong one starts
  a longer wait. That attempt claims the slot atomically, so parallel guesses get one check per wait.
* A client (IP address, behind the trusted-proxy setting) that has logged in to the account before
  (in the last 90 days) is not made to wait: the member at their usual place is never locked out by
  someone guessing elsewhere, while a guesser from a new place still is. Per-client limits
  (`login:client`) bound a single guesser across all accounts.
* Unknown addresses back off exactly like known ones, so the answer tells nothing.

Addresses and clients are stored only as SHA-256 digests, with an expiry (the sweep deletes them).
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta

from services.registration.context import Context
from services.registration.ratelimit import RateLimited

FAILURES_KEPT = timedelta(days=1)
"""A day without a failed login forgets the count."""
KNOWN_CLIENT_DAYS = 90


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


class LoginGuard:
    def __init__(self, context: Context) -> None:
        self._ctx = context
        self._store = context.store

    def delay(self, failures: int) -> timedelta:
        """How long the next attempt waits after `failures` failed ones."""
        over = failures - self._ctx.settings.login_free_failures
        if over < 0:
            return timedelta(0)
        return timedelta(seconds=min(2 ** min(over, 30), self._ctx.settings.login_max_delay_seconds))

    async def admit(self, address: str, client: str) -> bool:
        """Let this attempt be checked, or raise RateLimited with the seconds left to wait. True when
        the client logged in to this account before (it does not wait)."""
        if await self._store.login_guard(f"client:{_digest(address, client)}") is not None:
            return True
        key = f"account:{_digest(address)}"
        state = await self._store.login_guard(key)
        if state is None or state["failures"] < self._ctx.settings.login_free_failures:
            return False
        now = self._ctx.clock()
        # No wait stored yet: the failure that reached the threshold is still setting it; no wait then.
        wait_until: datetime | None = state.get("next_at")
        if (wait_until is not None and now < wait_until) or not await self._store.claim_login_slot(
                key, wait_until, now + self.delay(state["failures"])):
            wait_until = wait_until or now
            left = max(1, math.ceil((wait_until - now).total_seconds()))
            raise RateLimited("login", left, "too many failed logins for this account: wait, then try again")
        return False

    async def failed(self, address: str) -> None:
        now = self._ctx.clock()
        key = f"account:{_digest(address)}"
        failures = await self._store.count_login_failure(key, now + FAILURES_KEPT)
        if failures >= self._ctx.settings.login_free_failures:
            await self._store.set_login_wait(key, now + self.delay(failures))

    async def succeeded(self, address: str, client: str, *, known: bool) -> None:
        """The member got in. From a client that waited like everyone, the count starts again; from
        a known client it stands, so a guesser elsewhere gets no fresh free guesses from it."""
        now = self._ctx.clock()
        if not known:
            await self._store.forget_login_failures(f"account:{_digest(address)}")
        await self._store.remember_login_client(f"client:{_digest(address, client)}",
                                                now + timedelta(days=KNOWN_CLIENT_DAYS))
