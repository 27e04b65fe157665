"""ACME orders against member-API requests: certificates per second end to end, same system, same run.

`python -m benchmarks.acme_throughput` drives the running local system (`./dev up`; it starts nothing)
through its two front doors with the same closed-loop load and prints one JSON document:

* **api**: `POST /v1/requests` (a server CSR) -> poll `GET /v1/requests/{id}` until it names its serial ->
  `GET /v1/certificates/{serial}/download?format=pem` answers the certificate;
* **acme**: newOrder (with the `acme` library, as certbot does: the order, then each authorization) ->
  finalize with the CSR -> poll the order until `valid` -> POST-as-GET the certificate chain.

Every name is under the member's DNS-verified domain, so ACME authorizations are valid at once and no
challenge is answered: what differs between the two paths is the front door (JWS, nonces, the ACME
service's own orders and its Kafka hop to the RA), not the domain validation. Both paths use the same
member, the same kind of CSR (a fresh P-256 key and one DNS name per order, made before the phase starts),
the same number of concurrent clients and the same poll interval; ACME clients run in threads (the library
blocks), one account each, accounts spread over as many bindings as the per-binding limit needs.

Phases alternate, after an unmeasured warm-up of each path: round 1 api then acme, round 2 acme then api,
and so on (`--repeat`; an even count cancels a steady drift of the machine's speed). Per path:
`count` (orders submitted), `completed`, `completed_per_s` (completed / (last completion - first
submission), over the path's phases together), `p50_ms` / `p99_ms` (submission to certificate in hand),
`lost` (no certificate within `--timeout` of its submission), `failed` (refused, invalid or an error:
says the benchmark's setup is wrong), `duplicate` (a request or order with more than one certificate in
the member's certificate list, or one serial handed to two of them), `unlisted` (a certificate the client
got that the member's list lacks). `ratio` = acme / api completed_per_s; `pass` = ratio >= `target` (0.8);
`ratio_per_round` the same per round.

`where_the_time_goes` gives, per path, the CPU each process of the system used per completed order, and
the ACME and registration HTTP routes and database commands per order, from their `/metrics`;
`stages_ms` the median and p90 of each stage of an order, the client's times lined up with the services'
logged ones (RA decision of an ACME CSR, CAA decision, issuance; devstack's logs, `--logs`). The load
average (`os.getloadavg`) is taken at the start, before the first and after the last measured phase.
Each phase starts once the system is quiet (`--settle`, `--quiet-cores`; the seconds waited are
`settled_s`), so the work a phase leaves behind (each certificate's mail) is not paid by the next one.
At the end the run's mails (one per certificate) are deleted from the local mailbox (`mails_deleted`).

Exit status 1 when anything was lost, failed, duplicated or unlisted, on either path (warm-up included);
a slow ACME path alone does not fail the run: `pass` says it.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import dataclasses
import json
import math
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import josepy
import uvloop
from acme import client as acme_client
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks.e2e_system import children, cpu_seconds
from demo.member_api import MemberApi

TARGET = 0.8
"""Issue 17 item 7: ACME should complete at least 0.8 times as many orders per second as the member API."""
ACCOUNTS_PER_BINDING = 10  # the ACME service's default CACERT_ACME_ACCOUNTS_PER_BINDING
PASSWORD = "acme benchmark member passphrase, throw-away"  # noqa: S105 - a member of a throw-away run
ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Options:
    orders: int = 200
    """Orders (ACME) and requests (API) per path and per repetition."""
    concurrency: int = 8
    repeat: int = 1
    warmup: int = -1
    """Unmeasured orders per path before the first phase; -1: `concurrency`."""
    poll: float = 0.25
    """Seconds between two polls of a request or an order, on both paths."""
    timeout: float = 120.0
    """An order or request without its certificate this long after its submission is lost."""
    settle: float = 90.0
    """Before each phase, wait (at most this long) until the system is quiet: the work one phase leaves
    behind (the notifier's certificate mails above all) would otherwise be paid by the next phase."""
    quiet_cores: float = 0.7
    """Quiet: the system's processes use less than this many cores over 2 s (idle, locally: 0.3 to 0.6, most
    of it FerretDB)."""
    acme_retry_after: bool = False
    """Poll ACME orders after the server's Retry-After (as certbot does) instead of every `poll` seconds."""
    mail_wait: float = 180.0
    """At the end, wait at most this long for the notifier's last certificate mails, then delete the run's mails."""
    logs: Path | None = None
    """The services' logs, for the stages (`stages_ms`); None: devstack's log directory."""
    out: Path | None = None


@dataclasses.dataclass
class Outcome:
    """One order or request: when it was submitted and when its certificate was in hand."""

    start: float
    end: float | None = None
    ident: str | None = None  # the request id (API) or the order id (ACME: registration's request id too)
    serial: str | None = None
    error: str | None = None  # refused, invalid or an exception: `failed`
    lost: bool = False
    marks: dict[str, float] = dataclasses.field(default_factory=dict)
    """Wall-clock times (epoch s), to line up with the services' logs: `submitted`, `accepted` (API 202 /
    ACME finalize answered), `seen` (the poll that found the serial / the valid order), `done`."""

    def mark(self, what: str) -> None:
        self.marks[what] = time.time()

    @property
    def completed(self) -> bool:
        return self.end is not None and self.serial is not None


# ---------------------------------------------------------------------------------------------- setup


@dataclasses.dataclass
class Member:
    member_id: str
    token: str
    domain: str


def system_urls() -> dict[str, str]:
    """Where the running system listens (devstack's table), without starting anything."""
    from devstack import system

    return system.urls()


async def sign_up(api: MemberApi, http: aiohttp.ClientSession, urls: dict[str, str], tag: str) -> Member:
    """A member through the API, its address confirmed by the mailed link, one domain proven by DNS TXT."""
    from demo.clients import Mail, follow_confirmation_link, wait_until
    from devstack import endpoints
    from devstack.dns_zone import LocalZone
    from devstack.mailbox import MailboxClient

    email, domain = address(tag), f"acme-bench-{tag}.example.org"
    mail = Mail(urls["mailbox"])
    mail.client = MailboxClient(urls["mailbox"], timeout=120)  # listing reads every stored mail: slow when many
    await api.call("POST", "/v1/members", {"name": "Bench Acme", "date_of_birth": "1990-05-17", "email": email,
                                           "password": PASSWORD})
    message = await mail.next(to=email, subject="Confirm your email address", timeout=60)
    await follow_confirmation_link(http, Mail.link(message, "/confirm-email#token="))
    token = await api.login(email, PASSWORD)
    member_id = str((await api.call("GET", "/v1/me"))["id"])
    claimed = await api.call("POST", "/v1/domains", {"domain": domain, "method": "dns_change"})
    challenge = claimed["challenge"]
    zone = LocalZone.from_env(endpoints.current().env())
    await zone.publish(challenge["record_name"], "TXT", f'"{challenge["random_value"]}"')
    await api.call("POST", f"/v1/domains/{claimed['id']}/check")

    async def verified() -> bool:
        return bool((await api.call("GET", f"/v1/domains/{claimed['id']}"))["status"] == "verified")

    await wait_until(verified, f"{domain} to be verified", timeout=90, interval=0.2)
    return Member(member_id, token, domain)


def address(tag: str) -> str:
    return f"acme-bench-{tag}@example.org"


async def delete_mails(mailbox_url: str, to: str, expected: int, wait: float) -> int:
    """Delete the run's mails from the local mailbox once the `expected` ones are in (at most `wait` s later).

    Every certificate mails its member: a few runs would leave thousands of mails, and the mailbox reads
    every stored mail to answer a listing, which would slow every test and demo that waits for a mail.
    """
    from devstack.mailbox import MailboxClient

    client = MailboxClient(mailbox_url, timeout=120)
    deadline = time.monotonic() + wait
    while True:
        held = await client.list(to=to)
        if len(held) >= expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(5)
    for message in held:
        try:
            await client.delete(message["id"])
        except KeyError:
            continue
    return len(held)


def acme_account(directory_url: str, key_id: str, hmac_key: str, timeout: float = 60) -> acme_client.ClientV2:
    """A new ACME account (P-256 key) bound by `key_id`; retried while the binding travels to the ACME service."""
    key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = acme_client.ClientNetwork(key, user_agent="cacert-acme-benchmark", alg=josepy.ES256)
    directory = messages.Directory.from_json(net.get(directory_url).json())
    acme = acme_client.ClientV2(directory, net)
    deadline = time.monotonic() + timeout
    while True:
        eab = messages.ExternalAccountBinding.from_data(account_public_key=key.public_key(), kid=key_id,
                                                        hmac_key=hmac_key, directory=directory)
        try:
            acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True,
                                                                external_account_binding=eab))
            return acme
        except messages.Error as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no ACME account for binding {key_id}: {exc}") from exc
            time.sleep(0.5)


