"""The whole system under faults (issue 23): `python -m benchmarks.chaos --seed N --minutes M --rate R`.

Starts every service as real processes (`benchmarks/chaos_system.py`) on the stack `devstack.endpoints`
points at, then, for `--minutes`, starts `--rate` member flows per second, each through the public
interfaces only:

  sign-up -> email confirmation -> login -> domain claim -> verification by mail to hostmaster@ (the
  mailed link opened and confirmed at domain_verify, which also answers every CAA check with its
  perspectives) -> CSR -> certificate issued -> OCSP says good -> revocation -> OCSP says revoked

while a `FaultScheduler` seeded with `--seed` kills (-9), stops (SIGTERM), pauses (SIGSTOP past the
consumer session timeout) every process kind and stops / starts Kafka, FerretDB and the SMTP relay.
A prober asks the status signers (two replicas; a client tries the other when one does not answer)
about random certificates all along, so status replicas die while OCSP is being queried.

The member reads their mail as the harness does: the confirmation links come from the sealed mail
commands on Kafka, opened with the notifier's key (the run made it), so a flow does not wait on the
SMTP relay's outages. Every mail really sent is still counted at the end, in the SMTP relay's mailbox,
by Message-ID (the notifier derives it from the notice's id).

After the load it waits for quiescence and counts, itself, from the services' databases, the `cert`
topic, the DLQs and the mailbox: certificates per request id and per member, mails per notice (and
duplicates), wrong OCSP answers, HTTP 5xx and connection errors seen by clients (every one retried;
a retry that never succeeded is a failed flow), dead letters, outbox documents left unflushed, stuck
requests and mails. Then `python -m shared.audit verify` on every service's database, and a cold
restart (every service stopped, Kafka and FerretDB stopped and started, services started) must serve
the same OCSP and CRL answers as before. Exit status 1 when any count is off.

Every `--acme-every`-th member then also orders a certificate through the ACME service (its own process, with
the same faults): an ACME binding from the member API, an account with External Account Binding, an order for
a name under the domain just verified (ready at once), finalization, the certificate, OCSP good, revocation by
ACME, OCSP revoked. Its order is a certificate request like the others (counted per request id and member), and
the run counts ACME orders that ended `processing` (stuck).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import datetime
import functools
import json
import random
import secrets
import signal
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from benchmarks.chaos_system import ChaosSystem, FaultScheduler
from benchmarks.e2e_system import git_revision, loadavg, machine
from services.signer.ca.crl import DEFAULT_SHARDS
from shared.ca_certificates import ISSUING_LABELS, LABELS
from shared.events import CloudEvent, Topics

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "chaos member passphrase, throw-away"  # noqa: S105 - members of a throw-away run
FLOW_TIMEOUT = 900.0
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=20)


class FlowError(Exception):
    """A step of a member's flow could not be completed (after retries)."""


# ---------------------------------------------------------------------------------------------- HTTP


@dataclasses.dataclass
class HttpStats:
    requests: int = 0
    http_5xx: int = 0
    connection_errors: int = 0
    retried_then_ok: int = 0
    retried_never_ok: int = 0
    by_status: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    five_xx_paths: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: Any


class Client:
    """HTTP as a patient client: a 5xx or a refused / cut connection is counted and retried (backing off)
    until it succeeds or `deadline` passes."""

    def __init__(self, http: aiohttp.ClientSession, stats: HttpStats) -> None:
        self.http = http
        self.stats = stats

    async def send(self, method: str, url: str, *, json_body: Any = None, token: str | None = None,
                   data: Any = None, deadline: float, raw: bool = False) -> Reply:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        retried = False
        pause = 0.2
        path = urllib.parse.urlsplit(url).path
        template = "/".join(p if len(p) < 20 else "{id}" for p in path.split("/"))
        while True:
            self.stats.requests += 1
            try:
                async with self.http.request(method, url, json=json_body, data=data, headers=headers,
                                             timeout=REQUEST_TIMEOUT) as response:
                    content = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError, OSError):
                self.stats.connection_errors += 1
                status, content = 0, b""
            self.stats.by_status[str(status)] += 1
            if 0 < status < 500:
                if retried:
                    self.stats.retried_then_ok += 1
                if raw:
                    return Reply(status, content)
                text = content.decode(errors="replace")
                return Reply(status, json.loads(text) if text[:1] in ("{", "[") else text)
            if status >= 500:
                self.stats.http_5xx += 1
                self.stats.five_xx_paths[f"{method} {template} {status}"] += 1
            if time.monotonic() + pause > deadline:
                self.stats.retried_never_ok += 1
                raise FlowError(f"{method} {path}: no answer below 500 before the flow's deadline "
                                f"(last {status or 'connection error'})")
            retried = True
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)


# ---------------------------------------------------------------------------------------------- events


