"""A rolling update drops no request (issue 20 item 4).

Two replicas of a service run as real processes (`python -m services...`, as the pods do). A client
spreads a steady stream of requests over the replicas that are in rotation, sharing keep-alive
connections as an ingress does, while a watcher plays the endpoints controller: every 100 ms it asks
each replica's /readyz and takes a replica that does not answer 200 out of rotation. One replica then
gets SIGTERM, as the kubelet sends it after the pod's preStop hook. The replica drains
(CACERT_SHUTDOWN_DRAIN_SECONDS): /readyz fails while it still serves, each answer closes its connection,
then the listener closes after the requests in flight finish. Every request gets its answer: no
connection error, no 5xx; the stopped replica exits 0 and answered requests after the signal.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from services.signer.ca.ceremony import bootstrap
from services.signer.ca.urls import CAUrls
from tests.acme_keys import ACME_SEALING_PUBLIC_PEM
from tests.approval_keys import RA_PRIVATE_PEM
from tests.faults.cluster import PASSPHRASE, PUBLIC_URL, Replica, _free_port
from tests.mail_keys import SEALING_PUBLIC_PEM

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DRAIN_SECONDS = 2.0


class Rotation:
    """The replicas a load balancer would send to: those whose /readyz last answered 200."""

    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas = list(replicas)
        self.ready = list(replicas)
        self._next = 0

    def pick(self) -> Replica:
        self._next = (self._next + 1) % len(self.ready)
        return self.ready[self._next]

    async def watch(self, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        while not stop.is_set():
            ready = []
            for replica in self.replicas:
                try:
                    async with http.get(f"http://127.0.0.1:{replica.port}/readyz",
                                        timeout=aiohttp.ClientTimeout(total=0.5)) as reply:
                        if reply.status == 200:
                            ready.append(replica)
                except (aiohttp.ClientError, TimeoutError):
                    pass
            if ready:
                self.ready = ready
            await asyncio.sleep(0.1)


def _start(name: str, command: list[str], env: dict[str, str], work: Path) -> Replica:
    port = _free_port()
    log = work / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", *command], cwd=ROOT,
                                   env=dict(env, CACERT_HTTP_PORT=str(port)), stdout=out, stderr=subprocess.STDOUT)
    return Replica(name, process, port, log)


async def _until_ready(replica: Replica, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(replica.healthy):
        if replica.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{replica.name} did not start:\n{replica.tail()}")
        await asyncio.sleep(0.2)


def _registration_env(stack_env: dict[str, str], _: Path) -> tuple[list[str], dict[str, str], list[str]]:
    run = uuid.uuid4().hex[:8]
    env = dict(os.environ, CACERT_KAFKA_BOOTSTRAP=stack_env["CACERT_KAFKA_BOOTSTRAP"],
               CACERT_KAFKA_TOPIC_PREFIX=f"roll{run}.", CACERT_KAFKA_GROUP_PREFIX=f"roll{run}.",
               CACERT_MONGO_URL=stack_env["CACERT_MONGO_URL"], CACERT_MONGO_DATABASE=f"registration_roll_{run}",
               CACERT_RA_SIGNING_KEY=RA_PRIVATE_PEM, CACERT_MAIL_SEALING_PUBLIC_KEY=SEALING_PUBLIC_PEM,
               CACERT_ACME_SEALING_PUBLIC_KEY=ACME_SEALING_PUBLIC_PEM, CACERT_PUBLIC_URL="http://127.0.0.1",
               CACERT_WEB_CSRF_SECRET="rolling-test-only-csrf-secret")
    # an API call that reads the database (an unknown session) and a static document
    return ["services.registration"], env, ["/v1/me", "/openapi.json"]


def _status_env(stack_env: dict[str, str], work: Path) -> tuple[list[str], dict[str, str], list[str]]:
    ca_dir = work / "ca"
    bootstrap(ca_dir, PASSPHRASE, "p256", class1_urls=CAUrls.under(PUBLIC_URL, "class1"))
    env = dict(os.environ, CACERT_MONGO_URL=stack_env["CACERT_MONGO_URL"],
               CACERT_MONGO_DATABASE=f"signer_roll_{uuid.uuid4().hex[:8]}", CACERT_CA_DIR=str(ca_dir),
               CACERT_CA_PASSPHRASE=PASSPHRASE.decode(), CACERT_SIGNER_PUBLIC_URL=PUBLIC_URL,
               CACERT_KAFKA_BOOTSTRAP=stack_env["CACERT_KAFKA_BOOTSTRAP"])
    return ["services.signer", "status"], env, ["/class1.crt", "/class3.crt"]  # no CRL before the issuer runs


SERVICES: dict[str, Callable[[dict[str, str], Path], tuple[list[str], dict[str, str], list[str]]]] = {
    "registration": _registration_env,
    "signer-status": _status_env,
}


@pytest.fixture
async def replicas(request: pytest.FixtureRequest, stack_env: dict[str, str], tmp_path: Path
                   ) -> AsyncIterator[tuple[list[Replica], list[str]]]:
    command, env, paths = SERVICES[request.param](stack_env, tmp_path)
    env["CACERT_SHUTDOWN_DRAIN_SECONDS"] = str(DRAIN_SECONDS)
    started = [_start(f"{request.param}-{n}", command, env, tmp_path) for n in (1, 2)]
    try:
        for replica in started:
            await _until_ready(replica)
        yield started, paths
    finally:
        for replica in started:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in started:
            try:
                await asyncio.to_thread(replica.process.wait, 30)
            except subprocess.TimeoutExpired:
                replica.process.kill()


@pytest.mark.parametrize("replicas", list(SERVICES), indirect=True)
async def test_a_replica_stopped_mid_stream_drops_no_request(replicas: tuple[list[Replica], list[str]]) -> None:
    (leaving, staying), paths = replicas
    rotation = Rotation([leaving, staying])
    outcomes: Counter[str] = Counter()
    served_after_signal: Counter[str] = Counter()
    errors: list[str] = []
    signalled = asyncio.Event()
    stop = asyncio.Event()

    async def client(http: aiohttp.ClientSession, worker: int) -> None:
        n = worker
        while not stop.is_set():
            replica = rotation.pick()
            path = paths[n % len(paths)]
            n += 1
            try:
                async with http.get(f"http://127.0.0.1:{replica.port}{path}") as reply:
                    await reply.read()
                    outcomes[str(reply.status)] += 1
                    if reply.status >= 500:
                        errors.append(f"{replica.name} {path}: {reply.status}")
                    elif signalled.is_set() and replica is leaving:
                        served_after_signal[str(reply.status)] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(f"{replica.name} {path}: {type(exc).__name__}: {exc}")
            await asyncio.sleep(0.005)

    connector = aiohttp.TCPConnector(limit=8, keepalive_timeout=30)  # keep-alive, as an ingress does
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as http:
        watcher = asyncio.create_task(rotation.watch(http, stop))
        workers = [asyncio.create_task(client(http, w)) for w in range(4)]
        await asyncio.sleep(1.0)
        leaving.process.send_signal(signal.SIGTERM)
        signalled.set()
        code = await asyncio.to_thread(leaving.process.wait, 30)
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(watcher, *workers)

    assert not errors, f"{len(errors)} requests failed during the rolling stop:\n" + "\n".join(errors[:20])
    assert code == 0, leaving.tail()
    assert sum(outcomes.values()) > 100, outcomes
    assert sum(served_after_signal.values()) > 0, "the leaving replica served while draining"
    assert "draining http before closing" in leaving.log.read_text()