async def acme_accounts(api: MemberApi, directory_url: str, count: int) -> list[acme_client.ClientV2]:
    bindings = []
    for index in range(math.ceil(count / ACCOUNTS_PER_BINDING)):
        bindings.append(await api.call("POST", "/v1/acme-bindings", {"label": f"benchmark {index}"}))
    accounts = []
    for index in range(count):
        binding = bindings[index // ACCOUNTS_PER_BINDING]
        accounts.append(await asyncio.to_thread(acme_account, directory_url, binding["key_id"], binding["hmac_key"]))
    return accounts


def csr_for(name: str) -> str:
    """A server CSR for `name` with a fresh P-256 key (never the account key: RFC 8555 7.4)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())


def first_serial(pem: str) -> str:
    """The leaf's serial as registration lists it (lower-case hex) from a PEM chain."""
    leaf = x509.load_pem_x509_certificate(pem.encode())
    return format(leaf.serial_number, "x")


# ---------------------------------------------------------------------------------------------- the two paths


async def api_request(api: MemberApi, token: str, pem: str, opts: Options) -> Outcome:
    """POST the CSR, poll the request until it names a serial, download the certificate."""
    out = Outcome(time.perf_counter())
    out.mark("submitted")
    deadline = out.start + opts.timeout
    try:
        reply = await api.send("POST", "/v1/requests", {"csr_pem": pem, "profile": "server"}, token=token)
        if reply.status != 202:
            out.error = f"POST /v1/requests answered {reply.status}: {reply.text[:300]}"
            return out
        out.ident = str(reply.body["id"])
        out.mark("accepted")
        serial = None
        while serial is None:
            if time.perf_counter() > deadline:
                out.lost = True
                return out
            await asyncio.sleep(opts.poll)
            body = (await api.send("GET", f"/v1/requests/{out.ident}", token=token)).body
            status = body.get("status") if isinstance(body, dict) else None
            if status in ("rejected", "failed"):
                out.error = f"request {out.ident} {status}: {body.get('reasons')}"
                return out
            if status == "issued" and body.get("serial"):
                serial = str(body["serial"])
                out.mark("seen")
        while True:
            reply = await api.send("GET", f"/v1/certificates/{serial}/download?format=pem", token=token)
            if reply.status == 200:
                out.serial, out.end = first_serial(reply.text), time.perf_counter()
                out.mark("done")
                if out.serial != serial.lower():
                    out.error = f"request {out.ident} names serial {serial}, its download holds {out.serial}"
                return out
            if reply.status != 404:
                out.error = f"download of {serial} answered {reply.status}: {reply.text[:300]}"
                return out
            if time.perf_counter() > deadline:
                out.lost = True
                return out
            await asyncio.sleep(opts.poll)
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"
        return out


def acme_order(acme: acme_client.ClientV2, pem: str, opts: Options) -> Outcome:
    """newOrder (and its authorizations), finalize, poll the order, download the chain (blocking: a thread)."""
    out = Outcome(time.perf_counter())
    out.mark("submitted")
    deadline = out.start + opts.timeout
    try:
        order = acme.new_order(pem.encode())
        out.ident = order.uri.rstrip("/").rsplit("/", 1)[-1]
        if order.body.status != messages.STATUS_READY:
            out.error = f"order {out.ident} is {order.body.status} at once, not ready (was the domain seen?)"
            return out
        csr = x509.load_pem_x509_csr(pem.encode())
        out.mark("ordered")
        response = acme._post(order.body.finalize, messages.CertificateRequest(csr=csr))
        body = messages.Order.from_json(response.json())
        out.mark("accepted")
        while body.status != messages.STATUS_VALID or body.certificate is None:
            if body.status == messages.STATUS_INVALID:
                out.error = f"order {out.ident} invalid: {body.error}"
                return out
            now = time.perf_counter()
            if now > deadline:
                out.lost = True
                return out
            wait = opts.poll
            if opts.acme_retry_after:
                wait = (acme.retry_after(response, 1) - datetime.now()).total_seconds()
            time.sleep(max(0.0, min(wait, deadline - now)))
            response = acme._post_as_get(order.uri)
            body = messages.Order.from_json(response.json())
        out.mark("seen")
        chain = acme._post_as_get(body.certificate).text
        out.serial, out.end = first_serial(chain), time.perf_counter()
        out.mark("done")
        return out
    except Exception as exc:  # the library raises many kinds; each is a failed order, counted and shown
        out.error = f"{type(exc).__name__}: {exc}"
        return out


async def run_api(api: MemberApi, token: str, pems: list[str], opts: Options) -> list[Outcome]:
    pending = iter(pems)
    outcomes: list[Outcome] = []

    async def client() -> None:
        for pem in pending:
            outcomes.append(await api_request(api, token, pem, opts))

    await asyncio.gather(*(client() for _ in range(opts.concurrency)))
    return outcomes


async def run_acme(accounts: list[acme_client.ClientV2], pems: list[str], opts: Options) -> list[Outcome]:
    pending = iter(pems)
    lock = threading.Lock()
    outcomes: list[Outcome] = []

    def client(acme: acme_client.ClientV2) -> None:
        while True:
            with lock:
                pem = next(pending, None)
            if pem is None:
                return
            outcome = acme_order(acme, pem, opts)
            with lock:
                outcomes.append(outcome)

    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(accounts), thread_name_prefix="acme") as pool:
        await asyncio.gather(*(loop.run_in_executor(pool, client, acme) for acme in accounts))
    return outcomes


