"""Fixtures for the signer's crypto core: one P-256 hierarchy per session (fast), CSR factories,
an issuing helper and thin wrappers around the openssl and pkilint command lines.

Key backends: the issuance, CRL and OCSP test modules (``KEY_BACKEND_MODULES``) run every test that uses the
hierarchy twice, once with the CA keys in their encrypted files and once with them on a SoftHSM2 token
(``softhsm``, tests/conftest.py: a token directory of the session's own, never a system token)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from services.signer.ca import ceremony, hierarchy, hsm, issuance, lint, profiles
from services.signer.ca.ceremony import HierarchyNames
from services.signer.ca.hierarchy import CertClass, Hierarchy, OCSPSigner
from services.signer.ca.urls import CAUrls

PASSPHRASE = b"correct horse battery staple"
PKI_BASE = "http://pki.cacert-community.org"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def urls_for(cert_class: int) -> CAUrls:
    return CAUrls.under(PKI_BASE, CertClass(cert_class).label)


def pem(obj: x509.Certificate) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="session")
def passphrase() -> bytes:
    return PASSPHRASE


@pytest.fixture(scope="session")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ca")
    ceremony.bootstrap(
        directory,
        PASSPHRASE,
        "p256",
        class1_urls=urls_for(1),
        names=HierarchyNames(country="AU"),
    )
    return directory


KEY_BACKENDS = ("file", "softhsm")
KEY_BACKEND_MODULES = frozenset({"test_signer_issuance", "test_signer_crl", "test_signer_ocsp"})
"""The test modules that run with both key backends (the others keep the file keys: their subject is not
where a key lives, and a second run would only add time)."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "key_backend" in metafunc.fixturenames and metafunc.module.__name__.rsplit(".", 1)[-1] in KEY_BACKEND_MODULES:
        metafunc.parametrize("key_backend", KEY_BACKENDS, indirect=True, scope="session")


@pytest.fixture(scope="session")
def key_backend(request: pytest.FixtureRequest) -> str:
    """Where the hierarchy's keys live: ``file`` (the encrypted key files), or ``softhsm``."""
    return str(getattr(request, "param", "file"))


@pytest.fixture(scope="session")
def softhsm_ca_keys(ca_dir: Path, softhsm: Any) -> hsm.CAKeySource:
    """The session hierarchy's CA keys moved onto a token, as an operator moves file keys into an HSM."""
    references = {}
    for n, cls in enumerate(CertClass, start=1):
        reference = softhsm.reference(softhsm.ca_token, f"{cls.label}-ca")
        hsm.import_private_key(reference, ca_key(ca_dir, cls), bytes([n]))
        references[cls.label] = reference
    return hsm.CAKeySource(references)


def ca_key(directory: Path, cls: CertClass) -> Any:
    from services.signer.ca import keys

    return keys.read_private_key(hierarchy.key_path(directory, cls), PASSPHRASE)


@pytest.fixture(scope="session")
def pki(
    ca_dir: Path, key_backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Hierarchy:
    if key_backend == "file":
        return hierarchy.load_hierarchy(ca_dir, PASSPHRASE)
    key_source: hsm.CAKeySource = request.getfixturevalue("softhsm_ca_keys")
    # A copy of the CA directory without the CA key files: the keys can only come from the token.
    without_keys = tmp_path_factory.mktemp("ca-on-token")
    for path in ca_dir.iterdir():
        if path.name not in {hierarchy.key_path(ca_dir, cls).name for cls in CertClass}:
            shutil.copy2(path, without_keys / path.name)
    loaded = hierarchy.load_hierarchy(without_keys, PASSPHRASE, key_source=key_source)
    assert all(isinstance(ca.signing_key, hsm.HSMECPrivateKey) for ca in loaded.cas.values())
    # The delegated OCSP signers go onto the token as well, so the OCSP tests sign their answers there too.
    # (The service keeps them in software: the issuing mode renews them; docs/decisions.md.)
    softhsm = request.getfixturevalue("softhsm")
    cas = {}
    for n, (label, ca) in enumerate(loaded.cas.items(), start=len(loaded.cas) + 1):
        reference = softhsm.reference(softhsm.ca_token, f"ocsp-{label}")
        hsm.import_private_key(reference, ca.ocsp_signer.private_key, bytes([n]))
        signer = OCSPSigner(ca.ocsp_signer.certificate, reference.open(f"ocsp-{label}"))
        hierarchy.check_ocsp_signer(signer, ca.certificate, f"ocsp-{label}")
        cas[label] = dataclasses.replace(ca, ocsp_signer=signer)
    return dataclasses.replace(loaded, cas=cas)


@pytest.fixture(scope="session")
def linter() -> lint.PreIssuanceLinter:
    return lint.PreIssuanceLinter()


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    """One subscriber key reused where the key itself does not matter."""
    return ec.generate_private_key(ec.SECP256R1())


def csr_pem(
    key: Any, subject: list[tuple[x509.ObjectIdentifier, str]] | None = None, sans: list[str] | None = None
) -> str:
    """A CSR signed by ``key`` (SHA-256), with whatever subject the requester fancies."""
    attrs = [x509.NameAttribute(oid, value) for oid, value in (subject or [(NameOID.COMMON_NAME, "ignored")])]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    digest = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, digest).public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="session")
