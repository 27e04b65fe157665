"""The CPU-bound half of issuance: CSR checks, pre-issuance lint and the CA signature.

`Signatory` turns approved requests into outcome documents (a certificate or
a refusal) and touches neither Kafka nor MongoDB. `SigningPool` runs
signatories in worker processes next to the signer's event loop.

Why processes and not a thread: `cryptography` releases the GIL while it
signs, but must take it back afterwards, and a busy event loop holds it for
up to the switch interval (5 ms). Measured here, an RSA-4096 signature took
1.9 ms alone and 7.3 ms next to a busy Python thread. A worker process has a
GIL of its own, so the loop's Kafka and MongoDB work never delays a
signature, and `CACERT_SIGNER_WORKERS` lets one replica sign on several
cores. A worker is given only what it needs (request payloads in, outcome
documents out); it loads the CA from the same directory and passphrase as
the process that started it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from services.signer.ca import issuance
from services.signer.ca.crl import DEFAULT_SHARDS, crl_shard_of
from services.signer.ca.hierarchy import Hierarchy, IssuingCA, load_hierarchy
from services.signer.ca.hsm import FILE_KEYS, CAKeySource, HSMSigningError
from services.signer.ca.lint import PreIssuanceLinter
from services.signer.ca.profiles import get_profile
from services.signer.ca.serials import new_serial_number, serial_hex
from services.signer.ca.urls import CAUrls
from shared import outbox
from shared.events import deterministic_event_id, isoformat, make_event, utcnow
from shared.kafka import TransientError
from shared.key_compromise import spki_sha256
from shared.logging import configure, get_logger

SOURCE = "signer"
log = get_logger("services.signer.signing")

Document = dict[str, Any]
Request = tuple[str, Mapping[str, Any]]  # (event id, csr.approved payload)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode()


def _rejection_reason(exc: issuance.IssuanceRefused) -> str:
    if isinstance(exc, issuance.CSRRejected):
        return exc.code  # set by check_csr from the shared key policy's verdict, never from the text
    return "policy"


def _answer(name: str, request: issuance.ApprovedRequest, data: dict[str, Any]) -> dict[str, Any]:
    """The stored form of the event answering `request`; its id is derived from the request, so a
    re-run of the same request re-creates the same event (consumers de-duplicate on it)."""
    event = make_event(name, data, source=SOURCE, event_id=deterministic_event_id(name, request.request_id))
    return outbox.sealed(event)


@dataclasses.dataclass(frozen=True)
class _Ready:
    """A request built and linted, waiting for the CA signature."""

    request: issuance.ApprovedRequest
    ca: IssuingCA
    builder: x509.CertificateBuilder
    ids: dict[str, str]


class Signatory:
    """Decides each approved request: a signed certificate, or a refusal with its reason."""

    def __init__(
        self,
        hierarchy: Hierarchy,
        *,
        public_base_url: str,
        lint_profiles: Iterable[str],
        linter: PreIssuanceLinter | None,
        crl_shards: int = DEFAULT_SHARDS,
    ) -> None:
        self._hierarchy = hierarchy
        self._crl_shards = crl_shards
        self._urls = {c.label: CAUrls.under(public_base_url, c.label) for c in hierarchy.cas.values()}
        self._lint_profiles = frozenset(lint_profiles)
        self._linter = linter
        # Constant per issuing CA: computed once, not per certificate.
        # The default chain (never the root) and every chain with its anchor, the default first (ACME's
        # alternates; after a rollover the new roots' too).
        self._chains = {
            cert_class: [{"anchor": anchor, "chain_pem": chain, "anchor_pem": anchor_pem}
                         for anchor, chain, anchor_pem in hierarchy.chains(cert_class)]
            for cert_class in (1, 3)
        }
        self._anchors = {cert_class: list(hierarchy.trust_anchors_for(cert_class)) for cert_class in (1, 3)}
        # A thread for CA signatures, when overlapping them with the lint pays: an RSA CA key (a signature of
        # milliseconds). A P-256 signature takes 0.1 ms, less than handing it to a thread costs.
        sign_bound = any(ca.key_algorithm.startswith("rsa") for ca in hierarchy.cas.values())
        self._overlap = (
            ThreadPoolExecutor(1, thread_name_prefix="ca-signature") if linter is not None and sign_bound else None
        )

    def decide_all(self, requests: Sequence[Request], now: dt.datetime) -> list[Document]:
        if self._overlap is None:
            return [self.decide(event_id, payload, now) for event_id, payload in requests]
        # Lint the next certificate while the CA key signs this one: the signature runs in
        # `cryptography` without the GIL, the lint is Python, so on a sign-bound key the two share
        # the time of the longer instead of adding up (issue 21 item 4). Outcomes keep request order.
        pending: list[_Ready | Document] = []
        signing: list[Future[x509.Certificate]] = []
        for event_id, payload in requests:
            step = self._prepare(event_id, payload, now)
            pending.append(step)
            if isinstance(step, _Ready):
                signing.append(self._overlap.submit(issuance.sign_certificate, step.builder, step.ca))
        signed = iter(signing)
        return [self._finish(step, next(signed).result(), now) if isinstance(step, _Ready) else step
                for step in pending]

    def decide(self, event_id: str, payload: Mapping[str, Any], now: dt.datetime) -> Document:
        step = self._prepare(event_id, payload, now)
        if not isinstance(step, _Ready):
            return step
        return self._finish(step, issuance.sign_certificate(step.builder, step.ca), now)

    def _prepare(self, event_id: str, payload: Mapping[str, Any], now: dt.datetime) -> _Ready | Document:
        """Everything before the CA signature: the certificate built and linted, or the refusal."""
        request = issuance.ApprovedRequest.from_payload(payload)
        # Passed to the few log calls rather than bound per request: binding and unbinding
        # context variables for every certificate is a measurable share of a P-256 issuance.
        ids = {"event_id": event_id, "request_id": request.request_id}
        try:
            profile = get_profile(request.profile)
            ca = self._hierarchy.issuing_ca(request.cert_class)
            serial = new_serial_number()
            builder = issuance.prepare_certificate(
                request, ca, profile, self._urls[ca.label], now, serial, crl_shard_of(serial, self._crl_shards)
            )
        except issuance.IssuanceRefused as exc:
            log.warning("request refused", reason=exc.reason, **ids)
            return self._refusal(request, _rejection_reason(exc), [exc.reason])
        if self._linter is not None and profile.name in self._lint_profiles:
            result = self._linter.lint_tbs(builder, profile, ca.key_algorithm)
            if result.errors:
                log.critical(
                    "pre-issuance lint found errors; not signing",
                    findings=result.errors,
                    profile=profile.name,
                    alert=True,
                    **ids,
                )
                return self._refusal(request, "lint", result.errors)
        return _Ready(request, ca, builder, ids)

    def _finish(self, step: _Ready, certificate: x509.Certificate, now: dt.datetime) -> Document:
        """After the signature: the certificate checked against the approved request, then stored form."""
        problems = issuance.certificate_problems_against_request(certificate, step.request)
        if problems:
            log.critical(
                "signed certificate differs from the approved request; discarded",
                problems=list(problems),
                alert=True,
                **step.ids,
            )
            return self._refusal(step.request, "internal", list(problems))
        return self._certificate_document(step.request, certificate, now)

    def _certificate_document(
        self, request: issuance.ApprovedRequest, cert: x509.Certificate, now: dt.datetime
    ) -> Document:
        ca = self._hierarchy.issuing_ca(request.cert_class)
        serial = serial_hex(cert.serial_number)
        der = cert.public_bytes(Encoding.DER)
        data = {
            "request_id": request.request_id,
            "member_id": request.member_id,
            "serial": serial,
            "issuer": ca.label,
            "cert_class": request.cert_class,
            "profile": request.profile,
            "subject": cert.subject.rfc4514_string(),
            "dns_names": request.dns_names,
            "ip_addresses": request.ip_addresses,
            "emails": request.emails,
            "not_before": isoformat(cert.not_valid_before_utc),
            "not_after": isoformat(cert.not_valid_after_utc),
            "fingerprint_sha256": hashlib.sha256(der).hexdigest(),
            "certificate_pem": _pem(cert),
            "chain_pem": self._chains[request.cert_class][0]["chain_pem"],
            "chains": self._chains[request.cert_class],
            "trust_anchors": self._anchors[request.cert_class],
            "issued_at": isoformat(now),
        }
        shard = crl_shard_of(cert.serial_number, self._crl_shards)
        return {
            "_id": request.request_id,
            "kind": "issued",
            "serial": serial,
            "issuer": ca.label,
            # The shard named in the certificate's CRL Distribution Points; absent (unsharded): /<issuer>.crl.
            **({} if shard is None else {"crl_shard": shard}),
            "member_id": request.member_id,
            "profile": request.profile,
            "not_after": cert.not_valid_after_utc,
            "der": der,
            "fingerprint_sha256": data["fingerprint_sha256"],
            "spki_sha256": spki_sha256(cert.public_key()),
            "issued_at": now,
            "event": _answer("cert.issued", request, data),
        }

    def _refusal(self, request: issuance.ApprovedRequest, reason: str, details: list[str]) -> Document:
        return refusal(request, reason, details)


def refusal(request: issuance.ApprovedRequest, reason: str, details: list[str]) -> Document:
    """The outcome document of a refused request, with its `cert.rejected`."""
    data = {
        "request_id": request.request_id,
        "member_id": request.member_id,
        "reason": reason,
        "details": [d[:500] for d in details[:50]],
        "rejected_at": isoformat(utcnow()),
    }
    return {
        "_id": request.request_id,
        "kind": "rejected",
        "member_id": request.member_id,
        "reason": reason,
        "event": _answer("cert.rejected", request, data),
    }


@dataclasses.dataclass(frozen=True)
class SigningConfig:
    """What a worker process needs to build its own Signatory (picklable; sent once, at start)."""

    ca_dir: Path
    passphrase: bytes = dataclasses.field(repr=False)
    public_base_url: str
    lint_profiles: frozenset[str]
    lint: bool
    log_level: str = "INFO"
    ocsp_passphrase: bytes | None = dataclasses.field(default=None, repr=False)
    crl_shards: int = DEFAULT_SHARDS
    key_source: CAKeySource = FILE_KEYS
    """Where the CA keys live; a worker opens its own PKCS#11 session to a token key."""

    def signatory(self) -> Signatory:
        hierarchy = load_hierarchy(
            self.ca_dir, self.passphrase, ocsp_passphrase=self.ocsp_passphrase, key_source=self.key_source
        )
        linter = None
        if self.lint and self.lint_profiles:
            linter = PreIssuanceLinter()
            linter.warm_up([hierarchy.issuing_ca(1).key_algorithm])
        return Signatory(
            hierarchy, public_base_url=self.public_base_url, lint_profiles=self.lint_profiles, linter=linter,
            crl_shards=self.crl_shards,
        )


