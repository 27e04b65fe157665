"""Stand-alone load test of the signer: Kafka, FerretDB/MongoDB and signer processes only.

    python -m benchmarks.signer_loadtest --requests 1000 --ca-algorithm rsa4096 --replicas 1

It creates a throw-away CA (or uses --ca-dir), fresh topics and a fresh
database, starts `--replicas` real signer processes (`python -m services.signer
issue`) in one consumer group, pushes N `csr.approved` events with the given
profile and CSR-key mix, waits for every answer on the cert topic, and prints:

    {"issued", "rejected", "duplicates", "missing", "throughput_per_s", "p50_ms", "p99_ms",
     "baseline_sign_per_s", "ratio", ...}

`baseline_sign_per_s` is the bare issuance rate for the same CA key and the
same mix of requests, on one core: the CSR checked, the profile's certificate
built and signed, in a plain loop with nothing of the system around it (see
`measure_baseline`), measured in the same run (right before and right after
each measured run, averaged); `ratio` = throughput / baseline.
`minimal_cert_sign_per_s` / `ratio_vs_minimal_cert` are the same against the
smallest useful leaf (no CSR, three extensions), for comparison. Top-level figures are those of the first run; `runs`
has every run, each with its own baseline and ratio. Latency is from publishing a
request to the signer publishing its answer (the answer record's timestamp,
so the collector's own polling does not enter the figures). Throughput counts
from the first publish to the last answer.

Two ways to offer the load: "all at once" (the default: every request
published as fast as the producer takes them, which measures the most the
signer can do) or an open loop at a target rate (`--rate N` requests/s for
`--requests` or `--duration` seconds): each request is published at its
scheduled time whether or not earlier ones were answered, and the report
adds `target_rate_per_s`, `achieved_rate_per_s` (what was really published)
and the latency percentiles at that rate (`p50_ms`, `p90_ms`, `p99_ms`,
`max_ms`).

`--from-env` takes Kafka and MongoDB from the environment like the services
(CACERT_KAFKA_BOOTSTRAP, CACERT_KAFKA_SECURITY_PROTOCOL, CACERT_KAFKA_USERNAME,
CACERT_KAFKA_PASSWORD_FILE, CACERT_KAFKA_CA_FILE, CACERT_MONGO_URL, ...): that is
how the Kubernetes Job (deploy/k8s/components/signer-loadtest) runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from benchmarks.e2e_system import children, cpu_seconds
from services.signer.ca import issuance, keys
from services.signer.ca.ceremony import bootstrap
from services.signer.ca.hierarchy import load_hierarchy
from services.signer.ca.keys import ALGORITHMS
from services.signer.ca.profiles import get_profile
from services.signer.ca.serials import new_serial_number
from services.signer.ca.urls import CAUrls
from shared.approvals import ApprovalSigner
from shared.config import KafkaSettings, MongoSettings, load_or_exit
from shared.events import CloudEvent, Topics, isoformat, make_event, utcnow
from shared.events.envelope import Headers, header
from shared.kafka import ensure_topics
from shared.kafka.connection import client_kwargs
from shared.kafka.topics import broker_count, delete_topics_with_prefix

PASSPHRASE = b"loadtest-only-passphrase"
OPEN_LOOP_LATE_MS = 1000.0  # a publish later than this behind its schedule counts as late
REQUEST_ID = re.compile(rb'"request_id":"([^"]+)"')
SERIAL = re.compile(rb'"serial":"([0-9a-f]+)"')
PUBLIC_URL = "http://pki.example.net"
LOAD_RA = ApprovalSigner.generate()
"""The load test plays the RA: its approvals are signed like the RA's, so the signer verifies each one
(as in production) and trusts this run's key only."""


def parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        mix[name.strip()] = float(weight or 1)
    return mix