class Watcher:
    """Reads the run's topics from the start: mailed secrets (opened with the notifier's key), and every
    `cert.issued` per request id. Rides out broker outages (the consumer reconnects by itself)."""

    def __init__(self, bootstrap: str, topics: Topics, opener: Any) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self._opener = opener
        self.links: dict[tuple[str, str], list[str]] = {}  # (template, to) -> links
        self.codes: dict[str, list[str]] = {}  # address -> email confirmation codes
        self.issued: dict[str, set[str]] = {}  # request id -> serials announced
        self.issued_events = 0
        self.unreadable = 0
        self.errors: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            self._topics.of("cert"), self._topics.of("mail.commands"), bootstrap_servers=self._bootstrap,
            group_id=None, auto_offset_reset="earliest", enable_auto_commit=False, fetch_max_wait_ms=100)
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="chaos-watcher")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            with contextlib.suppress(Exception):
                await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=300)
            except KafkaError:
                await asyncio.sleep(0.5)
                continue
            except Exception as exc:  # never die quietly: every flow waits on what this reads
                self.errors.append(f"{type(exc).__name__}: {exc}")
                print(f"chaos: watcher: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                await asyncio.sleep(0.5)
                continue
            for records in batch.values():
                for record in records:
                    try:
                        event = CloudEvent.from_kafka(record.key, record.value, record.headers)
                        self._handle(event)
                    except Exception:
                        self.unreadable += 1

    def _handle(self, event: CloudEvent) -> None:
        kind = event.type.removeprefix("org.cacert.").rsplit(".", 1)[0]
        data = event.data
        if kind == "cert.issued":
            self.issued_events += 1
            self.issued.setdefault(str(data["request_id"]), set()).add(str(data["serial"]))
        elif kind == "mail.send_requested" and data.get("template") in ("email_confirmation", "domain_challenge"):
            opened = self._opener.open(event.type, event.id, data)
            if data["template"] == "email_confirmation":
                self.codes.setdefault(str(data["to"]), []).append(str(opened["code"]))
            else:
                self.links.setdefault(("domain_challenge", str(data["to"])), []).append(str(opened["link"]))

    async def until(self, probe: Callable[[], Any], deadline: float, what: str) -> Any:
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise FlowError(f"timed out waiting for {what}")
            await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------------------------- OCSP


@dataclasses.dataclass
class OcspStats:
    queries: int = 0
    answers: int = 0
    wrong: int = 0
    unavailable: int = 0  # no answer from a replica (it was down): the client asked the other one
    wrong_details: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class KnownCert:
    serial: str
    cert: x509.Certificate
    issuer: x509.Certificate
    state: str = "good"  # good -> revoking (asked) -> revoked (the member API shows it revoked)


class OcspClient:
    def __init__(self, client: Client, urls: list[str], rng: random.Random) -> None:
        self.client = client
        self.urls = urls
        self.rng = rng
        self.stats = OcspStats()

    async def status(self, known: KnownCert, deadline: float) -> str:
        """good / revoked / unknown, from whichever status replica answers first."""
        request = ocsp.OCSPRequestBuilder().add_certificate(known.cert, known.issuer, hashes.SHA1()).build()  # noqa: S303 - RFC 6960's usual CertID hash
        der = request.public_bytes(serialization.Encoding.DER)
        order = list(self.urls)
        self.rng.shuffle(order)
        self.stats.queries += 1
        while True:
            for url in order:
                try:
                    async with self.client.http.post(f"{url}/ocsp", data=der, timeout=aiohttp.ClientTimeout(total=5),
                                                     headers={"Content-Type": "application/ocsp-request"}) as reply:
                        body = await reply.read()
                        if reply.status != 200:
                            raise ValueError(f"HTTP {reply.status}")
                    answer = ocsp.load_der_ocsp_response(body)
                    if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
                        raise ValueError(str(answer.response_status))
                except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
                    self.stats.unavailable += 1
                    continue
                self.stats.answers += 1
                if answer.serial_number != known.cert.serial_number:
                    return "mismatched-serial"
                return answer.certificate_status.name.lower()
            if time.monotonic() > deadline:
                raise FlowError(f"no OCSP answer for {known.serial} from any status replica")
            await asyncio.sleep(0.5)

    def judge(self, known: KnownCert, before: str, answer: str, after: str) -> bool:
        """Wrong: anything but `good` while the certificate was never asked to be revoked, anything but
        `revoked` once the member API showed it revoked (`before`/`after`: its state around the query)."""
        allowed = {"good"} if before == after == "good" else {"revoked"} if before == "revoked" else {"good", "revoked"}
        if answer not in allowed:
            self.stats.wrong += 1
            self.stats.wrong_details.append(f"{known.serial}: {answer} while {before}->{after}")
            return False
        return True

    async def check(self, known: KnownCert, deadline: float) -> bool:
        before = known.state
        answer = await self.status(known, deadline)
        return self.judge(known, before, answer, known.state)


# ---------------------------------------------------------------------------------------------- flows


@dataclasses.dataclass
class FlowResult:
    index: int
    address: str
    member_id: str | None = None
    request_ids: list[str] = dataclasses.field(default_factory=list)
    serial: str | None = None
    ok: bool = False
    step: str = ""
    error: str = ""
    seconds: float = 0.0


@dataclasses.dataclass
class AcmeStats:
    orders_valid: int = 0
    revoked: int = 0
    retried: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    """ACME calls tried again, by what was asked and the error's kind (a fault cut them)."""


class Flows:
    def __init__(self, system: ChaosSystem, client: Client, watcher: Watcher, ocsp_client: OcspClient,
                 run_tag: str, acme_every: int = 0) -> None:
        self.system = system
        self.client = client
        self.watcher = watcher
        self.ocsp = ocsp_client
        self.tag = run_tag
        self.api = system.by_name("registration").url
        self.acme_url = system.by_name("acme").url
        self.acme_every = acme_every
        self.acme = AcmeStats()
        self.results: list[FlowResult] = []
        self.known: dict[str, KnownCert] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.current: dict[int, FlowResult] = {}
        self.late_starts = 0
        self.resubmitted = 0  # CSRs sent again after a refusal for perspectives that did not answer in time
        self.steps: collections.Counter[str] = collections.Counter()
        self.issuers = {}  # subject -> CA certificate (the run's CA directory)
        for path in system.ca_dir.glob("class*.crt.pem"):
            ca = x509.load_pem_x509_certificate(path.read_bytes())
            self.issuers[ca.subject.rfc4514_string()] = ca

    async def one(self, index: int) -> None:
        address = f"chaos-{self.tag}-{index}@example.org"
        result = FlowResult(index, address)
        self.current[index] = result
        started = time.monotonic()
        try:
            await self._flow(result, started + FLOW_TIMEOUT)
            result.ok = True
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"[:500]
            print(f"chaos: flow {index} failed at {result.step}: {result.error}", file=sys.stderr, flush=True)
        result.seconds = round(time.monotonic() - started, 2)
        self.results.append(result)
        del self.current[index]

    async def _flow(self, r: FlowResult, deadline: float) -> None:
        c, api = self.client, self.api

        def step(name: str) -> None:
            r.step = name
            self.steps[name] += 1

        step("sign_up")
        reply = await c.send("POST", f"{api}/v1/members", json_body={
            "name": f"Chaos Member {r.index}", "date_of_birth": "1990-05-17", "email": r.address,
            "password": PASSWORD}, deadline=deadline)
        if reply.status not in (201, 202, 409):  # 409: an earlier try that lost its answer made the account
            raise FlowError(f"sign-up answered {reply.status}: {reply.body}")
        step("confirm_email")
        codes = await self.watcher.until(lambda: self.watcher.codes.get(r.address), deadline,
                                         f"the confirmation mail to {r.address}")
        confirmed = False
        for code in codes:
            reply = await c.send("POST", f"{api}/v1/emails/confirm", json_body={"token": code}, deadline=deadline)
            confirmed = confirmed or reply.status == 200
        step("login")
        reply = await c.send("POST", f"{api}/v1/sessions", json_body={"email": r.address, "password": PASSWORD},
                             deadline=deadline)
        if reply.status != 201 and reply.status != 200:
            raise FlowError(f"login answered {reply.status}: {reply.body} (confirmed: {confirmed})")
        token = reply.body["token"]
        me = await c.send("GET", f"{api}/v1/me", token=token, deadline=deadline)
        r.member_id = me.body["id"]

        step("claim_domain")
        domain = f"c{r.index}-{self.tag}.example.org"
        reply = await c.send("POST", f"{api}/v1/domains", json_body={"domain": domain}, token=token,
                             deadline=deadline)
        if reply.status == 409:
            listing = await c.send("GET", f"{api}/v1/domains", token=token, deadline=deadline)
            body = listing.body
            items: list[dict[str, Any]] = (body.get("domains") or body.get("items") or []) if isinstance(body, dict) \
                else list(body or [])
            claim_id = next(d["id"] for d in items if d["domain"] == domain)
        elif reply.status in (200, 201):
            claim_id = reply.body["id"]
        else:
            raise FlowError(f"domain claim answered {reply.status}: {reply.body}")
        contact = f"hostmaster@{domain}"
        step("request_verification")
        reply = await c.send("POST", f"{api}/v1/domains/{claim_id}/verify", json_body={"contact": contact},
                             token=token, deadline=deadline)
        # 409: a try whose answer was lost asked already; 429: so many tries timed out on a loaded machine that
        # the contact's mail limit (3 an hour) was reached, and one of them asked: the mailed link decides
        if reply.status >= 400 and reply.status not in (409, 429):
            raise FlowError(f"verify answered {reply.status}: {reply.body}")
        step("confirm_domain")
        await self._confirm_domain(token, claim_id, contact, deadline)

        key = ec.generate_private_key(ec.SECP256R1())
        name = f"www.{domain}"
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
               .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
        for attempt in range(1, 4):
            step("submit_csr")
            reply = await c.send("POST", f"{api}/v1/requests", json_body={"csr_pem": csr, "profile": "server"},
                                 token=token, deadline=deadline)
            if reply.status != 202:
                raise FlowError(f"CSR submission answered {reply.status}: {reply.body}")
            request_id = reply.body["id"]
            r.request_ids.append(request_id)
            step("wait_issued")
            outcome = await self._until_api(
                functools.partial(c.send, "GET", f"{api}/v1/requests/{request_id}", token=token, deadline=deadline),
                lambda b: b if b.get("status") in ("issued", "rejected", "failed") else None,
                deadline, f"request {request_id} to be issued")
            if outcome["status"] == "issued":
                break
            reasons = " ".join(map(str, outcome.get("reasons") or []))
            if "perspective_disagreement" in reasons and attempt < 3:
                # A member whose request was refused because the CA's own perspectives did not answer
                # in time sends it again; counted, so a run shows how often that happened.
                self.resubmitted += 1
                continue
            _fail(outcome)
        serial = str(outcome["serial"])
        r.serial = serial
        view = await c.send("GET", f"{api}/v1/certificates/{serial}", token=token, deadline=deadline)
        cert = x509.load_pem_x509_certificate(view.body["certificate_pem"].encode())
        issuer = self.issuers[cert.issuer.rfc4514_string()]
        known = KnownCert(serial, cert, issuer)
        self.known[serial] = known
        step("ocsp_good")
        await self.ocsp.check(known, deadline)

        step("revoke")
        known.state = "revoking"
        reply = await c.send("POST", f"{api}/v1/certificates/{serial}/revoke", json_body={"reason": "superseded"},
                             token=token, deadline=deadline)
        if reply.status >= 400 and reply.status != 409:
            raise FlowError(f"revoke answered {reply.status}: {reply.body}")
        await self._revoked(known, token, deadline, step, "ocsp_revoked")
        if self.acme_every and r.index % self.acme_every == 0:
            await self._acme_order(r, token, domain, deadline, step)
        step("done")

    async def _acme_order(self, r: FlowResult, token: str, domain: str, deadline: float,
                          step: Callable[[str], None]) -> None:
        """The member orders a certificate by ACME (RFC 8555, the `acme` library certbot uses) for a name under
        the domain they verified, then revokes it by ACME; every call cut by a fault is tried again."""
        import josepy
        from acme import client as acme_client
        from acme import errors as acme_errors
        from acme import messages

        c, api = self.client, self.api
        step("acme_binding")
        reply = await c.send("POST", f"{api}/v1/acme-bindings", json_body={"label": f"chaos {r.index}"},
                             token=token, deadline=deadline)
        if reply.status != 201:
            raise FlowError(f"ACME binding answered {reply.status}: {reply.body}")
        key_id, hmac_key = reply.body["key_id"], reply.body["hmac_key"]
        key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))

        def connect() -> acme_client.ClientV2:
            net = acme_client.ClientNetwork(key, user_agent="cacert-chaos", alg=josepy.ES256, timeout=20)
            directory = messages.Directory.from_json(net.get(f"{self.acme_url}/directory").json())
            return acme_client.ClientV2(directory, net)

        step("acme_account")
        acme = await self._acme_call(connect, "directory", deadline)

        def register() -> None:
            eab = messages.ExternalAccountBinding.from_data(account_public_key=key.public_key(), kid=key_id,
                                                            hmac_key=hmac_key, directory=acme.directory)
            try:  # the binding reaches the ACME service as an event: until then the account is refused, tried again
                acme.new_account(messages.NewRegistration.from_data(
                    email=r.address, terms_of_service_agreed=True, external_account_binding=eab))
            except acme_errors.ConflictError as exc:  # a try whose answer was lost made the account
                acme.net.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())

        await self._acme_call(register, "new-account", deadline)
        name = f"acme.{domain}"
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
               .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
               .public_bytes(serialization.Encoding.PEM))
        for attempt in range(1, 4):
            step("acme_order")
            while True:  # ready once the ACME service has read the domain's verification (an event)
                order = await self._acme_call(lambda: acme.new_order(csr), "new-order", deadline)
                if order.body.status == messages.STATUS_READY:
                    break
                if time.monotonic() > deadline:
                    raise FlowError(f"the ACME order for {name} never became ready ({order.body.status})")
                await asyncio.sleep(2.0)
            r.request_ids.append(order.uri.rsplit("/", 1)[1])  # its certificate request has the order's id

            def finalize(order: messages.OrderResource = order) -> messages.OrderResource:
                try:
                    acme.begin_finalization(order)
                except messages.Error as exc:  # a try whose answer was lost finalized it already
                    if exc.code != "orderNotReady":
                        raise
                return acme.poll_finalization(order, deadline=datetime.datetime.now() + datetime.timedelta(seconds=20))

            step("acme_finalize")
            try:
                done = await self._acme_call(finalize, "finalize", deadline, final=(acme_errors.IssuanceError,))
                break
            except FlowError as exc:
                # As the member of the web flow does: an order refused because the CA's own perspectives did
                # not answer in time (a loaded machine) is made again, at most twice, and counted.
                if "perspective_disagreement" not in str(exc) or attempt == 3:
                    raise
                self.resubmitted += 1
        self.acme.orders_valid += 1
        cert = x509.load_pem_x509_certificate(done.fullchain_pem.encode())
        serial = format(cert.serial_number, "x")
        known = KnownCert(serial, cert, self.issuers[cert.issuer.rfc4514_string()])
        self.known[serial] = known
        step("acme_ocsp_good")
        await self.ocsp.check(known, deadline)

        def revoke() -> None:
            try:
                acme.revoke(cert, 4)  # superseded
            except messages.Error as exc:  # a try whose answer was lost revoked it already
                if exc.code != "alreadyRevoked":
                    raise

        step("acme_revoke")
        known.state = "revoking"
        await self._acme_call(revoke, "revoke-cert", deadline)
        self.acme.revoked += 1
        await self._revoked(known, token, deadline, step, "acme_ocsp_revoked")

    async def _revoked(self, known: KnownCert, token: str, deadline: float, step: Callable[[str], None],
                       name: str) -> None:
        """Wait until the member API shows the certificate revoked; from then on OCSP must say so too."""
        c, api = self.client, self.api
        await self._until_api(lambda: c.send("GET", f"{api}/v1/certificates/{known.serial}", token=token,
                                             deadline=deadline),
                              lambda b: b.get("status") == "revoked", deadline, f"{known.serial} to show as revoked")
        known.state = "revoked"
        step(name)
        await self.ocsp.check(known, deadline)

    async def _acme_call(self, call: Callable[[], Any], what: str, deadline: float,
                         final: tuple[type[Exception], ...] = ()) -> Any:
        """A blocking ACME client call on a thread, tried again (counted) after a cut connection, a timeout or
        an ACME error until it succeeds or the deadline passes; exceptions in ``final`` end the flow at once,
        and anything else (a fault of this harness) at once too."""
        import requests
        from acme import errors as acme_errors

        pause = 0.5
        while True:
            try:
                return await asyncio.to_thread(call)
            except final as exc:
                problem = getattr(exc, "error", None)  # IssuanceError: the order's problem document
                raise FlowError(f"ACME {what}: {type(exc).__name__}: {exc} {problem or ''}".strip()) from None
            except (requests.RequestException, acme_errors.Error, TimeoutError, OSError) as exc:
                self.acme.retried[f"{what}: {getattr(exc, 'code', None) or type(exc).__name__}"] += 1
                if time.monotonic() + pause > deadline:
                    raise FlowError(f"ACME {what} never succeeded: {type(exc).__name__}: {exc}") from None
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)

    async def _confirm_domain(self, token: str, claim_id: str, contact: str, deadline: float) -> None:
        """Open the mailed links and press their buttons, as the demo's browser does, newest mail first, until
        the claim is verified. A try that lost its answer may have confirmed already (its link then answers
        4xx), and a request sent twice (a lost answer) mails two links of which domain_verify keeps one (the
        other answers 410, replaced; the kept one's mail may come later): the claim's status is what counts."""
        c, api = self.client, self.api
        await self.watcher.until(lambda: self.watcher.links.get(("domain_challenge", contact)), deadline,
                                 f"the challenge mail to {contact}")
        tried: set[str] = set()
        pause = 0.2
        while True:
            for link in reversed(list(self.watcher.links.get(("domain_challenge", contact), []))):
                if link not in tried:
                    tried.add(link)
                    if await self._open_link(link, contact, deadline):
                        break
            reply = await c.send("GET", f"{api}/v1/domains/{claim_id}", token=token, deadline=deadline)
            if reply.status == 200 and isinstance(reply.body, dict):
                if reply.body.get("status") == "failed":
                    raise FlowError(f"domain verification failed: {reply.body}")
                if reply.body.get("status") == "verified":
                    return
            if time.monotonic() > deadline:
                raise FlowError(f"timed out waiting for {contact} to verify the domain")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 5.0)

    async def _open_link(self, link: str, contact: str, deadline: float) -> bool:
        """True once the link's page confirmed; False when it answers 4xx (used or replaced); 5xx and cut
        connections are counted and tried again."""
        from demo.clients import DemoError, follow_confirmation_link

        while True:
            try:
                await follow_confirmation_link(self.client.http, link)
                return True
            except DemoError as exc:
                if " answered 5" not in str(exc):
                    return False
                self.client.stats.http_5xx += 1
            except (aiohttp.ClientError, TimeoutError, OSError):
                self.client.stats.connection_errors += 1
            if time.monotonic() > deadline:
                raise FlowError(f"the link mailed to {contact} never opened")
            await asyncio.sleep(1.0)

    async def _until_api(self, fetch: Callable[[], Awaitable[Reply]], done: Callable[[dict[str, Any]], Any],
                         deadline: float, what: str) -> Any:
        pause = 0.2
        while True:
            reply = await fetch()
            if reply.status == 200 and isinstance(reply.body, dict):
                value = done(reply.body)
                if value:
                    return value
            if time.monotonic() > deadline:
                raise FlowError(f"timed out waiting for {what}")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 5.0)

    async def drive(self, rate: float, until: float, max_in_flight: int,
                    more: Callable[[], bool] = lambda: False) -> int:
        """Start a flow every 1/rate s until `until`, but never more than `max_in_flight` at once: a system
        that falls behind gets fewer arrivals (counted in `late_starts`) instead of a pile-up of retries
        that only measures the pile-up. Past `until` it goes on while `more()` (faults still to do).
        Returns how many flows were started."""
        started = 0
        t0 = time.monotonic()
        while True:
            at = t0 + started / rate
            if at >= until and not more():
                return started
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            if len(self.tasks) >= max_in_flight:
                self.late_starts += 1
                while len(self.tasks) >= max_in_flight and (time.monotonic() < until or more()):
                    await asyncio.wait(set(self.tasks), return_when=asyncio.FIRST_COMPLETED,
                                       timeout=max(1.0, until - time.monotonic()))
                if time.monotonic() >= until and not more():
                    return started
                t0 = time.monotonic() - started / rate  # the schedule goes on from now
            task = asyncio.create_task(self.one(started))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            started += 1

    async def progress(self, every: float, stop: asyncio.Event) -> None:
        """A line every `every` s: flows done / failed, where the running ones are, what the watcher read."""
        began = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
            steps = collections.Counter(r.step for r in self.current.values())
            w = self.watcher
            print(f"chaos: t={time.monotonic() - began:6.0f}s flows ok {sum(r.ok for r in self.results)} failed "
                  f"{sum(not r.ok for r in self.results)} running {len(self.current)} {dict(steps)}; read "
                  f"{sum(map(len, w.codes.values()))} codes {sum(map(len, w.links.values()))} links "
                  f"{w.issued_events} issued; OCSP {self.ocsp.stats.answers} answers {self.ocsp.stats.wrong} wrong; "
                  f"HTTP 5xx {self.client.stats.http_5xx} conn errors {self.client.stats.connection_errors}",
                  file=sys.stderr, flush=True)

    async def probe_ocsp(self, rng: random.Random, every: float, stop: asyncio.Event) -> None:
        """Ask about a random known certificate every `every` s, whatever is broken at the moment."""
        while not stop.is_set():
            if self.known:
                known = self.known[rng.choice(list(self.known))]
                with contextlib.suppress(FlowError):
                    await self.ocsp.check(known, time.monotonic() + 60)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)


