"""Signer replicas as real processes, a paced stream of `csr.approved`, and an exact count of answers.

Like `benchmarks/signer_loadtest.py`, but built for breaking things in the middle: requests are
published at a steady rate (so work is always arriving when the fault hits), the publisher and the
collector ride out a broker outage by themselves, and the result is checked per request id against
both the `cert` topic and the signer's own database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from benchmarks.signer_loadtest import LOAD_RA, build_requests
from shared.config import KafkaSettings, MongoSettings
from shared.events import CloudEvent, Topics
from shared.kafka import EventProducer, ensure_topics
from shared.mongo import connect

PASSPHRASE = b"fault-test-only-passphrase"
PUBLIC_URL = "http://pki.example.net"
ISSUED = "org.cacert.cert.issued.v1"
GRACE_SECONDS = 30.0


def fault_requests() -> int:
    """How many certificate requests each fault run pushes (CACERT_FAULT_REQUESTS, default 100)."""
    return int(os.environ.get("CACERT_FAULT_REQUESTS", "100"))


def fault_rate() -> float:
    """Requests published per second (CACERT_FAULT_RATE): the stream the fault interrupts.

    By default the stream lasts about 8 s (at most 50/s), so a fault injected after the first third of
    the answers always meets requests still arriving and in flight.
    """
    if os.environ.get("CACERT_FAULT_RATE"):
        return float(os.environ["CACERT_FAULT_RATE"])
    return max(5.0, min(50.0, fault_requests() / 8))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Replica:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class SignerCluster:
    """Issuing-mode signer processes sharing one consumer group, topic prefix and database."""

    def __init__(self, stack_env: dict[str, str], ca_dir: Path, work: Path) -> None:
        run_id = uuid.uuid4().hex[:8]
        self.prefix = f"fault{run_id}."
        self.database = f"signer_fault_{run_id}"
        self.kafka = KafkaSettings(bootstrap=stack_env["CACERT_KAFKA_BOOTSTRAP"], topic_prefix=self.prefix)
        self.mongo = MongoSettings(url=stack_env["CACERT_MONGO_URL"], database=self.database)
        self.topics = Topics(self.prefix)
        self.work = work
        self.env = dict(
            os.environ,
            CACERT_KAFKA_BOOTSTRAP=self.kafka.bootstrap,
            CACERT_KAFKA_TOPIC_PREFIX=self.prefix,
            CACERT_KAFKA_GROUP_PREFIX=self.prefix,  # groups are broker-wide: keep other suites' rebalances out
            CACERT_MONGO_URL=self.mongo.url,
            CACERT_MONGO_DATABASE=self.database,
            CACERT_CA_DIR=str(ca_dir),
            CACERT_CA_PASSPHRASE=PASSPHRASE.decode(),
            CACERT_SIGNER_PUBLIC_URL=PUBLIC_URL,
            CACERT_SIGNER_RA_PUBLIC_KEYS=LOAD_RA.public_pem(),  # build_requests signs as the load test's RA
            CACERT_KAFKA_CREATE_TOPICS="false",
            CACERT_LOG_LEVEL="INFO",
        )
        self.replicas: list[Replica] = []
        self._count = 0

    async def create_topics(self) -> None:
        await ensure_topics(self.kafka, partitions=4)

    def start(self) -> Replica:
        self._count += 1
        name = f"signer-{self._count}"
        port = _free_port()
        log = self.work / f"{name}.log"
        lint = [] if os.environ.get("CACERT_FAULT_LINT") == "1" else ["--no-lint"]
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "services.signer", "issuing", *lint],
                env=dict(self.env, CACERT_HTTP_PORT=str(port)),
                stdout=out, stderr=subprocess.STDOUT,
            )
        replica = Replica(name, process, port, log)
        self.replicas.append(replica)
        return replica

    async def wait_healthy(self, replica: Replica, timeout: float = 90) -> None:
        """HTTP comes up only after the consumer started, so healthy means consuming."""
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(replica.healthy):
            if replica.process.poll() is not None:
                raise AssertionError(f"{replica.name} exited with {replica.process.returncode}:\n{replica.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{replica.name} not healthy within {timeout}s:\n{replica.tail()}")
            await asyncio.sleep(0.2)

    @staticmethod
    def kill(replica: Replica) -> None:
        replica.process.send_signal(signal.SIGKILL)
        replica.process.wait(timeout=10)

    @staticmethod
    async def terminate(replica: Replica, grace: float = GRACE_SECONDS) -> tuple[int | None, float]:
        """SIGTERM; (exit code or None if still running after `grace`, seconds it took)."""
        started = time.monotonic()
        replica.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(replica.process.wait, grace)
        except subprocess.TimeoutExpired:
            return None, time.monotonic() - started
        return code, time.monotonic() - started

    async def close(self) -> None:
        for replica in self.replicas:
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in self.replicas:
            try:
                await asyncio.to_thread(replica.process.wait, GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                replica.process.kill()
        with contextlib.suppress(Exception):
            client, _ = connect(self.mongo, service="signer")
            await client.drop_database(self.database)
            await client.close()

    def logs(self) -> str:
        return "\n".join(f"--- {r.name} (exit {r.process.poll()})\n{r.tail()}" for r in self.replicas)

    async def database_counts(self) -> dict[str, Any]:
        """What the signer stored: outcomes per request id, serials of the certificates."""
        deadline = time.monotonic() + 120
        while True:
            client, db = connect(self.mongo, service="signer")
            try:
                outcomes = await db.outcomes.find({}, {"_id": 1}).to_list()
                statuses = await db.statuses.find({}, {"_id": 1}).to_list()
                return {"outcome_ids": [d["_id"] for d in outcomes], "serials": [str(d["_id"]) for d in statuses]}
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1)
            finally:
                await client.close()


@dataclasses.dataclass
class RunResult:
    requested: int
    answered: dict[str, list[tuple[str, str, str]]]  # request id -> [(event id, type, serial)]
    seconds: float

    @property
    def issued(self) -> set[str]:
        return {r for r, answers in self.answered.items() if any(t == ISSUED for _, t, _ in answers)}

    @property
    def missing(self) -> int:
        return self.requested - len(self.answered)

    @property
    def duplicates(self) -> int:
        """Requests answered with more than one certificate, plus serials given to more than one request.

        The same `cert.issued` (same event id and serial) delivered twice is at-least-once delivery of one
        certificate, not a duplicate certificate.
        """
        per_request = sum(1 for a in self.answered.values() if len({s for _, _, s in a if s}) > 1)
        owners = Counter(s for a in self.answered.values() for s in {s for _, _, s in a if s})
        return per_request + sum(1 for n in owners.values() if n > 1)

    @property
    def serials(self) -> set[str]:
        return {s for a in self.answered.values() for _, t, s in a if t == ISSUED}

    def summary(self) -> dict[str, Any]:
        return {"requested": self.requested, "issued": len(self.issued), "missing": self.missing,
                "duplicates": self.duplicates, "seconds": round(self.seconds, 1),
                "redelivered_answers": sum(len(a) - 1 for a in self.answered.values())}


class RequestStream:
    """Publishes N approved requests at a steady rate and collects every answer on the cert topic."""

    def __init__(self, cluster: SignerCluster, count: int, rate: float) -> None:
        self.cluster = cluster
        self.events = build_requests(count, {"server": 6, "client": 3, "codesign": 1}, ["p256"], "faults")
        self.expected = {e.data["request_id"] for e in self.events}
        self.rate = rate
        self.answered: dict[str, list[tuple[str, str, str]]] = {}
        self.published = 0
        self.publish_retries = 0
        self._done = asyncio.Event()

    @property
    def progress(self) -> int:
        return len(self.answered)

    async def wait_answered(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.answered) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.answered)}/{count} answers within {timeout}s")
            await asyncio.sleep(0.05)

    async def _publish(self) -> None:
        producer = EventProducer(self.cluster.kafka, client_id=f"fault-driver-{uuid.uuid4().hex[:6]}")
        await producer.start()
        try:
            chunk = 10
            pause = chunk / self.rate
            for start in range(0, len(self.events), chunk):
                part = self.events[start:start + chunk]
                while True:
                    try:
                        await producer.publish_many(part)
                        break
                    except (KafkaError, OSError):
                        # Broker outage: publish the chunk again (a re-sent request must still yield one cert).
                        self.publish_retries += 1
                        await asyncio.sleep(0.5)
                self.published += len(part)
                await asyncio.sleep(pause)
        finally:
            await producer.stop()

    async def _collect(self, timeout: float) -> None:
        consumer = AIOKafkaConsumer(
            self.cluster.topics.of("cert"), bootstrap_servers=self.cluster.kafka.bootstrap, group_id=None,
            auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=100,
        )
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not self.expected <= self.answered.keys():
                try:
                    batch = await consumer.getmany(timeout_ms=300)
                except KafkaError:
                    await asyncio.sleep(0.5)
                    continue
                for records in batch.values():
                    for record in records:
                        event = CloudEvent.from_kafka(record.key, record.value, record.headers)
                        request_id = event.data.get("request_id")
                        if isinstance(request_id, str) and request_id in self.expected:
                            self.answered.setdefault(request_id, []).append(
                                (event.id, event.type, str(event.data.get("serial", ""))))
        finally:
            await consumer.stop()

    async def run(self, fault: Callable[[RequestStream], Any], timeout: float) -> RunResult:
        """Stream the requests, run `fault(self)` concurrently, return once all are answered (or timeout)."""
        started = time.monotonic()
        collector = asyncio.create_task(self._collect(timeout))
        await asyncio.sleep(0.5)
        publisher = asyncio.create_task(self._publish())
        try:
            await asyncio.wait_for(fault(self), timeout)  # a fault that never ends fails instead of hanging
            await asyncio.wait_for(publisher, timeout)
            await collector
        finally:
            for task in (publisher, collector):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return RunResult(len(self.expected), dict(self.answered), time.monotonic() - started)


def run_timeout(count: int) -> float:
    """Generous: publishing time, plus a consumer-group session timeout or two, plus an outage."""
    return 180 + count / fault_rate() + count / 20


def check_exact(result: RunResult, db: dict[str, Any], logs: str) -> None:
    """Exactly N certificates, 0 duplicates, 0 missing, and the database agrees with the topic."""
    summary = result.summary()
    assert result.missing == 0, (summary, logs)
    assert len(result.issued) == result.requested, (summary, logs)
    assert result.duplicates == 0, summary
    assert sorted(db["outcome_ids"]) == sorted(result.answered), "one stored outcome per request"
    assert len(db["serials"]) == result.requested, f"{len(db['serials'])} certificates stored for {summary}"
    assert set(db["serials"]) == result.serials, "every stored certificate was announced by cert.issued"
