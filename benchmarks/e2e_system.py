"""The system under test of the end-to-end report, as processes, and the host it runs on.

Machine facts (`machine`, `loadavg`), starting registration and waiting for readiness, the pids whose
CPU is counted, `StackGuard` (a devstack restarted mid-run voids the numbers), the git revision, and
the clean-up of a run's topics and databases. The signer replicas are started by
`benchmarks.signer_loadtest.start_signers`, as in the signer-only load test.
"""

from __future__ import annotations

import asyncio
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from shared.events import Topics

# ---------------------------------------------------------------------------------------------- machine


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?")
    mem_kb = next(
        (int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")),
        0,
    )
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout)
    except (OSError, ValueError, subprocess.CalledProcessError):
        nproc = len(os.sched_getaffinity(0))
    return {
        "nproc": nproc,
        "cpu_model": model,
        "memory_gib": round(mem_kb / 2**20, 1),
        "python": sys.version.split()[0],
        "kernel": platform.release(),
        "loadavg_start": loadavg(),
    }


# ---------------------------------------------------------------------------------------------- processes


def signer_batches(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith("cacert_signer_batch_size_count")
    )


async def wait_ready(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}")
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout} s")


def system_pids(signer_pids: list[int], registration_pid: int) -> dict[str, list[int]]:
    """The processes of the system under test, as they are now; the devstack's Kafka and FerretDB by their pid
    files. Processes come and go (the signer's pool of signing workers, which lint and sign; a PostgreSQL
    backend per connection), so `cpu_snapshot` lists them again each time."""
    pids = {"signer": signer_pids, "signing_workers": [kid for pid in signer_pids for kid in children(pid)],
            "registration": [registration_pid], "kafka": [], "ferretdb": [],
            "load_generator": [os.getpid()]}  # fmt: skip
    try:
        from devstack.process import running_pid

        for part, name in (("kafka", "kafka"), ("ferretdb", "mongo")):
            pid = running_pid(name)
            pids[part] = [pid] if pid else []
        postmaster = running_pid("postgres")  # FerretDB's PostgreSQL backend, when it runs on one
        if postmaster:
            pids["postgres"] = [postmaster, *children(postmaster)]  # a backend process per connection
    except Exception as exc:  # an external stack: its servers are not ours to watch
        print(f"devstack pids unknown ({exc}); Kafka/FerretDB CPU not measured", file=sys.stderr)
    return pids


def cpu_snapshot(signer_pids: list[int], registration_pid: int) -> dict[str, float]:
    """CPU seconds used so far by each part of the system under test, its processes listed afresh
    (`system_pids`): each process's own and that of its children that have ended (cutime, cstime), so a
    backend or worker that came or went between two snapshots counts once. The load generator counts only
    its own: its children are the services, counted apart."""
    snapshot: dict[str, float] = {}
    for part, group in system_pids(signer_pids, registration_pid).items():
        snapshot[part] = sum(cpu_seconds(pid, ended_children=part != "load_generator") for pid in group)
    return snapshot


def cpu_seconds(pid: int, *, ended_children: bool = False) -> float:
    """utime + stime of a process (Linux /proc), with cutime + cstime if `ended_children`; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15 if ended_children else 13]) / os.sysconf("SC_CLK_TCK")


TRAFFIC_METRICS = {
    "cacert_mongo_commands_total": "db",
    "cacert_events_published_total": "kafka_produced",
    "cacert_events_consumed_total": "kafka_consumed",
}


def traffic(port: int) -> dict[str, float]:
    """A service's database commands (``db command collection``) and Kafka records (``kafka_produced
    topic``, ``kafka_consumed topic``) so far, from its /metrics: the counters PyMongo's command
    monitoring (shared/mongo.py) and the event runner/producer (shared/kafka/metrics.py) keep."""
    counts: dict[str, float] = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        kind = TRAFFIC_METRICS.get(name)
        if kind is None or "}" not in rest:
            continue
        labels_text, _, value = rest.rpartition("}")
        labels = dict(part.split("=", 1) for part in labels_text.split('",') if "=" in part)
        labels = {k: v.strip('"') for k, v in labels.items()}
        if kind == "db":
            key = f"db {labels.get('command', '?')} {labels.get('collection', '?')}"
        else:
            key = f"{kind} {labels.get('topic', '?')}"
        counts[key] = counts.get(key, 0.0) + float(value)
    return counts


def services_traffic(ports: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """`traffic` summed over each service's replicas."""
    totals: dict[str, dict[str, float]] = {}
    for service, service_ports in ports.items():
        summed: dict[str, float] = {}
        for port in service_ports:
            for key, value in traffic(port).items():
                summed[key] = summed.get(key, 0.0) + value
        totals[service] = summed
    return totals


def traffic_per_certificate(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], certificates: int
) -> dict[str, dict[str, float]]:
    """Per service: each counter's increase divided by the certificates issued in between, plus totals
    (``db_commands``, ``kafka_produced``, ``kafka_consumed``). Counters that did not move are left out."""
    table: dict[str, dict[str, float]] = {}
    for service, counts in after.items():
        row: dict[str, float] = {}
        for key, value in sorted(counts.items()):
            delta = value - before.get(service, {}).get(key, 0.0)
            if delta > 0:
                row[key] = round(delta / max(1, certificates), 3)
        row["db_commands"] = round(sum(v for k, v in row.items() if k.startswith("db ")), 3)
        row["kafka_produced"] = round(sum(v for k, v in row.items() if k.startswith("kafka_produced ")), 3)
        row["kafka_consumed"] = round(sum(v for k, v in row.items() if k.startswith("kafka_consumed ")), 3)
        table[service] = row
    return table


def children(pid: int) -> list[int]:
    """Every descendant of `pid` now (/proc/<pid>/task/*/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = [int(k) for k in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
        for kid in kids:
            found += [kid, *children(kid)]
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StackDisturbedError(RuntimeError):
    """The devstack's Kafka or FerretDB was restarted during the run (e.g. by a fault test): numbers void."""


class StackGuard:
    """Remembers the devstack's Kafka and FerretDB pids; `check()` raises if either changed."""

    def __init__(self, enabled: bool) -> None:
        self._pids = self._current() if enabled else {}

    @staticmethod
    def _current() -> dict[str, int | None]:
        from devstack.process import running_pid

        return {name: running_pid(name) for name in ("kafka", "mongo")}

    def check(self) -> None:
        if not self._pids:
            return
        now = self._current()
        if now != self._pids:
            raise StackDisturbedError(
                f"the devstack was restarted during the run (pids {self._pids} -> {now}), probably by a fault "
                "test on the same machine; the numbers would be meaningless, run the command again"
            )


def git_revision() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")


def start_registration(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "services.registration"], env=env, stdout=log, stderr=subprocess.STDOUT
        )


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def clean_up(bootstrap: str, mongo_url: str, topics: Topics, databases: list[str]) -> None:
    """Drop this run's databases and topics (best effort: a leftover is harmless, just untidy)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from pymongo import AsyncMongoClient

    try:
        client: AsyncMongoClient[Any] = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=5000)
        try:
            for name in databases:
                await client.drop_database(name)
        finally:
            await client.close()
    except Exception as exc:
        print(f"clean-up of databases failed: {exc}", file=sys.stderr)
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="e2e-bench-cleanup")
        await admin.start()
        try:
            await admin.delete_topics(topics.all())
        finally:
            await admin.close()
    except Exception as exc:
        print(f"clean-up of topics failed: {exc}", file=sys.stderr)
