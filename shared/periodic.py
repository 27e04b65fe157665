"""A job that runs every N seconds in the background until stopped.

Every service has such jobs (outbox sweeps, expiry sweeps, reminders, CRL
refresh). A failing run is logged and tried again at the next tick: one
bad run (a database blip) must not end the loop for the life of the process.

A job that is only there to recover (the outbox sweep) can back off while it finds nothing: with
`idle_backoff_to`, each run whose result is falsy (nothing done) doubles the pause up to that many
seconds, a run that did something or failed goes back to `every`, and `wake()` runs it soon.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from shared.logging import get_logger

log = get_logger("shared.periodic")


class Wakeup:
    """A pause that `wake()` ends early: what ``asyncio.wait_for(event.wait(), timeout)`` was used for.

    That form runs the wait as an inner task, and on Python 3.11 ``wait_for`` swallows a cancel that
    arrives as the inner wait ends (gh-86296). Here the pause is one plain future, finished by a timer or
    by `wake()`, so a cancel simply ends it.
    """

    def __init__(self) -> None:
        self._woken = False
        self._stopped = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def woken(self) -> bool:
        return self._woken

    @property
    def stopped(self) -> bool:
        """Set by `end_loop`: the loop pausing on this wakeup checks it every turn."""
        return self._stopped

    def clear(self) -> None:
        self._woken = False

    def stop(self) -> None:
        """From now on `stopped` is true and no pause lasts (see `end_loop`)."""
        self._stopped = True
        self.wake()

    def wake(self) -> None:
        self._woken = True
        if self._waiter is not None:
            _finish(self._waiter)

    async def sleep(self, seconds: float) -> None:
        """Return after `seconds`, or at once if woken since the last `clear()`, or when woken meanwhile."""
        if self._woken or self._stopped:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(seconds, _finish, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


async def end_loop(task: asyncio.Task[None], wakeup: Wakeup) -> None:
    """End a background loop that pauses on `wakeup` and runs `while not wakeup.stopped`.

    Cancelling alone is not enough: a cancel swallowed anywhere (by ``wait_for`` on Python 3.11, or by a
    job's database client; CI saw a signer's stop() wait 300 s on a loop that went on running) would leave
    it going, so the loop is also told to stop at its next turn, and a pause in progress ends at once.
    """
    wakeup.stop()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _finish(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Periodic:
    def __init__(self, name: str, job: Callable[[], Awaitable[object]], every: float, *,
                 idle_backoff_to: float | None = None) -> None:
        self.name = name
        self._job = job
        self._every = every
        self._idle_max = idle_backoff_to
        self._pause = every
        self._woken = Wakeup()
        self._task: asyncio.Task[None] | None = None

    @property
    def pause(self) -> float:
        """Seconds until the next run after the last one (grows while an idle job backs off)."""
        return self._pause

    def wake(self) -> None:
        """Run the job now (or as soon as the current run ends) and go back to the short pause."""
        self._pause = self._every
        self._woken.wake()

    def start(self) -> None:
        self._task = asyncio.create_task(self._forever(), name=self.name)

    async def stop(self) -> None:
        if self._task:
            await end_loop(self._task, self._woken)
            self._task = None
            self._woken = Wakeup()  # a later start() begins afresh

    async def _forever(self) -> None:
        while not self._woken.stopped:
            self._woken.clear()
            try:
                did = await self._job()
            except Exception as exc:
                log.warning("periodic job failed; will retry", job=self.name, error=f"{type(exc).__name__}: {exc}")
                did = True
            if self._idle_max is None or did:
                self._pause = self._every
            elif not self._woken.woken:
                self._pause = min(self._pause * 2, self._idle_max)
            await self._woken.sleep(self._pause)