def _fail(body: dict[str, Any]) -> None:
    raise FlowError(f"request ended {body.get('status')}: {body.get('reasons')}")


# ---------------------------------------------------------------------------------------------- counting


async def _db(system: ChaosSystem) -> Any:
    from pymongo import AsyncMongoClient

    return AsyncMongoClient(system.ep.mongo_url, serverSelectionTimeoutMS=10000)


async def outbox_pending(system: ChaosSystem) -> dict[str, int]:
    """Documents whose events are written but not yet published, per database.collection."""
    client = await _db(system)
    found: dict[str, int] = {}
    try:
        for name in system.databases.values():
            db = client[name]
            for collection in await db.list_collection_names():
                count = await db[collection].count_documents({"_outbox.0": {"$exists": True}})
                if count:
                    found[f"{name}.{collection}"] = count
    finally:
        await client.close()
    return found


async def unsettled(system: ChaosSystem) -> dict[str, Any]:
    """What is still moving: outboxes, mails not yet sent, requests not yet decided."""
    client = await _db(system)
    try:
        mails = await client[system.databases["notifier"]]["outgoing_mail"].count_documents(
            {"state": {"$in": ["pending", "sending"]}})
        requests = await client[system.databases["registration"]]["requests"].count_documents(
            {"status": {"$in": ["caa_pending", "approved"]}})
        orders = await client[system.databases["acme"]]["orders"].count_documents({"status": "processing"})
    finally:
        await client.close()
    return {"outbox": await outbox_pending(system), "mails_queued": mails, "requests_open": requests + orders}


