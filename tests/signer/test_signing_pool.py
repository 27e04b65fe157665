"""Signing in worker processes: what a pool decides, and what happens when a worker dies."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from services.signer.ca.crl import DEFAULT_SHARDS, crl_shard_of
from services.signer.settings import SignerSettings
from services.signer.signing import SigningConfig, SigningPool
from shared import outbox
from shared.config import ConfigError, load
from shared.events import isoformat, utcnow
from shared.kafka import TransientError

PUBLIC_URL = "http://pki.example.net"


def payload(csr_pem: str, name: str) -> dict[str, Any]:
    return {
        "request_id": str(uuid.uuid4()), "member_id": "member-1", "cert_class": 3, "profile": "server",
        "csr_pem": csr_pem, "subject": {"CN": name}, "dns_names": [name], "ip_addresses": [], "emails": [],
        "validity_days": 90, "approved_at": isoformat(utcnow()),
    }


@pytest.fixture
def config(ca_dir: Path, passphrase: bytes) -> SigningConfig:
    return SigningConfig(ca_dir=ca_dir, passphrase=passphrase, public_base_url=PUBLIC_URL,
                         lint_profiles=frozenset({"server"}), lint=True, log_level="WARNING")


async def test_workers_sign_in_processes_of_their_own(config: SigningConfig,
                                                      make_csr: Callable[..., str]) -> None:
    pool = SigningPool(config, workers=2)
    await pool.start()
    try:
        requests = [(str(uuid.uuid4()), payload(make_csr(ec.generate_private_key(ec.SECP256R1())), f"h{i}.example.org"))
                    for i in range(3)]
        outcomes = await pool.decide_all(requests, utcnow())
        assert [o["_id"] for o in outcomes] == [p["request_id"] for _, p in requests]
        for outcome, (_, request) in zip(outcomes, requests, strict=True):
            assert outcome["kind"] == "issued", outcome
            cert = x509.load_der_x509_certificate(outcome["der"])
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert san.get_values_for_type(x509.DNSName) == request["dns_names"]
            assert outbox.stored_event(outcome["event"]).data["serial"] == outcome["serial"]
            # Its CRL shard, decided from the serial, is in its CRL Distribution Points and in its outcome
            # (then in its status), so a revocation rebuilds that shard's CRL alone.
            shard = crl_shard_of(cert.serial_number, DEFAULT_SHARDS)
            assert outcome["crl_shard"] == shard
            cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            assert [[n.value for n in dp.full_name or []] for dp in cdp] == [[f"{PUBLIC_URL}/class3/{shard}.crl"]]
        assert os.getpid() not in pool.worker_pids() and len(pool.worker_pids()) == 2
    finally:
        pool.close()


async def test_a_killed_worker_fails_the_batch_transiently_and_the_next_batch_is_signed(
        config: SigningConfig, make_csr: Callable[..., str]) -> None:
    pool = SigningPool(config, workers=1)
    await pool.start()
    try:
        (victim,) = pool.worker_pids()
        os.kill(victim, signal.SIGKILL)  # out of memory, say: nothing it held was stored or published
        request = [(str(uuid.uuid4()), payload(make_csr(ec.generate_private_key(ec.SECP256R1())), "k.example.org"))]
        with pytest.raises(TransientError):  # the consumer retries the batch; it is not dead-lettered
            await pool.decide_all(request, utcnow())
        (outcome,) = await pool.decide_all(request, utcnow())
        assert outcome["kind"] == "issued" and victim not in pool.worker_pids()
    finally:
        pool.close()


def test_signing_workers_setting_is_checked_at_start_up(ca_dir: Path) -> None:
    environ = {"CACERT_CA_DIR": str(ca_dir), "CACERT_CA_PASSPHRASE": "x", "CACERT_KAFKA_BOOTSTRAP": "127.0.0.1:9",
               "CACERT_MONGO_URL": "mongodb://127.0.0.1:9", "CACERT_MONGO_DATABASE": "signer"}
    with pytest.raises(ConfigError, match="CACERT_SIGNER_WORKERS"):
        load(SignerSettings, dict(environ, CACERT_SIGNER_WORKERS="0"))
    assert load(SignerSettings, dict(environ, CACERT_SIGNER_WORKERS="3")).signing_workers == 3


def test_workers_do_not_outlive_a_killed_signer(tmp_path: Path, ca_dir: Path, passphrase: bytes) -> None:
    """A SIGKILLed signer (OOM killer, kubelet) must not leave orphaned processes holding the CA keys."""
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from services.signer.signing import SigningConfig, SigningPool\n"
        "async def main():\n"
        f"    pool = SigningPool(SigningConfig(Path({str(ca_dir)!r}), {passphrase!r}, 'http://x.example', "
        "frozenset(), False, 'WARNING'), workers=2)\n"
        "    await pool.start()\n"
        "    print('PIDS', *pool.worker_pids(), flush=True)\n"
        "    await asyncio.sleep(600)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n")
    root = str(Path(__file__).resolve().parents[2])
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=root,
                              env=dict(os.environ, PYTHONPATH=root))
    try:
        assert parent.stdout is not None
        line = ""
        while not line.startswith("PIDS"):  # after the pool's own log lines
            line = parent.stdout.readline()
            assert line, "the signer stand-in exited before starting its workers"
        workers = [int(p) for p in line.split()[1:]]
        assert len(workers) == 2
    finally:
        parent.kill()
        parent.wait()

    def alive(pid: int) -> bool:  # a zombie (exited, not yet reaped by init) counts as gone
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in workers):
        time.sleep(0.2)
    assert not [p for p in workers if alive(p)], "signing workers outlived their signer"


def test_an_rsa_ca_signs_in_overlap_with_the_lint_and_keeps_every_outcome_in_request_order(
        tmp_path: Path, make_csr: Callable[..., str], config: SigningConfig) -> None:
    """Issue 21 item 4: with an RSA CA key the signatures run on a thread beside the lint. A refused
    request between signed ones keeps its place, and each certificate is the one its request asked for."""
    from services.signer.ca import ceremony
    from services.signer.ca.ceremony import HierarchyNames
    from services.signer.ca.urls import CAUrls

    ca_dir = tmp_path / "rsa-ca"
    ceremony.bootstrap(ca_dir, b"rsa passphrase", "rsa2048", class1_urls=CAUrls.under(PUBLIC_URL, "class1"),
                       names=HierarchyNames(country="AU"))
    signatory = SigningConfig(ca_dir=ca_dir, passphrase=b"rsa passphrase", public_base_url=PUBLIC_URL,
                              lint_profiles=frozenset({"server"}), lint=True).signatory()
    assert signatory._overlap is not None
    names = ["a.example.org", "intranet.local", "b.example.org", "c.example.org"]  # .local: the lint refuses it
    requests = [(str(uuid.uuid4()), payload(make_csr(ec.generate_private_key(ec.SECP256R1())), n)) for n in names]
    outcomes = signatory.decide_all(requests, utcnow())
    assert [o["_id"] for o in outcomes] == [p["request_id"] for _, p in requests]
    assert [o["kind"] for o in outcomes] == ["issued", "rejected", "issued", "issued"]
    assert outcomes[1]["reason"] == "lint"
    for outcome, name in zip(outcomes, names, strict=True):
        if outcome["kind"] == "issued":
            cert = x509.load_der_x509_certificate(outcome["der"])
            assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
                x509.DNSName) == [name]
    # The P-256 CA of the other tests signs in line: a 0.1 ms signature is not worth a thread.
    assert config.signatory()._overlap is None
