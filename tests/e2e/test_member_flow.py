"""The demo's output, checked with clients nobody here wrote: OpenSSL (verify, ocsp, crl, cms) and
Python's `ssl` (a real TLS handshake with hostname checking).

The certificates name `http://pki.example.net/...` for CRL and OCSP (pkilint refuses internal names);
the same paths are served on the local status endpoint, so each check takes the URL from the
certificate and only swaps the host for the local one.
"""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from tests.e2e.support import DemoRun

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

FILES = [
    "class1_root.pem", "class3_root.pem", "class3_root_self_signed.pem", "class1_issuing.pem", "class3_issuing.pem",
    "server_class1.pem", "server_class1.key", "chain_class1.pem",
    "server_class3.pem", "server_class3.key", "chain_class3.pem", "client_class1.pem", "client_class1.key",
    "revoked.pem", "server_dns.pem", "server_dns.key", "summary.json",
]  # fmt: skip
LIVE = ["server_class1.pem", "client_class1.pem", "server_class3.pem", "server_dns.pem"]


def openssl(*args: str | Path, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60,
                            check=False)  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))} failed:\n{result.stdout}{result.stderr}")
    return result


def load(run: DemoRun, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(run.path(name).read_bytes())


def local(run: DemoRun, published_url: str) -> str:
    """The certificate's status URL (http://pki.example.net/<path>) on the local status endpoint."""
    return run.urls["status"] + urllib.parse.urlsplit(published_url).path


def ocsp_url(cert: x509.Certificate) -> str:
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    return next(d.access_location.value for d in aia if d.access_method == AuthorityInformationAccessOID.OCSP)


def crl_url(cert: x509.Certificate) -> str:
    dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    names = dp[0].full_name or []
    return str(names[0].value)


# -- the demo's output ------------------------------------------------------------------------------


def test_demo_writes_every_file_with_private_keys_private(demo: DemoRun) -> None:
    for name in FILES:
        assert demo.path(name).stat().st_size > 0, name
    for key in ("server_class1.key", "server_class3.key", "client_class1.key", "server_dns.key"):
        assert demo.path(key).stat().st_mode & 0o077 == 0, f"{key} is readable by others"
    summary = demo.summary
    assert set(summary["serials"]) == {"server_class1", "server_class3", "client_class1", "revoked", "server_dns"}
    assert summary["domain"].startswith("demo-") and summary["domain"].endswith(".example.org")
    assert summary["urls"]["ocsp"]["class1"].startswith("http://127.0.0.1:")
    assert summary["urls"]["crl"]["class3"].endswith("/class3.crl")
    assert summary["urls"]["crl"]["class3-issuing"].endswith("/class3-issuing.crl")
    subjects = summary["mail_subjects"]
    assert "Confirm your email address" in subjects
    assert f"Confirm control of {summary['domain']}" in subjects
    assert sum("certificate for" in s and "was issued" in s for s in subjects) == 5
    assert f"Certificate {summary['revoked_serial']} was revoked" in subjects


def test_certificates_are_what_was_asked_for(demo: DemoRun) -> None:
    domain, serials = demo.summary["domain"], demo.summary["serials"]
    for label, cert_class, issuer in (("server_class1", 1, "Class 1"), ("client_class1", 1, "Class 1"),
                                      ("revoked", 1, "Class 1"), ("server_class3", 3, "Class 3")):  # fmt: skip
        cert = load(demo, f"{label}.pem")
        assert format(cert.serial_number, "x") == serials[label].lower().lstrip("0")
        assert issuer in cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert demo.summary["certificates"][label]["class"] == cert_class
    server = load(demo, "server_class3.pem")
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [domain, f"www.{domain}"]
    client = load(demo, "client_class1.pem")
    sans = client.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.RFC822Name) == [demo.summary["member"]["email"]]
    # Published status URLs use the public-looking name; the demo reports the real local ones. They are the
    # issuing CA's: the roots sign no leaves. The CRL is the certificate's shard.
    assert ocsp_url(server) == "http://pki.example.net/ocsp/class3-issuing"
    assert re.fullmatch(r"http://pki\.example\.net/class3-issuing/[0-9]+\.crl", crl_url(server))


def test_the_domain_verified_by_a_dns_record_gets_its_server_certificate(demo: DemoRun) -> None:
    name = demo.summary["dns_domain"]
    cert = load(demo, "server_dns.pem")
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [name]
    assert "Class 1" in cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    # Verified by DNS only: no confirmation mail was ever sent for it.
    assert not [s for s in demo.summary["mail_subjects"] if s == f"Confirm control of {name}"]