async def wait_quiet(system: ChaosSystem, timeout: float) -> tuple[float, dict[str, Any]]:
    started = time.monotonic()
    state: dict[str, Any] = {}
    quiet_since: float | None = None
    while time.monotonic() - started < timeout:
        try:
            state = await unsettled(system)
        except Exception as exc:
            state = {"error": str(exc)}
        if state.get("outbox") == {} and state.get("mails_queued") == 0 and state.get("requests_open") == 0:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 10:
                break
        else:
            quiet_since = None
        await asyncio.sleep(2)
    return round(time.monotonic() - started, 1), state


async def dead_letters(system: ChaosSystem) -> dict[str, int]:
    from aiokafka import TopicPartition

    topics = [t for t in Topics(system.prefix).all() if t.endswith(".dlq")]
    consumer = AIOKafkaConsumer(bootstrap_servers=system.ep.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        found = {}
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in partitions]
            if not tps:
                continue
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            count = sum(ends[tp] - starts[tp] for tp in tps)
            if count:
                found[topic.removeprefix(system.prefix)] = count
        return found
    finally:
        await consumer.stop()


async def mailbox_messages(mailbox_url: str, wanted: set[str]) -> collections.Counter[str]:
    """Copies delivered per Message-ID, for the Message-IDs in `wanted` (the mailbox holds others' mail too)."""
    from devstack.mailbox import MailboxClient

    mailbox = MailboxClient(mailbox_url, timeout=300)
    copies: collections.Counter[str] = collections.Counter()
    for summary in await mailbox.list():
        message_id = summary.get("message_id")
        if message_id is None:  # a mailbox started by an older devstack: read the header from the message
            if not any(str(a).startswith("chaos-") or "hostmaster@c" in str(a) for a in summary["to"]):
                continue
            with contextlib.suppress(KeyError):
                message_id = (await mailbox.get(summary["id"]))["headers"].get("message-id", [""])[0]
        key = str(message_id or "").strip().strip("<>").rsplit("@", 1)[0]
        if key in wanted:
            copies[key] += 1
    return copies


