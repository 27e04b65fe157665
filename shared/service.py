"""Process lifecycle shared by every service's entry point.

`run(main)` installs SIGTERM/SIGINT handlers that set a stop event and
returns the exit code; `main(stop)` starts the service, waits for the event,
and stops it. A service records each part it starts in its `Lifecycle`, and
`Lifecycle.stop()` closes them in reverse order (HTTP first so no new work
arrives, then consumers drain, then producer and database), each one even if
an earlier close failed, and only what was started: a start that failed
half-way is undone by the same stop.

Every service runs on uvloop's event loop (libuv): the same asyncio API, with the
loop, its sockets and its callbacks in C. On the end-to-end path (issue 21) it took
0.5-0.9 ms of registration's CPU per certificate (7.3-7.6 to 6.6-7.0) and 0.3 ms of
the signer's (docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Protocol

import uvloop
from aiohttp import web

from shared.http import DRAINING_KEY
from shared.logging import get_logger

log = get_logger("shared.service")


async def close_http(runner: web.AppRunner, drain_seconds: float) -> None:
    """Stop serving without dropping a request (a rolling update, a scale-down).

    First drain for `drain_seconds` (CACERT_SHUTDOWN_DRAIN_SECONDS): /readyz answers 503 and every answer
    closes its connection, while requests are still served, so the load balancers take this replica out
    and keep-alive clients move to another. Then the listener closes and requests in flight finish (up to
    the site's 5 s shutdown timeout). In Kubernetes the pod's preStop hook waits before SIGTERM as well,
    for the endpoint removal to reach every ingress and kube-proxy (deploy/k8s)."""
    runner.app[DRAINING_KEY].active = True
    if drain_seconds > 0:
        log.info("draining http before closing", seconds=drain_seconds)
        await asyncio.sleep(drain_seconds)
    await runner.cleanup()


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

    return uvloop.run(wrapper())


Close = Callable[[], Awaitable[object]]


class Lifecycle:
    """The parts a service has started, stopped in reverse order of starting."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._started: list[tuple[str, Close]] = []

    def started(self, part: str, close: Close) -> None:
        """Record that `part` is running and that `close()` stops it."""
        self._started.append((part, close))

    async def stop(self) -> None:
        """Close every started part, last started first; a failing close is logged and the rest still run.
        Calling it again does nothing (each part is forgotten once closed)."""
        while self._started:
            part, close = self._started.pop()
            try:
                await close()
            except Exception:
                log.exception("stopping a part failed", service=self._service, part=part)


class Service(Protocol):
    """What every service object offers its entry point and the tests that run it in-process."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def run_until_stopped(service: Service, stop: asyncio.Event) -> None:
    """Start `service`, wait for `stop`, stop it; a start that failed half-way is stopped too."""
    try:
        await service.start()
        await stop.wait()
    finally:
        await service.stop()
