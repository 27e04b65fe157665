"""The two-root hierarchy: the Class 1 root, the Class 3 CA under it, and their OCSP signers.

CAcert's model: the Class 1 root is self-signed and covers every certificate; the Class 3 "root"
is technically an intermediate signed by Class 1 and covers only certificates of Assured
members. A relying party picks its anchor: Class 1 (everything) or Class 3 (assured only). Leaves
of Class 3 chain leaf -> Class 3 -> Class 1, leaves of Class 1 chain leaf -> Class 1.

Each issuing CA answers OCSP through a delegated signer (RFC 6960 4.2.2.2) so that the CA key is
used only to sign certificates and CRLs. Those signer certificates carry id-pkix-ocsp-nocheck and
are short-lived instead: the issuing mode re-issues them before they end (``ceremony.reissue_ocsp_signer``,
stored in the signer database, see ``services/signer/ocsp_signers.py``), and ``ceremony.renew_ocsp_signer``
(``renew-ocsp``) still replaces the files offline. ``current_ocsp_signer`` picks the one that answers.

On disk (one directory, certificates PEM, keys encrypted PKCS#8 PEM with mode 0600)::

    class1.crt.pem  class1.key.pem  ocsp-class1.crt.pem  ocsp-class1.key.pem
    class3.crt.pem  class3.key.pem  ocsp-class3.crt.pem  ocsp-class3.key.pem
    class3-root.crt.pem

``class3-root.crt.pem`` is the *self-signed* Class 3 root: the same subject, key and subject key
identifier as ``class3.crt.pem`` (like a cross-signed root), published for relying parties whose software
wants a self-signed anchor (OpenSSL, so Apache's ``SSLCACertificateFile`` and nginx's
``ssl_client_certificate``, refuses a chain that ends in a certificate whose issuer it does not have).
It is optional here, since a directory made before it existed has none (``self-sign-class3`` adds it);
chains sent with certificates keep using ``class3.crt.pem``, which is what leads on to Class 1.

This module is the runtime model: ``load_hierarchy`` reads and cross-checks the files into the
``IssuingCA`` objects the issuer, the CRL publisher and the OCSP responder use. Creating them is
``ceremony.py``.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.signer.ca import keys
from services.signer.ca.keys import PrivateKey


class CertClass(enum.IntEnum):
    """The two classes of CAcert; the value is the ``cert_class`` of the event contract."""

    CLASS1 = 1
    CLASS3 = 3

    @property
    def label(self) -> str:
        """``class1`` / ``class3``: file names, URLs and the ``issuer`` field of events."""
        return f"class{self.value}"


class HierarchyError(Exception):
    """The files on disk do not form a consistent hierarchy (or would be overwritten)."""


@dataclass(frozen=True)
class OCSPSigner:
    """A delegated OCSP responder of one issuing CA: its certificate and key."""

    certificate: x509.Certificate
    private_key: PrivateKey = field(repr=False)

    def expires_soon(self, now: dt.datetime, margin: dt.timedelta = dt.timedelta(days=30)) -> bool:
        """Whether the certificate ends within ``margin`` of ``now``: its renewal window has begun."""
        return self.certificate.not_valid_after_utc - margin <= now

    def valid_at(self, now: dt.datetime) -> bool:
        return self.certificate.not_valid_before_utc <= now <= self.certificate.not_valid_after_utc


def current_ocsp_signer(signers: Iterable[OCSPSigner], now: dt.datetime) -> OCSPSigner:
    """The signer that answers at ``now``: of those valid now, the newest (latest notBefore, then latest
    notAfter), so answers switch to a renewed signer as soon as it is valid while the older certificate
    keeps verifying until it ends. When none is valid, the one ending last (an answer signed by an expired
    responder is still better than none, and its alert is already firing)."""
    candidates = list(signers)
    if not candidates:
        raise ValueError("no OCSP signer to choose from")

    def newest(signer: OCSPSigner) -> tuple[dt.datetime, dt.datetime]:
        return signer.certificate.not_valid_before_utc, signer.certificate.not_valid_after_utc

    valid = [s for s in candidates if s.valid_at(now)]
    if valid:
        return max(valid, key=newest)
    return max(candidates, key=lambda s: s.certificate.not_valid_after_utc)


@dataclass(frozen=True)
class IssuingCA:
    """One CA that signs leaves, CRLs and (through its delegate) OCSP responses."""

    cert_class: CertClass
    certificate: x509.Certificate
    private_key: PrivateKey | None = field(repr=False)
    """None in the status mode, which must never hold CA keys (it only answers OCSP and serves CRLs)."""
    ocsp_signer: OCSPSigner
    chain: tuple[x509.Certificate, ...]
    """This CA's certificate followed by its issuers, up to and including the Class 1 root."""

    @property
    def label(self) -> str:
        return self.cert_class.label

    @property
    def signing_key(self) -> PrivateKey:
        """The CA key, for certificates and CRLs; refuses clearly where it was deliberately not loaded."""
        if self.private_key is None:
            raise HierarchyError(f"the {self.label} CA key is not loaded in this process (status mode)")
        return self.private_key

    @property
    def key_algorithm(self) -> str:
        return keys.algorithm_of(self.certificate.public_key())

    @property
    def subject_key_identifier(self) -> x509.SubjectKeyIdentifier:
        return self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value

    def authority_key_identifier(self) -> x509.AuthorityKeyIdentifier:
        """The AKI that certificates and CRLs signed by this CA carry."""
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self.subject_key_identifier)