def _message_key(mail_id: str) -> str:
    """The local part of the Message-ID the notifier gives the mail of this notice (notifier/message.py)."""
    return "".join(ch for ch in mail_id if ch.isalnum() or ch in "-._") or "mail"


async def count(system: ChaosSystem, flows: Flows, watcher: Watcher) -> dict[str, Any]:
    client = await _db(system)
    try:
        reg = client[system.databases["registration"]]
        requests = await reg["requests"].find({}, {"_id": 1, "status": 1, "member_id": 1, "serial": 1}).to_list()
        signer = client[system.databases["signer"]]
        statuses = await signer["statuses"].find({}, {"_id": 1, "request_id": 1, "status": 1}).to_list()
        mails = await client[system.databases["notifier"]]["outgoing_mail"].find(
            {}, {"_id": 1, "state": 1, "template": 1}).to_list()
        claims = await reg["domains"].find({}, {"_id": 1, "status": 1}).to_list()
        orders = collections.Counter(str(d.get("status")) for d in await client[system.databases["acme"]][
            "orders"].find({}, {"status": 1}).to_list())
    finally:
        await client.close()

    serials_by_request: dict[str, set[str]] = collections.defaultdict(set)
    for doc in statuses:
        serials_by_request[str(doc["request_id"])].add(str(doc["_id"]))
    by_status = collections.Counter(str(d.get("status")) for d in requests)
    approved = [d for d in requests if d.get("status") in ("issued", "approved")]
    wrong_count = [d["_id"] for d in approved if len(serials_by_request.get(d["_id"], ())) != 1]
    not_approved_with_cert = [d["_id"] for d in requests if d.get("status") not in ("issued", "approved")
                              and serials_by_request.get(d["_id"])]
    topic_wrong = [d["_id"] for d in approved
                   if watcher.issued.get(d["_id"], set()) != serials_by_request.get(d["_id"])]
    per_member_requests = collections.Counter(str(d["member_id"]) for d in approved)
    per_member_certs: collections.Counter[str] = collections.Counter()
    member_of = {d["_id"]: str(d["member_id"]) for d in requests}
    for request_id, serials in serials_by_request.items():
        per_member_certs[member_of.get(request_id, "?")] += len(serials)
    members_off = [m for m in set(per_member_requests) | set(per_member_certs)
                   if per_member_requests[m] != per_member_certs[m]]

    wanted = {_message_key(str(m["_id"])): m for m in mails if m.get("state") == "sent"}
    copies = await mailbox_messages(system.ep.mailbox_url, set(wanted))
    mail_states = collections.Counter(str(m.get("state")) for m in mails)
    missing_mail = [mid for mid in wanted if copies[mid] == 0]
    duplicated = {mid: n for mid, n in copies.items() if n > 1}

    flows_failed = [dataclasses.asdict(r) for r in flows.results if not r.ok]
    return {
        "flows": {"started": len(flows.results) + len(flows.tasks), "completed": sum(r.ok for r in flows.results),
                  "failed": len(flows_failed), "unfinished": len(flows.tasks),
                  "failed_examples": flows_failed[:10],
                  "seconds_p50": _pct([r.seconds for r in flows.results if r.ok], 50),
                  "seconds_max": max((r.seconds for r in flows.results if r.ok), default=None)},
        "requests": {"total": len(requests), "by_status": dict(by_status), "approved": len(approved),
                     "resubmitted_after_perspective_timeout": flows.resubmitted},
        "certificates": {
            "issued": len(statuses), "approved_requests_without_exactly_one": len(wrong_count),
            "examples": wrong_count[:10], "certificates_for_unapproved_requests": len(not_approved_with_cert),
            "topic_disagrees_with_signer_db": len(topic_wrong),
            "cert_issued_events_read": watcher.issued_events,
            "members": len(set(per_member_requests)), "members_with_certs_not_equal_approved": len(members_off)},
        "mail": {"notices": len(mails), "by_state": dict(mail_states), "sent_notices_delivered": sum(
            1 for mid in wanted if copies[mid] > 0), "sent_notices_missing_in_mailbox": len(missing_mail),
            "notices_delivered_more_than_once": len(duplicated),
            "extra_copies": sum(n - 1 for n in duplicated.values()), "duplicated_examples": list(duplicated)[:5],
            "by_template": dict(collections.Counter(str(m.get("template")) for m in mails))},
        "ocsp": {"queries": flows.ocsp.stats.queries, "answers": flows.ocsp.stats.answers,
                 "wrong": flows.ocsp.stats.wrong, "replica_unavailable": flows.ocsp.stats.unavailable,
                 "wrong_examples": flows.ocsp.stats.wrong_details[:10]},
        "http": {"requests": flows.client.stats.requests, "http_5xx": flows.client.stats.http_5xx,
                 "connection_errors": flows.client.stats.connection_errors,
                 "retried_then_ok": flows.client.stats.retried_then_ok,
                 "retried_never_ok": flows.client.stats.retried_never_ok,
                 "five_xx_by_request": dict(flows.client.stats.five_xx_paths.most_common(10))},
        "acme": {"every_nth_flow": flows.acme_every, "orders_by_status": dict(orders),
                 "certificates_downloaded": flows.acme.orders_valid, "revoked": flows.acme.revoked,
                 "calls_tried_again": dict(flows.acme.retried.most_common(10))},
        "dead_letters": await dead_letters(system),
        "outbox_unflushed": await outbox_pending(system),
        "stuck": {"requests": by_status.get("caa_pending", 0) + by_status.get("approved", 0),
                  "mails": mail_states.get("pending", 0) + mail_states.get("sending", 0),
                  "domain_claims_pending": sum(1 for d in claims if d.get("status") not in ("verified", "failed")),
                  "acme_orders_processing": orders.get("processing", 0),
                  "flows_unfinished": len(flows.tasks)},
    }


