"""Real X.509 certificates for notifier tests: a Class 1 root, a Class 3 intermediate, leaves.

The notifier never parses certificates, but the acceptance criterion is that
the attachments decode to *the same* certificate, which is only convincing
with real DER inside the PEM.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclasses.dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def chain_pem(self) -> str:
        return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in self.chain)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: x509.Name,
    issuer: x509.Name,
    key: Any,
    signer: Any,
    *,
    ca: bool,
    not_before: datetime,
    not_after: datetime,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer, hashes.SHA256())


class CertFactory:
    """Class 1 root and a Class 3 intermediate signed by it."""

    def __init__(self) -> None:
        now = datetime.now(UTC) - timedelta(days=1)
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.class3_key = ec.generate_private_key(ec.SECP256R1())
        self.root = _cert(
            _name("Test Class 1 Root"),
            _name("Test Class 1 Root"),
            self.root_key,
            self.root_key,
            ca=True,
            not_before=now,
            not_after=now + timedelta(days=3650),
        )
        self.class3 = _cert(
            _name("Test Class 3 Root"),
            self.root.subject,
            self.class3_key,
            self.root_key,
            ca=True,
            not_before=now,
            not_after=now + timedelta(days=3650),
        )

    def issue(
        self,
        *,
        cert_class: int = 3,
        dns_names: tuple[str, ...] = ("www.example.org",),
        emails: tuple[str, ...] = (),
        not_after: datetime | None = None,
    ) -> Issued:
        now = datetime.now(UTC) - timedelta(minutes=5)
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
        sans += [x509.RFC822Name(e) for e in emails]
        issuer, signer = (self.class3, self.class3_key) if cert_class == 3 else (self.root, self.root_key)
        cn = dns_names[0] if dns_names else (emails[0] if emails else "leaf")
        leaf = _cert(
            _name(cn),
            issuer.subject,
            key,
            signer,
            ca=False,
            not_before=now,
            not_after=not_after or now + timedelta(days=365),
            sans=sans,
        )
        return Issued(leaf, (self.class3,) if cert_class == 3 else ())


def issued_payload(
    issued: Issued,
    *,
    member_id: str = "m-1",
    profile: str = "server",
    cert_class: int = 3,
    request_id: str = "req-1",
    dns_names: list[str] | None = None,
    emails: list[str] | None = None,
) -> dict[str, Any]:
    """A schema-valid cert.issued payload describing `issued`, as the signer publishes it."""
    cert = issued.certificate
    return {
        "request_id": request_id,
        "member_id": member_id,
        "serial": format(cert.serial_number, "x"),
        "issuer": f"class{cert_class}",
        "cert_class": cert_class,
        "profile": profile,
        "subject": cert.subject.rfc4514_string(),
        "dns_names": dns_names if dns_names is not None else ["www.example.org"],
        "ip_addresses": [],
        "emails": emails or [],
        "not_before": cert.not_valid_before_utc.isoformat().replace("+00:00", "Z"),
        "not_after": cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
        "fingerprint_sha256": hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
        "certificate_pem": issued.pem,
        "chain_pem": issued.chain_pem,
        "trust_anchors": ["class1", "class3"] if cert_class == 3 else ["class1"],
        "issued_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