def test_extra_subject_attributes_are_dropped(demo: DemoRun) -> None:
    dropped = [NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.LOCALITY_NAME,
               NameOID.EMAIL_ADDRESS]  # fmt: skip
    for name in ("server_class1.pem", "server_class3.pem", "client_class1.pem", "revoked.pem"):
        subject = load(demo, name).subject
        for oid in dropped:
            assert not subject.get_attributes_for_oid(oid), f"{name} kept {oid._name}: {subject.rfc4514_string()}"
    assert load(demo, "server_class1.pem").subject.rfc4514_string() == f"CN={demo.summary['domain']}"
    assert load(demo, "server_class3.pem").subject.rfc4514_string() == f"CN={demo.summary['domain']}"
    assert len(load(demo, "client_class1.pem").subject) == 0  # Class 1 client: the address is in the SAN only


# -- openssl verify ---------------------------------------------------------------------------------


def test_openssl_verifies_every_chain(demo: DemoRun) -> None:
    d = demo.out
    openssl("verify", "-x509_strict", "-CAfile", d / "class1_root.pem", d / "class3_root.pem")
    # Leaves are signed by the issuing CAs, never by a root (BR 6.1.7); the chain files carry them.
    assert load(demo, "server_class1.pem").issuer == load(demo, "class1_issuing.pem").subject
    assert load(demo, "server_class3.pem").issuer == load(demo, "class3_issuing.pem").subject
    assert (d / "chain_class1.pem").read_text().strip() == (d / "class1_issuing.pem").read_text().strip()
    for name, purpose in (("server_class1.pem", "sslserver"), ("client_class1.pem", "smimesign"),
                          ("revoked.pem", "sslserver")):  # fmt: skip
        out = openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", d / "class1_root.pem",
                      "-untrusted", d / "chain_class1.pem", d / name)  # fmt: skip
        assert out.stdout.strip().endswith(": OK")
    # Class 3 leaf: to the Class 1 root through the Class 3 issuing CA and the Class 3 root ...
    openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", d / "class1_root.pem",
            "-untrusted", d / "chain_class3.pem", d / "server_class3.pem")  # fmt: skip
    # ... or with the self-signed Class 3 root alone as the anchor (no partial chain needed) ...
    openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", d / "class3_root_self_signed.pem",
            "-untrusted", d / "class3_issuing.pem", d / "server_class3.pem")  # fmt: skip
    # ... or with the Class-1-signed Class 3 certificate alone, where partial chains are allowed.
    openssl("verify", "-x509_strict", "-partial_chain", "-purpose", "sslserver", "-CAfile", d / "class3_root.pem",
            "-untrusted", d / "class3_issuing.pem", d / "server_class3.pem")  # fmt: skip


def test_openssl_refuses_the_wrong_anchor(demo: DemoRun) -> None:
    d = demo.out
    # A Class 1 certificate (unassured member) does not chain to the Class 3 root.
    result = openssl("verify", "-partial_chain", "-CAfile", d / "class3_root.pem", "-untrusted", d / "chain_class1.pem",
                     d / "server_class1.pem", check=False)  # fmt: skip
    assert result.returncode != 0
    result = openssl("verify", "-CAfile", d / "class3_root_self_signed.pem", "-untrusted", d / "chain_class1.pem",
                     d / "server_class1.pem", check=False)  # fmt: skip
    assert result.returncode != 0
    # Without partial chains the Class-1-signed Class 3 certificate is no anchor: its issuer is missing.
    result = openssl("verify", "-CAfile", d / "class3_root.pem", "-untrusted", d / "class3_issuing.pem",
                     d / "server_class3.pem", check=False)  # fmt: skip
    assert result.returncode != 0
    # Without their chains, leaves do not reach the Class 1 root.
    for name in ("server_class3.pem", "server_class1.pem"):
        result = openssl("verify", "-CAfile", d / "class1_root.pem", d / name, check=False)
        assert result.returncode != 0


# -- OCSP and CRL -----------------------------------------------------------------------------------


def _ocsp(demo: DemoRun, cert_file: str, issuer_file: str, *extra: str | Path) -> str:
    d = demo.out
    url = local(demo, ocsp_url(load(demo, cert_file)))
    result = openssl("ocsp", "-issuer", d / issuer_file, "-cert", d / cert_file, "-url", url,
                     "-CAfile", d / "class1_root.pem", *extra)  # fmt: skip
    assert "Response verify OK" in result.stderr, result.stderr
    return result.stdout