def _pct(values: list[float], p: int) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


# ---------------------------------------------------------------------------------------------- lifetime


async def audit_verify(system: ChaosSystem) -> dict[str, Any]:
    """`python -m shared.audit verify` on every service's database: exit code and last line."""
    results = {}
    for kind, name in system.databases.items():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shared.audit", "verify", "--mongo-url", system.ep.mongo_url, "--database", name,
            cwd=str(ROOT), env=system.services[0].env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        lines = out.decode(errors="replace").strip().splitlines()
        results[kind] = {"exit": proc.returncode, "said": lines[-1][:300] if lines else ""}
    return results


async def status_answers(system: ChaosSystem, flows: Flows, sample: list[KnownCert]) -> dict[str, Any]:
    """The CRLs' revoked entries and OCSP's answers for `sample`, from the first status replica."""
    url = system.status_urls[0]
    crls = {}
    # The roots' ARLs, and each issuing CA's CRL of certificates without a shard and its CRL shards (where the
    # certificates of this run are listed; the run's signers use the default shard count).
    shards = [f"{label}/{n}" for label in ISSUING_LABELS for n in range(DEFAULT_SHARDS)]
    for label in (*LABELS, *ISSUING_LABELS, *shards):
        reply = await flows.client.send("GET", f"{url}/{label}.crl", deadline=time.monotonic() + 120, raw=True)
        if reply.status != 200:
            crls[label] = f"HTTP {reply.status}"
            continue
        crl = x509.load_der_x509_crl(reply.body)
        entries = []
        for entry in crl:
            reason = next((ext.value.reason.name for ext in entry.extensions
                           if isinstance(ext.value, x509.CRLReason)), None)
            entries.append(f"{entry.serial_number:x}:{entry.revocation_date_utc.isoformat()}:{reason}")
        crls[label] = sorted(entries)  # type: ignore[assignment]
    ocsp_client = OcspClient(flows.client, [url], random.Random(0))
    answers = {k.serial: await ocsp_client.status(k, time.monotonic() + 120) for k in sample}
    return {"crl_entries": crls, "ocsp": answers}