@dataclass(frozen=True)
class Hierarchy:
    """Both issuing CAs, loaded and checked for consistency."""

    cas: Mapping[CertClass, IssuingCA]
    class3_root: x509.Certificate | None = None
    """The self-signed Class 3 root (``class3-root.crt.pem``), a trust anchor only: never in a chain. None
    in a directory that does not have it yet."""

    @property
    def root(self) -> x509.Certificate:
        return self.cas[CertClass.CLASS1].certificate

    def issuing_ca(self, cert_class: int) -> IssuingCA:
        return self.cas[CertClass(cert_class)]

    def trust_anchors_for(self, cert_class: int) -> tuple[CertClass, ...]:
        """The anchors a leaf of ``cert_class`` validates against: Class 3 leaves under either root,
        Class 1 leaves only under Class 1."""
        if CertClass(cert_class) is CertClass.CLASS3:
            return (CertClass.CLASS1, CertClass.CLASS3)
        return (CertClass.CLASS1,)

    def chain_for(
        self, cert_class: int, anchor: int = CertClass.CLASS1, *, include_anchor: bool = False
    ) -> tuple[x509.Certificate, ...]:
        """The CA certificates a relying party needs between a ``cert_class`` leaf and ``anchor``,
        nearest to the leaf first. With the default Class 1 anchor a Class 3 leaf needs the Class 3
        certificate and a Class 1 leaf needs nothing; with ``anchor=CLASS3`` a Class 3 leaf needs
        nothing. A Class 1 leaf cannot chain to Class 3, which raises ``ValueError``.
        """
        anchor_class = CertClass(anchor)
        if anchor_class not in self.trust_anchors_for(cert_class):
            raise ValueError(
                f"a {CertClass(cert_class).label} certificate does not chain to {anchor_class.label}"
            )
        chain = self.issuing_ca(cert_class).chain
        anchor_cert = self.cas[anchor_class].certificate
        end = chain.index(anchor_cert)
        return chain[: end + 1] if include_anchor else chain[:end]

    def chain_pem(
        self, cert_class: int, anchor: int = CertClass.CLASS1, *, include_anchor: bool = False
    ) -> str:
        """``chain_for`` as concatenated PEM (the ``chain_pem`` of ``cert.issued``)."""
        return "".join(
            c.public_bytes(serialization.Encoding.PEM).decode("ascii")
            for c in self.chain_for(cert_class, anchor, include_anchor=include_anchor)
        )


# ---------------------------------------------------------------------------------------- files


def certificate_path(directory: Path, cert_class: CertClass) -> Path:
    return directory / f"{cert_class.label}.crt.pem"


def key_path(directory: Path, cert_class: CertClass) -> Path:
    return directory / f"{cert_class.label}.key.pem"


def ocsp_certificate_path(directory: Path, cert_class: CertClass) -> Path:
    return directory / f"ocsp-{cert_class.label}.crt.pem"


def ocsp_key_path(directory: Path, cert_class: CertClass) -> Path:
    return directory / f"ocsp-{cert_class.label}.key.pem"


CLASS3_ROOT = "class3-root"
"""The self-signed Class 3 root's name: its file ``class3-root.crt.pem`` and URL ``/class3-root.crt``."""


def class3_root_path(directory: Path) -> Path:
    return directory / f"{CLASS3_ROOT}.crt.pem"


def all_paths(directory: Path) -> list[Path]:
    return [
        f(directory, c)
        for c in CertClass
        for f in (certificate_path, key_path, ocsp_certificate_path, ocsp_key_path)
    ]


