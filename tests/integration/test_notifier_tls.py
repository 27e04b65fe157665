"""STARTTLS to a real relay that requires it, verifying the relay's certificate against a CA file."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.config import KafkaSettings, MongoSettings
from tests.notifier.harness import running

pytestmark = pytest.mark.usefixtures("topics")


def relay_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test relay")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = directory / "relay.pem", directory / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_starttls_with_a_verified_relay_certificate(
    kafka_settings: KafkaSettings, mongo_settings: MongoSettings, tmp_path: Path
) -> None:
    cert_path, key_path = relay_certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_path, key_path)
    options = {"tls_context": server_tls, "require_starttls": True}
    async with running(kafka_settings, mongo_settings, smtp_options=options, smtp_tls="starttls",
                       smtp_ca_file=str(cert_path)) as notifier:
        await notifier.register("m-1", "Ada", "ada@example.org")
        (mail,) = await notifier.wait_received(1)
        assert mail.to == "ada@example.org" and mail.message["Subject"] == "Welcome to CAcert"
        (sent,) = await notifier.mail_events(1)
        assert sent.type == "org.cacert.mail.sent.v1"
