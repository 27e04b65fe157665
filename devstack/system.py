"""The whole CA on top of the stack: the CA hierarchy, the seeded support staff, and the nine processes.

`python -m devstack up --system` (what `./dev up` runs) does, after Kafka, FerretDB, the mailbox and DNS:

1. **CA** (first run): `python -m services.signer init-ca --if-missing` into `<state>/system/ca` (later runs:
   it adds the self-signed Class 3 root to a CA directory made before that existed), keys
   encrypted with a passphrase generated once into `<state>/system/ca-passphrase` (mode 0600); and the
   RA's Ed25519 key pair (`ra-signing-key.pem`, mode 0600, for registration; `ra-public-keys.pem` for
   the signers), with which every approval is signed; and the notifier's X25519 sealing key pair
   (`notifier-sealing-key.pem`, mode 0600, for the notifier; `mail-sealing-public-key.pem` for
   registration and domain_verify), to which every mail command's link is sealed; and the ACME service's
   X25519 key pair (`acme-sealing-key.pem`, mode 0600, for the ACME service; `acme-sealing-public-key.pem`
   for registration), to which every ACME binding's HMAC key is sealed.
2. **Support staff** (first run): registration's `create-admin` for one admin and `create-assurer` for
   two founding Assurers, who are not admins (one assurance gives at most 35 points and Assured needs
   50, so a newcomer needs two).
   Their generated passwords are kept in `<state>/system/accounts.json` (mode 0600).
3. **Services**: registration (8081), domain_verify (8082), signer status (8083), signer issuing (8084),
   notifier (8085), three remote validation perspectives (8086-8088) and ACME (8089, directory at
   http://127.0.0.1:8089/directory), detached, logs in
   `<state>/logs/<name>.log`, each awaited on `/readyz`.
   A service whose code changed since it was started is restarted; one that runs is left alone.

Second runs find the CA, the accounts and the data and only (re)start what is not running.

Why the certificates name `http://pki.example.net`: the signer lints every certificate with pkilint
before signing, and the CA/B Forum profiles refuse internal names such as 127.0.0.1 in CRL and
OCSP URLs. The status endpoints really listen on 127.0.0.1:8083; local clients are pointed there
explicitly (`openssl ocsp -url http://127.0.0.1:8083/ocsp/class1`, `curl .../class1.crl`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack import dns_server, endpoints, paths, process
from devstack.endpoints import HOST
from devstack.errors import StackError

Say = Callable[[str], None]

ROOT = paths.PACKAGE_DIR.parent
"""The checkout: services run from here with it on PYTHONPATH."""

PUBLIC_PKI_URL = "http://pki.example.net"
"""Base URL written into CRL distribution points and AIA (see the module docstring for why)."""

CA_ALGORITHM = "p256"
"""P-256: key generation and every signature (certificates, CRLs, each OCSP answer) take
microseconds to a millisecond, where RSA 4096 takes seconds to generate and ~10 ms to sign; every
client used here (OpenSSL 3, Python ssl, browsers) accepts it."""

GROUP_PREFIX = "devstack-system."
"""Prefix of the system's consumer group ids (see _base_env)."""

