"""Independent awaits run at once, and none left running behind an error.

`asyncio.gather` alone propagates the first exception while the other awaitables go on running unwatched
(their own failure then only reaches the log as "exception was never retrieved"); a `TaskGroup` cancels
them but wraps the error in an `ExceptionGroup`, which callers matching `RateLimited` or `ApiError` would
not see. `at_once` waits for all of them and raises the first error, as a sequential version would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar, overload

A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")


@overload
async def at_once(a: Awaitable[A], b: Awaitable[B], /) -> tuple[A, B]: ...


@overload
async def at_once(a: Awaitable[A], b: Awaitable[B], c: Awaitable[C], /) -> tuple[A, B, C]: ...


async def at_once(*awaitables: Awaitable[Any]) -> tuple[Any, ...]:
    """The results, in argument order, once every one has finished; the first (in argument order) error
    raised, if any."""
    results = await asyncio.gather(*awaitables, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return tuple(results)
