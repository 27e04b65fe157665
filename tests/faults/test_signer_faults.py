"""The signer keeps "one approved request, exactly one certificate" when its processes or the stack break.

Each test runs real `python -m services.signer issuing` processes on a fresh topic prefix and database,
streams CACERT_FAULT_REQUESTS `csr.approved` events at them, breaks something in the middle, and checks
by request id: every request answered by exactly one certificate, no serial twice, the database and
the `cert` topic agreeing.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import devstack
from tests.faults.cluster import (
    GRACE_SECONDS,
    RequestStream,
    RunResult,
    SignerCluster,
    check_exact,
    fault_rate,
    fault_requests,
    run_timeout,
)

N = fault_requests()
pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(int(run_timeout(N)) + 240)]


@pytest.fixture
async def cluster(stack_env: dict[str, str], ca_dir: Path, tmp_path: Path) -> AsyncIterator[SignerCluster]:
    c = SignerCluster(stack_env, ca_dir, tmp_path)
    await c.create_topics()
    try:
        yield c
    finally:
        await c.close()


def report(name: str, summary: dict[str, object]) -> None:
    print(f"\nFAULT {name}: {json.dumps(summary)}", file=sys.stderr)


async def test_kill_9_a_signer_mid_run_then_restart(cluster: SignerCluster) -> None:
    first, second = cluster.start(), cluster.start()
    await asyncio.gather(cluster.wait_healthy(first), cluster.wait_healthy(second))
    stream = RequestStream(cluster, N, fault_rate())

    async def fault(s: RequestStream) -> None:
        await s.wait_answered(N // 3)
        cluster.kill(first)  # no shutdown, no commit, no leaving the group
        await asyncio.sleep(1)
        await cluster.wait_healthy(cluster.start())

    result = await stream.run(fault, run_timeout(N))
    report("kill -9", {**result.summary(), "killed_at_answers": N // 3})
    check_exact(result, await cluster.database_counts(), cluster.logs())
    assert first.process.returncode == -9


async def test_sigterm_under_load_exits_0_within_grace_and_another_replica_finishes(
        cluster: SignerCluster) -> None:
    first, second = cluster.start(), cluster.start()
    await asyncio.gather(cluster.wait_healthy(first), cluster.wait_healthy(second))
    stream = RequestStream(cluster, N, fault_rate())
    outcome: dict[str, object] = {}

    async def fault(s: RequestStream) -> None:
        await s.wait_answered(N // 3)
        code, seconds = await cluster.terminate(first)
        outcome.update(exit_code=code, stop_seconds=round(seconds, 2))

    result = await stream.run(fault, run_timeout(N))
    report("sigterm", {**result.summary(), **outcome})
    assert outcome["exit_code"] == 0, (outcome, first.tail())
    assert float(outcome["stop_seconds"]) < GRACE_SECONDS  # type: ignore[arg-type]
    check_exact(result, await cluster.database_counts(), cluster.logs())


async def restart_mid_stream(
        cluster: SignerCluster, component: str) -> tuple[RunResult, dict[str, object], RequestStream]:
    """Stop `component` of the devstack a third of the way into the stream, for 3 s, then start it
    again; the signer replica must ride it out. Returns the run's result, the outage facts and the stream."""
    replica = cluster.start()
    await cluster.wait_healthy(replica)
    stream = RequestStream(cluster, N, fault_rate())
    outage: dict[str, object] = {}

    async def fault(s: RequestStream) -> None:
        await s.wait_answered(N // 3)
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            await asyncio.to_thread(devstack.stop, component)
            outage["answers_when_stopped"] = s.progress
            await asyncio.sleep(3)
        finally:
            await asyncio.to_thread(devstack.start, component)  # waits until it answers again
        outage["outage_seconds"] = round(loop.time() - began, 1)

    try:
        result = await stream.run(fault, run_timeout(N))
    finally:
        await asyncio.to_thread(devstack.ensure_up)
    assert int(outage["answers_when_stopped"]) < N, "the outage must hit the stream in the middle"  # type: ignore[call-overload]
    assert replica.process.poll() is None, "the signer must ride out the outage, not exit"
    return result, outage, stream


async def test_kafka_broker_stopped_and_restarted_mid_stream(cluster: SignerCluster) -> None:
    result, outage, stream = await restart_mid_stream(cluster, "kafka")
    report("kafka restart", {**result.summary(), **outage, "publish_retries": stream.publish_retries})
    check_exact(result, await cluster.database_counts(), cluster.logs())


async def test_ferretdb_stopped_and_restarted_mid_stream(cluster: SignerCluster) -> None:
    result, outage, _ = await restart_mid_stream(cluster, "mongo")
    report("ferretdb restart", {**result.summary(), **outage})
    check_exact(result, await cluster.database_counts(), cluster.logs())