ADMIN_EMAIL = "support@cacert.example"
ASSURER_EMAILS = ("assurer1@cacert.example", "assurer2@cacert.example")
READY_TIMEOUT = 90.0


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    name: str
    """pid and log file name."""
    title: str
    args: tuple[str, ...]
    """argv after the interpreter."""
    port_var: str
    default_port: int
    code: tuple[str, ...]
    """Source directories whose change means the running process is stale."""

    @property
    def port(self) -> int:
        return endpoints._port(self.port_var, self.default_port)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("registration", "registration (member API)", ("-m", "services.registration"),
                "CACERT_STACK_REGISTRATION_PORT", 8081, ("services/registration", "shared")),
    ServiceSpec("domain_verify", "domain_verify (confirm links)", ("-m", "services.domain_verify"),
                "CACERT_STACK_DOMAIN_VERIFY_PORT", 8082, ("services/domain_verify", "shared")),
    ServiceSpec("signer-status", "signer status (CRL, OCSP)", ("-m", "services.signer", "status"),
                "CACERT_STACK_SIGNER_STATUS_PORT", 8083, ("services/signer", "shared")),
    ServiceSpec("signer-issue", "signer issuing", ("-m", "services.signer", "issuing"),
                "CACERT_STACK_SIGNER_ISSUE_PORT", 8084, ("services/signer", "shared")),
    ServiceSpec("notifier", "notifier (mail)", ("-m", "services.notifier"),
                "CACERT_STACK_NOTIFIER_PORT", 8085, ("services/notifier", "shared")),
    # Three remote network perspectives (BR 3.2.2.9): domain_verify in perspective mode. Locally they
    # share the one validating resolver (production gives each its own, in its own region), except that
    # perspective-c sends its queries from 127.0.0.3, which the resolver answers from the view
    # `perspective-split`: tests put a different answer there to make one perspective disagree.
    ServiceSpec("perspective-a", "domain_verify perspective a", ("-m", "services.domain_verify"),
                "CACERT_STACK_PERSPECTIVE_A_PORT", 8086, ("services/domain_verify", "shared")),
    ServiceSpec("perspective-b", "domain_verify perspective b", ("-m", "services.domain_verify"),
                "CACERT_STACK_PERSPECTIVE_B_PORT", 8087, ("services/domain_verify", "shared")),
    ServiceSpec("perspective-c", "domain_verify perspective c", ("-m", "services.domain_verify"),
                "CACERT_STACK_PERSPECTIVE_C_PORT", 8088, ("services/domain_verify", "shared")),
    ServiceSpec("acme", "acme (RFC 8555 directory)", ("-m", "services.acme"),
                "CACERT_STACK_ACME_PORT", 8089, ("services/acme", "shared")),
)  # fmt: skip
PERSPECTIVES = tuple(spec.name for spec in SERVICES if spec.name.startswith("perspective-"))
SPLIT_VIEW_SOURCE = dns_server.SPLIT_VIEW_SOURCE
# The website and http-01 checks of the local system fetch from this port instead of 80 (a test or the
# demo serves the files there); production keeps 80.
VALIDATION_HTTP_PORT = 5002
BY_NAME = {spec.name: spec for spec in SERVICES}


# -- files in the state dir -----------------------------------------------------------------------


def system_dir() -> Path:
    return paths.state_dir() / "system"


def ca_dir() -> Path:
    return system_dir() / "ca"


def root_dir() -> Path:
    """The roots' keys (`init-ca` writes them here): no service is given this directory, which stands in for
    the offline storage of a real deployment (BR 6.1.7)."""
    return system_dir() / "ca-roots"


def passphrase_file() -> Path:
    return system_dir() / "ca-passphrase"


def ocsp_passphrase_file() -> Path:
    """The OCSP signers' keys' passphrase: the only one the status signer gets."""
    return system_dir() / "ocsp-passphrase"


def accounts_file() -> Path:
    return system_dir() / "accounts.json"


def ra_key_file() -> Path:
    return system_dir() / "ra-signing-key.pem"


def ra_public_key_file() -> Path:
    return system_dir() / "ra-public-keys.pem"


def notifier_key_file() -> Path:
    return system_dir() / "notifier-sealing-key.pem"


def mail_sealing_public_key_file() -> Path:
    return system_dir() / "mail-sealing-public-key.pem"


def acme_key_file() -> Path:
    return system_dir() / "acme-sealing-key.pem"


def acme_sealing_public_key_file() -> Path:
    return system_dir() / "acme-sealing-public-key.pem"