def _csr_key_pool(kinds: list[str], size: int) -> dict[str, list[Any]]:
    """A few keys per kind: CSR key generation is not what is measured (RSA keygen is slow)."""
    pool: dict[str, list[Any]] = {}
    for kind in kinds:
        if kind == "p256":
            pool[kind] = [ec.generate_private_key(ec.SECP256R1()) for _ in range(size)]
        elif kind == "p384":
            pool[kind] = [ec.generate_private_key(ec.SECP384R1()) for _ in range(size)]
        elif kind in ("rsa2048", "rsa3072", "rsa4096"):
            pool[kind] = [rsa.generate_private_key(65537, int(kind[3:])) for _ in range(max(2, size // 4))]
        else:
            raise SystemExit(f"unknown CSR key type {kind!r}")
    return pool


def build_requests(count: int, mix: dict[str, float], key_kinds: list[str], member: str) -> list[CloudEvent]:
    rng = random.Random(42)
    pool = _csr_key_pool(key_kinds, 8)
    profiles, weights = zip(*mix.items(), strict=True)
    events = []
    for i in range(count):
        profile = rng.choices(profiles, weights)[0]
        key = rng.choice(pool[rng.choice(key_kinds)])
        name = f"host{i}.load.example.org"
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
            .decode()
        )
        data: dict[str, Any] = {
            "request_id": str(uuid.uuid4()),
            "member_id": member,
            "profile": profile,
            "csr_pem": csr,
            "ip_addresses": [],
            "validity_days": 90,
            "approved_at": isoformat(utcnow()),
            "caa_checked_at": isoformat(utcnow()),  # a load test has no RA: CAA counts as just checked
        }
        if profile == "server":
            data.update(cert_class=1 + 2 * (i % 2), subject={"CN": name}, dns_names=[name], emails=[])
        elif profile == "client":
            data.update(cert_class=1, subject={}, dns_names=[], emails=[f"user{i}@load.example.org"])
        else:
            data.update(cert_class=3, subject={"CN": "Load Tester"}, dns_names=[], emails=[])
        events.append(LOAD_RA.sign(make_event("csr.approved", data, source="loadtest")))
    return events


def measure_baseline(ca_dir: Path, seconds: float, sample: list[CloudEvent]) -> float:
    """Bare issuance rate on one core, for the same kind of certificates the run issues.

    The sample requests' certificates are made in a plain loop by the signer's own issuance
    functions, which are `cryptography` calls: the CSR parsed and its self-signature checked (no
    CA issues from a CSR without that), the profile's certificate built, signed with the CA key.
    Left out is everything the system adds: Kafka, the database, worker processes, lint, the
    post-signing self-check, events.
    """
    hierarchy = load_hierarchy(ca_dir, PASSPHRASE)
    urls = {ca.label: CAUrls.under(PUBLIC_URL, ca.label) for ca in hierarchy.cas.values()}
    approved = [issuance.ApprovedRequest.from_payload(e.data) for e in sample]
    now = dt.datetime.now(dt.UTC)
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        request = approved[done % len(approved)]
        ca = hierarchy.issuing_ca(request.cert_class)
        builder = issuance.prepare_certificate(
            request, ca, get_profile(request.profile), urls[ca.label], now, new_serial_number()
        )
        issuance.sign_certificate(builder, ca)
        done += 1
    return done / (time.perf_counter() - started)


def measure_minimal_baseline(ca_dir: Path, seconds: float) -> float:
    """The rate of the smallest useful leaf (subject, SAN, EKU; no CSR, no CRL/AIA/policies),
    reported beside the baseline so the two definitions can be compared."""
    ca = load_hierarchy(ca_dir, PASSPHRASE).issuing_ca(1)
    leaf_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    digest = keys.signature_hash(ca.signing_key)
    now = dt.datetime.now(dt.UTC)
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        name = f"baseline{done}.example.org"
        (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca.certificate.subject)
            .public_key(leaf_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca.signing_key, digest)
        )
        done += 1
    return done / (time.perf_counter() - started)


def stop_processes(procs: list[subprocess.Popen[bytes]], timeout: float = 30) -> None:
    """SIGTERM every replica still running (each finishes what it has in hand), then wait; kill what
    is left after `timeout` seconds. (The same as devstack's, which the load-test image does not carry.)"""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _port_of(address: str) -> int | None:
    """The port of `host:port` or of a MongoDB URL's last host (None when there is none to find)."""
    found = re.search(r":(\d+)(?:/|$|\?)", address.split("@")[-1].split(",")[-1])
    return int(found.group(1)) if found else None


def percentile(ordered: list[float], fraction: float) -> float | None:
    """The value at `fraction` of a sorted list (the same rule as the p99 always reported: index n*f)."""
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))], 1)


