"""`python -m services.signer init-ca` / `renew-ocsp`: a bad setting stops with one line naming it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def signer(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CACERT_")}
    return subprocess.run([sys.executable, "-m", "services.signer", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("variable", "value"), [
    ("CACERT_CA_ALGORITHM", "ed448"),
    ("CACERT_SIGNER_PUBLIC_URL", "https://pki.example.org"),
    ("CACERT_CA_PASSPHRASE", ""),
])
def test_init_ca_with_a_bad_setting_stops_with_one_line_naming_it(tmp_path: Path, variable: str,
                                                                  value: str) -> None:
    env = {"CACERT_CA_DIR": str(tmp_path / "ca"), "CACERT_CA_PASSPHRASE": "a passphrase", variable: value}
    result = signer("init-ca", env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0], result.stderr
    assert not (tmp_path / "ca").exists(), "nothing is created when a setting is bad"


def test_init_ca_creates_the_hierarchy_and_renew_ocsp_needs_no_kafka_or_mongodb(tmp_path: Path) -> None:
    env = {"CACERT_CA_DIR": str(tmp_path / "ca"), "CACERT_CA_PASSPHRASE": "a passphrase",
           "CACERT_CA_ALGORITHM": "p256"}
    created = signer("init-ca", env=env)
    assert created.returncode == 0, created.stderr
    assert "class3: " in created.stdout and "(p256)" in created.stdout
    before = (tmp_path / "ca" / "ocsp-class3.crt.pem").read_bytes()
    renewed = signer("renew-ocsp", env=env)
    assert renewed.returncode == 0, renewed.stderr
    assert (tmp_path / "ca" / "ocsp-class3.crt.pem").read_bytes() != before


def test_renew_ocsp_with_the_wrong_passphrase_is_refused_without_a_traceback(tmp_path: Path) -> None:
    env = {"CACERT_CA_DIR": str(tmp_path / "ca"), "CACERT_CA_PASSPHRASE": "a passphrase",
           "CACERT_CA_ALGORITHM": "p256"}
    assert signer("init-ca", env=env).returncode == 0
    result = signer("renew-ocsp", env={**env, "CACERT_CA_PASSPHRASE": "not it"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "renew-ocsp refused" in result.stderr
    assert "not it" not in result.stderr