def _write_secret(path: Path, text: str) -> None:
    """Create `path` with mode 0600 from the start (never world-readable, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.replace(path)


def _passphrase() -> Path:
    path = passphrase_file()
    if not path.exists():
        _write_secret(path, secrets.token_urlsafe(32))
    ocsp = ocsp_passphrase_file()
    if not ocsp.exists():
        # A CA made before the OCSP signers had a passphrase of their own has them under the CA's.
        made_before = (ca_dir() / "class1.crt.pem").exists()
        _write_secret(ocsp, path.read_text().strip() if made_before else secrets.token_urlsafe(32))
    return path


def ra_keys() -> None:
    """The RA's Ed25519 key pair, made once: registration signs approvals with it, the signer trusts the
    public half (shared/approvals.py)."""
    if ra_key_file().exists() and ra_public_key_file().exists():
        return
    from shared.approvals import ApprovalSigner

    ra = ApprovalSigner.generate()
    _write_secret(ra_key_file(), ra.private_pem())
    ra_public_key_file().write_text(ra.public_pem())


def mail_sealing_keys() -> None:
    """The notifier's X25519 key pair, made once: registration and domain_verify seal the links in mail
    commands to the public half, the notifier opens them with the private one (shared/sealed_mail.py)."""
    if notifier_key_file().exists() and mail_sealing_public_key_file().exists():
        return
    from shared.sealed_mail import MailOpener

    notifier = MailOpener.generate()
    _write_secret(notifier_key_file(), notifier.private_pem())
    mail_sealing_public_key_file().write_text(notifier.public_pem())


def acme_sealing_keys() -> None:
    """The ACME service's X25519 key pair, made once: registration seals each binding's HMAC key to the
    public half, the ACME service opens it with the private one (shared/acme_binding.py)."""
    if acme_key_file().exists() and acme_sealing_public_key_file().exists():
        return
    from shared.acme_binding import BindingOpener

    acme = BindingOpener.generate()
    _write_secret(acme_key_file(), acme.private_pem())
    acme_sealing_public_key_file().write_text(acme.public_pem())


def accounts() -> dict[str, Any]:
    """The seeded support accounts: {"admin": {...}, "assurers": [{email, password, name}, ...]}."""
    try:
        return dict(json.loads(accounts_file().read_text()))
    except FileNotFoundError:
        raise StackError(f"no seeded accounts yet ({accounts_file()}): run `./dev up` first") from None


# -- environment ----------------------------------------------------------------------------------


def urls() -> dict[str, str]:
    """Where everything listens, for the table, the demo and the tests."""
    ep = endpoints.current()
    status = BY_NAME["signer-status"].url
    return {
        "api": BY_NAME["registration"].url,
        "confirm": BY_NAME["domain_verify"].url,
        "status": status,
        "ocsp_class1": f"{status}/ocsp/class1",
        "ocsp_class3": f"{status}/ocsp/class3",
        "crl_class1": f"{status}/class1.crl",
        "crl_class3": f"{status}/class3.crl",
        "class1_crt": f"{status}/class1.crt",
        "class3_crt": f"{status}/class3.crt",
        "class3_root_crt": f"{status}/class3-root.crt",
        # the issuing CAs, which sign the leaves (their OCSP and CRL are what the leaves point at)
        "ocsp_class1_issuing": f"{status}/ocsp/class1-issuing",
        "ocsp_class3_issuing": f"{status}/ocsp/class3-issuing",
        "crl_class1_issuing": f"{status}/class1-issuing.crl",
        "crl_class3_issuing": f"{status}/class3-issuing.crl",
        "class1_issuing_crt": f"{status}/class1-issuing.crt",
        "class3_issuing_crt": f"{status}/class3-issuing.crt",
        "signer_issue": BY_NAME["signer-issue"].url,
        "notifier": BY_NAME["notifier"].url,
        "acme_directory": BY_NAME["acme"].url + "/directory",
        "mailbox": ep.mailbox_url,
        "smtp": f"smtp://{HOST}:{ep.smtp}",
        "kafka": ep.kafka_bootstrap,
        "mongodb": ep.mongo_url,
        "dns_resolver": ep.dns_resolver,
        "dns_auth": ep.dns_auth_server,
        "pki_public_base": PUBLIC_PKI_URL,
    }


def _base_env() -> dict[str, str]:
    # The services get exactly the settings below: a CACERT_* left in the caller's shell (say, a
    # test's database name) must not leak into the system. CACERT_STACK_* only moves ports.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACERT_") or k.startswith("CACERT_STACK_")}
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update(endpoints.current().env())
    env.update(PYTHONPATH=pythonpath, PYTHONUNBUFFERED="1", CACERT_LOG_LEVEL="INFO", CACERT_HTTP_HOST=HOST)
    # Consumer groups are broker-wide: without a prefix the system's `signer` group would be the same
    # group as every test's in-process signer on this shared broker, and each test joining or leaving
    # it would stall the system's consumers (and theirs) in a rebalance.
    env["CACERT_KAFKA_GROUP_PREFIX"] = GROUP_PREFIX
    return env


def _signer_env(*, ca_passphrase: bool = True) -> dict[str, str]:
    """Both signers' settings; the CA passphrase only where CA keys are used (not the status signer)."""
    env = {
        "CACERT_CA_DIR": str(ca_dir()),
        "CACERT_OCSP_SIGNER_PASSPHRASE_FILE": str(ocsp_passphrase_file()),
        "CACERT_CA_ALGORITHM": CA_ALGORITHM,
        "CACERT_SIGNER_PUBLIC_URL": PUBLIC_PKI_URL,
        "CACERT_SIGNER_RA_PUBLIC_KEYS_FILE": str(ra_public_key_file()),
    }
    if ca_passphrase:
        env["CACERT_CA_PASSPHRASE_FILE"] = str(passphrase_file())
    return env