def _pid_listening_on(port: int) -> list[int]:
    """The process with a listening TCP socket on `port` (so other stacks on the machine are not counted)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(fields[9])
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return [int(entry.name)]
        except OSError:
            continue
    return []


def system_pids(signer_pids: list[int], kafka_port: int | None, mongo_port: int | None) -> dict[str, list[int]]:
    """The processes of the system under test, found once so before/after compare the same ones
    (Kafka and the database count only when they run on this host, as locally)."""
    return {"signer": signer_pids, "signing_workers": [kid for pid in signer_pids for kid in children(pid)],
            "kafka": _pid_listening_on(kafka_port) if kafka_port else [],
            "ferretdb": _pid_listening_on(mongo_port) if mongo_port else [], "load_generator": [os.getpid()]}


def cpu_snapshot(pids: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each part of the system under test (where the time goes)."""
    return {part: sum(cpu_seconds(p) for p in group) for part, group in pids.items()}


def _free_ports(count: int) -> list[int]:
    """`count` distinct free ports (all held open while choosing, so no two replicas get the same)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def start_signers(
    count: int, env: dict[str, str], lint: bool, log_dir: Path
) -> list[tuple[subprocess.Popen[bytes], int]]:
    procs = []
    for i, port in enumerate(_free_ports(count)):
        replica_env = dict(env, CACERT_HTTP_PORT=str(port))
        args = [sys.executable, "-m", "services.signer", "issuing"] + ([] if lint else ["--no-lint"])
        log = (log_dir / f"signer-{i}.log").open("wb")
        procs.append((subprocess.Popen(args, env=replica_env, stdout=log, stderr=subprocess.STDOUT), port))
        _REPLICAS.append(procs[-1][0])
    return procs


def metrics_text(port: int) -> str:
    """A replica's Prometheus /metrics page (raises OSError while it cannot answer)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def stage_breakdown(ports: list[int]) -> dict[str, Any]:
    """Sum the replicas' stage histograms: seconds spent per stage, and the mean batch size."""
    totals: dict[str, float] = {}
    batches = requests = 0.0
    for port in ports:
        for line in metrics_text(port).splitlines():
            if line.startswith("cacert_signer_stage_seconds_sum"):
                stage = line.split('stage="')[1].split('"')[0]
                totals[stage] = totals.get(stage, 0.0) + float(line.rsplit(" ", 1)[1])
            elif line.startswith("cacert_signer_batch_size_count"):
                batches += float(line.rsplit(" ", 1)[1])
            elif line.startswith("cacert_signer_batch_size_sum"):
                requests += float(line.rsplit(" ", 1)[1])
    return {
        "stage_seconds": {k: round(v, 3) for k, v in sorted(totals.items())},
        "mean_batch_size": round(requests / batches, 1) if batches else None,
    }


def assigned_partitions(port: int, topic: str) -> int | None:
    """Partitions of `topic` a replica holds, from its /metrics (None while it cannot answer)."""
    try:
        text = metrics_text(port)
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("cacert_kafka_assigned_partitions{") and f'topic="{topic}"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


async def wait_for_group(
    replicas: list[tuple[subprocess.Popen[bytes], int]], topic: str, partitions: int, log_dir: Path,
    timeout: float = 180,
) -> None:
    """Until every replica holds its share of the input topic's partitions, unchanged for 2 s."""
    deadline = time.monotonic() + timeout
    stable_since: float | None = None
    last: list[int | None] = []
    while time.monotonic() < deadline:
        for index, (proc, _) in enumerate(replicas):
            if proc.poll() is not None:
                log_file = log_dir / f"signer-{index}.log"
                tail = log_file.read_text(errors="replace")[-2000:] if log_file.is_file() else "(no log)"
                raise SystemExit(f"signer replica {index} exited during start-up (exit {proc.returncode}):\n{tail}")
        held = [await asyncio.to_thread(assigned_partitions, port, topic) for _, port in replicas]
        settled = None not in held and sum(h or 0 for h in held) == partitions and all(
            h for h in held[: min(len(held), partitions)])
        if settled and held == last:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since >= 2:
                return
        else:
            stable_since = None
        last = held
        await asyncio.sleep(0.5)
    raise SystemExit(f"the signer replicas did not split {topic}'s {partitions} partitions in {timeout:.0f}s")