def make_csr() -> Callable[..., str]:
    return csr_pem


@dataclass
class Issued:
    request: issuance.ApprovedRequest
    certificate: x509.Certificate
    lint_result: lint.LintResult


@pytest.fixture(scope="session")
def issue(pki: Hierarchy, linter: lint.PreIssuanceLinter, ec_key: Any) -> Callable[..., Issued]:
    """Issue like the service will: prepare, lint the throw-away copy, then sign."""

    def _issue(
        cert_class: int,
        profile: str,
        *,
        key: Any = None,
        csr: str | None = None,
        subject: dict[str, str] | None = None,
        dns_names: list[str] | None = None,
        ip_addresses: list[str] | None = None,
        emails: list[str] | None = None,
        validity_days: int = 30,  # under every TLS maximum of the SC-081 schedule (46 days from 2029)
        now: dt.datetime | None = None,
        crl_shard: int | None = None,
    ) -> Issued:
        request = issuance.ApprovedRequest(
            request_id="req-1",
            member_id="member-1",
            cert_class=cert_class,
            profile=profile,
            csr_pem=csr or csr_pem(key or ec_key),
            subject=subject or {},
            dns_names=dns_names or [],
            ip_addresses=ip_addresses or [],
            emails=emails or [],
            validity_days=validity_days,
        )
        ca = pki.issuing_ca(cert_class)
        prof = profiles.get_profile(profile)
        tbs = issuance.prepare_certificate(
            request,
            ca,
            prof,
            urls_for(cert_class),
            now or dt.datetime.now(dt.UTC),
            issuance.new_serial_number(),
            crl_shard,
        )
        result = linter.lint_tbs(tbs, prof, ca.key_algorithm)
        return Issued(request, issuance.sign_certificate(tbs, ca), result)

    return _issue


@dataclass
class Tool:
    """Runs a command line tool in a scratch directory and returns the completed process."""

    workdir: Path

    def write(self, name: str, data: bytes | str) -> Path:
        path = self.workdir / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def run(self, *args: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(a) for a in args], cwd=self.workdir, capture_output=True, text=True, timeout=60, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{args[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def openssl(self, *args: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.run(OPENSSL, *args, check=check)


@pytest.fixture
def tool(tmp_path: Path) -> Iterator[Tool]:
    yield Tool(tmp_path)


@pytest.fixture(scope="session")
def ca_pems(ca_dir: Path) -> dict[str, Path]:
    return {
        "class1": ca_dir / "class1.crt.pem",
        "class3": ca_dir / "class3.crt.pem",
        "ocsp-class1": ca_dir / "ocsp-class1.crt.pem",
        "ocsp-class3": ca_dir / "ocsp-class3.crt.pem",
    }


def pkilint_command(name: str) -> list[str]:
    """The pkilint console script ``name`` (e.g. ``lint_cabf_serverauth_cert``), or the same entry
    point through ``python -m`` when the script directory is not on PATH."""
    import sys

    script = shutil.which(name)
    return [script] if script else [sys.executable, "-m", f"pkilint.bin.{name}"]


@dataclass(frozen=True)
class Helpers:
    """Constants and small functions the test modules share (tests have no packages to import from)."""

    passphrase: bytes = PASSPHRASE
    pki_base: str = PKI_BASE

    @staticmethod
    def urls_for(cert_class: int) -> CAUrls:
        return urls_for(cert_class)

    @staticmethod
    def pem(cert: x509.Certificate) -> bytes:
        return pem(cert)

    @staticmethod
    def pkilint(name: str) -> list[str]:
        return pkilint_command(name)

    @staticmethod
    def csr(
        key: Any,
        subject: list[tuple[x509.ObjectIdentifier, str]] | None = None,
        sans: list[str] | None = None,
    ) -> str:
        return csr_pem(key, subject, sans)


@pytest.fixture(scope="session")
def h() -> Helpers:
    return Helpers()