def _validation_env() -> dict[str, str]:
    """What the primary and the perspectives share locally: loopback may be fetched, on a test port."""
    return {"CACERT_DOMAIN_VERIFY_HTTP_PORT": str(VALIDATION_HTTP_PORT),
            "CACERT_DOMAIN_VERIFY_HTTP_ALLOW_PRIVATE": "127.0.0.0/8",
            "CACERT_DOMAIN_VERIFY_PERSPECTIVE_TIMEOUT_SECONDS": "15"}


def service_env(spec: ServiceSpec) -> dict[str, str]:
    env = _base_env()
    env["CACERT_HTTP_PORT"] = str(spec.port)
    if spec.name == "registration":
        env["CACERT_PUBLIC_URL"] = spec.url
        env["CACERT_RA_SIGNING_KEY_FILE"] = str(ra_key_file())
        env["CACERT_MAIL_SEALING_PUBLIC_KEY_FILE"] = str(mail_sealing_public_key_file())
        env["CACERT_ACME_SEALING_PUBLIC_KEY_FILE"] = str(acme_sealing_public_key_file())
        env["CACERT_ACME_DIRECTORY_URL"] = BY_NAME["acme"].url + "/directory"
        # Everyone reaches a local system from 127.0.0.1, so the per-client limits would count every
        # demo and test run against one client; the per-address and mail limits stay as shipped.
        env.update(CACERT_RATE_SIGNUP_PER_CLIENT="10000", CACERT_RATE_LOGIN_PER_CLIENT="10000",
                   CACERT_RATE_LOGIN_PER_ACCOUNT="1000")  # fmt: skip
        # Every demo, e2e test and benchmark asks for names under example.org: the issuance limits of a
        # production RA would stop the local system after a few runs.
        env.update(CACERT_LIMIT_REQUESTS_PER_MEMBER="100000", CACERT_LIMIT_REQUESTS_PER_DOMAIN="1000000",
                   CACERT_LIMIT_DOMAIN_CLAIMS_PER_MEMBER="10000")  # fmt: skip
    elif spec.name == "domain_verify":
        env["CACERT_DOMAIN_VERIFY_PUBLIC_URL"] = spec.url
        env["CACERT_DOMAIN_VERIFY_PERSPECTIVES"] = ",".join(PERSPECTIVES)
        env["CACERT_MAIL_SEALING_PUBLIC_KEY_FILE"] = str(mail_sealing_public_key_file())
        env.update(_validation_env())
    elif spec.name in PERSPECTIVES:
        env.update(_validation_env(), CACERT_DOMAIN_VERIFY_MODE="perspective",
                   CACERT_DOMAIN_VERIFY_PERSPECTIVE_NAME=spec.name)
        if spec.name == "perspective-c":
            env["CACERT_DNS_SOURCE_ADDRESS"] = SPLIT_VIEW_SOURCE
    elif spec.name.startswith("signer"):
        env.update(_signer_env(ca_passphrase=spec.name != "signer-status"))
    elif spec.name == "notifier":
        env["CACERT_NOTIFIER_ACCOUNT_URL"] = BY_NAME["registration"].url
        env["CACERT_NOTIFIER_SEALING_KEY_FILE"] = str(notifier_key_file())
    elif spec.name == "acme":
        registration = BY_NAME["registration"].url
        env.update(CACERT_ACME_PUBLIC_URL=spec.url, CACERT_ACME_SEALING_KEY_FILE=str(acme_key_file()),
                   CACERT_ACME_TERMS_URL=registration + "/", CACERT_ACME_WEBSITE_URL=registration + "/",
                   # every local test and benchmark orders names under a few test domains
                   CACERT_ACME_ORDERS_PER_ACCOUNT_PER_HOUR="100000", CACERT_ACME_ORDERS_PER_DOMAIN_PER_HOUR="100000")
    return env