def read_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise HierarchyError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise HierarchyError(f"{path} is not a PEM certificate") from None


def _check_issued(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError) as exc:
        raise HierarchyError(f"{what} is not issued by {issuer.subject.rfc4514_string()}: {exc}") from None
    except InvalidSignature:
        raise HierarchyError(
            f"{what} has an invalid signature from {issuer.subject.rfc4514_string()}"
        ) from None


def _check_key_matches(cert: x509.Certificate, key: PrivateKey, what: str) -> None:
    public = cert.public_key()
    if not isinstance(public, keys.PublicKey) or not keys.public_keys_equal(public, key.public_key()):
        raise HierarchyError(f"the key file of {what} does not belong to its certificate")


def check_ocsp_signer(signer: OCSPSigner, ca_certificate: x509.Certificate, what: str) -> None:
    """A delegated OCSP signer is fit to answer for ``ca_certificate``: issued by it, with its own key, and
    with the id-kp-OCSPSigning extended key usage (RFC 6960 4.2.2.2). ``HierarchyError`` otherwise."""
    _check_key_matches(signer.certificate, signer.private_key, what)
    _check_issued(signer.certificate, ca_certificate, what)
    try:
        usages = signer.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = x509.ExtendedKeyUsage([])
    if ExtendedKeyUsageOID.OCSP_SIGNING not in usages:
        raise HierarchyError(f"{what} lacks the id-kp-OCSPSigning extended key usage")


def check_class3_root(twin: x509.Certificate, class3: x509.Certificate) -> None:
    """``twin`` is a self-signed Class 3 root of the same CA as ``class3`` (the Class-1-signed Class 3
    certificate): self-signed, a CA, the same subject, public key and subject key identifier, so every
    certificate the Class 3 key signed verifies under either. ``HierarchyError`` otherwise."""
    what = f"{CLASS3_ROOT} (the self-signed Class 3 root)"
    _check_issued(twin, twin, f"{what} (must be self-signed)")
    if twin.subject != class3.subject:
        raise HierarchyError(f"{what} has another subject than class3: {twin.subject.rfc4514_string()}")
    if not keys.public_keys_equal(twin.public_key(), class3.public_key()):
        raise HierarchyError(f"{what} does not have the key of class3")
    try:
        twin_ski = twin.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        constraints = twin.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound as exc:
        raise HierarchyError(f"{what} lacks {exc.oid.dotted_string}") from None
    class3_ski = class3.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    if twin_ski != class3_ski:
        raise HierarchyError(f"{what} has another subject key identifier than class3")
    if not constraints.ca:
        raise HierarchyError(f"{what} is not a CA certificate")


def load_hierarchy(directory: Path, passphrase: bytes, *, ca_keys: bool = True) -> Hierarchy:
    """Load and cross-check the eight files, and the self-signed Class 3 root where it exists: every
    certificate is signed by its issuer and every key belongs to its certificate, so a mixed-up
    deployment fails at start-up, not at signing.

    With ``ca_keys=False`` (the public status mode) the CA key files are neither read nor needed:
    only the certificates and the delegated OCSP signers are loaded."""
    loaded: dict[CertClass, tuple[x509.Certificate, PrivateKey | None, OCSPSigner]] = {}
    for cls in CertClass:
        cert = read_certificate(certificate_path(directory, cls))
        key = keys.read_private_key(key_path(directory, cls), passphrase) if ca_keys else None
        if key is not None:
            _check_key_matches(cert, key, cls.label)
        signer_cert = read_certificate(ocsp_certificate_path(directory, cls))
        signer_key = keys.read_private_key(ocsp_key_path(directory, cls), passphrase)
        signer = OCSPSigner(signer_cert, signer_key)
        check_ocsp_signer(signer, cert, f"ocsp-{cls.label}")
        loaded[cls] = (cert, key, signer)

    root = loaded[CertClass.CLASS1][0]
    class3 = loaded[CertClass.CLASS3][0]
    _check_issued(root, root, "class1 (must be self-signed)")
    _check_issued(class3, root, "class3")

    twin_path = class3_root_path(directory)
    twin = read_certificate(twin_path) if twin_path.exists() else None
    if twin is not None:
        check_class3_root(twin, class3)

    chains = {CertClass.CLASS1: (root,), CertClass.CLASS3: (class3, root)}
    return Hierarchy(
        cas={
            cls: IssuingCA(cls, cert, key, signer, chains[cls]) for cls, (cert, key, signer) in loaded.items()
        },
        class3_root=twin,
    )