def test_ocsp_says_good_for_live_certificates(demo: DemoRun) -> None:
    d = demo.out
    chain1 = ("-verify_other", d / "chain_class1.pem")
    assert "server_class1.pem: good" in _ocsp(demo, "server_class1.pem", "class1_issuing.pem", *chain1)
    assert "client_class1.pem: good" in _ocsp(demo, "client_class1.pem", "class1_issuing.pem", *chain1)
    out = _ocsp(demo, "server_class3.pem", "class3_issuing.pem", "-verify_other", d / "chain_class3.pem")
    assert "server_class3.pem: good" in out


def test_ocsp_of_a_root_says_good_for_the_issuing_ca_it_signed(demo: DemoRun) -> None:
    assert "class1_issuing.pem: good" in _ocsp(demo, "class1_issuing.pem", "class1_root.pem")


def test_ocsp_says_revoked_for_the_revoked_certificate(demo: DemoRun) -> None:
    out = _ocsp(demo, "revoked.pem", "class1_issuing.pem", "-verify_other", demo.out / "chain_class1.pem")
    assert "revoked.pem: revoked" in out
    assert "Reason: superseded" in out


def _crl(demo: DemoRun, cert_file: str, dest: Path) -> Path:
    url = local(demo, crl_url(load(demo, cert_file)))
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (local status endpoint)
        dest.write_bytes(response.read())
    return dest


def test_crl_parses_verifies_and_lists_the_revoked_serial(demo: DemoRun, tmp_path: Path) -> None:
    d = demo.out
    revoked = int(demo.summary["revoked_serial"], 16)

    def listed(text: str) -> set[int]:
        # openssl prints serials in hex, padded to whole bytes (a leading 0 for an odd number of digits)
        return {int(line.split(":", 1)[1], 16) for line in text.splitlines() if "Serial Number:" in line}

    deadline = time.monotonic() + 15
    while True:  # the CRL is regenerated right after the revocation is stored; give it a moment
        crl = _crl(demo, "revoked.pem", tmp_path / "class1.crl")
        result = openssl("crl", "-inform", "DER", "-in", crl, "-CAfile", d / "class1_issuing.pem", "-noout", "-text")
        if revoked in listed(result.stdout) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "verify OK" in result.stderr
    assert revoked in listed(result.stdout)
    # openssl verify with the CRL: the revoked certificate fails, the live one passes.
    pem = tmp_path / "class1.crl.pem"
    openssl("crl", "-inform", "DER", "-in", crl, "-out", pem)
    chain1 = ("-untrusted", d / "chain_class1.pem")
    refused = openssl("verify", "-crl_check", "-CRLfile", pem, "-CAfile", d / "class1_root.pem", *chain1,
                      d / "revoked.pem", check=False)  # fmt: skip
    assert refused.returncode != 0 and "revoked" in (refused.stdout + refused.stderr)
    # The live certificate is checked against its own CRL shard (OpenSSL matches the CRL's Issuing Distribution
    # Point with the certificate's CRL Distribution Points).
    live = tmp_path / "class1-live.crl.pem"
    openssl("crl", "-inform", "DER", "-in", _crl(demo, "server_class1.pem", tmp_path / "live.crl"), "-out", live)
    openssl("verify", "-crl_check", "-CRLfile", live, "-CAfile", d / "class1_root.pem", *chain1,
            d / "server_class1.pem")
    # The Class 3 issuing CA's CRL verifies with its certificate.
    crl3 = _crl(demo, "server_class3.pem", tmp_path / "class3.crl")
    assert "verify OK" in openssl("crl", "-inform", "DER", "-in", crl3, "-CAfile", d / "class3_issuing.pem",
                                  "-noout").stderr
    # The roots' own CRLs (ARLs, signed at the ceremony) are served too, and every CA certificate's CDP leads to
    # a CRL its issuer signed: -crl_check_all over the whole Class 3 chain.
    crls = tmp_path / "all.crl.pem"
    with crls.open("w") as out:
        for name in ("server_class3.pem", "class3_issuing.pem", "class3_root.pem"):
            der = _crl(demo, name, tmp_path / f"{name}.crl")
            out.write(openssl("crl", "-inform", "DER", "-in", der).stdout)
    openssl("verify", "-crl_check_all", "-CRLfile", crls, "-CAfile", d / "class1_root.pem",
            "-untrusted", d / "chain_class3.pem", d / "server_class3.pem")  # fmt: skip