def code_fingerprint(spec: ServiceSpec) -> str:
    """Digest of the service's settings and source files (names, sizes, mtimes): changes when either does."""
    digest = hashlib.sha256()
    settings = {k: v for k, v in service_env(spec).items() if k.startswith("CACERT_")}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for directory in spec.code:
        for path in sorted((ROOT / directory).rglob("*")):
            if path.suffix in (".py", ".json", ".j2", ".html", ".css", ".js") and "__pycache__" not in path.parts:
                stat = path.stat()
                digest.update(f"{path.relative_to(ROOT)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _fingerprint_file(spec: ServiceSpec) -> Path:
    return paths.run_dir() / f"{spec.name}.code"


# -- first-run setup ------------------------------------------------------------------------------


def _run(argv: list[str], env: dict[str, str], what: str, *, stdin: str | None = None) -> str:
    result = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, input=stdin, capture_output=True,
                            text=True, timeout=300, check=False)  # fmt: skip
    if result.returncode != 0:
        raise StackError(f"{what} failed (exit {result.returncode}):\n{result.stdout}{result.stderr}".rstrip())
    return result.stdout.strip()


def init_ca(say: Say) -> None:
    """Create the CA hierarchy unless it exists (init-ca --if-missing)."""
    existed = (ca_dir() / "class1.crt.pem").exists()
    twin_existed = (ca_dir() / "class3-root.crt.pem").exists()
    env = {**_base_env(), **_signer_env(), "CACERT_CA_ROOT_DIR": str(root_dir())}
    _passphrase()
    ra_keys()
    mail_sealing_keys()
    acme_sealing_keys()
    started = time.monotonic()
    out = _run(["-m", "services.signer", "init-ca", "--if-missing"], env, "services.signer init-ca")
    if not existed:
        say(f"ca     created ({CA_ALGORITHM}) in {time.monotonic() - started:.1f}s: {ca_dir()}")
        for line in out.splitlines():
            say(f"       {line}")
    elif not twin_existed:  # a CA directory made before the self-signed Class 3 root: init-ca added it
        say(f"ca     added the self-signed Class 3 root: {ca_dir() / 'class3-root.crt.pem'}")


