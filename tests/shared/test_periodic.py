"""The background job loop: an idle recovery job backs off, work or a wake-up brings it back."""

from __future__ import annotations

import asyncio

from shared.periodic import Periodic


async def test_an_idle_job_backs_off_to_its_limit_and_work_brings_the_short_pause_back() -> None:
    runs = 0
    found = False

    async def job() -> int:
        nonlocal runs
        runs += 1
        return 1 if found else 0

    periodic = Periodic("test", job, 0.01, idle_backoff_to=0.08)
    periodic.start()
    try:
        async with asyncio.timeout(10):
            while runs < 8:
                await asyncio.sleep(0.01)
        assert periodic.pause == 0.08  # 0.01 doubled while idle, never past the limit
        found = True
        async with asyncio.timeout(10):
            while periodic.pause != 0.01:  # work found: back to the short pause
                await asyncio.sleep(0.01)
    finally:
        await periodic.stop()


async def test_a_wake_runs_a_backed_off_job_at_once() -> None:
    runs = 0

    async def job() -> int:
        nonlocal runs
        runs += 1
        return 0

    periodic = Periodic("test", job, 30, idle_backoff_to=600)  # idle: the next run would be in 60 s
    periodic.start()
    try:
        async with asyncio.timeout(10):
            while runs == 0:
                await asyncio.sleep(0.01)
        periodic.wake()
        async with asyncio.timeout(10):
            while runs == 1:
                await asyncio.sleep(0.01)
        assert periodic.pause == 60  # still idle after the wake-up: the backoff starts again from 30 s
    finally:
        await periodic.stop()


async def test_a_job_without_backoff_keeps_its_interval_and_survives_failures() -> None:
    calls = 0

    async def job() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("database blip")

    periodic = Periodic("test", job, 0.01)
    periodic.start()
    try:
        await asyncio.sleep(0.1)
    finally:
        await periodic.stop()
    assert calls >= 3 and periodic.pause == 0.01


async def test_stop_ends_the_loop_even_when_the_job_swallows_the_cancel() -> None:
    """CI waited 300 s in a signer's stop(): its 0.2 s OCSP-signer loop was cancelled but went on
    running. A job that swallows the cancel (as a database client may) must not keep the loop alive."""
    started = asyncio.Event()

    async def job() -> None:
        started.set()
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            pass  # swallowed: the job just returns

    periodic = Periodic("test", job, 0.001)
    periodic.start()
    await started.wait()
    async with asyncio.timeout(5):
        await periodic.stop()


async def test_stop_ends_the_loop_whenever_it_comes() -> None:
    async def job() -> None:
        await asyncio.sleep(0)

    for i in range(100):  # at every point of a 1 ms pause, woken or not
        periodic = Periodic("test", job, 0.001)
        periodic.start()
        await asyncio.sleep(0.0001 * (i % 20))
        if i % 3 == 0:
            periodic.wake()
        async with asyncio.timeout(5):
            await periodic.stop()


async def test_a_wakeup_ends_a_pause_early_or_skips_it_when_woken_before() -> None:
    from shared.periodic import Wakeup

    wakeup = Wakeup()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await wakeup.sleep(0.05)  # nobody wakes it: the whole pause
    assert loop.time() - started >= 0.045
    loop.call_later(0.01, wakeup.wake)
    started = loop.time()
    await wakeup.sleep(30)  # woken after 10 ms
    assert loop.time() - started < 5 and wakeup.woken
    started = loop.time()
    await wakeup.sleep(30)  # still woken (not cleared): no pause at all
    assert loop.time() - started < 1
    wakeup.clear()
    sleeper = asyncio.create_task(wakeup.sleep(30))
    await asyncio.sleep(0.01)
    sleeper.cancel()  # a cancel ends the pause at once
    async with asyncio.timeout(5):
        try:
            await sleeper
        except asyncio.CancelledError:
            pass
    assert sleeper.cancelled()
