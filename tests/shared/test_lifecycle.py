"""shared/service.py Lifecycle: started parts stop last-started first, and one failing stop stops nothing else."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from shared.service import Lifecycle, run_until_stopped


def test_parts_stop_in_reverse_order_and_a_failing_part_does_not_stop_the_others() -> None:
    stopped: list[str] = []

    def closer(name: str, fail: bool = False):
        async def close() -> None:
            stopped.append(name)
            if fail:
                raise RuntimeError(f"{name} would not close")
        return close

    lifecycle = Lifecycle("test")
    lifecycle.started("mongodb", closer("mongodb"))
    lifecycle.started("producer", closer("producer", fail=True))
    lifecycle.started("consumer", closer("consumer"))
    lifecycle.started("http", closer("http"))
    with capture_logs() as logs:
        asyncio.run(lifecycle.stop())
    assert stopped == ["http", "consumer", "producer", "mongodb"]
    failures = [e for e in logs if e["log_level"] == "error"]
    assert [(e["part"], e["service"]) for e in failures] == [("producer", "test")]
    asyncio.run(lifecycle.stop())  # a second stop closes nothing twice
    assert stopped == ["http", "consumer", "producer", "mongodb"]


def test_a_service_whose_start_fails_half_way_has_its_started_parts_stopped() -> None:
    stopped: list[str] = []

    class HalfStarting:
        def __init__(self) -> None:
            self.lifecycle = Lifecycle("half")

        async def start(self) -> None:
            async def close_db() -> None:
                stopped.append("mongodb")

            self.lifecycle.started("mongodb", close_db)
            raise ConnectionError("kafka unreachable")

        async def stop(self) -> None:
            await self.lifecycle.stop()

    async def main() -> None:
        await run_until_stopped(HalfStarting(), asyncio.Event())

    try:
        asyncio.run(main())
    except ConnectionError:
        pass
    else:
        raise AssertionError("the start failure must reach the caller")
    assert stopped == ["mongodb"]
