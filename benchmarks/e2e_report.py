"""End-to-end throughput and latency report: CSR submitted over HTTP -> `cert.issued` seen on Kafka.

    python -m benchmarks.e2e_report [--requests-per-level N] [--replicas 1,2] [--out docs/benchmarks.md]

Uses the local devstack (Kafka + FerretDB), fresh topics (prefix `bench<id>.`) and databases, and a
throw-away P-256 CA whose CRL/OCSP URLs name http://pki.example.net (pkilint refuses loopback URLs).
Starts the registration service (`python -m services.registration`, a free port) and the signer
replicas (`python -m services.signer issuing`, linting on as in production, one consumer group) as
subprocesses; signs members up through the public API (confirmation token read from the
`mail.send_requested` command, domain verified by a `domain.verified` event as domain_verify would
publish it) and pre-generates the CSRs. Then, per replica count:

1. saturation: a closed loop of `--concurrency` clients, each submitting a CSR and waiting for its
   `cert.issued` before the next; the steady completion rate is the saturation rate;
2. for each level (10 %, 50 %, 90 % of that rate): open-loop submission at a constant rate
   (request i is sent at t0 + i / rate whatever happened to the others); latency runs from the
   scheduled send time to the moment the `cert.issued` carrying the request id is read, and is split
   per hop at the moments the request's events were produced (`benchmarks.e2e_load.STAGES`).

Finally it runs the signer-only load test (`benchmarks.signer_loadtest`, same CA) for the signer's
ratio to the bare signing baseline measured in the same run, and writes the Markdown report and a
PNG of latency against offered load.

This module holds the options, the run (`measure`), the summaries, the Markdown (`render`, `write`)
and the command line; the load itself is `benchmarks/e2e_load.py`, the processes and the host
`benchmarks/e2e_system.py`, the figure `benchmarks/e2e_plot.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from benchmarks import signer_loadtest
from benchmarks.e2e_load import STAGES, CsrFactory, Sample, Watcher, closed_loop, open_loop, sign_up, stage_split
from benchmarks.e2e_plot import plot
from benchmarks.e2e_system import (
    StackDisturbedError,
    StackGuard,
    clean_up,
    cpu_snapshot,
    free_port,
    git_revision,
    loadavg,
    log_tail,
    machine,
    services_traffic,
    signer_batches,
    start_registration,
    traffic_per_certificate,
    wait_ready,
)
from demo.member_api import MemberApi
from devstack.process import stop_processes
from services.signer.ca.ceremony import bootstrap as bootstrap_ca
from services.signer.ca.keys import ALGORITHMS
from services.signer.ca.urls import CAUrls
from shared.acme_binding import BindingOpener
from shared.approvals import ApprovalSigner
from shared.config import KafkaSettings
from shared.events import Topics
from shared.kafka import EventProducer, ensure_topics
from shared.sealed_mail import MailOpener

DEFAULT_LEVELS = (0.1, 0.5, 0.9)
REPORT_KEYS = ("machine", "setup", "configs", "signer_only", "targets", "started_at", "duration_s")


@dataclasses.dataclass
class Options:
    requests_per_level: int = 200
    ca_algorithm: str = "p256"
    replicas: tuple[int, ...] = (1, 2)
    levels: tuple[float, ...] = DEFAULT_LEVELS
    saturation_requests: int = 0  # 0: max(2 x requests_per_level, 300)
    concurrency: int = 32
    max_level_seconds: float = 40.0  # a level sends min(N, offered rate x this) requests (bounds the 10 % level)
    members: int = 4
    partitions: int = 8
    lint: bool = True
    signer_requests: int = 500
    signer_lint: str = "both"  # the loadtest's --lint: the headline ratio is always the lint-off run
    baseline_seconds: float = 5.0
    timeout: float = 120.0  # waiting for the last answer of a phase
    bootstrap: str | None = None
    mongo_url: str | None = None
    out: Path = Path("docs/benchmarks.md")
    plot: Path | None = None  # default: <out dir>/benchmarks/e2e_latency.png
    command: str = ""

    @property
    def saturation_count(self) -> int:
        return self.saturation_requests or max(2 * self.requests_per_level, 300)

    @property
    def plot_path(self) -> Path:
        return self.plot or self.out.parent / "benchmarks" / "e2e_latency.png"


# ---------------------------------------------------------------------------------------------- summaries


def _pct(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def summarize(samples: list[Sample], watcher: Watcher, offered: float | None = None) -> dict[str, Any]:
    answered = [s for s in samples if s.request_id and s.answered is not None]
    issued = [s for s in answered if s.request_id not in watcher.rejected]
    answer_times = [s.answered for s in issued if s.answered is not None]
    latencies = sorted((s.answered - s.start) * 1000 for s in issued if s.answered is not None)
    http = sorted((s.http_done - s.start) * 1000 for s in samples if s.status == 202)
    first = min((s.start for s in samples), default=0.0)
    last: float = max(answer_times, default=first)
    duplicates = sum(1 for s in issued if len(watcher.serials.get(s.request_id or "", ())) > 1)
    result: dict[str, Any] = {
        "requests": len(samples),
        "issued": len(issued),
        "rejected": len(answered) - len(issued),
        "http_errors": sum(1 for s in samples if s.status != 202),
        "missing": sum(1 for s in samples if s.request_id and s.answered is None),
        "duplicates": duplicates,
        "achieved_per_s": round(len(issued) / (last - first), 1) if last > first else 0.0,
        "p50_ms": _round(_pct(latencies, 0.5)),
        "p99_ms": _round(_pct(latencies, 0.99)),
        "max_ms": _round(latencies[-1] if latencies else None),
        "http_p50_ms": _round(_pct(http, 0.5)),
        "http_p99_ms": _round(_pct(http, 0.99)),
        "duration_s": round(last - first, 2),
    }
    split = [stage_split(s.start, s.answered, watcher.produced.get(s.request_id or "", {}))
             for s in issued if s.answered is not None]
    known = [x for x in split if x is not None]
    if known:
        result["stage_p50_ms"] = {name: _round(_pct(sorted(x[name] for x in known), 0.5)) for name, _, _ in STAGES}
    if offered is not None:
        result["offered_per_s"] = round(offered, 1)
    return result


def steady_rate(samples: list[Sample]) -> float:
    """Completions per second between the 10th and the 90th percentile completion (no ramp-up/down)."""
    done = sorted(s.answered for s in samples if s.answered is not None)
    if len(done) < 10:
        return len(done) / max(1e-3, (done[-1] - min(s.start for s in samples))) if done else 0.0
    lo, hi = int(len(done) * 0.1), int(len(done) * 0.9)
    return (hi - lo) / max(1e-3, done[hi] - done[lo])


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# ---------------------------------------------------------------------------------------------- the run


async def run_config(
    opts: Options,
    replicas: int,
    base_env: dict[str, str],
    run_id: str,
    api: MemberApi,
    watcher: Watcher,
    factory: CsrFactory,
    registration_pid: int,
    registration_port: int,
    work: Path,
    guard: StackGuard,
) -> dict[str, Any]:
    env = dict(base_env, CACERT_MONGO_DATABASE=f"bench_signer_{run_id}_{replicas}")
    started = signer_loadtest.start_signers(replicas, env, opts.lint, work)
    procs = [p for p, _ in started]
    ports = [port for _, port in started]
    config: dict[str, Any] = {"replicas": replicas, "loadavg_before": loadavg()}
    try:
        for (proc, port), i in zip(started, range(replicas), strict=True):
            await wait_ready(port, proc, f"signer replica {i}")
        # Warm-up (not measured): every replica has joined the group and issued at least one batch.
        deadline = time.monotonic() + 120
        warmed = 0
        while True:
            warm = factory.make(2 * opts.partitions)
            samples = await closed_loop(api, watcher, warm, len(warm), opts.timeout)
            warmed += len(samples)
            batches = [await asyncio.to_thread(signer_batches, p) for p in ports]
            if all(b > 0 for b in batches):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"signer replicas never all got work during warm-up: {batches}")
        config["warmup_requests"] = warmed

        guard.check()
        signer_pids = [p.pid for p in procs]
        service_ports = {"registration": [registration_port], "signer": ports}
        traffic_before = await asyncio.to_thread(services_traffic, service_ports)
        before = cpu_snapshot(signer_pids, registration_pid)
        burst = await closed_loop(api, watcher, factory.make(opts.saturation_count), opts.concurrency, opts.timeout)
        after = cpu_snapshot(signer_pids, registration_pid)
        traffic_after = await asyncio.to_thread(services_traffic, service_ports)
        saturation = summarize(burst, watcher)
        saturation["concurrency"] = opts.concurrency
        saturation["steady_per_s"] = round(steady_rate(burst), 1)
        issued = max(1, saturation["issued"])
        saturation["cpu_ms_per_cert"] = {k: round((after[k] - before[k]) * 1000 / issued, 2) for k in before}
        saturation["traffic_per_cert"] = traffic_per_certificate(traffic_before, traffic_after, issued)
        saturation["cpu_busy_cores"] = round(
            sum(after[k] - before[k] for k in before) / max(1e-3, saturation["duration_s"]), 2
        )
        config["saturation"] = saturation
        print(f"[{replicas} replica(s)] saturation: {json.dumps(saturation)}", file=sys.stderr)

        rate = saturation["steady_per_s"]
        levels = []
        for fraction in opts.levels:
            offered = max(0.5, rate * fraction)
            await asyncio.sleep(1.0)  # let the previous phase drain
            guard.check()
            count = max(5, min(opts.requests_per_level, round(offered * opts.max_level_seconds)))
            samples = await open_loop(api, watcher, factory.make(count), offered, opts.timeout)
            level = {"fraction": fraction, **summarize(samples, watcher, offered)}
            levels.append(level)
            print(f"[{replicas} replica(s)] {fraction:.0%}: {json.dumps(level)}", file=sys.stderr)
        config["levels"] = levels
        guard.check()
        config.update(await asyncio.to_thread(signer_loadtest.stage_breakdown, ports))
    except Exception:
        for i in range(replicas):
            print(f"--- signer-{i}.log\n{log_tail(work / f'signer-{i}.log')}", file=sys.stderr)
        raise
    finally:
        stop_processes(procs)
    config["loadavg_after"] = loadavg()
    return config


async def signer_only(opts: Options, ca_dir: Path, bootstrap: str, mongo_url: str, work: Path) -> dict[str, Any]:
    """The signer's stand-alone load test against the same CA: ratio to bare signing in the same run."""
    out = work / "signer-loadtest.json"
    args = [
        sys.executable, "-m", "benchmarks.signer_loadtest",
        "--requests", str(opts.signer_requests), "--lint", opts.signer_lint, "--replicas", "1",
        "--ca-dir", str(ca_dir), "--ca-algorithm", opts.ca_algorithm,
        "--bootstrap", bootstrap, "--mongo-url", mongo_url,
        "--baseline-seconds", str(opts.baseline_seconds), "--out", str(out), "--timeout", str(opts.timeout),
    ]  # fmt: skip
    env = dict(os.environ, CACERT_CA_PASSPHRASE=signer_loadtest.PASSPHRASE.decode(), CACERT_LOG_LEVEL="WARNING")
    proc = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await proc.communicate()
    if not out.exists():
        raise RuntimeError(f"signer load test failed ({proc.returncode}): {stderr.decode()[-2000:]}")
    report: dict[str, Any] = json.loads(out.read_text())
    report["command"] = (
        f"python -m benchmarks.signer_loadtest --requests {opts.signer_requests} --lint {opts.signer_lint} "
        f"--replicas 1 --ca-dir <this run's CA> --ca-algorithm {opts.ca_algorithm} "
        f"--baseline-seconds {opts.baseline_seconds:g}"
    )
    report["exit_code"] = proc.returncode
    return report