async def collect(
    kafka: KafkaSettings,
    topic: str,
    expected: set[str],
    timeout: float,
    seen: dict[str, list[tuple[float, str, str]]],
    done: asyncio.Event,
) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        **client_kwargs(kafka),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        # Answers are timed by their record timestamps, not by when they arrive here, so the
        # collector may fetch rarely: its requests would otherwise be a good share of the broker's
        # work in a slow (lint-on) run, and the broker shares the cores with the system under test.
        fetch_min_bytes=1024 * 1024,
        fetch_max_wait_ms=500,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    # Two fields of the compact JSON we produced, not the whole event: the load
                    # generator's CPU competes with the system under test for the same cores.
                    found = REQUEST_ID.search(record.value or b"")
                    request_id = found.group(1).decode() if found else None
                    if request_id in expected:
                        serial = SERIAL.search(record.value or b"")
                        # When the signer published the answer (the record's CreateTime, same host clock).
                        answered = record.timestamp / 1000
                        seen.setdefault(request_id, []).append(
                            (answered, header(record.headers, "ce_type") or "?",
                             serial.group(1).decode() if serial else "")
                        )
            if expected <= seen.keys():
                break
    finally:
        await consumer.stop()
        done.set()


async def run_once(
    args: argparse.Namespace,
    ca_dir: Path,
    base: KafkaSettings,
    mongo_url: str,
    lint: bool,
    replicas: int,
    workers: int,
    work_dir: Path,
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    prefix = f"{args.topic_prefix}{run_id}."
    kafka = dataclasses.replace(base, topic_prefix=prefix, group_prefix=prefix)
    # As many copies as the cluster can hold, up to 3: acks=all producers need min.insync.replicas of them.
    replication = min(3, await broker_count(kafka))
    await ensure_topics(kafka, partitions=args.partitions, replication_factor=replication)
    database = args.database or f"signer_load_{run_id}"
    if args.database:
        await asyncio.to_thread(empty_database, mongo_url, database)
    env = dict(
        os.environ,
        CACERT_KAFKA_BOOTSTRAP=kafka.bootstrap,
        CACERT_KAFKA_TOPIC_PREFIX=prefix,
        CACERT_KAFKA_GROUP_PREFIX=prefix,  # this run's replicas form a group of their own
        CACERT_MONGO_URL=mongo_url,
        CACERT_MONGO_DATABASE=database,
        CACERT_CA_DIR=str(ca_dir),
        CACERT_CA_PASSPHRASE=PASSPHRASE.decode(),
        CACERT_SIGNER_PUBLIC_URL=PUBLIC_URL,
        CACERT_SIGNER_RA_PUBLIC_KEYS=LOAD_RA.public_pem(),
        CACERT_KAFKA_CREATE_TOPICS="false",
        CACERT_SIGNER_WORKERS=str(workers),
        CACERT_LOG_LEVEL=os.environ.get("CACERT_LOG_LEVEL", "WARNING"),
    )
    topics = Topics(prefix)
    producer = AIOKafkaProducer(**client_kwargs(kafka), client_id="loadtest", acks="all",
                                enable_idempotence=True, linger_ms=5, max_request_size=4 * 1024 * 1024)
    await producer.start()
    replicas_started = start_signers(replicas, env, lint, work_dir)
    procs = [p for p, _ in replicas_started]
    breakdown: dict[str, Any] = {}
    try:
        # Every replica in the group before anything is measured: a late joiner would trigger a
        # rebalance mid-run, and the redelivered batches would be measured as throughput lost.
        await wait_for_group(replicas_started, topics.of("csr"), args.partitions, work_dir)
        # Warm-up (not measured): the first batches through every replica.
        warm = build_requests(max(8, 2 * args.partitions), parse_mix(args.mix), args.csr_keys, "warmup")
        await _drive(producer, kafka, topics, encode(warm), timeout=180)
        # Built and serialized before the clock starts: the load generator's own work is not measured.
        requests = encode(build_requests(args.requests, parse_mix(args.mix), args.csr_keys, "loadtest"))
        seen: dict[str, list[tuple[float, str, str]]] = {}
        pids = system_pids([p.pid for p in procs], _port_of(kafka.bootstrap), _port_of(mongo_url))
        cpu_before = cpu_snapshot(pids)
        sent_at, finished, late = await _drive(producer, kafka, topics, requests, timeout=args.timeout, seen=seen,
                                         rate=args.rate)
        cpu_after = cpu_snapshot(pids)
        breakdown["cpu_ms_per_request"] = {
            k: round((cpu_after[k] - cpu_before[k]) * 1000 / max(1, len(seen)), 2) for k in cpu_before
        }
        try:
            breakdown.update(await asyncio.to_thread(stage_breakdown, [port for _, port in replicas_started]))
        except OSError as exc:  # a replica that cannot answer /metrics costs the breakdown, not the run
            breakdown["stage_seconds_error"] = str(exc)
    finally:
        stop_processes(procs)
        await producer.stop()
        await delete_topics_with_prefix(kafka, prefix)
        if args.database:
            await asyncio.to_thread(empty_database, mongo_url, database)
    issued = {
        r for r, answers in seen.items() if any(t == "org.cacert.cert.issued.v1" for _, t, _ in answers)
    }
    rejected = {r for r, answers in seen.items() if r not in issued}
    # A duplicate is a request answered by more than one distinct certificate (serial), or a serial
    # given to two requests; the same cert.issued delivered twice is at-least-once delivery, not a duplicate.
    serial_owners = Counter(s for answers in seen.values() for s in {s for _, t, s in answers if s})
    duplicates = sum(1 for answers in seen.values() if len({s for _, _, s in answers if s}) > 1) + sum(
        1 for n in serial_owners.values() if n > 1
    )
    latencies = sorted((min(a[0] for a in seen[r]) - sent_at[r]) * 1000 for r in seen)
    first = min(sent_at.values())
    elapsed = (finished - first) if seen else float("nan")
    result: dict[str, Any] = {
        "mode": "open_loop" if args.rate else "all_at_once",
        "replicas": replicas,
        "workers_per_replica": workers,
        "lint": lint,
        "requests": args.requests,
        "issued": len(issued),
        "rejected": len(rejected),
        "duplicates": duplicates,
        "missing": args.requests - len(seen),
        "throughput_per_s": round(len(seen) / elapsed, 1) if seen else 0.0,
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": round(latencies[-1], 1) if latencies else None,
    }
    if args.rate:
        publishing = max(sent_at.values()) - first
        result["target_rate_per_s"] = args.rate
        # requests published per second of the publishing window (n - 1 intervals between n publishes)
        result["achieved_rate_per_s"] = round((len(sent_at) - 1) / publishing, 1) if publishing > 0 else None
        result["late_publishes"] = late
    result.update(breakdown)
    return result


def empty_database(url: str, name: str) -> None:
    """Drop every collection of the run's database: needs only readWrite on it (the in-cluster user)."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, Any]] = MongoClient(url, serverSelectionTimeoutMS=30000)
    try:
        db = client[name]
        for collection in db.list_collection_names():
            db.drop_collection(collection)
    finally:
        client.close()


Encoded = tuple[str, bytes, bytes, Headers]  # request id, Kafka key, value, headers


def encode(requests: list[CloudEvent]) -> list[Encoded]:
    return [(e.data["request_id"], *e.to_kafka()) for e in requests]


async def _drive(
    producer: AIOKafkaProducer,
    kafka: KafkaSettings,
    topics: Topics,
    requests: list[Encoded],
    *,
    timeout: float,
    seen: dict[str, list[tuple[float, str, str]]] | None = None,
    rate: float | None = None,
) -> tuple[dict[str, float], float, int]:
    """Publish `requests` (all at once, or at `rate` per second on schedule: an open loop) and collect
    the answers; (publish time per request id, time of the last answer, publishes more than
    OPEN_LOOP_LATE_MS behind their schedule)."""
    seen = {} if seen is None else seen
    expected = {request_id for request_id, *_ in requests}
    done = asyncio.Event()
    collector = asyncio.create_task(collect(kafka, topics.of("cert"), expected, timeout, seen, done))
    await asyncio.sleep(0.5)  # the collector is positioned before the first answer can arrive
    sent_at: dict[str, float] = {}
    late = 0
    if rate:
        sends = []
        start = time.time()
        for index, (request_id, key, value, headers) in enumerate(requests):
            due = start + index / rate
            now = time.time()
            if due > now:
                await asyncio.sleep(due - now)
            elif (now - due) * 1000 > OPEN_LOOP_LATE_MS:
                late += 1
            # Latency counts from the scheduled time, not from when the generator got round to it: a
            # generator falling behind must not hide the wait (coordinated omission).
            sent_at[request_id] = due
            sends.append(await producer.send(topics.of("csr"), value=value, key=key, headers=headers))
        await asyncio.gather(*sends)
    else:
        chunk = 100
        for begin in range(0, len(requests), chunk):
            part = requests[begin : begin + chunk]
            now = time.time()  # the same clock as the answers' record timestamps
            sends = []
            for request_id, key, value, headers in part:
                sent_at[request_id] = now
                sends.append(await producer.send(topics.of("csr"), value=value, key=key, headers=headers))
            await asyncio.gather(*sends)
    await collector
    last = max((min(a[0] for a in answers) for answers in seen.values()), default=time.time())
    return sent_at, last, late


_REPLICAS: list[subprocess.Popen[bytes]] = []  # every signer this process started


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (a CI timeout, `kill`): stop the signer replicas, then exit; nothing else matters now."""
    stop_processes(_REPLICAS)
    os._exit(128 + signum)


def measured_run(
    args: argparse.Namespace,
    ca_dir: Path,
    kafka: KafkaSettings,
    mongo_url: str,
    lint: bool,
    replicas: int,
    workers: int,
    log_dir: Path,
    sample: list[CloudEvent],
) -> dict[str, Any]:
    """One run with its baselines measured right before and right after it (the same machine)."""
    half = args.baseline_seconds / 2
    before = measure_baseline(ca_dir, half, sample), measure_minimal_baseline(ca_dir, half / 2)
    result = uvloop.run(run_once(args, ca_dir, kafka, mongo_url, lint, replicas, workers, log_dir))
    baseline = (before[0] + measure_baseline(ca_dir, half, sample)) / 2
    minimal = (before[1] + measure_minimal_baseline(ca_dir, half / 2)) / 2
    result["baseline_sign_per_s"] = round(baseline, 1)
    result["ratio"] = round(result["throughput_per_s"] / baseline, 3)
    result["minimal_cert_sign_per_s"] = round(minimal, 1)
    result["ratio_vs_minimal_cert"] = round(result["throughput_per_s"] / minimal, 3)
    print(json.dumps(result), file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.signer_loadtest", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rate", type=float,
                        help="open loop: publish this many requests per second on schedule (default: all at once)")
    parser.add_argument("--duration", type=float,
                        help="with --rate: publish for this many seconds (sets --requests to rate x duration)")
    parser.add_argument("--replicas", default="1", help="comma list, e.g. 1,2: one run per value")
    parser.add_argument("--workers", default="1",
                        help="signing processes per replica (CACERT_SIGNER_WORKERS), comma list: one run per value")
    parser.add_argument("--lint", choices=["on", "off", "both"], default="both")
    parser.add_argument("--ca-algorithm", default="rsa4096", choices=list(ALGORITHMS))
    parser.add_argument("--ca-dir", type=Path, help="use this CA (passphrase in CACERT_CA_PASSPHRASE)")
    parser.add_argument("--mix", default="server=6,client=3,codesign=1", help="profile weights")
    parser.add_argument("--csr-keys", default="p256,rsa2048", type=lambda s: s.split(","))
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--baseline-seconds", type=float, default=5)
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per shape; the median (by ratio) is reported, every ratio is listed")
    parser.add_argument("--bootstrap", help="Kafka bootstrap (default: start/reuse the local devstack)")
    parser.add_argument("--mongo-url", help="MongoDB URL (default: the local devstack)")
    parser.add_argument("--from-env", action="store_true",
                        help="Kafka and MongoDB settings from the environment, like the services (CACERT_KAFKA_*, "
                             "CACERT_MONGO_URL): how the Kubernetes Job runs it")
    parser.add_argument("--topic-prefix", default="load",
                        help="each run's topics and consumer group are <this><run id>. (default: load)")
    parser.add_argument("--database",
                        help="use this database, emptied before and after each run (default: a new "
                             "signer_load_<run id> per run)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--log-dir", type=Path, help="keep the signer replicas' logs here")
    args = parser.parse_args(argv)
    if args.duration is not None:
        if not args.rate:
            parser.error("--duration needs --rate")
        args.requests = max(1, int(args.rate * args.duration))
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")

    if args.from_env:
        kafka = load_or_exit(KafkaSettings)  # a missing Secret: one line naming it, exit 2
        mongo_url = load_or_exit(MongoSettings).url
    elif args.bootstrap and args.mongo_url:
        kafka, mongo_url = KafkaSettings(bootstrap=args.bootstrap), args.mongo_url
    else:
        import devstack

        env = devstack.ensure_up(("kafka", "mongo"))
        kafka, mongo_url = KafkaSettings(bootstrap=env["CACERT_KAFKA_BOOTSTRAP"]), env["CACERT_MONGO_URL"]

    with tempfile.TemporaryDirectory(prefix="signer-load-") as tmp:
        work = Path(tmp)
        log_dir = args.log_dir or work
        log_dir.mkdir(parents=True, exist_ok=True)
        ca_dir = args.ca_dir
        if ca_dir is None:
            ca_dir = work / "ca"
            ca_dir.mkdir()
            bootstrap(ca_dir, PASSPHRASE, args.ca_algorithm, class1_urls=CAUrls.under(PUBLIC_URL, "class1"))
        runs = []
        lint_modes = {"on": [True], "off": [False], "both": [False, True]}[args.lint]
        shapes = [(int(r), int(w)) for r in args.replicas.split(",") for w in args.workers.split(",")]
        sample = build_requests(200, parse_mix(args.mix), args.csr_keys, "baseline")
        cases = [(replicas, workers, lint) for replicas, workers in shapes for lint in lint_modes]
        # Rounds, not blocks: every case runs once per round, so each sees the host in the same
        # states (its speed drifts by 10-30% over minutes) and the cases stay comparable.
        repeats: dict[tuple[int, int, bool], list[dict[str, Any]]] = {case: [] for case in cases}
        for _ in range(args.repeat):
            for replicas, workers, lint in cases:
                repeats[(replicas, workers, lint)].append(
                    measured_run(args, ca_dir, kafka, mongo_url, lint, replicas, workers, log_dir, sample)
                )
        for case in cases:
            # The median run (by ratio) stands for the case; every run's ratio is kept beside it,
            # and a run with a missing or duplicate answer fails the whole test.
            result = dict(sorted(repeats[case], key=lambda r: r["ratio"])[len(repeats[case]) // 2])
            if args.repeat > 1:
                result["repeat_ratios"] = [r["ratio"] for r in repeats[case]]
                result["missing"] = max(r["missing"] for r in repeats[case])
                result["duplicates"] = max(r["duplicates"] for r in repeats[case])
            one = repeats.get((1, case[1], case[2]))
            if case[0] > 1 and one:
                # Throughput against the one-replica run of the same round, median over the rounds.
                scaling = [r["throughput_per_s"] / o["throughput_per_s"]
                           for r, o in zip(repeats[case], one, strict=True) if o["throughput_per_s"]]
                if scaling:
                    result["scaling_vs_one_replica"] = round(sorted(scaling)[len(scaling) // 2], 2)
                    result["scaling_per_round"] = [round(x, 2) for x in scaling]
            runs.append(result)
    report: dict[str, Any] = {
        "ca_algorithm": args.ca_algorithm,
        "requests": args.requests,
        "mix": args.mix,
        "csr_keys": args.csr_keys,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    report.update(
        {
            k: runs[0][k]
            for k in ("mode", "issued", "duplicates", "missing", "throughput_per_s", "p50_ms", "p90_ms", "p99_ms",
                      "max_ms", "target_rate_per_s", "achieved_rate_per_s", "late_publishes", "baseline_sign_per_s",
                      "ratio", "minimal_cert_sign_per_s", "ratio_vs_minimal_cert")
            if k in runs[0]
        }
    )
    report["runs"] = runs
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    failed = any(r["missing"] or r["duplicates"] for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
