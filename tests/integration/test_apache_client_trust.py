"""Client-certificate trust with a real Apache (issues 18 and 22): which CA file admits whom.

Debian's apache2 is started by the test itself, in the foreground, with its own configuration in a
temporary directory (its own ServerRoot, PidFile and ErrorLog, ``Listen 127.0.0.1:<free port>``, the
modules loaded from /usr/lib/apache2/modules; never /etc/apache2 or systemd), ``SSLVerifyClient
require`` and ``SSLVerifyDepth 3``. The server certificate comes from a throw-away CA of the test; the
client certificates are issued the way the signer issues them (``issuance.prepare_certificate`` with the
client profile, linted with pkilint, signed by the Class 1 or Class 3 key of a fresh hierarchy).

What the roots page and the server snippets advise is what is checked here:

* ``SSLCACertificateFile`` with only the **self-signed** Class 3 root admits Class 3 certificates (whether
  or not the client sends the Class-1-signed Class 3 along) and refuses Class 1 ones;
* with only the Class-1-signed Class 3 certificate Apache refuses Class 3 certificates too: OpenSSL
  wants a self-signed anchor (the reason the self-signed twin exists);
* with the Class 1 root alone, Class 1 certificates are admitted, and Class 3 ones only from a client
  that sends the Class 3 certificate along; with the Class 1 root and the Class 3 certificate in the file
  (the roots page's PEM bundle) Class 3 certificates are admitted from any client.

``./dev test`` installs Debian's apache2 when /usr/sbin/apache2 is missing; without it this module skips.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import ipaddress
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.signer.ca import ceremony, issuance, lint, profiles
from services.signer.ca.ceremony import HierarchyNames
from services.signer.ca.hierarchy import CertClass, Hierarchy
from services.signer.ca.urls import CAUrls

APACHE = Path("/usr/sbin/apache2")
MODULES = Path("/usr/lib/apache2/modules")
PKI_BASE = "http://pki.cacert-community.org"
PASSPHRASE = b"apache trust test"

pytestmark = pytest.mark.skipif(
    not APACHE.exists(), reason="Debian's apache2 is not installed (./dev test installs it: apt-get install apache2)"
)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# ----------------------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Pki:
    directory: Path
    hierarchy: Hierarchy

    def file(self, name: str, *certificates: x509.Certificate) -> Path:
        path = self.directory / name
        path.write_bytes(b"".join(pem(c) for c in certificates))
        return path

    @property
    def class1(self) -> x509.Certificate:
        return self.hierarchy.root

    @property
    def class3(self) -> x509.Certificate:
        """The Class 3 certificate signed by Class 1 (what chains carry)."""
        return self.hierarchy.class_ca(CertClass.CLASS3).certificate

    def issuing(self, cert_class: CertClass) -> x509.Certificate:
        """The issuing CA that signs the leaves of ``cert_class`` (never a root, BR 6.1.7)."""
        return self.hierarchy.issuing_ca(cert_class).certificate

    @property
    def class3_root(self) -> x509.Certificate:
        assert self.hierarchy.class3_root is not None
        return self.hierarchy.class3_root


@dataclass(frozen=True)
class Client:
    """A client certificate as a member would hold it: the key, the leaf, and the leaf with its chain."""

    name: str
    certificate: x509.Certificate
    key: Path
    leaf_only: Path
    with_chain: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("apache-pki")
    hierarchy = ceremony.create_hierarchy(
        directory / "ca", directory / "roots", PASSPHRASE, "p256", public_base_url=PKI_BASE,
        names=HierarchyNames(country="AU"),
    )
    return Pki(directory, hierarchy)


def _issue_client(pki: Pki, linter: lint.PreIssuanceLinter, cert_class: CertClass, subject: dict[str, str],
                  email: str) -> Client:
    """Issue a client certificate as the signer does (the client profile, pkilint, the CA key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    request = issuance.ApprovedRequest(
        request_id=f"req-{cert_class.label}", member_id="member-1", cert_class=int(cert_class), profile="client",
        csr_pem=csr, subject=subject, emails=[email], validity_days=30,
    )
    ca = pki.hierarchy.issuing_ca(cert_class)
    assert ca.label == f"{cert_class.label}-issuing"
    profile = profiles.get_profile("client")
    tbs = issuance.prepare_certificate(
        request, ca, profile, CAUrls.under(PKI_BASE, ca.label), dt.datetime.now(dt.UTC),
        issuance.new_serial_number(),
    )
    result = linter.lint_tbs(tbs, profile, ca.key_algorithm)
    assert result.ok, result.errors
    certificate = issuance.sign_certificate(tbs, ca)
    name = cert_class.label
    chain = pki.hierarchy.chain_for(cert_class)  # what cert.issued's chain_pem holds: issuing CA (, Class 3)
    return Client(
        name=name,
        certificate=certificate,
        key=_write(pki.directory / f"{name}-client.key", key_pem(key)),
        leaf_only=pki.file(f"{name}-client.pem", certificate),
        with_chain=pki.file(f"{name}-client-fullchain.pem", certificate, *chain),
    )


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def clients(pki: Pki) -> dict[int, Client]:
    linter = lint.PreIssuanceLinter()
    return {
        3: _issue_client(pki, linter, CertClass.CLASS3, {"CN": "Ada Lovelace", "GN": "Ada", "SN": "Lovelace"},
                         "ada@example.org"),
        1: _issue_client(pki, linter, CertClass.CLASS1, {}, "bob@example.org"),
    }


@dataclass(frozen=True)
class ServerTls:
    certificate: Path
    key: Path
    anchor: Path


@pytest.fixture(scope="module")
def server_tls(pki: Pki) -> ServerTls:
    """A server certificate for 127.0.0.1 from a throw-away CA of this test (the client trusts that CA)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Apache test throw-away CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ServerTls(
        certificate=pki.file("server.pem", leaf),
        key=_write(pki.directory / "server.key", key_pem(key)),
        anchor=pki.file("server-ca.pem", ca),
    )


# ----------------------------------------------------------------------------------- Apache


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CONFIG = """\
ServerRoot "{root}"
ServerName 127.0.0.1
Listen 127.0.0.1:{port}
PidFile "{root}/httpd.pid"
DefaultRuntimeDir "{root}"
ErrorLog "{root}/error.log"
LogLevel warn ssl:info
LoadModule mpm_event_module {modules}/mod_mpm_event.so
LoadModule authz_core_module {modules}/mod_authz_core.so
LoadModule headers_module {modules}/mod_headers.so
LoadModule status_module {modules}/mod_status.so
LoadModule ssl_module {modules}/mod_ssl.so
StartServers 1
ServerLimit 1
ThreadLimit 4
ThreadsPerChild 4
MaxRequestWorkers 4
MinSpareThreads 1
MaxSpareThreads 4
{user}
<VirtualHost 127.0.0.1:{port}>
    SSLEngine on
    SSLProtocol -all +TLSv1.2 +TLSv1.3
    SSLCertificateFile    "{server_cert}"
    SSLCertificateKeyFile "{server_key}"
    SSLCACertificateFile  "{ca_file}"
    SSLVerifyClient require
    SSLVerifyDepth  3
    # What Apache made of the client certificate, for the test to read.
    Header always set X-Client-Verify "%{{SSL_CLIENT_VERIFY}}s"
    Header always set X-Client-Subject "%{{SSL_CLIENT_S_DN}}s"
    <Location />
        # A handler that needs no document files (the children may run as another user).
        SetHandler server-status
        Require all granted
    </Location>
</VirtualHost>
"""


@dataclass(frozen=True)
class Apache:
    port: int
    root: Path

    def error_log(self) -> str:
        path = self.root / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def apache(root: Path, tls: ServerTls, ca_file: Path) -> Iterator[Apache]:
    """Start apache2 in the foreground with ``ca_file`` as its SSLCACertificateFile; stop it afterwards."""
    root.mkdir()
    port = _free_port()
    # As root, Apache hands requests to children running as `User`; as anyone else it stays that user.
    user = "User nobody\nGroup nogroup" if os.geteuid() == 0 else ""
    config = root / "httpd.conf"
    config.write_text(CONFIG.format(
        root=root, port=port, modules=MODULES, user=user, server_cert=tls.certificate, server_key=tls.key,
        ca_file=ca_file,
    ))
    syntax = subprocess.run([str(APACHE), "-d", str(root), "-f", str(config), "-t"], capture_output=True,
                            text=True, timeout=30, check=False)
    assert syntax.returncode == 0, syntax.stderr
    proc = subprocess.Popen([str(APACHE), "-d", str(root), "-f", str(config), "-DFOREGROUND"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server = Apache(port, root)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"apache2 exited ({proc.returncode}): {proc.stdout and proc.stdout.read()}"
                                     f"\n{server.error_log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"apache2 did not listen on {port}:\n{server.error_log()}")
            time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout:
            proc.stdout.close()


@dataclass(frozen=True)
class Answer:
    status: int | None
    verify: str = ""
    subject: str = ""
    error: str = ""

    @property
    def admitted(self) -> bool:
        return self.status == 200 and self.verify == "SUCCESS"


def request(server: Apache, tls: ServerTls, certificate: Path, key: Path) -> Answer:
    """GET / presenting ``certificate`` (a PEM file: the leaf, optionally followed by its chain)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(tls.anchor))
    context.load_cert_chain(certfile=str(certificate), keyfile=str(key))
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        return Answer(response.status, response.getheader("X-Client-Verify") or "",
                      response.getheader("X-Client-Subject") or "")
    except (ssl.SSLError, ConnectionError, http.client.HTTPException) as exc:  # refused in the handshake
        return Answer(None, error=f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()


def assert_refused(server: Apache, tls: ServerTls, certificate: Path, key: Path, why: str) -> None:
    """Apache refuses ``certificate`` and its error log says why (OpenSSL's verification error)."""
    logged = len(server.error_log())
    answer = request(server, tls, certificate, key)
    assert not answer.admitted and answer.status in (None, 403), answer
    log = server.error_log()[logged:]
    assert "Certificate Verification: Error" in log and why in log, log


# ------------------------------------------------------------------------------------ tests


def test_the_self_signed_class3_root_alone_admits_class3_and_refuses_class1(
        pki: Pki, clients: dict[int, Client], server_tls: ServerTls, tmp_path: Path) -> None:
    ca_file = pki.file("only-class3-root.pem", pki.class3_root)
    with apache(tmp_path / "apache", server_tls, ca_file) as server:
        answer = request(server, server_tls, clients[3].with_chain, clients[3].key)
        assert answer.admitted, (answer, server.error_log())
        assert "CN=Ada Lovelace" in answer.subject
        for presented in (clients[1].leaf_only, clients[1].with_chain):
            assert_refused(server, server_tls, presented, clients[1].key, "unable to get local issuer certificate")
        # The leaf alone does not name its issuing CA's certificate: the client must send it (a PKCS#12 made
        # from the PEM download does), or the server's file must hold it too (the next test).
        assert_refused(server, server_tls, clients[3].leaf_only, clients[3].key,
                       "unable to get local issuer certificate")


def test_the_self_signed_class3_root_with_its_issuing_ca_admits_class3_from_any_client(
        pki: Pki, clients: dict[int, Client], server_tls: ServerTls, tmp_path: Path) -> None:
    ca_file = pki.file("class3-root-and-issuing.pem", pki.class3_root, pki.issuing(CertClass.CLASS3))
    with apache(tmp_path / "apache", server_tls, ca_file) as server:
        for presented in (clients[3].leaf_only, clients[3].with_chain):
            answer = request(server, server_tls, presented, clients[3].key)
            assert answer.admitted, (presented.name, answer, server.error_log())
        for presented in (clients[1].leaf_only, clients[1].with_chain):
            assert_refused(server, server_tls, presented, clients[1].key, "unable to get local issuer certificate")


def test_the_class1_signed_class3_alone_is_no_anchor_for_apache(
        pki: Pki, clients: dict[int, Client], server_tls: ServerTls, tmp_path: Path) -> None:
    """The old advice ("trust the Class 3 root alone") with the certificate signed by Class 1: refused."""
    ca_file = pki.file("only-class3.pem", pki.class3)
    with apache(tmp_path / "apache", server_tls, ca_file) as server:
        assert_refused(server, server_tls, clients[3].with_chain, clients[3].key, "unable to get issuer certificate")


def test_the_class1_root_admits_both_when_clients_send_their_chain(
        pki: Pki, clients: dict[int, Client], server_tls: ServerTls, tmp_path: Path) -> None:
    ca_file = pki.file("only-class1.pem", pki.class1)
    with apache(tmp_path / "apache", server_tls, ca_file) as server:
        for cls in (1, 3):
            answer = request(server, server_tls, clients[cls].with_chain, clients[cls].key)
            assert answer.admitted, (cls, answer, server.error_log())
            # A client that sends only its own certificate leaves Apache without the issuing CA.
            assert_refused(server, server_tls, clients[cls].leaf_only, clients[cls].key,
                           "unable to get local issuer certificate")


def test_the_roots_bundle_admits_both_from_any_client(
        pki: Pki, clients: dict[int, Client], server_tls: ServerTls, tmp_path: Path) -> None:
    """The roots page's PEM bundle (the Class 1 root, the Class 3 certificate it signed, the issuing CAs)."""
    ca_file = pki.file("cacert-roots.pem", pki.class1, pki.class3, pki.issuing(CertClass.CLASS1),
                       pki.issuing(CertClass.CLASS3))
    with apache(tmp_path / "apache", server_tls, ca_file) as server:
        for cls in (1, 3):
            for presented in (clients[cls].leaf_only, clients[cls].with_chain):
                answer = request(server, server_tls, presented, clients[cls].key)
                assert answer.admitted, (cls, presented.name, answer, server.error_log())