async def fresh_system(opts: Options, replicas: int, ca_dir: Path, work: Path, guard: StackGuard) -> dict[str, Any]:
    """One replica configuration on its own topics, databases, registration process and members."""
    assert opts.bootstrap and opts.mongo_url
    run_id = uuid.uuid4().hex[:8]
    prefix = f"bench{run_id}."
    topics = Topics(prefix)
    kafka = KafkaSettings(bootstrap=opts.bootstrap, topic_prefix=prefix)
    await ensure_topics(kafka, partitions=opts.partitions)
    reg_db = f"bench_registration_{run_id}"
    # This run's RA key: registration signs its approvals with it, the signers trust its public half.
    ra = ApprovalSigner.generate()
    ra_private_pem = ra.private_pem()
    # This run's notifier key: registration seals its mail commands to it, the watcher opens them.
    notifier_key = MailOpener.generate()
    base_env = dict(
        os.environ,
        CACERT_KAFKA_BOOTSTRAP=opts.bootstrap,
        CACERT_KAFKA_TOPIC_PREFIX=prefix,
        CACERT_KAFKA_CREATE_TOPICS="false",
        CACERT_MONGO_URL=opts.mongo_url,
        CACERT_CA_DIR=str(ca_dir),
        CACERT_CA_PASSPHRASE=signer_loadtest.PASSPHRASE.decode(),
        CACERT_SIGNER_PUBLIC_URL=signer_loadtest.PUBLIC_URL,
        CACERT_SIGNER_RA_PUBLIC_KEYS=ra.public_pem(),
        CACERT_LOG_LEVEL="WARNING",
    )
    reg_port = free_port()
    reg_log = work / f"registration-{run_id}.log"
    registration = start_registration(
        dict(base_env, CACERT_MONGO_DATABASE=reg_db, CACERT_HTTP_PORT=str(reg_port),
             CACERT_RA_SIGNING_KEY=ra_private_pem, CACERT_MAIL_SEALING_PUBLIC_KEY=notifier_key.public_pem(),
             CACERT_ACME_SEALING_PUBLIC_KEY=BindingOpener.generate().public_pem(),  # no binding is opened here
             # a benchmark is one member family hammering one registered domain: no issuance limits
             CACERT_LIMIT_REQUESTS_PER_MEMBER="10000000", CACERT_LIMIT_REQUESTS_PER_DOMAIN="10000000"), reg_log
    )
    producer = EventProducer(kafka, client_id="e2e-bench")
    watcher = Watcher(opts.bootstrap, topics, notifier_key, producer)
    try:
        await wait_ready(reg_port, registration, "registration")
        await producer.start()
        await watcher.start()
        connector = aiohttp.TCPConnector(limit=512)
        timeout = aiohttp.ClientTimeout(total=opts.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            api = MemberApi(http, f"http://127.0.0.1:{reg_port}")
            t = time.perf_counter()
            members = list(
                await asyncio.gather(*(sign_up(api, watcher, producer, i, run_id) for i in range(opts.members)))
            )
            prepared_s = time.perf_counter() - t
            config = await run_config(
                opts, replicas, base_env, run_id, api, watcher, CsrFactory(members), registration.pid, reg_port, work,
                guard,
            )
            config["members_prepared_s"] = round(prepared_s, 1)
            return config
    except Exception:
        print(f"--- registration.log\n{log_tail(reg_log)}", file=sys.stderr)
        raise
    finally:
        await watcher.stop()
        await producer.stop()
        stop_processes([registration])
        await clean_up(opts.bootstrap, opts.mongo_url, topics, [reg_db, f"bench_signer_{run_id}_{replicas}"])


async def measure(opts: Options) -> dict[str, Any]:
    """Everything measured, as a JSON-able dict (see REPORT_KEYS); no files written."""
    started_wall = time.monotonic()
    devstack_used = not (opts.bootstrap and opts.mongo_url)
    if devstack_used:
        import devstack

        stack = devstack.ensure_up(("kafka", "mongo"))
        opts.bootstrap = opts.bootstrap or stack["CACERT_KAFKA_BOOTSTRAP"]
        opts.mongo_url = opts.mongo_url or stack["CACERT_MONGO_URL"]
    assert opts.bootstrap and opts.mongo_url
    report: dict[str, Any] = {
        "started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "command": opts.command,
        "revision": git_revision(),
    }
    guard = StackGuard(devstack_used)
    database = "external MongoDB"
    if devstack_used:
        from devstack import ferretdb

        database = f"FerretDB 1.24 ({ferretdb.backend()} backend), the devstack"
    with tempfile.TemporaryDirectory(prefix="e2e-bench-") as tmp:
        work = Path(tmp)
        ca_dir = work / "ca"
        ca_dir.mkdir()
        class1_urls = CAUrls.under(signer_loadtest.PUBLIC_URL, "class1")
        bootstrap_ca(ca_dir, signer_loadtest.PASSPHRASE, opts.ca_algorithm, class1_urls=class1_urls)
        report["configs"] = [await fresh_system(opts, r, ca_dir, work, guard) for r in opts.replicas]
        report["signer_only"] = await signer_only(opts, ca_dir, opts.bootstrap, opts.mongo_url, work)
        guard.check()
    report["setup"] = {
        "ca_algorithm": opts.ca_algorithm,
        "ca_public_url": signer_loadtest.PUBLIC_URL,
        "lint": opts.lint,
        "partitions": opts.partitions,
        "members": opts.members,
        "requests_per_level": opts.requests_per_level,
        "saturation_requests": opts.saturation_count,
        "concurrency": opts.concurrency,
        "max_level_seconds": opts.max_level_seconds,
        "database": database,
        "levels": list(opts.levels),
        "replicas": list(opts.replicas),
        "profile": "server (1 DNS name under a verified domain), CSR keys P-256 / RSA-2048 (3:1)",
    }
    report["machine"]["loadavg_end"] = loadavg()
    report["targets"] = targets(report)
    report["duration_s"] = round(time.monotonic() - started_wall, 1)
    return report


# ---------------------------------------------------------------------------------------------- output


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _lint_on_run(signer: dict[str, Any]) -> dict[str, Any] | None:
    """The signer-only run with lint on, if the run had one."""
    return next((r for r in signer["runs"] if r["lint"]), None)


def _lint_off_run(signer: dict[str, Any]) -> dict[str, Any] | None:
    """The signer-only run with lint off, if the run had one."""
    return next((r for r in signer["runs"] if not r["lint"]), None)


def _level(config: dict[str, Any], fraction: float) -> dict[str, Any] | None:
    """The open-loop level at `fraction` of saturation, if it was measured."""
    return next((lv for lv in config["levels"] if lv["fraction"] == fraction), None)


def where_the_time_goes(report: dict[str, Any]) -> str:
    signer = report["signer_only"]
    run = _lint_off_run(signer) or signer["runs"][0]
    cpu = run.get("cpu_ms_per_request", {})
    total = sum(cpu.values()) or 1.0
    bare_ms = 1000 / signer["baseline_sign_per_s"]
    stages = run.get("stage_seconds", {})
    stage_total = sum(stages.values()) or 1.0
    parts = ", ".join(f"{k} {v:g} ms ({v / total:.0%})" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
    text = [
        f"In the signer-only run (1 replica, linting {'on' if run['lint'] else 'off'}) one certificate cost"
        f" {total:.2f} ms of CPU across the "
        f"processes the load test watches: {parts}. Building and signing the certificate itself costs "
        f"{bare_ms:.3f} ms (the bare baseline), {bare_ms / total:.1%} of that; the rest is the event pipeline "
        f"around it: Kafka fetch and acks=all publish, CloudEvent decoding and schema validation, the CSR "
        f"re-check, and the claim and store writes to FerretDB."
    ]
    if stages:
        stage_text = ", ".join(f"{k} {v / stage_total:.0%}" for k, v in sorted(stages.items(), key=lambda kv: -kv[1]))
        text.append(
            f"Inside the signer the batch stages split their wall time as {stage_text} "
            f"(mean batch {run.get('mean_batch_size')} requests)."
        )
    lint_run = _lint_on_run(signer)
    if lint_run and lint_run.get("cpu_ms_per_request", {}).get("signer"):
        text.append(
            f"With pkilint on, as in the end-to-end runs, the signer's own CPU per certificate goes from "
            f"{cpu.get('signer', 0):g} to {lint_run['cpu_ms_per_request']['signer']:g} ms."
        )
    for config in report["configs"]:
        sat = config["saturation"]
        e2e = sat.get("cpu_ms_per_cert", {})
        e2e_total = sum(e2e.values())
        if not e2e_total:
            continue
        top = sorted(e2e.items(), key=lambda kv: -kv[1])
        text.append(
            f"End to end at saturation with {config['replicas']} signer replica(s) a certificate cost "
            f"{e2e_total:.1f} ms of CPU: " + ", ".join(f"{k} {v:g}" for k, v in top) + " ms. "
            f"At that cost CPU alone caps {report['machine']['nproc']} cores at about "
            f"{1000 * report['machine']['nproc'] / e2e_total:.0f} certificates/s; during the burst these processes "
            f"used {sat['cpu_busy_cores']:g} cores on average (the rest went to other work on the machine or to "
            f"waiting)."
        )
    return " ".join(text)


def _target(name: str, goal: str, measured: float | None, met: bool | None, note: str = "") -> dict[str, Any]:
    return {"target": name, "goal": goal, "measured": None if measured is None else round(measured, 3),
            "met": met, "note": note}


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 21's targets, each with the value this run measured (ratios within the same run)."""
    rows: list[dict[str, Any]] = []
    signer = report["signer_only"]
    lint_on = _lint_on_run(signer)
    for config in report["configs"]:
        n, sat = config["replicas"], config["saturation"]
        if lint_on and lint_on["throughput_per_s"]:
            ratio = sat["steady_per_s"] / lint_on["throughput_per_s"]
            rows.append(_target(f"end-to-end saturation / signer alone with lint on ({n} replica(s))", ">= 0.5",
                                ratio, ratio >= 0.5,
                                f"{_fmt(sat['steady_per_s'])} against {_fmt(lint_on['throughput_per_s'])} certs/s"))
        cpu = sum(sat.get("cpu_ms_per_cert", {}).values())
        if cpu:
            rows.append(_target(f"CPU per certificate end to end, ms ({n} replica(s))", "<= 25", cpu, cpu <= 25))
        for level in config["levels"]:
            if level["fraction"] == 0.5 and level["p50_ms"] is not None:
                rows.append(_target(f"p50 at 50 % of saturation, ms ({n} replica(s))", "<= 50", level["p50_ms"],
                                    level["p50_ms"] <= 50))
                rows.append(_target(f"p99 at 50 % of saturation, ms ({n} replica(s))", "<= 250", level["p99_ms"],
                                    level["p99_ms"] <= 250))
            if level["fraction"] == 0.9:
                kept = level["achieved_per_s"] / level["offered_per_s"]
                rows.append(_target(f"90 % of saturation sustained: achieved / offered ({n} replica(s))", ">= 0.9",
                                    kept, kept >= 0.9))
    if lint_on:
        algorithm = report.get("setup", {}).get("ca_algorithm", "")
        applies = algorithm == "rsa4096"
        rows.append(_target("signer alone, lint on, 1 replica: ratio to bare signing", ">= 0.6 (RSA-4096)",
                            lint_on["ratio"], lint_on["ratio"] >= 0.6 if applies else None,
                            "" if applies else f"the target is set for RSA-4096; this run's CA is {algorithm}"))
    return rows


def targets_section(report: dict[str, Any]) -> list[str]:
    rows = report.get("targets") or []
    lines = ["## Targets (issue 21)", "",
             "Measured in this run; every ratio is between two measurements of this same run.", "",
             "| target | goal | measured | |", "|---|---|---|---|"]
    for row in rows:
        verdict = {True: "met", False: "**missed**", None: "-"}[row["met"]]
        note = f" ({row['note']})" if row["note"] else ""
        lines.append(f"| {row['target']} | {row['goal']} | {_fmt(row['measured'])}{note} | {verdict} |")
    lines.append("")
    if any(row["met"] is False for row in rows):
        lines += [remaining_time(report), ""]
    return lines


def remaining_time(report: dict[str, Any]) -> str:
    """Where a missed target's time goes: per stage of the latency at 50 %, and per stage in the signer."""
    parts = ["Where the time of the missed targets goes, per stage (per service: the tables below)."]
    for config in report["configs"]:
        half = _level(config, 0.5)
        if half and half["p50_ms"] is not None and half["http_p50_ms"] is not None:
            after_http = round(half["p50_ms"] - half["http_p50_ms"], 1)
            parts.append(
                f"With {config['replicas']} replica(s) at 50 %: of the {_fmt(half['p50_ms'])} ms median, the HTTP "
                f"answer (registration: the session, the policy checks, the request and its outbox entry stored, "
                f"`domain.caa_check_requested` published) took {_fmt(half['http_p50_ms'])} ms and the rest (the CAA "
                f"answer, registration's approval stored and `csr.approved` published, Kafka to a signer replica, "
                f"claim, lint, signature, store, `cert.issued` back) {_fmt(after_http)} ms."
            )
        if half and half.get("stage_p50_ms"):
            parts.append(
                "Split at the moments its events were produced (Kafka CreateTime), the median request spent "
                + "; ".join(f"{_fmt(half['stage_p50_ms'][name])} ms in {name} ({what})" for name, _, what in STAGES)
                + " (medians of each stage: they need not add up to the median of the whole)."
            )
        stages = config.get("stage_seconds") or {}
        total = sum(stages.values())
        if total:
            split = ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(stages.items(), key=lambda kv: -kv[1]))
            parts.append(f"The signer's batch stages over the whole configuration: {split} "
                         f"(mean batch {config.get('mean_batch_size')}).")
    signer = report["signer_only"]
    lint_on = _lint_on_run(signer)
    lint_off = _lint_off_run(signer)
    if lint_on and lint_off and lint_on["ratio"] < 0.6:
        on = lint_on.get("cpu_ms_per_request", {}).get("signing_workers")
        off = lint_off.get("cpu_ms_per_request", {}).get("signing_workers")
        if on and off:
            parts.append(
                f"Signer alone, lint on: the signing worker spent {_fmt(on)} ms of CPU per certificate against "
                f"{_fmt(off)} ms with lint off, so pkilint costs about {_fmt(round(on - off, 2))} ms a certificate "
                f"where bare building and signing costs {1000 / signer['baseline_sign_per_s']:.2f} ms: the lint is "
                f"the larger part of the worker's work, so lint on reaches {_fmt(lint_on['ratio'])} of bare signing "
                f"(lint off: {_fmt(lint_off['ratio'])}).")
    return " ".join(parts)


def per_certificate_table(report: dict[str, Any]) -> list[str]:
    """Issue 21 item 1: per certificate and per service, CPU ms, database commands (by command and
    collection) and Kafka records, from the saturation burst of each replica configuration."""
    lines: list[str] = []
    for config in report["configs"]:
        sat = config["saturation"]
        cpu = sat.get("cpu_ms_per_cert", {})
        traffic = sat.get("traffic_per_cert", {})
        lines += [
            f"With {config['replicas']} signer replica(s), saturation burst ({sat['issued']} certificates):",
            "",
            "| process | CPU (ms) | DB commands | Kafka records produced | Kafka records consumed "
            "| commands by command and collection |",
            "|---|---|---|---|---|---|",
        ]
        for part in sorted(cpu, key=lambda k: -cpu[k]):
            row = traffic.get(part, {})
            detail = ", ".join(
                f"{key[3:]} {value:g}" for key, value in sorted(row.items(), key=lambda kv: -kv[1])
                if key.startswith("db ")
            )
            lines.append(
                f"| {part} | {_fmt(cpu[part])} | {_fmt(row.get('db_commands'))} | {_fmt(row.get('kafka_produced'))} "
                f"| {_fmt(row.get('kafka_consumed'))} | {detail or '-'} |"
            )
        lines += [f"| **total** | **{sum(cpu.values()):.1f}** | "
                  f"**{_fmt(round(sum(r.get('db_commands', 0) for r in traffic.values()), 2))}** | | | |", ""]
    return lines


def render(report: dict[str, Any], plot_rel: str) -> str:
    m, s = report["machine"], report["setup"]
    signer = report["signer_only"]
    lines = [
        "# Benchmarks: end-to-end throughput and latency",
        "",
        f"Produced by `{report.get('command') or 'python -m benchmarks.e2e_report'}` on {report['started_at']} "
        f"(took {report['duration_s']:g} s) at revision {report.get('revision', '?')}. Re-running the command "
        "rewrites this page and the figure.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPUs (`nproc`) | {m['nproc']} |",
        f"| CPU model (/proc/cpuinfo) | {m['cpu_model']} |",
        f"| memory | {m['memory_gib']:g} GiB |",
        f"| Python | {m['python']} |",
        f"| kernel | {m['kernel']} |",
        f"| load average at start (1/5/15 min) | {' / '.join(f'{x:g}' for x in m['loadavg_start'])} |",
        f"| load average at end | {' / '.join(f'{x:g}' for x in m.get('loadavg_end', []))} |",
        "",
        "Everything (Kafka, FerretDB, registration, the signer replicas and the load generator) shares these "
        "cores. The machine is shared with other engineers' test suites: a load average above 0 at the start "
        "means something else was already competing, and the numbers below are lower and noisier than on an "
        "idle machine.",
        "",
        "## What is measured",
        "",
        "* **Path**: `POST /v1/requests` to registration (HTTP 202, CSR policy checked, request stored with its "
        "`csr.approved` in the outbox) → Kafka `csr` → a signer replica (claim, re-check, pkilint, sign, store) → "
        "`cert.issued` on the `cert` topic, read by the load generator and matched by request id.",
        f"* **Setup**: throw-away CA with **{s['ca_algorithm'].upper()}** keys (CRL/OCSP URLs under "
        f"`{s['ca_public_url']}`), pre-issuance linting **{'on' if s['lint'] else 'off'}**, {s['partitions']} "
        f"partitions per topic, {s['database']}; for each replica count fresh topics and databases, "
        f"registration as one `python -m services.registration` "
        f"process, signer replicas as `python -m services.signer issuing` processes in one consumer group. "
        f"{s['members']} members signed up through the API, each with a domain verified by a `domain.verified` "
        f"event; requests are {s['profile']}; CSRs pre-generated.",
        f"* **Saturation**: closed loop of {s['concurrency']} clients, each submitting and waiting for its "
        f"`cert.issued` before the next, {s['saturation_requests']} requests; the saturation rate is the completion "
        f"rate between the 10th and 90th percentile completion.",
        f"* **Levels**: open-loop submission at a constant {', '.join(f'{x:.0%}' for x in s['levels'])} of that rate, "
        f"{s['requests_per_level']} requests each (fewer when that would take more than "
        f"{s['max_level_seconds']:g} s at "
        f"the offered rate: see the requests column); latency runs from the *scheduled* send time (no coordinated "
        f"omission) to reading `cert.issued`; achieved = certificates / (last `cert.issued` - first submission); "
        f"p50/p99 are nearest-rank. Each request's latency is also split at the moments its events were produced "
        f"(their Kafka CreateTime): " + "; ".join(f"{name}: {what}" for name, _, what in STAGES)
        + " (each level's `stage_p50_ms` in the JSON).",
        "",
        "## End-to-end results",
        "",
        "| signer replicas | load | offered (req/s) | achieved (certs/s) | p50 (ms) | p99 (ms) | HTTP 202 p50 (ms) "
        "| issued / requests | missing |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for config in report["configs"]:
        sat = config["saturation"]
        lines.append(
            f"| {config['replicas']} | saturation (closed loop, {sat['concurrency']} clients) | - | "
            f"**{_fmt(sat['steady_per_s'])}** | {_fmt(sat['p50_ms'])} | {_fmt(sat['p99_ms'])} | "
            f"{_fmt(sat['http_p50_ms'])} | {sat['issued']} / {sat['requests']} | {sat['missing']} |"
        )
        for lv in config["levels"]:
            kept_up = lv["achieved_per_s"] >= 0.9 * lv["offered_per_s"]
            lines.append(
                f"| {config['replicas']} | {lv['fraction']:.0%}{'' if kept_up else ' (not sustained)'} | "
                f"{_fmt(lv['offered_per_s'])} | "
                f"{_fmt(lv['achieved_per_s'])} | **{_fmt(lv['p50_ms'])}** | **{_fmt(lv['p99_ms'])}** | "
                f"{_fmt(lv['http_p50_ms'])} | {lv['issued']} / {lv['requests']} | {lv['missing']} |"
            )
    lines += ["", f"![latency against offered load]({plot_rel})", ""]
    behind = [
        f"{c['replicas']} replica(s) at {lv['fraction']:.0%}"
        for c in report["configs"]
        for lv in c["levels"]
        if lv["achieved_per_s"] < 0.9 * lv["offered_per_s"]
    ]
    if behind:
        lines += [
            "**Not sustained** (achieved < 90 % of offered): " + ", ".join(behind) + ". The system did not keep up "
            "with a rate below the one the closed-loop burst reached earlier in the same configuration, so "
            "capacity fell during the run (as the run's databases grew, or because other work on the machine took "
            "the CPU); latency at those points is queueing time.",
            "",
        ]
    scaling = [c["saturation"]["steady_per_s"] for c in report["configs"]]
    if len(scaling) > 1 and scaling[0]:
        lines += [
            f"Saturation with {report['configs'][-1]['replicas']} replicas is {scaling[-1] / scaling[0]:.2f} times the "
            f"one-replica rate.",
            "",
        ]
    lines += [
        "## Signer alone against bare signing",
        "",
        f"`{signer.get('command', 'python -m benchmarks.signer_loadtest')}` (same CA, same run):",
        "",
        "| lint | signer replicas | requests | certs/s | p50 (ms) | p99 (ms) | bare signing (certs/s, 1 thread) "
        "| ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in signer["runs"]:
        lines.append(
            f"| {'on' if run['lint'] else 'off'} | {run['replicas']} | {run['requests']} | "
            f"{_fmt(run['throughput_per_s'])} "
            f"| {_fmt(run['p50_ms'])} | {_fmt(run['p99_ms'])} | {_fmt(signer['baseline_sign_per_s'])} | "
            f"**{_fmt(run['ratio'])}** |"
        )
    lines += [
        "",
        f"The signer's ratio to the bare `cryptography` build-and-sign rate measured in the same run is "
        f"**{_fmt(signer['ratio'])}** (linting {'on' if signer['runs'][0]['lint'] else 'off'}, one replica)."
        + (" Bare signing with a P-256 key is very cheap, so the ratio is dominated by everything around the "
           "signature." if s["ca_algorithm"] == "p256" else ""),
        "",
        *targets_section(report),
        "## Per certificate, per service",
        "",
        "CPU from /proc per process, the processes listed again at each reading with the CPU of their ended "
        "children (the signer's `signing_workers`, which lint and sign, and PostgreSQL's backend per connection "
        "come and go); database commands from each service's "
        "`cacert_mongo_commands_total` (PyMongo command monitoring) and Kafka records from "
        "`cacert_events_published_total` / `cacert_events_consumed_total`, read from /metrics before and after "
        "the burst and divided by the certificates issued in it (Kafka and FerretDB send no commands of their own).",
        "",
        *per_certificate_table(report),
        "## Where the time goes",
        "",
        where_the_time_goes(report),
        "",
        "<details><summary>Raw results (JSON)</summary>",
        "",
        "```json",
        json.dumps(report, indent=1),
        "```",
        "",
        "</details>",
        "",
    ]
    return "\n".join(lines)


KEPT = "<!-- Everything below this line is kept when benchmarks.e2e_report rewrites the page above. -->"
"""Sections other benchmarks add to the page (docs/benchmarks.md: the ACME throughput run) go below it."""


def write(report: dict[str, Any], opts: Options) -> None:
    png = opts.plot_path
    plot(report, png)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(png.resolve(), opts.out.parent.resolve())
    old = opts.out.read_text() if opts.out.exists() else ""
    kept = old[old.index(KEPT):] if KEPT in old else ""
    opts.out.write_text(render(report, rel) + (f"\n{kept}" if kept else ""))


README_BEGIN = "<!-- e2e-table:begin (python -m benchmarks.e2e_report --readme-from JSON...) -->"
README_END = "<!-- e2e-table:end -->"


def readme_table(reports: list[dict[str, Any]]) -> list[str]:
    """The README's summary of e2e reports (one row per CA key and replica count), from their JSON."""
    lines = [
        "| CA key | signer replicas | end to end, saturation (certs/s) | signer alone, lint on (certs/s) "
        "| ratio | CPU per certificate (ms) | p50 / p99 at 50 % (ms) | 90 % sustained | load average at start "
        "| run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for report in reports:
        lint_on = _lint_on_run(report["signer_only"])
        alone = lint_on["throughput_per_s"] if lint_on else None
        for config in report["configs"]:
            sat = config["saturation"]
            half = _level(config, 0.5)
            ninety = _level(config, 0.9)
            kept = (f"{ninety['achieved_per_s'] / ninety['offered_per_s']:.2f} of offered" if ninety else "-")
            lines.append(
                f"| {report['setup']['ca_algorithm'].upper()} | {config['replicas']} | {_fmt(sat['steady_per_s'])} "
                f"| {_fmt(alone)} | {_fmt(round(sat['steady_per_s'] / alone, 2) if alone else None)} "
                f"| {sum(sat.get('cpu_ms_per_cert', {}).values()):.1f} "
                f"| {_fmt(half['p50_ms']) if half else '-'} / {_fmt(half['p99_ms']) if half else '-'} | {kept} "
                f"| {report['machine']['loadavg_start'][0]:g} | {report['started_at']}, {report.get('revision', '?')} |"
            )
    return lines


def write_readme(readme: Path, json_files: list[Path]) -> None:
    """Rewrite the README's table between its markers from the given reports' JSON."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise SystemExit(f"{readme} has no {README_BEGIN} ... {README_END} section")
    reports = [json.loads(path.read_text()) for path in json_files]
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(head + README_BEGIN + "\n" + "\n".join(readme_table(reports)) + "\n" + README_END + tail)


def run(opts: Options) -> dict[str, Any]:
    # The load generator shares the cores with what it measures: it runs on the services' event loop
    # (uvloop, shared/service.py), so it takes as little of them as it can.
    report = uvloop.run(measure(opts))
    write(report, opts)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.e2e_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests-per-level", type=int, default=200)
    parser.add_argument("--ca-algorithm", default=Options.ca_algorithm, choices=list(ALGORITHMS),
                        help="key algorithm of the run's throw-away CA")
    parser.add_argument("--replicas", default="1,2", help="comma list of signer replica counts")
    parser.add_argument("--levels", default="0.1,0.5,0.9", help="fractions of the saturation rate")
    parser.add_argument("--saturation-requests", type=int, default=0, help="default max(2 x per level, 300)")
    parser.add_argument(
        "--concurrency", type=int, default=Options.concurrency, help="closed-loop clients for saturation"
    )
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--signer-requests", type=int, default=500, help="requests of the signer-only run")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--plot", type=Path, help="PNG path (default: <out dir>/benchmarks/e2e_latency.png)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--bootstrap", help="Kafka bootstrap (default: the local devstack)")
    parser.add_argument("--mongo-url", help="MongoDB URL (default: the local devstack)")
    parser.add_argument("--readme-from", type=Path, nargs="+", metavar="JSON",
                        help="run nothing: rewrite README.md's end-to-end table from these reports' --json files")
    args = parser.parse_args(argv)
    if args.readme_from:
        write_readme(Path("README.md"), args.readme_from)
        return 0
    shown = ["python -m benchmarks.e2e_report"] + [a for a in (argv if argv is not None else sys.argv[1:])]
    opts = Options(
        requests_per_level=args.requests_per_level,
        ca_algorithm=args.ca_algorithm,
        replicas=tuple(int(r) for r in args.replicas.split(",")),
        levels=tuple(float(x) for x in args.levels.split(",")),
        saturation_requests=args.saturation_requests,
        concurrency=args.concurrency,
        members=args.members,
        signer_requests=args.signer_requests,
        out=args.out,
        plot=args.plot,
        bootstrap=args.bootstrap,
        mongo_url=args.mongo_url,
        command=" ".join(shown),
    )
    try:
        report = run(opts)
    except StackDisturbedError as exc:
        print(f"e2e_report: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {opts.out} and {opts.plot_path} in {report['duration_s']:g} s", file=sys.stderr)
    bad = any(
        phase["missing"] or phase["duplicates"] for c in report["configs"] for phase in [c["saturation"], *c["levels"]]
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
