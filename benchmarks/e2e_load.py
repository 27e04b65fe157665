"""Load generation for the end-to-end report: members, CSRs, the load driver and the event watcher.

* `Watcher`: one consumer on the cert, csr, domain and mail.commands topics; answers by request id, when
  each request's events were produced (`stage_split`), the mailed confirmation links, the domain
  verification requests; it also answers each
  `domain.caa_check_requested` with "no CAA record", standing in for domain_verify as `sign_up` does
  for the domain verification (the DNS is not what this benchmark measures);
* `sign_up`: a member through the public API (`demo.member_api.MemberApi`), with one domain verified by a
  `domain.verified` event as domain_verify would publish it;
* `CsrFactory`: server CSRs for names under the members' verified domains;
* `closed_loop` / `open_loop`: the load driver, returning one `Sample` per request.

`benchmarks/e2e_report.py` runs them against the system it starts and summarizes the samples.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random
import time
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from demo.member_api import MemberApi
from shared.events import CloudEvent, Topics, isoformat, make_event, utcnow
from shared.kafka import EventProducer
from shared.sealed_mail import MailOpener

PASSWORD = "benchmark member passphrase, throw-away"  # noqa: S105 - members of a throw-away run


# ---------------------------------------------------------------------------------------------- events


class Watcher:
    """One consumer on the cert, csr, domain and mail.commands topics: answers by request id, when each
    request's events were produced, tokens, domain verification requests."""

    def __init__(self, bootstrap: str, topics: Topics, opener: MailOpener,
                 producer: EventProducer | None = None) -> None:
        self._bootstrap = bootstrap
        self._opener = opener  # plays the notifier: the confirmation tokens are sealed to its key
        self._topics = topics
        self._producer = producer
        self._publishing: set[asyncio.Task[None]] = set()
        self.answered: dict[str, float] = {}  # request id -> first time its cert.issued/rejected was read
        self.rejected: dict[str, str] = {}
        self.serials: dict[str, set[str]] = {}
        self.codes: dict[str, list[str]] = {}  # address -> confirmation tokens
        self.domain_requests: dict[str, dict[str, Any]] = {}  # domain -> verification_requested data
        # request id -> event kind -> when its record was produced (the Kafka CreateTime, on the perf_counter
        # clock): splits a request's latency into the hops between services (`stages`)
        self.produced: dict[str, dict[str, float]] = {}
        self._epoch_offset = time.time() - time.perf_counter()
        self._waiters: dict[str, list[asyncio.Future[float]]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self._topics.of("cert"),
            self._topics.of("csr"),
            self._topics.of("domain"),
            self._topics.of("mail.commands"),
            bootstrap_servers=self._bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="bench-watcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._consumer:
            await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    try:
                        event = CloudEvent.from_kafka(record.key, record.value, record.headers)
                    except Exception:  # noqa: S112 - not ours to judge; the services dead-letter it
                        continue
                    self._handle(event, now, record.timestamp / 1000 - self._epoch_offset)

    def _handle(self, event: CloudEvent, now: float, produced: float) -> None:
        kind = event.type.removeprefix("org.cacert.").rsplit(".", 1)[0]
        data = event.data
        if kind in STAGE_EVENTS and isinstance(data.get("request_id"), str):
            self.produced.setdefault(data["request_id"], {}).setdefault(kind, produced)
        if kind in ("cert.issued", "cert.rejected"):
            request_id = data.get("request_id")
            if not request_id:
                return
            if kind == "cert.issued":
                self.serials.setdefault(request_id, set()).add(str(data.get("serial", "")))
            else:
                self.rejected[request_id] = str(data.get("reason", "?"))
            if request_id not in self.answered:
                self.answered[request_id] = now
                for waiter in self._waiters.pop(request_id, []):
                    if not waiter.done():
                        waiter.set_result(now)
        elif kind == "mail.send_requested" and data.get("template") == "email_confirmation":
            secrets = self._opener.open(event.type, event.id, data)
            self.codes.setdefault(data["to"], []).append(str(secrets["code"]))
        elif kind == "domain.verification_requested":
            self.domain_requests[data["domain"]] = data
        elif kind == "domain.caa_check_requested" and self._producer is not None:
            task = asyncio.create_task(self._producer.publish(caa_allowed(data)))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    async def answer(self, request_id: str, timeout: float) -> float | None:
        """When the answer to `request_id` was read (perf_counter), or None after `timeout`."""
        if request_id in self.answered:
            return self.answered[request_id]
        waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(request_id, []).append(waiter)
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return None

    async def until(self, probe: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            await asyncio.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}")


# The events that mark a request's way through the system, in order (see `stages`).
STAGE_EVENTS = ("domain.caa_check_requested", "domain.caa_checked", "csr.approved", "cert.issued")
# Each stage: its name, the event that ends it, and what it covers. The first starts at the scheduled send,
# the last ends when the load generator reads `cert.issued`. Kafka's CreateTime has millisecond resolution.
STAGES = (
    ("request", "domain.caa_check_requested",
     "registration answers the POST: session, policy checks, request and outbox stored, CAA check sent"),
    ("caa_answer", "domain.caa_checked", "Kafka to the stand-in for domain_verify and its answer"),
    ("approval", "csr.approved", "Kafka to registration, the verdict stored, the approval signed and sent"),
    ("signer", "cert.issued", "Kafka to a signer replica: claim, re-check, lint, sign, store, send"),
    ("delivery", "", "Kafka to the load generator"),
)


def stage_split(start: float, answered: float, produced: dict[str, float]) -> dict[str, float] | None:
    """A request's latency split at the moments its events were produced (ms), or None if one is missing."""
    marks = [start]
    for kind in STAGE_EVENTS:
        if kind not in produced:
            return None
        marks.append(produced[kind])
    marks.append(answered)
    return {name: (b - a) * 1000 for (name, _, _), a, b in zip(STAGES, marks[:-1], marks[1:], strict=True)}


def caa_allowed(check: dict[str, Any]) -> CloudEvent:
    """domain_verify's answer to a CAA check when no name has a CAA record."""
    names = [{"name": n, "allowed": True, "reason": "no_caa", "relevant_name": None, "records": []}
             for n in check["names"]]
    return make_event("domain.caa_checked", {
        "check_id": check["check_id"], "request_id": check["request_id"], "member_id": check["member_id"],
        "verdict": "allowed", "reason": "no_caa", "names": names, "perspectives": {},
        "checked_at": isoformat(utcnow())}, source="domain_verify")


# ---------------------------------------------------------------------------------------------- members


@dataclasses.dataclass
class Member:
    member_id: str
    token: str
    domain: str


async def sign_up(api: MemberApi, watcher: Watcher, producer: EventProducer, index: int, run_id: str) -> Member:
    """A member through the public API, with one domain verified as domain_verify would announce it."""
    address = f"bench-{run_id}-{index}@example.org"
    body = await api.call(
        "POST",
        "/v1/members",
        {"name": f"Bench Member {index}", "date_of_birth": "1990-05-17", "email": address, "password": PASSWORD},
    )
    member_id = body["member_id"]
    code = (await watcher.until(lambda: watcher.codes.get(address), 30, f"confirmation mail to {address}"))[0]
    await api.call("POST", "/v1/emails/confirm", {"token": code})
    token = (await api.call("POST", "/v1/sessions", {"email": address, "password": PASSWORD}))["token"]
    domain = f"m{index}-{run_id}.example.org"
    body = await api.call("POST", "/v1/domains", {"domain": domain, "contact": f"hostmaster@{domain}"}, token=token)
    claim_id = body["id"]
    request = await watcher.until(lambda: watcher.domain_requests.get(domain), 30, f"verification of {domain}")
    now = utcnow()
    await producer.publish(
        make_event(
            "domain.verified",
            {
                "request_id": request["request_id"],
                "member_id": member_id,
                "domain": request["domain"],
                "method": "email",
                "contact": request["contact"],
                "verified_at": isoformat(now),
                "valid_until": isoformat(now + dt.timedelta(days=390)),
            },
            source="domain_verify",
        )
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = await api.send("GET", f"/v1/domains/{claim_id}", token=token)
        if reply.status == 200 and reply.body.get("status") == "verified":
            return Member(member_id, token, domain)
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{domain} never became verified")


class CsrFactory:
    """Server CSRs for names under the members' verified domains; keys from a small P-256/RSA-2048 pool."""

    def __init__(self, members: list[Member]) -> None:
        self._members = members
        self._rng = random.Random(7)
        self._keys: list[Any] = [ec.generate_private_key(ec.SECP256R1()) for _ in range(6)]
        self._keys += [rsa.generate_private_key(65537, 2048) for _ in range(2)]
        self._count = 0

    def make(self, n: int) -> list[tuple[str, str]]:
        """(session token, PEM) pairs, members taken in turn."""
        out = []
        for _ in range(n):
            member = self._members[self._count % len(self._members)]
            name = f"h{self._count}.{member.domain}"
            self._count += 1
            pem = (
                x509.CertificateSigningRequestBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .sign(self._rng.choice(self._keys), hashes.SHA256())
                .public_bytes(serialization.Encoding.PEM)
                .decode()
            )
            out.append((member.token, pem))
        return out


# ---------------------------------------------------------------------------------------------- load


@dataclasses.dataclass
class Sample:
    start: float  # scheduled (open loop) or actual (closed loop) submission time
    http_done: float
    status: int
    request_id: str | None
    answered: float | None = None


async def submit(api: MemberApi, token: str, pem: str, start: float) -> Sample:
    try:
        reply = await api.send("POST", "/v1/requests", {"csr_pem": pem, "profile": "server"}, token=token)
    except (aiohttp.ClientError, TimeoutError):
        return Sample(start, time.perf_counter(), 0, None)
    request_id = reply.body.get("id") if reply.status == 202 and isinstance(reply.body, dict) else None
    return Sample(start, time.perf_counter(), reply.status, request_id)


async def closed_loop(
    api: MemberApi, watcher: Watcher, csrs: list[tuple[str, str]], concurrency: int, timeout: float
) -> list[Sample]:
    """Each client submits, waits for the answer, submits the next; nothing new after `timeout` s."""
    pending = iter(csrs)
    samples: list[Sample] = []
    deadline = time.monotonic() + timeout

    async def client() -> None:
        for token, pem in pending:
            if time.monotonic() > deadline:
                return
            sample = await submit(api, token, pem, time.perf_counter())
            if sample.request_id:
                sample.answered = await watcher.answer(sample.request_id, max(0.1, deadline - time.monotonic()))
            samples.append(sample)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return samples


async def open_loop(
    api: MemberApi, watcher: Watcher, csrs: list[tuple[str, str]], rate: float, timeout: float
) -> list[Sample]:
    t0 = time.perf_counter() + 0.1
    tasks = []
    for i, (token, pem) in enumerate(csrs):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(submit(api, token, pem, scheduled)))
    samples = list(await asyncio.gather(*tasks))
    deadline = time.monotonic() + timeout
    for sample in samples:
        if sample.request_id:
            sample.answered = await watcher.answer(sample.request_id, max(0.1, deadline - time.monotonic()))
    return samples