async def cold_restart(system: ChaosSystem, flows: Flows, rng: random.Random) -> dict[str, Any]:
    import devstack

    known = list(flows.known.values())
    sample = rng.sample(known, min(len(known), 100))
    before = await status_answers(system, flows, sample)
    codes = await system.stop_all()
    for component in ("kafka", "mongo"):
        await asyncio.to_thread(devstack.stop, component)
    for component in ("mongo", "kafka"):
        await asyncio.to_thread(devstack.start, component)
    await system.start_all()
    after = await status_answers(system, flows, sample)
    crl_counts = {k: len(v) if isinstance(v, list) else v for k, v in before["crl_entries"].items()}
    return {"stop_exit_codes": codes, "ocsp_sample": len(sample), "crl_revoked_entries": crl_counts,
            "same_crl_entries": before["crl_entries"] == after["crl_entries"],
            "same_ocsp_answers": before["ocsp"] == after["ocsp"],
            "ocsp_changed": [s for s in before["ocsp"] if before["ocsp"][s] != after["ocsp"].get(s)][:10]}


# ---------------------------------------------------------------------------------------------- run


@dataclasses.dataclass
class Options:
    seed: int
    minutes: float
    rate: float
    fault_every: float
    ocsp_every: float = 0.5
    max_in_flight: int = 40
    min_faults: int = 0  # the load goes on past `minutes` until this many faults were done
    perspectives: int = 2
    quiet_timeout: float = 600.0
    work: Path | None = None
    keep: bool = False
    cold_restart: bool = True
    acme_every: int = 3  # every n-th member also orders by ACME (0: none)


def verdict(report: dict[str, Any]) -> list[str]:
    """Every count that is off, in words; empty when the run passed."""
    c = report["counts"]
    problems = []
    checks = [
        (c["flows"]["failed"] == 0 and c["flows"]["unfinished"] == 0, "flows failed or unfinished"),
        (c["flows"]["completed"] > 0, "no flow completed"),
        (c["certificates"]["approved_requests_without_exactly_one"] == 0,
         "approved request without exactly one certificate"),
        (c["certificates"]["certificates_for_unapproved_requests"] == 0, "certificate for a request not approved"),
        (c["certificates"]["topic_disagrees_with_signer_db"] == 0, "cert topic and signer database disagree"),
        (c["certificates"]["members_with_certs_not_equal_approved"] == 0,
         "a member's certificates != approved requests"),
        (c["mail"]["sent_notices_missing_in_mailbox"] == 0, "a notice marked sent never arrived"),
        (c["mail"]["by_state"].get("failed", 0) == 0, "a notice failed"),
        (c["ocsp"]["wrong"] == 0, "wrong OCSP answers"),
        (c["http"]["retried_never_ok"] == 0, "a retried request never succeeded"),
        (not c["dead_letters"], "events in dead-letter topics"),
        (not c["outbox_unflushed"], "outbox documents left unflushed"),
        (all(v == 0 for v in c["stuck"].values()), "stuck requests, mails, claims or flows"),
        (not report["faults"]["errors"], "a fault could not be injected or a SIGTERM exit was not 0"),
    ]
    problems += [what for ok, what in checks if not ok]
    if any(v["exit"] != 0 for v in report.get("audit", {}).values()):
        problems.append("audit verify failed")
    cold = report.get("cold_restart")
    if cold and not (cold["same_crl_entries"] and cold["same_ocsp_answers"]):
        problems.append("a cold restart changed OCSP or CRL answers")
    return problems


async def run(options: Options, say: Callable[[str], None] = print) -> dict[str, Any]:
    rng = random.Random(options.seed)
    work = options.work or Path(tempfile.mkdtemp(prefix="chaos-"))
    system = ChaosSystem(work, perspectives=options.perspectives)
    report: dict[str, Any] = {"seed": options.seed, "commit": git_revision(), "machine": machine(),
                              "options": {"minutes": options.minutes, "rate_per_s": options.rate,
                                          "fault_every_s": options.fault_every,
                                          "max_in_flight": options.max_in_flight,
                                          "acme_every": options.acme_every}}
    say(f"chaos: seed {options.seed} (replay: python -m benchmarks.chaos --seed {options.seed} "
        f"--minutes {options.minutes:g} --rate {options.rate:g} --fault-every {options.fault_every:g} "
        f"--max-in-flight {options.max_in_flight} --acme-every {options.acme_every}); work {work}")
    started = time.monotonic()
    try:
        await system.start()
        report["prefix"] = system.prefix
        say(f"chaos: {len(system.services)} processes ready in {time.monotonic() - started:.0f}s "
            f"(prefix {system.prefix})")
        watcher = Watcher(system.ep.kafka_bootstrap, Topics(system.prefix), system.opener)
        await watcher.start()
        async with aiohttp.ClientSession() as http:
            client = Client(http, HttpStats())
            flows = Flows(system, client, watcher, OcspClient(client, system.status_urls, random.Random(rng.random())),
                          system.run_id, options.acme_every)
            scheduler = FaultScheduler(system, random.Random(rng.random()), options.fault_every,
                                       at_least=options.min_faults)
            stop_probe = asyncio.Event()
            prober = asyncio.create_task(flows.probe_ocsp(random.Random(rng.random()), options.ocsp_every, stop_probe))
            reporter = asyncio.create_task(flows.progress(30, stop_probe))
            load_until = time.monotonic() + options.minutes * 60
            load_started = time.monotonic()
            faults = asyncio.create_task(scheduler.run(load_until))
            started_flows = await flows.drive(options.rate, load_until, options.max_in_flight,
                                              more=lambda: not faults.done())
            await faults
            say(f"chaos: load over after {time.monotonic() - load_started:.0f}s: {started_flows} flows started, "
                f"{len(scheduler.done)} faults; waiting for the flows to finish")
            if flows.tasks:
                budget = load_until + FLOW_TIMEOUT + 60 - time.monotonic()
                await asyncio.wait(set(flows.tasks), timeout=max(1.0, budget))
            stop_probe.set()
            await prober
            await reporter
            quiet_seconds, left = await wait_quiet(system, options.quiet_timeout)
            report["quiescence"] = {"seconds": quiet_seconds, "left": left}
            report["load"] = {"seconds": round(time.monotonic() - load_started), "flows_started": started_flows,
                              "achieved_rate_per_s": round(started_flows / (time.monotonic() - load_started), 3),
                              "times_at_max_in_flight": flows.late_starts,
                              "loadavg_end": loadavg()}
            report["faults"] = scheduler.summary()
            report["counts"] = await count(system, flows, watcher)
            report["watcher"] = {"unreadable": watcher.unreadable, "errors": watcher.errors[:10]}
            await watcher.stop()
            report["audit"] = await audit_verify(system)
            if options.cold_restart:
                report["cold_restart"] = await cold_restart(system, flows, random.Random(rng.random()))
                report["audit_after_restart"] = await audit_verify(system)
    finally:
        report["seconds"] = round(time.monotonic() - started, 1)
        await system.stop_all()
        if not options.keep:
            await system.drop()
    report["problems"] = verdict(report)
    report["passed"] = not report["problems"]
    return report


