"""`shared.concurrency.at_once`: independent awaits at once, results in order, the first error once all ended."""

from __future__ import annotations

import asyncio

import pytest

from shared.concurrency import at_once


async def test_results_come_back_in_argument_order_and_the_waits_overlap() -> None:
    started: list[str] = []
    started_when_a_ended: list[str] = []

    async def value(name: str, delay: float) -> str:
        started.append(name)
        await asyncio.sleep(delay)
        if name == "a":
            started_when_a_ended.extend(started)
        return name

    async with asyncio.timeout(1):
        assert await at_once(value("a", 0.05), value("b", 0.0), value("c", 0.02)) == ("a", "b", "c")
    assert started_when_a_ended == ["a", "b", "c"]  # b and c began while a was still waiting


async def test_an_error_is_raised_as_itself_only_after_the_others_finished() -> None:
    finished: list[str] = []

    async def refuse() -> None:
        raise LookupError("over the limit")

    async def slow_read() -> str:
        await asyncio.sleep(0.05)
        finished.append("read")
        return "read"

    with pytest.raises(LookupError, match="over the limit"):
        await at_once(refuse(), slow_read())
    assert finished == ["read"]  # not left running behind the error