# -- TLS --------------------------------------------------------------------------------------------


class TlsServer:
    """Python's ssl server with the issued certificate + chain, answering one line per connection."""

    def __init__(self, certfile: Path, keyfile: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(certfile, keyfile)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(f"hello from {tls.version()}\n".encode())
            except (ssl.SSLError, OSError):
                conn.close()  # the client refused us: that is what some tests expect

    def close(self) -> None:
        self.sock.close()


def handshake(port: int, hostname: str, cafile: Path, *, partial_chain: bool = False) -> bytes:
    context = ssl.create_default_context(cafile=str(cafile))  # check_hostname and CERT_REQUIRED are on
    if partial_chain:
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a non-self-signed anchor (Class 3) ends the path
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=hostname) as tls:
            return tls.recv(100)


@pytest.fixture
def fullchains(demo: DemoRun, tmp_path: Path) -> dict[str, Path]:
    d = demo.out
    class1 = tmp_path / "server_class1.fullchain.pem"
    class1.write_text((d / "server_class1.pem").read_text() + (d / "chain_class1.pem").read_text())
    class3 = tmp_path / "server_class3.fullchain.pem"
    class3.write_text((d / "server_class3.pem").read_text() + (d / "chain_class3.pem").read_text())
    return {"class1": class1, "class3": class3}


def test_tls_class1_server_trusted_through_class1_root(demo: DemoRun, fullchains: dict[str, Path]) -> None:
    d, domain = demo.out, demo.summary["domain"]
    server = TlsServer(fullchains["class1"], d / "server_class1.key")
    try:
        assert handshake(server.port, domain, d / "class1_root.pem").startswith(b"hello")
        assert handshake(server.port, f"www.{domain}", d / "class1_root.pem").startswith(b"hello")
        with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|match"):
            handshake(server.port, "other.example.org", d / "class1_root.pem")
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(server.port, domain, d / "class3_root.pem", partial_chain=True)  # not an Assured member's
    finally:
        server.close()


def test_tls_class3_server_trusted_through_either_root(demo: DemoRun, fullchains: dict[str, Path]) -> None:
    d, domain = demo.out, demo.summary["domain"]
    server = TlsServer(fullchains["class3"], d / "server_class3.key")
    try:
        assert handshake(server.port, domain, d / "class3_root.pem", partial_chain=True).startswith(b"hello")
        assert handshake(server.port, domain, d / "class1_root.pem").startswith(b"hello")
        with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|match"):
            handshake(server.port, "other.example.org", d / "class1_root.pem")
    finally:
        server.close()


# -- S/MIME -----------------------------------------------------------------------------------------


def test_smime_signature_with_the_client_certificate_verifies(demo: DemoRun, tmp_path: Path) -> None:
    d = demo.out
    message = tmp_path / "message.txt"
    message.write_text(f"To: friend@example.net\r\n\r\nSigned by {demo.summary['member']['email']}.\r\n")
    signed = tmp_path / "signed.eml"
    openssl("cms", "-sign", "-in", message, "-signer", d / "client_class1.pem", "-inkey", d / "client_class1.key",
            "-certfile", d / "chain_class1.pem", "-out", signed)  # fmt: skip  (the issuing CA travels along)
    verified = tmp_path / "verified.txt"
    result = openssl("cms", "-verify", "-in", signed, "-CAfile", d / "class1_root.pem", "-purpose", "smimesign",
                     "-out", verified)  # fmt: skip
    assert "Verification successful" in result.stderr
    assert verified.read_bytes().replace(b"\r\n", b"\n") == message.read_bytes().replace(b"\r\n", b"\n")
    # A changed body no longer verifies.
    tampered = tmp_path / "tampered.eml"
    tampered.write_text(signed.read_text().replace("Signed by", "Forged by"))
    bad = openssl("cms", "-verify", "-in", tampered, "-CAfile", d / "class1_root.pem", "-out", tmp_path / "x.txt",
                  check=False)  # fmt: skip
    assert bad.returncode != 0


# -- the runner -------------------------------------------------------------------------------------


def test_status_lists_the_running_services(system: dict[str, str]) -> None:
    import sys

    result = subprocess.run([sys.executable, "-m", "devstack", "status"], capture_output=True, text=True,
                            timeout=60, check=False, cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    for name in ("registration", "domain_verify", "signer-status", "signer-issue", "notifier"):
        line = next((row for row in result.stdout.splitlines() if row.startswith(name + " ")), "")
        assert " running " in line, result.stdout
