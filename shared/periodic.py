"""A job that runs every N seconds in the background until stopped.

Every service has such jobs (outbox sweeps, expiry sweeps, reminders, CRL
refresh). A failing run is logged and tried again at the next tick: one
bad run (a database blip) must not end the loop for the life of the process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from shared.logging import get_logger

log = get_logger("shared.periodic")


class Periodic:
    def __init__(self, name: str, job: Callable[[], Awaitable[object]], every: float) -> None:
        self.name = name
        self._job = job
        self._every = every
        self._task: asyncio.Task[None] | None = None

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
            try:
                await self._job()
            except Exception as exc:
                log.warning("periodic job failed; will retry", job=self.name, error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self._every)
