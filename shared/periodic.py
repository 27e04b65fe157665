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


class Periodic:
    def __init__(self, name: str, job: Callable[[], Awaitable[object]], every: float, *,
                 idle_backoff_to: float | None = None) -> None:
        self.name = name
        self._job = job
        self._every = every
        self._idle_max = idle_backoff_to
        self._pause = every
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def pause(self) -> float:
        """Seconds until the next run after the last one (grows while an idle job backs off)."""
        return self._pause

    def wake(self) -> None:
        """Run the job now (or as soon as the current run ends) and go back to the short pause."""
        self._pause = self._every
        self._woken.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._forever(), name=self.name)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _forever(self) -> None:
        while True:
            self._woken.clear()
            try:
                did = await self._job()
            except Exception as exc:
                log.warning("periodic job failed; will retry", job=self.name, error=f"{type(exc).__name__}: {exc}")
                did = True
            if self._idle_max is None or did:
                self._pause = self._every
            elif not self._woken.is_set():
                self._pause = min(self._pause * 2, self._idle_max)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), self._pause)