# ---------------------------------------------------------------------------------------------- where the time goes


def _pid(name: str) -> int | None:
    """A devstack component's pid from its pid file (read only), if that process is alive."""
    from devstack import paths

    try:
        pid = int(json.loads(paths.pid_file(name).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def system_pids() -> dict[str, list[int]]:
    """The processes of the running system by part (a part's worker processes included)."""
    parts = {"acme": ["acme"], "registration": ["registration"], "signer": ["signer-issue"],
             "domain_verify": ["domain_verify", "perspective-a", "perspective-b", "perspective-c"],
             "notifier": ["notifier"], "kafka": ["kafka"], "ferretdb": ["mongo"], "postgres": ["postgres"],
             "dns": ["dns", "dns-auth"]}  # fmt: skip
    pids: dict[str, list[int]] = {}
    for part, names in parts.items():
        for name in names:
            pid = _pid(name)
            if pid is not None:
                pids.setdefault(part, []).extend([pid, *children(pid)])
    pids["load_generator"] = [os.getpid()]
    return pids


def cpu_now() -> dict[str, dict[int, float]]:
    """CPU seconds so far per part and process, the processes listed afresh (PostgreSQL's backends come and go)."""
    return {part: {p: cpu_seconds(p, ended_children=True) for p in group} for part, group in system_pids().items()}


def cpu_used(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds per part between two `cpu_now`s: a process new since `before` counts whole; one gone since
    counts through its parent's reaped-children time (PostgreSQL's postmaster), from its start."""
    return {part: sum(max(0.0, v - before.get(part, {}).get(p, 0.0)) for p, v in procs.items())
            for part, procs in after.items()}


_SAMPLE = re.compile(r'^(\w+)\{(.*)\} ([0-9.eE+-]+)$')  # greedy: routes hold braces (/order/{id})


def metrics(url: str) -> dict[str, float]:
    """HTTP route times and counts and database commands from one service's /metrics ({} if unreachable)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (a loopback URL of the stack)
            text = response.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        name, raw_labels, value = match.groups()
        labels = dict(re.findall(r'(\w+)="([^"]*)"', raw_labels))
        if name in ("cacert_http_request_seconds_sum", "cacert_http_request_seconds_count") and \
                labels.get("route") != "/metrics":  # our own scraping
            out[f"http {labels.get('route')} {name.rsplit('_', 1)[1]}"] = float(value)
        elif name == "cacert_mongo_commands_total":
            out[f"db {labels.get('command')} {labels.get('collection')}"] = float(value)
    return out


@dataclasses.dataclass
class Snapshot:
    cpu: dict[str, dict[int, float]]
    services: dict[str, dict[str, float]]

    @classmethod
    def take(cls, urls: dict[str, str]) -> Snapshot:
        return cls(cpu_now(), {name: metrics(url) for name, url in urls.items()})


@dataclasses.dataclass
class Usage:
    """What the system did between two snapshots (or over several phases, summed)."""

    cpu: dict[str, float] = dataclasses.field(default_factory=dict)
    services: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    completed: int = 0
    seconds: float = 0.0

    def add(self, before: Snapshot, after: Snapshot, completed: int, seconds: float) -> Usage:
        for part, used in cpu_used(before.cpu, after.cpu).items():
            self.cpu[part] = self.cpu.get(part, 0.0) + used
        for service, now in after.services.items():
            then, into = before.services.get(service, {}), self.services.setdefault(service, {})
            for key, value in now.items():
                into[key] = into.get(key, 0.0) + value - then.get(key, 0.0)
        self.completed += completed
        self.seconds += seconds
        return self


def cost(usage: Usage) -> dict[str, Any]:
    """Per completed order: CPU ms by process, and per service its HTTP calls, their ms and its database commands."""
    n = max(usage.completed, 1)
    cpu = {k: round(v * 1000 / n, 2) for k, v in usage.cpu.items()}
    out: dict[str, Any] = {"cpu_ms_per_order": dict(sorted(cpu.items(), key=lambda kv: -kv[1])),
                           "cpu_ms_per_order_total": round(sum(usage.cpu.values()) * 1000 / n, 1),
                           "cpu_busy_cores": round(sum(usage.cpu.values()) / max(usage.seconds, 1e-9), 2)}
    for service, counted in usage.services.items():
        delta = {k: v for k, v in counted.items() if v > 0}
        routes: dict[str, dict[str, float]] = {}
        for key, value in delta.items():
            if key.startswith("http ") and key.endswith(" count"):
                route = key[5:-6]
                seconds_sum = delta.get(f"http {route} sum", 0.0)
                routes[route] = {"calls_per_order": round(value / n, 2),
                                 "mean_ms": round(seconds_sum * 1000 / value, 1),
                                 "ms_per_order": round(seconds_sum * 1000 / n, 1)}
        db = {k[3:]: round(v / n, 2) for k, v in delta.items() if k.startswith("db ")}
        out[service] = {"http": dict(sorted(routes.items(), key=lambda kv: -kv[1]["ms_per_order"])),
                        "db_commands_per_order": round(sum(db.values()), 1),
                        "db": dict(sorted(db.items(), key=lambda kv: -kv[1]))}
    return out


# ---------------------------------------------------------------------------------------------- stages, from the logs

LOGGED = (  # (log file, event, the field holding our request / order id, the stage it marks)
    ("registration.log", "ACME CSR decided", "request_id", "ra_decided"),
    ("domain_verify.log", "check decided", "check_id", "caa_decided"),
    ("signer-issue.log", "certificate issued", "request_id", "issued"),
)
STAGES = (  # (name, from mark, to mark): each stage's median over the path's measured orders
    ("submit", "submitted", "accepted"),
    ("accepted_to_ra_decided", "accepted", "ra_decided"),
    ("accepted_to_caa_decided", "accepted", "caa_decided"),
    ("caa_decided_to_issued", "caa_decided", "issued"),
    ("issued_to_seen", "issued", "seen"),
    ("download", "seen", "done"),
)


def log_marks(logs: Path, outcomes: list[Outcome]) -> int:
    """Add the services' logged times (`ra_decided`, `caa_decided`, `issued`) to the outcomes' marks.

    The RA's decision of an ACME CSR, domain_verify's CAA decision (check id = request id) and the signer's
    issuance are logged with our ids and a UTC timestamp from the same clock. Returns how many were found.
    """
    by_id = {o.ident: o for o in outcomes if o.ident}
    found = 0
    for filename, event, field, mark in LOGGED:
        needle = f'"event": "{event}"'
        try:
            lines = (logs / filename).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if needle not in line:
                continue
            try:
                record = json.loads(line)
                outcome = by_id.get(str(record.get(field)))
                if outcome is None or mark in outcome.marks:
                    continue
                outcome.marks[mark] = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
                found += 1
            except (ValueError, KeyError, AttributeError):
                continue
    return found


def stages(outcomes: list[Outcome]) -> dict[str, dict[str, float]]:
    """Median and p90 (ms) of each stage the marks of completed orders allow."""
    out = {}
    for name, start, end in STAGES:
        spans = [(o.marks[end] - o.marks[start]) * 1000 for o in outcomes
                 if o.completed and start in o.marks and end in o.marks]
        if spans:
            out[name] = {"p50_ms": round(percentile(spans, 50) or 0.0, 1),
                         "p90_ms": round(percentile(spans, 90) or 0.0, 1), "orders": len(spans)}
    return out


# ---------------------------------------------------------------------------------------------- summaries


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def phase_summary(outcomes: list[Outcome]) -> dict[str, Any]:
    done = [o for o in outcomes if o.completed and o.error is None]
    latencies = [(o.end - o.start) * 1000 for o in done if o.end is not None]
    wall = (max(o.end for o in done if o.end is not None) - min(o.start for o in outcomes)) if done else 0.0
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return {
        "count": len(outcomes),
        "completed": len(done),
        "seconds": round(wall, 3),
        "completed_per_s": round(len(done) / wall, 2) if wall > 0 else 0.0,
        "p50_ms": round(p50, 1) if p50 is not None else None,
        "p99_ms": round(p99, 1) if p99 is not None else None,
        "lost": sum(1 for o in outcomes if o.lost),
        "failed": sum(1 for o in outcomes if o.error is not None),
    }


def path_summary(phases: list[tuple[list[Outcome], dict[str, Any]]]) -> dict[str, Any]:
    outcomes = [o for run, _ in phases for o in run]
    seconds = sum(summary["seconds"] for _, summary in phases)
    completed = sum(summary["completed"] for _, summary in phases)
    latencies = [(o.end - o.start) * 1000 for o in outcomes if o.completed and o.error is None and o.end]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return {
        "count": len(outcomes),
        "completed": completed,
        "seconds": round(seconds, 3),
        "completed_per_s": round(completed / seconds, 2) if seconds > 0 else 0.0,
        "p50_ms": round(p50, 1) if p50 is not None else None,
        "p99_ms": round(p99, 1) if p99 is not None else None,
        "lost": sum(s["lost"] for _, s in phases),
        "failed": sum(s["failed"] for _, s in phases),
        "duplicate": 0,
        "per_phase_per_s": [s["completed_per_s"] for _, s in phases],
    }


def duplicates(outcomes: list[Outcome], listing: list[dict[str, Any]]) -> tuple[int, int]:
    """(requests or orders with more than one certificate or sharing a serial, completed ones not in the list)."""
    idents = {o.ident for o in outcomes if o.ident}
    per_ident = Counter(str(c.get("request_id")) for c in listing if c.get("request_id") in idents)
    over = {ident for ident, n in per_ident.items() if n > 1}
    serials = Counter(o.serial for o in outcomes if o.serial)
    over |= {o.ident for o in outcomes if o.serial and serials[o.serial] > 1 and o.ident}
    listed = {str(c.get("serial", "")).lower() for c in listing}
    unlisted = sum(1 for o in outcomes if o.serial and o.serial not in listed)
    return len(over), unlisted


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return rev + (" + uncommitted changes" if dirty else "")


# ---------------------------------------------------------------------------------------------- the run


async def measure(opts: Options, urls: dict[str, str] | None = None,
                  say: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> dict[str, Any]:
    urls = urls or system_urls()
    loadavg_start = [round(x, 2) for x in os.getloadavg()]
    revision = git_revision()  # the code that ran, not what was committed meanwhile
    started = time.monotonic()
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    tag = secrets.token_hex(4)
    warmup = opts.concurrency if opts.warmup < 0 else opts.warmup
    metric_urls = {"acme": urls["acme_directory"].rsplit("/", 1)[0] + "/metrics",
                   "registration": urls["api"] + "/metrics"}
    connector = aiohttp.TCPConnector(limit=max(opts.concurrency * 2, 10))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        api = MemberApi(http, urls["api"])
        member = await sign_up(api, http, urls, tag)
        say(f"member {member.member_id} with {member.domain} verified")
        accounts = await acme_accounts(api, urls["acme_directory"], opts.concurrency)
        say(f"{len(accounts)} ACME accounts on {math.ceil(len(accounts) / ACCOUNTS_PER_BINDING)} binding(s)")
        counter = iter(range(10**9))

        def pems(prefix: str, n: int) -> list[str]:
            return [csr_for(f"{prefix}{next(counter)}.{member.domain}") for _ in range(n)]

        runners: dict[str, Callable[[list[str]], Awaitable[list[Outcome]]]] = {
            "api": lambda batch: run_api(api, member.token, batch, opts),
            "acme": lambda batch: run_acme(accounts, batch, opts),
        }
        # The ACME service learns of the verification from `domain.verified`: wait until an order is ready
        # at once (warm-up orders would otherwise fail), then warm both paths up.
        deadline = time.monotonic() + 60
        while True:
            probe = await run_acme(accounts[:1], pems("probe", 1), opts)
            if probe[0].completed or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        all_outcomes: dict[str, list[Outcome]] = {"api": [], "acme": [probe[0]]}
        for path in ("api", "acme"):
            if warmup:
                all_outcomes[path] += await runners[path](pems(f"w{path}", warmup))
        say(f"warm-up: {warmup} per path")

        await settle(opts)
        loadavg_before = [round(x, 2) for x in os.getloadavg()]
        phases: list[dict[str, Any]] = []
        per_path: dict[str, list[tuple[list[Outcome], dict[str, Any]]]] = {"api": [], "acme": []}
        usage = {"api": Usage(), "acme": Usage()}
        for round_index in range(opts.repeat):
            # api, acme, then acme, api, ...: with an even --repeat a steady drift of the machine's speed
            # (the databases grow, other work comes and goes) weighs on both paths alike.
            for path in ("api", "acme") if round_index % 2 == 0 else ("acme", "api"):
                batch = pems(f"{path[0]}{round_index}-", opts.orders)
                waited = await settle(opts)
                before = Snapshot.take(metric_urls)
                outcomes = await runners[path](batch)
                after = Snapshot.take(metric_urls)
                summary = phase_summary(outcomes)
                all_outcomes[path] += outcomes
                per_path[path].append((outcomes, summary))
                usage[path].add(before, after, summary["completed"], summary["seconds"])
                used = sum(cpu_used(before.cpu, after.cpu).values())
                phases.append({"path": path, "round": round_index + 1, **summary, "settled_s": waited,
                               "cpu_ms_per_order": round(used * 1000 / max(summary["completed"], 1), 1),
                               "loadavg_after": [round(x, 2) for x in os.getloadavg()]})
                say(json.dumps(phases[-1]))
        loadavg_after = [round(x, 2) for x in os.getloadavg()]

        # Duplicates: the member's certificate list (every certificate registration recorded, with the
        # request id: the ACME order id for ACME) once everything issued has had time to arrive.
        expected = {o.serial for outs in all_outcomes.values() for o in outs if o.serial}
        listing: list[dict[str, Any]] = []
        listed_by = time.monotonic() + 30
        while True:
            await asyncio.sleep(2)
            listing = (await api.call("GET", "/v1/certificates"))["certificates"]
            if expected <= {str(c["serial"]).lower() for c in listing} or time.monotonic() > listed_by:
                break

    result: dict[str, Any] = {"benchmark": "acme_throughput", "started_at": started_at, "revision": revision,
                              "options": {k: (str(v) if isinstance(v, Path) else v)
                                          for k, v in dataclasses.asdict(opts).items()},
                              "machine": {"nproc": os.cpu_count(), "loadavg_at_start": loadavg_start,
                                          "loadavg_before": loadavg_before, "loadavg_after": loadavg_after},
                              "member_domain": member.domain, "acme_accounts": len(accounts)}
    issued = sum(1 for outs in all_outcomes.values() for o in outs if o.serial)
    try:  # the confirmation mail and one per certificate
        result["mails_deleted"] = await delete_mails(urls["mailbox"], address(tag), issued + 1, opts.mail_wait)
    except (aiohttp.ClientError, TimeoutError) as exc:
        say(f"could not delete the run's mails from {urls['mailbox']}: {exc}")
    logs = opts.logs or _devstack_logs()
    for path in ("api", "acme"):
        summary = path_summary(per_path[path])
        dup, unlisted = duplicates(all_outcomes[path], listing)
        summary["duplicate"], summary["unlisted"] = dup, unlisted
        warm = [o for o in all_outcomes[path][: len(all_outcomes[path]) - summary["count"]]]
        summary["warmup"] = {"count": len(warm), "lost": sum(o.lost for o in warm),
                             "failed": sum(o.error is not None for o in warm)}
        measured = [o for run, _ in per_path[path] for o in run]
        if logs is not None:
            log_marks(logs, measured)
        summary["stages_ms"] = stages(measured)
        errors = [o.error for o in all_outcomes[path] if o.error][:5]
        if errors:
            summary["errors"] = errors
        result[path] = summary
    api_rate, acme_rate = result["api"]["completed_per_s"], result["acme"]["completed_per_s"]
    result["ratio"] = round(acme_rate / api_rate, 3) if api_rate else None
    result["target"] = TARGET
    result["pass"] = bool(result["ratio"] is not None and result["ratio"] >= TARGET)
    result["ratio_per_round"] = [_round_ratio(phases, r + 1) for r in range(opts.repeat)]
    result["phases"] = phases
    result["where_the_time_goes"] = {path: cost(used) for path, used in usage.items()}
    result["duration_s"] = round(time.monotonic() - started, 1)
    return result


async def settle(opts: Options) -> float:
    """Wait until the system's processes (not this one) are quiet, at most `opts.settle` s; the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < opts.settle:
        before = cpu_now()
        await asyncio.sleep(2)
        used = cpu_used(before, cpu_now())
        if sum(v for part, v in used.items() if part != "load_generator") / 2 < opts.quiet_cores:
            break
    return round(time.monotonic() - started, 1)


def _round_ratio(phases: list[dict[str, Any]], round_number: int) -> float | None:
    rates = {p["path"]: p["completed_per_s"] for p in phases if p["round"] == round_number}
    return round(rates["acme"] / rates["api"], 3) if rates.get("api") else None


def _devstack_logs() -> Path | None:
    from devstack import paths

    logs = paths.logs_dir()
    return logs if logs.is_dir() else None


def bad(result: dict[str, Any]) -> list[str]:
    """What makes the run fail: anything lost, failed, duplicated or missing from the member's certificate list,
    on either path, warm-up included."""
    problems = []
    for path in ("api", "acme"):
        s = result[path]
        for key in ("lost", "failed", "duplicate", "unlisted"):
            if s.get(key):
                problems.append(f"{path}: {key} {s[key]}")
        for key in ("lost", "failed"):
            if s["warmup"][key]:
                problems.append(f"{path} warm-up: {key} {s['warmup'][key]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.acme_throughput",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=Options.orders, help="orders per path and repetition")
    parser.add_argument("--concurrency", type=int, default=Options.concurrency,
                        help="clients in flight on each path (one ACME account each)")
    parser.add_argument("--repeat", type=int, default=Options.repeat, help="rounds of api then acme")
    parser.add_argument("--warmup", type=int, default=Options.warmup,
                        help="unmeasured orders per path first (default: the concurrency)")
    parser.add_argument("--poll", type=float, default=Options.poll, help="seconds between polls, both paths")
    parser.add_argument("--timeout", type=float, default=Options.timeout, help="seconds before an order is lost")
    parser.add_argument("--settle", type=float, default=Options.settle,
                        help="at most this many seconds to wait for a quiet system before each phase (0: none)")
    parser.add_argument("--quiet-cores", type=float, default=Options.quiet_cores,
                        help="quiet: the system's processes use fewer cores than this")
    parser.add_argument("--acme-retry-after", action="store_true",
                        help="poll ACME orders after the server's Retry-After (certbot's way) instead of --poll")
    parser.add_argument("--mail-wait", type=float, default=Options.mail_wait,
                        help="seconds to wait for the last certificate mails before deleting the run's mails")
    parser.add_argument("--logs", type=Path, help="the services' log directory (default: devstack's), for stages_ms")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.orders < 1 or args.concurrency < 1 or args.repeat < 1:
        parser.error("--orders, --concurrency and --repeat must be at least 1")
    opts = Options(orders=args.orders, concurrency=args.concurrency, repeat=args.repeat, warmup=args.warmup,
                   poll=args.poll, settle=args.settle, quiet_cores=args.quiet_cores, timeout=args.timeout,
                   acme_retry_after=args.acme_retry_after, mail_wait=args.mail_wait, logs=args.logs,
                   out=args.out)
    result = uvloop.run(measure(opts))
    text = json.dumps(result, indent=2)
    print(text)
    if opts.out:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(text + "\n")
    problems = bad(result)
    if problems:
        print("acme_throughput: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