def table(report: dict[str, Any]) -> str:
    """The result as a Markdown table (what the README's long-run section shows)."""
    c = report["counts"]
    f = report["faults"]
    rows = [
        ("seed", report["seed"]), ("commit", report["commit"]),
        ("duration (load) / total", f"{report['load']['seconds'] / 60:.0f} min / {report['seconds'] / 60:.0f} min"),
        ("load average start / end", f"{report['machine']['loadavg_start']} / {report['load']['loadavg_end']}"),
        ("flows started / completed / failed",
         f"{c['flows']['started']} / {c['flows']['completed']} / {c['flows']['failed']}"),
        ("flow rate asked / achieved (times the in-flight cap held arrivals back)",
         f"{report['options']['rate_per_s']}/s / {report['load']['achieved_rate_per_s']}/s "
         f"({report['load']['times_at_max_in_flight']})"),
        ("faults injected", f"{f['faults']} ({', '.join(f'{k} {v}' for k, v in f['by_kind'].items())})"),
        ("certificate requests (by status)", json.dumps(c["requests"]["by_status"])),
        ("CSRs sent again after perspectives did not answer in time",
         c["requests"].get("resubmitted_after_perspective_timeout", 0)),
        ("certificates issued", c["certificates"]["issued"]),
        ("approved requests without exactly one certificate",
         c["certificates"]["approved_requests_without_exactly_one"]),
        ("members whose certificates != approved requests",
         c["certificates"]["members_with_certs_not_equal_approved"]),
        ("cert topic disagreeing with the signer's database", c["certificates"]["topic_disagrees_with_signer_db"]),
        ("mail notices / delivered / missing", f"{c['mail']['notices']} / {c['mail']['sent_notices_delivered']} / "
                                               f"{c['mail']['sent_notices_missing_in_mailbox']}"),
        ("notices delivered more than once (extra copies)", f"{c['mail']['notices_delivered_more_than_once']} "
                                                            f"({c['mail']['extra_copies']})"),
        ("OCSP answers / wrong / replica unavailable", f"{c['ocsp']['answers']} / {c['ocsp']['wrong']} / "
                                                       f"{c['ocsp']['replica_unavailable']}"),
        ("HTTP requests / 5xx / connection errors", f"{c['http']['requests']} / {c['http']['http_5xx']} / "
                                                    f"{c['http']['connection_errors']}"),
        ("retried requests: succeeded / never", f"{c['http']['retried_then_ok']} / {c['http']['retried_never_ok']}"),
        ("events in DLQs", sum(c["dead_letters"].values())),
        ("outbox documents unflushed", sum(c["outbox_unflushed"].values())),
        ("stuck requests / mails / domain claims / ACME orders",
         f"{c['stuck']['requests']} / {c['stuck']['mails']} / {c['stuck']['domain_claims_pending']} / "
         f"{c['stuck'].get('acme_orders_processing', '-')}"),
        ("quiescence after the load", f"{report['quiescence']['seconds']} s"),
        ("audit verify (every database)", "pass" if all(v["exit"] == 0 for v in report["audit"].values()) else "FAIL"),
    ]
    if "cold_restart" in report:
        cold = report["cold_restart"]
        rows.append(("cold restart: same CRL entries / same OCSP answers",
                     f"{cold['same_crl_entries']} / {cold['same_ocsp_answers']} ({cold['ocsp_sample']} certificates)"))
    acme = c.get("acme")
    rows.append(("ACME orders (every n-th member): by status / certificates downloaded / revoked",
                 f"({acme['every_nth_flow']}) {json.dumps(acme['orders_by_status'])} / "
                 f"{acme['certificates_downloaded']} / {acme['revoked']}" if acme else "not run"))
    rows.append(("verdict", "PASS" if report["passed"] else "FAIL: " + "; ".join(report["problems"])))
    return "\n".join(["| what | count |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None, help="replays a run (default: a random one, printed)")
    parser.add_argument("--minutes", type=float, default=2.0, help="how long flows are started and faults done")
    parser.add_argument("--rate", type=float, default=0.5, help="member flows started per second")
    parser.add_argument("--fault-every", type=float, default=20.0, help="mean seconds between faults")
    parser.add_argument("--max-in-flight", type=int, default=40,
                        help="flows running at once at most; when reached, arrivals wait (reported)")
    parser.add_argument("--min-faults", type=int, default=0,
                        help="go on past --minutes until this many faults were done")
    parser.add_argument("--acme-every", type=int, default=3,
                        help="every n-th member also orders a certificate by ACME (0: none)")
    parser.add_argument("--perspectives", type=int, default=2,
                        help="remote validation perspectives (2: BR 3.2.2.9 lets one of them not answer)")
    parser.add_argument("--out", type=Path, help="write the JSON report here too")
    parser.add_argument("--work", type=Path, help="logs and the run's CA (default: a new temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the run's databases and topics")
    parser.add_argument("--no-cold-restart", action="store_true", help="skip the cold restart at the end")
    parser.add_argument("--table", type=Path, metavar="REPORT",
                        help="only print the Markdown table of a saved JSON report (what the README shows)")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return 0
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    options = Options(seed=seed, minutes=args.minutes, rate=args.rate, fault_every=args.fault_every,
                      perspectives=args.perspectives, max_in_flight=args.max_in_flight,
                      min_faults=args.min_faults, work=args.work, keep=args.keep,
                      cold_restart=not args.no_cold_restart, acme_every=args.acme_every)
    # SIGTERM (`kill`, `pkill`) ends the run as Ctrl-C does, so `run` stops the nine processes it started
    # (killed by SIGTERM's default action instead, the harness left them running, loading the machine).
    signal.signal(signal.SIGTERM, _interrupt)
    report = asyncio.run(run(options, say=lambda s: print(s, file=sys.stderr, flush=True)))
    text = json.dumps(report, indent=2, default=str)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    print(table(report), file=sys.stderr)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
