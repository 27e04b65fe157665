"""Process lifecycle shared by every service's entry point.

`run(main)` installs SIGTERM/SIGINT handlers that set a stop event and
returns the exit code; `main(stop)` starts the service's parts, waits for
the event, and stops them in reverse order (HTTP first so no new work
arrives, then consumers drain, then producer and database).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from shared.logging import get_logger

log = get_logger("shared.service")


async def start_http(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=5.0)
    await site.start()
    log.info("http listening", host=host, port=port)
    return runner


def run(main: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run `main` until SIGTERM/SIGINT; exit 0 on a clean stop, 1 if it crashed."""

    async def wrapper() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await main(stop)
        except Exception:
            log.exception("service crashed")
            return 1
        log.info("service stopped cleanly")
        return 0

    return asyncio.run(wrapper())


class Service(Protocol):
    """What every service object offers its entry point and the tests that run it in-process."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def run_until_stopped(service: Service, stop: asyncio.Event) -> None:
    await service.start()
    try:
        await stop.wait()
    finally:
        await service.stop()