def seed_accounts(say: Say) -> None:
    """Create the admin and the two founding Assurers (not admins) once: registration's create-admin and
    create-assurer. Accounts seeded before staff needed a second factor get one (the command promotes an
    existing account and keeps its password)."""
    if accounts_file().exists():
        seeded = json.loads(accounts_file().read_text())
        people = [seeded["admin"], *seeded["assurers"]]
        if all(person.get("totp_secret") for person in people):
            return
        for person in people:
            person.setdefault("role", "admin" if person is people[0] else "assurer")
    else:
        people = [
            {"email": ADMIN_EMAIL, "name": "CA Support", "role": "admin", "password": secrets.token_urlsafe(18)},
            *({"email": email, "name": f"Founding Assurer {n}", "role": "assurer",
               "password": secrets.token_urlsafe(18)} for n, email in enumerate(ASSURER_EMAILS, 1)),
        ]  # fmt: skip
    env = _base_env()
    # One after the other: concurrent first runs race to create the same indexes, which FerretDB v1
    # answers by dropping the connection.
    for person in (p for p in people if not p.get("totp_secret")):
        argv = [sys.executable, "-m", "services.registration", f"create-{person['role']}", "--email",
                person["email"], "--name", person["name"]]  # fmt: skip
        proc = subprocess.run(
            argv, cwd=ROOT, env={**env, "CACERT_ADMIN_PASSWORD": person["password"]},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise StackError(f"create-{person['role']} {person['email']} failed (exit {proc.returncode}):\n"
                             f"{proc.stdout}")
        # staff act only with two-factor authentication on: keep its secret with the password (0600)
        secret = re.search(r"^two-factor secret \(add it to an authenticator app\): (\S+)$", proc.stdout, re.M)
        if secret is None:
            raise StackError(f"create-{person['role']} printed no two-factor secret:\n{proc.stdout}")
        person["totp_secret"] = secret.group(1)
        say(f"seed   {proc.stdout.strip().splitlines()[0]}")
    data = {"admin": people[0], "assurers": people[1:]}
    _write_secret(accounts_file(), json.dumps(data, indent=2) + "\n")


# -- services -------------------------------------------------------------------------------------


def ready(spec: ServiceSpec, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{spec.url}/readyz", timeout=timeout) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _start(spec: ServiceSpec) -> int:
    pid = process.spawn(spec.name, [sys.executable, *spec.args], cwd=ROOT, env=service_env(spec))
    _fingerprint_file(spec).write_text(code_fingerprint(spec))
    return pid


def _wait_all(pending: dict[str, int], started: float) -> dict[str, float]:
    """Wait for every started service's /readyz; returns seconds to ready per name."""
    took: dict[str, float] = {}
    deadline = time.monotonic() + READY_TIMEOUT
    while pending:
        for name, pid in list(pending.items()):
            spec = BY_NAME[name]
            if ready(spec, timeout=1.0):
                took[name] = time.monotonic() - started
                del pending[name]
            elif not process.alive(pid):
                paths.pid_file(name).unlink(missing_ok=True)
                raise StackError(f"{spec.title} exited during start-up; its log {paths.log_file(name)} ends with:\n"
                                 + process.log_tail(name))  # fmt: skip
        if pending and time.monotonic() > deadline:
            names = ", ".join(pending)
            raise StackError(f"{names} not ready within {READY_TIMEOUT:.0f}s; see {paths.logs_dir()}/<name>.log:\n"
                             + "\n".join(process.log_tail(n, 10) for n in pending))  # fmt: skip
        time.sleep(0.2)
    return took


def _port_taken(spec: ServiceSpec) -> StackError:
    return StackError(
        f"{HOST}:{spec.port} (for {spec.title}) is in use by a process devstack did not start; "
        f"stop it, or move the port with {spec.port_var}=..."
    )


def start_services(say: Say) -> None:
    """Start (or restart when their code or settings changed) the services; wait until each is ready."""
    pending: dict[str, int] = {}
    outcome: dict[str, str] = {}
    for spec in SERVICES:
        pid = process.running_pid(spec.name)
        if pid is not None:
            recorded = _fingerprint_file(spec).read_text() if _fingerprint_file(spec).exists() else ""
            if recorded == code_fingerprint(spec):
                outcome[spec.name] = f"already running (pid {pid})"
                continue
            process.terminate(spec.name, timeout=20.0)
            outcome[spec.name] = "restarted (code or settings changed)"
        if process.port_open(spec.port):
            raise _port_taken(spec)
    started = time.monotonic()
    for spec in SERVICES:
        if spec.name not in outcome or outcome[spec.name].startswith("restarted"):
            pending[spec.name] = _start(spec)
    try:
        took = _wait_all(dict(pending), started)
    except StackError:
        for name in pending:
            process.terminate(name, timeout=10.0)
        raise
    for spec in SERVICES:
        if spec.name in pending:
            verb = outcome.get(spec.name, "started")
            outcome[spec.name] = f"{verb} (pid {pending[spec.name]}) ready in {took[spec.name]:.1f}s"
        say(f"{spec.name:<14} {outcome[spec.name]:<42} {spec.url}")


def check_ports(say: Say) -> None:
    """Fail early (before any setup) when a service port is taken by something that is not ours."""
    for spec in SERVICES:
        if process.running_pid(spec.name) is None and process.port_open(spec.port):
            raise _port_taken(spec)


def up(say: Say) -> dict[str, str]:
    """Infrastructure, then CA + accounts on first run, then the services; returns `urls()`.

    Idempotent and serialised with every other devstack caller by the stack lock, so concurrent
    test sessions can all call it: the first starts what is missing, the others reuse it.
    """
    from devstack import stack

    with process.stack_lock():
        check_ports(say)
        stack.up(None, say=say)
        init_ca(say)
        seed_accounts(say)
        start_services(say)
    return urls()


def down(say: Say) -> None:
    """Stop the services (the infrastructure is stack.down's job)."""
    with process.stack_lock():
        for spec in reversed(SERVICES):
            stopped = process.terminate(spec.name, timeout=20.0)
            _fingerprint_file(spec).unlink(missing_ok=True)
            if stopped:
                say(f"{spec.name:<14} stopped")


@dataclasses.dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    ready: bool
    url: str

    @property
    def state(self) -> str:
        if self.pid is None:
            return "stopped"
        return "running" if self.ready else "unhealthy"


def status() -> list[ServiceStatus]:
    rows = []
    for spec in SERVICES:
        pid = process.running_pid(spec.name)
        rows.append(ServiceStatus(spec.name, pid, pid is not None and ready(spec), spec.url))
    return rows


def table() -> str:
    """What `up --system` prints at the end: where everything listens and how to stop it."""
    u = urls()
    logs = paths.logs_dir()
    rows = [
        ("member API (registration)", u["api"], f"`cacert --api {u['api']} ...`, {u['api']}/openapi.json"),
        ("confirm links (domain_verify)", u["confirm"] + "/confirm#token=<token>", "opened from the mailed link"),
        ("OCSP responder", u["ocsp_class1_issuing"],
         f"and {u['ocsp_class3_issuing']}; the roots' {u['ocsp_class1']}, {u['ocsp_class3']} (or {u['status']}/ocsp)"),
        ("CRLs", u["status"] + "/class1-issuing/<n>.crl",
         f"and {u['status']}/class3-issuing/<n>.crl: the shard in each certificate's CDP; "
         f"the roots' {u['crl_class1']}, {u['crl_class3']}"),
        ("CA certificates (DER)", u["class1_crt"],
         f"and {u['class3_crt']}; the self-signed Class 3 root {u['class3_root_crt']}; "
         f"the issuing CAs {u['class1_issuing_crt']}, {u['class3_issuing_crt']}"),
        ("in certificates", f"{PUBLIC_PKI_URL}/...", "same paths; point clients at the local URLs above"),
        ("ACME directory (RFC 8555)", u["acme_directory"],
         "certbot --server <this> --eab-kid/--eab-hmac-key from `cacert acme-binding create`"),
        ("signer issuing (health)", u["signer_issue"] + "/readyz", "consumes Kafka; no public traffic"),
        ("notifier (health)", u["notifier"] + "/readyz", "sends all mail"),
        ("mailbox (read the mail)", u["mailbox"] + "/api/messages", f"SMTP {u['smtp']}"),
        ("Kafka", u["kafka"], f"topics cacert.*, consumer groups {GROUP_PREFIX}*"),
        ("MongoDB (FerretDB)", u["mongodb"], "databases registration, domain_verify, signer, notifier, acme"),
        ("DNS resolver (Unbound)", u["dns_resolver"], f"validating; authoritative (Knot) {u['dns_auth']}, "
         "updates with TSIG cacert-test: `python -m devstack env`"),
        ("logs", str(logs), "<name>.log; `python -m devstack logs kafka`"),
        ("CA files", str(ca_dir()), f"passphrase in {passphrase_file()} (0600)"),
        ("root keys (offline)", str(root_dir()), "no service reads it; `python -m services.signer arl|add-issuing`"),
        ("support accounts", str(accounts_file()), "admin + 2 founding Assurers (passwords, 0600)"),
    ]
    width = max(len(r[0]) for r in rows)
    uwidth = max(len(r[1]) for r in rows)
    lines = [f"  {a:<{width}}  {b:<{uwidth}}  {c}" for a, b, c in rows]
    return "\n".join(
        ["", "CAcert community CA is up:", *lines, "",
         "Try it: ./dev demo --out /tmp/cacert-demo   (walkthrough: docs/walkthrough.md)",
         "Stop:   ./dev down            (./dev down --wipe also deletes the data and the CA)", ""]
    )  # fmt: skip
