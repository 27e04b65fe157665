"""`python -m services.signer init-ca`, `renew-ocsp`, `self-sign-class3`: settings, output, refusals."""

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


def test_self_sign_class3_adds_the_twin_to_an_old_directory_once(tmp_path: Path) -> None:
    """A directory made before the self-signed Class 3 root existed gets it from `self-sign-class3`
    (or from `init-ca --if-missing`, which devstack runs); a second run refuses to overwrite it."""
    env = {"CACERT_CA_DIR": str(tmp_path / "ca"), "CACERT_CA_PASSPHRASE": "a passphrase",
           "CACERT_CA_ALGORITHM": "p256"}
    created = signer("init-ca", env=env)
    assert created.returncode == 0, created.stderr
    assert "class3-root" in created.stdout
    twin = tmp_path / "ca" / "class3-root.crt.pem"
    assert twin.exists()

    twin.unlink()  # the layout before the twin existed
    added = signer("self-sign-class3", env=env)
    assert added.returncode == 0, added.stderr
    assert "class3-root.crt.pem" in added.stdout and "SHA-256" in added.stdout
    first = twin.read_bytes()
    again = signer("self-sign-class3", env=env)
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr and "Traceback" not in again.stderr
    assert twin.read_bytes() == first

    twin.unlink()
    migrated = signer("init-ca", "--if-missing", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert twin.exists() and "class3-root.crt.pem" in migrated.stdout
    unchanged = twin.read_bytes()
    assert "nothing to do" in signer("init-ca", "--if-missing", env=env).stdout
    assert twin.read_bytes() == unchanged


def test_self_sign_class3_with_the_wrong_passphrase_is_refused(tmp_path: Path) -> None:
    env = {"CACERT_CA_DIR": str(tmp_path / "ca"), "CACERT_CA_PASSPHRASE": "a passphrase",
           "CACERT_CA_ALGORITHM": "p256"}
    assert signer("init-ca", env=env).returncode == 0
    (tmp_path / "ca" / "class3-root.crt.pem").unlink()
    result = signer("self-sign-class3", env={**env, "CACERT_CA_PASSPHRASE": "not it"})
    assert result.returncode == 1 and "self-sign-class3 refused" in result.stderr
    assert "Traceback" not in result.stderr and "not it" not in result.stderr
    assert not (tmp_path / "ca" / "class3-root.crt.pem").exists()
