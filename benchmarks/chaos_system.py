"""The chaos run's system: every service as real processes on a namespace of its own, and the faults.

`ChaosSystem` starts registration, domain_verify (and its remote perspectives), the signer in issuing
and in status mode (two status replicas, so OCSP has somewhere to go while one is broken) and the
notifier, as `python -m services...` processes on free ports, with topics, consumer groups and
databases under a run prefix of their own, on whatever stack `devstack.endpoints` points at
(CACERT_STACK_*_PORT move it). The CA, the RA's key pair and the notifier's sealing key pair are made
for the run in its work directory.

`FaultScheduler` breaks it at random moments chosen from a seeded `random.Random`: kill -9 and SIGTERM
of every process kind (a killed process is started again after a short pause, as a supervisor does),
SIGSTOP longer than the consumer session timeout then SIGCONT, and stopping / starting the stack's
Kafka broker, FerretDB and SMTP relay (`devstack.stop` / `devstack.start`). Every fault done is
recorded with its time, so a run is replayed by its seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from devstack import endpoints
from devstack.endpoints import HOST

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_PKI_URL = "http://pki.example.net"
SESSION_TIMEOUT_SECONDS = 15.0  # shared/kafka/consumer.py session_timeout_ms
PAUSE_SECONDS = SESSION_TIMEOUT_SECONDS + 5  # a paused consumer is thrown out of its group, then comes back
STACK_FAULTS = ("kafka", "mongo", "smtp")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class Service:
    """One service process: how to start it, the process now running (None while it is down)."""

    name: str
    kind: str  # registration, domain_verify, perspective, signer-issue, signer-status, notifier
    args: list[str]
    env: dict[str, str]
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== start {self.starts} at {time.strftime('%H:%M:%S')}\n".encode())
            out.flush()
            self.process = subprocess.Popen([sys.executable, *self.args], cwd=ROOT, env=self.env,
                                            stdout=out, stderr=subprocess.STDOUT)

    def ready(self, timeout: float = 1.0) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=timeout) as reply:  # noqa: S310
                return bool(reply.status == 200)
        except OSError:
            return False

    async def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(self.ready):
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.process and self.process.returncode}):\n"
                                   + self.tail())
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready within {timeout:.0f}s:\n{self.tail()}")
            await asyncio.sleep(0.25)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    async def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `grace`; the exit code (None if it was not running)."""
        if self.process is None:
            return None
        self.signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
        self.signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(self.process.wait, grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = await asyncio.to_thread(self.process.wait, 10)
        return code

    def tail(self, lines: int = 25) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ChaosSystem:
    """The services of one run, on their own topics, consumer groups, databases and ports."""

    def __init__(self, work: Path, *, perspectives: int = 2, status_replicas: int = 2) -> None:
        self.work = work
        self.run_id = secrets.token_hex(4)
        self.prefix = f"chaos{self.run_id}."
        self.ep = endpoints.current()
        self.stack_env = self.ep.env()
        self.databases = {kind: f"chaos_{self.run_id}_{kind}"
                          for kind in ("registration", "domain_verify", "signer", "notifier", "acme")}
        self.perspective_names = [f"perspective-{chr(ord('a') + n)}" for n in range(perspectives)]
        for name in self.perspective_names:
            self.databases[name] = f"chaos_{self.run_id}_{name.replace('-', '_')}"
        self.status_replicas = status_replicas
        self.services: list[Service] = []
        self.ca_dir = work / "ca"
        self.secrets_dir = work / "secrets"

    # -- set-up ------------------------------------------------------------------------------------

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CACERT_") or k.startswith("CACERT_STACK_")}
        env.update(self.stack_env)
        pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env.update(PYTHONPATH=pythonpath, PYTHONUNBUFFERED="1", CACERT_LOG_LEVEL="INFO", CACERT_HTTP_HOST=HOST,
                   CACERT_KAFKA_TOPIC_PREFIX=self.prefix, CACERT_KAFKA_GROUP_PREFIX=self.prefix,
                   CACERT_KAFKA_CREATE_TOPICS="false", CACERT_SHUTDOWN_DRAIN_SECONDS="0.5")
        return env

    def _write_secret(self, name: str, text: str) -> Path:
        self.secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.secrets_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return path

    def make_keys(self) -> None:
        from shared.acme_binding import BindingOpener
        from shared.approvals import ApprovalSigner
        from shared.sealed_mail import MailOpener

        ra = ApprovalSigner.generate()
        self.ra_key = self._write_secret("ra-signing-key.pem", ra.private_pem())
        self.ra_public = self._write_secret("ra-public-keys.pem", ra.public_pem())
        self.opener = MailOpener.generate()
        self.notifier_key = self._write_secret("notifier-sealing-key.pem", self.opener.private_pem())
        self.sealing_public = self._write_secret("mail-sealing-public-key.pem", self.opener.public_pem())
        # registration seals ACME binding keys to the ACME service, which opens them with the private half
        acme = BindingOpener.generate()
        self.acme_sealing_key = self._write_secret("acme-sealing-key.pem", acme.private_pem())
        self.acme_sealing_public = self._write_secret("acme-sealing-public-key.pem", acme.public_pem())
        self.passphrase = self._write_secret("ca-passphrase", secrets.token_urlsafe(24))
        self.csrf_secret = secrets.token_urlsafe(24)

    def _signer_env(self) -> dict[str, str]:
        return {"CACERT_CA_DIR": str(self.ca_dir), "CACERT_CA_PASSPHRASE_FILE": str(self.passphrase),
                "CACERT_CA_ALGORITHM": "p256", "CACERT_SIGNER_PUBLIC_URL": PUBLIC_PKI_URL,
                "CACERT_SIGNER_RA_PUBLIC_KEYS_FILE": str(self.ra_public),
                "CACERT_MONGO_DATABASE": self.databases["signer"]}

    def init_ca(self) -> None:
        env = {**self._base_env(), **self._signer_env()}
        result = subprocess.run([sys.executable, "-m", "services.signer", "init-ca", "--if-missing"], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"init-ca failed:\n{result.stdout}{result.stderr}")

    def _add(self, name: str, kind: str, args: list[str], extra: dict[str, str]) -> Service:
        port = free_port()
        env = {**self._base_env(), **extra, "CACERT_HTTP_PORT": str(port)}
        service = Service(name, kind, args, env, port, self.work / f"{name}.log")
        self.services.append(service)
        return service

    def define(self) -> None:
        registration = self._add("registration", "registration", ["-m", "services.registration"], {
            "CACERT_MONGO_DATABASE": self.databases["registration"],
            "CACERT_RA_SIGNING_KEY_FILE": str(self.ra_key),
            "CACERT_MAIL_SEALING_PUBLIC_KEY_FILE": str(self.sealing_public),
            "CACERT_ACME_SEALING_PUBLIC_KEY_FILE": str(self.acme_sealing_public),
            "CACERT_WEB_CSRF_SECRET": self.csrf_secret,
            "CACERT_RATE_SIGNUP_PER_CLIENT": "1000000", "CACERT_RATE_LOGIN_PER_CLIENT": "1000000",
            "CACERT_RATE_LOGIN_PER_ACCOUNT": "1000", "CACERT_RATE_CONFIRM_PER_CLIENT": "1000000",
            "CACERT_LIMIT_REQUESTS_PER_MEMBER": "100000",
            "CACERT_LIMIT_REQUESTS_PER_DOMAIN": "1000000", "CACERT_LIMIT_DOMAIN_CLAIMS_PER_MEMBER": "10000",
        })
        registration.env["CACERT_PUBLIC_URL"] = registration.url
        acme = self._add("acme", "acme", ["-m", "services.acme"], {
            "CACERT_MONGO_DATABASE": self.databases["acme"],
            "CACERT_ACME_SEALING_KEY_FILE": str(self.acme_sealing_key),
            "CACERT_ACME_TERMS_URL": registration.url + "/", "CACERT_ACME_WEBSITE_URL": registration.url + "/",
            "CACERT_ACME_ORDERS_PER_ACCOUNT_PER_HOUR": "100000", "CACERT_ACME_ORDERS_PER_DOMAIN_PER_HOUR": "100000",
        })
        acme.env["CACERT_ACME_PUBLIC_URL"] = acme.url
        registration.env["CACERT_ACME_DIRECTORY_URL"] = acme.url + "/directory"
        validation = {"CACERT_DOMAIN_VERIFY_HTTP_ALLOW_PRIVATE": "127.0.0.0/8",
                      "CACERT_DOMAIN_VERIFY_HTTP_PORT": str(free_port()),
                      # 15 s in ./dev up; on a shared 2-core machine at load 10-20 the perspectives answered
                      # 20 s late without any fault (a paused or killed one is still silent, and tolerated)
                      "CACERT_DOMAIN_VERIFY_PERSPECTIVE_TIMEOUT_SECONDS": "60"}
        verify = self._add("domain_verify", "domain_verify", ["-m", "services.domain_verify"], {
            **validation, "CACERT_MONGO_DATABASE": self.databases["domain_verify"],
            "CACERT_DOMAIN_VERIFY_PERSPECTIVES": ",".join(self.perspective_names),
            "CACERT_MAIL_SEALING_PUBLIC_KEY_FILE": str(self.sealing_public),
            # every client of the run is 127.0.0.1: the per-client limit on confirm links would count them all
            "CACERT_DOMAIN_VERIFY_RATE_LIMIT_ATTEMPTS": "1000000",
        })
        verify.env["CACERT_DOMAIN_VERIFY_PUBLIC_URL"] = verify.url
        for name in self.perspective_names:
            self._add(name, "perspective", ["-m", "services.domain_verify"], {
                **validation, "CACERT_MONGO_DATABASE": self.databases[name],
                "CACERT_DOMAIN_VERIFY_MODE": "perspective", "CACERT_DOMAIN_VERIFY_PERSPECTIVE_NAME": name,
            })
        self._add("signer-issue", "signer-issue", ["-m", "services.signer", "issuing"], self._signer_env())
        for n in range(1, self.status_replicas + 1):
            self._add(f"signer-status-{n}", "signer-status", ["-m", "services.signer", "status"],
                      self._signer_env())
        self._add("notifier", "notifier", ["-m", "services.notifier"], {
            "CACERT_MONGO_DATABASE": self.databases["notifier"],
            "CACERT_NOTIFIER_ACCOUNT_URL": registration.url,
            "CACERT_NOTIFIER_SEALING_KEY_FILE": str(self.notifier_key),
            # a mail left `sending` by a killed notifier is sent again when its lease ends: within the run
            "CACERT_NOTIFIER_LEASE_SECONDS": "60",
        })
        # the CA certificates behind chains of certificates issued before `cert.issued` named them
        acme.env["CACERT_CA_CERTS_URL"] = self.of_kind("signer-status")[0].url

    async def create_topics(self) -> None:
        from shared.config import KafkaSettings
        from shared.kafka import ensure_topics

        await ensure_topics(KafkaSettings(bootstrap=self.ep.kafka_bootstrap, topic_prefix=self.prefix),
                            partitions=2)

    async def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.make_keys()
        await asyncio.to_thread(self.init_ca)
        self.define()
        await self.create_topics()
        for service in self.services:
            service.start()
        await asyncio.gather(*(s.wait_ready() for s in self.services))

    def by_name(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def of_kind(self, kind: str) -> list[Service]:
        return [s for s in self.services if s.kind == kind]

    @property
    def status_urls(self) -> list[str]:
        return [s.url for s in self.of_kind("signer-status")]

    async def stop_all(self) -> dict[str, int | None]:
        codes = await asyncio.gather(*(s.stop() for s in self.services))
        return {s.name: c for s, c in zip(self.services, codes, strict=True)}

    async def start_all(self) -> None:
        for service in self.services:
            if not service.alive():
                service.start()
        await asyncio.gather(*(s.wait_ready() for s in self.services))

    async def drop(self) -> None:
        """Delete the run's databases and topics (best effort)."""
        from pymongo import AsyncMongoClient

        from shared.config import KafkaSettings
        from shared.kafka.topics import delete_topics_with_prefix

        with contextlib.suppress(Exception):
            client: AsyncMongoClient[Any] = AsyncMongoClient(self.ep.mongo_url, serverSelectionTimeoutMS=5000)
            try:
                for name in self.databases.values():
                    await client.drop_database(name)
            finally:
                await client.close()
        with contextlib.suppress(Exception):
            await delete_topics_with_prefix(KafkaSettings(bootstrap=self.ep.kafka_bootstrap,
                                                          topic_prefix=self.prefix), self.prefix)


# ---------------------------------------------------------------------------------------------- faults


def fault_kinds(system: ChaosSystem) -> list[str]:
    """Every fault the scheduler knows, for this system: `<action>:<target>`."""
    kinds = []
    for service in system.services:
        kinds += [f"kill9:{service.name}", f"sigterm:{service.name}"]
    for service in system.services:
        if service.kind in ("registration", "domain_verify", "signer-issue", "notifier", "perspective", "acme"):
            kinds.append(f"pause:{service.name}")  # a consumer: SIGSTOP past its session timeout
    kinds += [f"stack:{name}" for name in STACK_FAULTS]
    return kinds


@dataclasses.dataclass
class FaultRecord:
    at: float  # seconds since the run started
    kind: str
    seconds: float = 0.0
    detail: str = ""


class FaultScheduler:
    """Faults at random moments, one at a time: which one comes from a seeded deal of every kind (`deal`,
    dealt again when used up); the gaps between them are exponential (mean `every`, at most 3x)."""

    def __init__(self, system: ChaosSystem, rng: random.Random, every: float, *, at_least: int = 0,
                 stack_outage: tuple[float, float] = (2.0, 8.0)) -> None:
        self.at_least = at_least
        self.system = system
        self.rng = rng
        self.every = every
        self.stack_outage = stack_outage
        self.done: list[FaultRecord] = []
        self.errors: list[str] = []
        self._deck: list[str] = []
        self._started = time.monotonic()
        self.busy = asyncio.Event()

    def next_kind(self) -> str:
        if not self._deck:
            self._deck = self.deal()
        return self._deck.pop(0)

    def deal(self) -> list[str]:
        """Every fault kind once: each action's targets shuffled, then dealt round by round (each round one
        of every action, in a shuffled order), so even a short run does every action early."""
        groups: dict[str, list[str]] = {}
        for kind in fault_kinds(self.system):
            groups.setdefault(kind.split(":", 1)[0], []).append(kind)
        for kinds in groups.values():
            self.rng.shuffle(kinds)
        deck: list[str] = []
        while any(groups.values()):
            actions = [a for a, kinds in groups.items() if kinds]
            self.rng.shuffle(actions)
            deck += [groups[a].pop() for a in actions]
        return deck

    async def run(self, until: float) -> None:
        """Inject faults until `until` (monotonic) and at least `at_least` of them; every process is back
        and ready when this returns."""
        self._started = time.monotonic() if not self.done else self._started
        while True:
            gap = min(self.rng.expovariate(1 / self.every), 3 * self.every)
            if time.monotonic() + gap >= until and len(self.done) >= self.at_least:
                break
            await asyncio.sleep(gap)
            kind = self.next_kind()
            began = time.monotonic()
            record = FaultRecord(round(began - self._started, 1), kind)
            try:
                record.detail = await self.inject(kind)
            except Exception as exc:  # a fault that could not be done is reported, not hidden
                self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                record.detail = f"error: {exc}"
            record.seconds = round(time.monotonic() - began, 1)
            self.done.append(record)
            print(f"chaos: t={record.at:7.1f}s fault {kind:<28} {record.seconds:5.1f}s {record.detail}",
                  file=sys.stderr, flush=True)
        await self.heal()

    async def inject(self, kind: str) -> str:
        action, target = kind.split(":", 1)
        if action == "stack":
            return await self._stack(target)
        service = self.system.by_name(target)
        if action == "kill9":
            service.signal(signal.SIGKILL)
            if service.process is not None:
                await asyncio.to_thread(service.process.wait, 10)
            await asyncio.sleep(self.rng.uniform(0.5, 3.0))
            service.start()
            await service.wait_ready()
            return "killed, restarted"
        if action == "sigterm":
            code = await service.stop(grace=30.0)
            await asyncio.sleep(self.rng.uniform(0.2, 2.0))
            service.start()
            await service.wait_ready()
            if code != 0:
                self.errors.append(f"{kind}: exit code {code} after SIGTERM")
            return f"exit {code}, restarted"
        if action == "pause":
            service.signal(signal.SIGSTOP)
            await asyncio.sleep(PAUSE_SECONDS)
            service.signal(signal.SIGCONT)
            await service.wait_ready()
            return f"stopped {PAUSE_SECONDS:.0f}s"
        raise ValueError(f"unknown fault {kind}")

    async def _stack(self, component: str) -> str:
        import devstack

        outage = self.rng.uniform(*self.stack_outage)
        try:
            await asyncio.to_thread(devstack.stop, component)
            await asyncio.sleep(outage)
        finally:
            await asyncio.to_thread(devstack.start, component)
        return f"down {outage:.1f}s"

    async def heal(self) -> None:
        """Whatever a fault left behind: a paused process continued, a dead one started, all ready."""
        import devstack

        for attempt in range(1, 4):
            try:
                await asyncio.to_thread(devstack.ensure_up, ("kafka", "mongo", "smtp"))
                break
            except Exception as exc:  # reported: a stack component that does not come back is a finding
                self.errors.append(f"heal, attempt {attempt}: {type(exc).__name__}: {str(exc)[:300]}")
                if attempt == 3:
                    raise
        for service in self.system.services:
            service.signal(signal.SIGCONT)
        await self.system.start_all()

    def summary(self) -> dict[str, Any]:
        by_kind: dict[str, int] = {}
        for record in self.done:
            action, target = record.kind.split(":", 1)
            key = f"{action}:{self.system.by_name(target).kind}" if action != "stack" else record.kind
            by_kind[key] = by_kind.get(key, 0) + 1
        return {"faults": len(self.done), "by_kind": dict(sorted(by_kind.items())), "errors": self.errors,
                "log": [dataclasses.asdict(r) for r in self.done]}