# ---- inside a worker process -------------------------------------------------------------------

_signatory: Signatory | None = None


def _start_worker(config: SigningConfig) -> None:
    global _signatory
    # The parent decides when workers stop (it finishes the batch in hand first); a Ctrl-C or a
    # SIGTERM sent to the whole process group must not kill a signature half-way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    configure("signer-signing", config.log_level)
    _signatory = config.signatory()


def _exit_with_parent(parent: int) -> None:
    """A worker whose signer was killed (SIGKILL, OOM) must not live on holding the CA keys."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def _decide_in_worker(requests: Sequence[Request], now: dt.datetime) -> list[Document]:
    assert _signatory is not None, "worker started without its initializer"
    return _signatory.decide_all(requests, now)


def _worker_pid(hold: float) -> int:
    time.sleep(hold)  # keeps this worker busy so the next call lands on another one
    return os.getpid()


# ---- in the signer's event-loop process --------------------------------------------------------


class SigningPool:
    """`workers` signing processes; each call is shared out among all of them."""

    def __init__(self, config: SigningConfig, workers: int) -> None:
        if workers < 1:
            raise ValueError("a signing pool needs at least one worker")
        self._config = config
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None

    async def start(self) -> None:
        """Start every worker and wait until each has loaded the CA (and pkilint): no cold first batch."""
        self._pool = self._new_pool()
        loop = asyncio.get_running_loop()
        seen: set[int] = set()
        for _ in range(20 * self._workers):
            pids = await asyncio.gather(
                *(loop.run_in_executor(self._pool, _worker_pid, 0.05) for _ in range(self._workers))
            )
            seen.update(pids)
            if len(seen) >= self._workers:
                break
        log.info("signing workers ready", workers=len(seen))

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the parent runs an event loop and client threads that must not be cloned.
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self._config,),
        )

    async def decide_all(self, requests: Sequence[Request], now: dt.datetime) -> list[Document]:
        pool = self._pool
        if pool is None:
            raise RuntimeError("SigningPool.start() was not awaited")
        loop = asyncio.get_running_loop()
        # One share per worker, so a pass keeps every core busy; the shares come back in order.
        shares = [requests[i :: self._workers] for i in range(min(self._workers, len(requests)))]
        try:
            decided = await asyncio.gather(
                *(loop.run_in_executor(pool, _decide_in_worker, share, now) for share in shares)
            )
        except BrokenProcessPool as exc:
            # A worker died (killed, out of memory). Nothing it signed was stored or published, so the
            # batch is simply retried on fresh workers: the claims are ours, so no request is lost.
            log.error("a signing worker died; restarting the pool", error=str(exc))
            if self._pool is pool:
                pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
            raise TransientError("signing worker died; batch will be retried") from exc
        except HSMSigningError as exc:
            # The HSM failed (restarted, unreachable): an outage like a database that does not answer, so the
            # batch waits and is retried, never dead-lettered; the worker's next signature logs in again.
            log.error("the HSM failed a CA signature; the batch will be retried", error=str(exc))
            raise TransientError("HSM signature failed; batch will be retried") from exc
        outcomes: list[Document] = [{}] * len(requests)
        for i, share in enumerate(decided):
            outcomes[i :: self._workers] = share
        return outcomes

    def worker_pids(self) -> list[int]:
        """The worker processes alive now (for metrics and tests)."""
        return sorted(self._pool._processes or {}) if self._pool is not None else []

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
