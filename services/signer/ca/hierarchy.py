"""The two-root hierarchy: the Class 1 root, the Class 3 root under it, the issuing CAs under those, and
their OCSP signers.

CAcert's model: the Class 1 root is self-signed and covers every certificate; the Class 3 "root"
is technically an intermediate signed by Class 1 and covers only certificates of Assured
members. A relying party picks its anchor: Class 1 (everything) or Class 3 (assured only).

Since issue 18 the roots sign no leaves (TLS BR 6.1.7: a Root CA private key signs only CA certificates,
its own CRLs and OCSP/infrastructure certificates). Each class has an *issuing CA* below its root, and the
roots' keys stay offline (another directory, see ``ceremony.create_hierarchy``)::

    class1 (root) -> class1-issuing -> unassured leaves
    class1 (root) -> class3 (root, signed by class1) -> class3-issuing -> assured leaves

A directory made before issue 18 has no issuing CA: its roots sign the leaves of their class directly,
with their keys in the same directory. It keeps loading (every certificate it issued keeps verifying), and
``ceremony.add_issuing_cas`` adds an issuing CA to each class whose certificates allow one below it.
Which CA signs the leaves of a class is ``Hierarchy.issuing_ca``: its issuing CA when there is one, else
the class's own CA.

Each issuing CA answers OCSP through a delegated signer (RFC 6960 4.2.2.2) so that the CA key is
used only to sign certificates and CRLs. Those signer certificates carry id-pkix-ocsp-nocheck and
are short-lived instead: the issuing mode re-issues them before they end (``ceremony.reissue_ocsp_signer``,
stored in the signer database, see ``services/signer/ocsp_signers.py``), and ``ceremony.renew_ocsp_signer``
(``renew-ocsp``) still replaces the files offline. ``current_ocsp_signer`` picks the one that answers.

On disk (the online CA directory, certificates PEM, keys encrypted PKCS#8 PEM with mode 0600)::

    class1.crt.pem  ocsp-class1.crt.pem  ocsp-class1.key.pem  arl-class1.der
    class3.crt.pem  ocsp-class3.crt.pem  ocsp-class3.key.pem  arl-class3.der
    class3-root.crt.pem
    class1-issuing.crt.pem  class1-issuing.key.pem  ocsp-class1-issuing.crt.pem  ocsp-class1-issuing.key.pem
    class3-issuing.crt.pem  class3-issuing.key.pem  ocsp-class3-issuing.crt.pem  ocsp-class3-issuing.key.pem

``class1.key.pem`` and ``class3.key.pem`` (the roots' keys) are in the offline root directory instead. A
root whose key is not here publishes the CRL its ceremony signed (``arl-<root>.der``, an ARL: it lists
revoked CA certificates); a root whose key is here (a directory before issue 18, or one being migrated)
has its CRL signed by the issuing mode like any CA. The roots' OCSP signers answer for the certificates
their root signed (the issuing CAs' and the Class 3 root's, and the leaves of an older directory).

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
from services.signer.ca.hsm import FILE_KEYS, CAKeySource
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


ISSUING = "issuing"


def issuing_label(cert_class: int) -> str:
    """``class1-issuing`` / ``class3-issuing``: the issuing CA of a class (files, URLs, ``issuer`` of events)."""
    return f"{CertClass(cert_class).label}-{ISSUING}"


@dataclass(frozen=True)
class IssuingCA:
    """One CA of the hierarchy: a root or an issuing CA. It signs certificates and CRLs with its key and answers
    OCSP through its delegate."""

    cert_class: CertClass
    certificate: x509.Certificate
    private_key: PrivateKey | None = field(repr=False)
    """None in the status mode, which must never hold CA keys (it only answers OCSP and serves CRLs), and for
    a root whose key is offline."""
    ocsp_signer: OCSPSigner
    chain: tuple[x509.Certificate, ...]
    """This CA's certificate followed by its issuers, up to and including the Class 1 root."""
    name: str = ""
    """The label when it is not the class's own (``class1-issuing``); empty for the class roots."""

    @property
    def label(self) -> str:
        return self.name or self.cert_class.label

    @property
    def signing_key(self) -> PrivateKey:
        """The CA key, for certificates and CRLs; refuses clearly where it was deliberately not loaded."""
        if self.private_key is None:
            raise HierarchyError(f"the {self.label} CA key is not loaded in this process")
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
    """Every CA of the directory, loaded and checked for consistency, by label."""

    cas: Mapping[str, IssuingCA]
    class3_root: x509.Certificate | None = None
    """The self-signed Class 3 root (``class3-root.crt.pem``), a trust anchor only: never in a chain. None
    in a directory that does not have it yet."""
    arls: Mapping[str, bytes] = field(default_factory=dict)
    """DER CRLs the ceremony signed for roots whose key is offline (``arl-<label>.der``), by label."""

    @property
    def root(self) -> x509.Certificate:
        return self.class_ca(CertClass.CLASS1).certificate

    def class_ca(self, cert_class: int) -> IssuingCA:
        """The CA named after the class: the Class 1 root, or the Class 3 root (the one signed by Class 1)."""
        return self.cas[CertClass(cert_class).label]

    def issuing_ca(self, cert_class: int) -> IssuingCA:
        """The CA that signs the leaves of ``cert_class``: its issuing CA, or in a directory made before
        issue 18 (or a class that could not get one, see ``ceremony.add_issuing_cas``) the class's own CA."""
        return self.cas.get(issuing_label(cert_class)) or self.class_ca(cert_class)

    @property
    def online_root_keys(self) -> tuple[str, ...]:
        """Labels of the roots whose key is loaded although they sign no leaves: a directory still being
        migrated; the keys belong offline (BR 6.1.7), see docs/operations.md."""
        issuers = {self.issuing_ca(c).label for c in CertClass}
        return tuple(c.label for c in CertClass
                     if self.class_ca(c).private_key is not None and c.label not in issuers)

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
        nearest to the leaf first: the issuing CA, then (Class 3 leaves, Class 1 anchor) the Class 3 root
        signed by Class 1. In a directory without issuing CAs, a Class 1 leaf needs nothing under the Class 1
        anchor and a Class 3 leaf nothing under the Class 3 anchor. A Class 1 leaf cannot chain to Class 3,
        which raises ``ValueError``.
        """
        anchor_class = CertClass(anchor)
        if anchor_class not in self.trust_anchors_for(cert_class):
            raise ValueError(
                f"a {CertClass(cert_class).label} certificate does not chain to {anchor_class.label}"
            )
        chain = self.issuing_ca(cert_class).chain
        end = chain.index(self.class_ca(anchor_class).certificate)
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


def _name(ca: str | CertClass) -> str:
    return ca.label if isinstance(ca, CertClass) else ca


def certificate_path(directory: Path, ca: str | CertClass) -> Path:
    return directory / f"{_name(ca)}.crt.pem"


def key_path(directory: Path, ca: str | CertClass) -> Path:
    return directory / f"{_name(ca)}.key.pem"


def ocsp_certificate_path(directory: Path, ca: str | CertClass) -> Path:
    return directory / f"ocsp-{_name(ca)}.crt.pem"


def ocsp_key_path(directory: Path, ca: str | CertClass) -> Path:
    return directory / f"ocsp-{_name(ca)}.key.pem"


def arl_path(directory: Path, ca: str | CertClass) -> Path:
    """The CRL a root's ceremony signed (an ARL: CA certificates only), published by the signer."""
    return directory / f"arl-{_name(ca)}.der"


CLASS3_ROOT = "class3-root"
"""The self-signed Class 3 root's name: its file ``class3-root.crt.pem`` and URL ``/class3-root.crt``."""


def class3_root_path(directory: Path) -> Path:
    return directory / f"{CLASS3_ROOT}.crt.pem"


def all_paths(directory: Path) -> list[Path]:
    """Every file a hierarchy may have in ``directory`` (either layout, either directory)."""
    labels = [c.label for c in CertClass] + [issuing_label(c) for c in CertClass]
    return [
        f(directory, label)
        for label in labels
        for f in (certificate_path, key_path, ocsp_certificate_path, ocsp_key_path, arl_path)
    ] + [class3_root_path(directory)]


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


def path_length_of(cert: x509.Certificate) -> int | None:
    """The basicConstraints pathLenConstraint of a CA certificate (None: unlimited)."""
    return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length


def check_arl(der: bytes, root: x509.Certificate, what: str) -> x509.CertificateRevocationList:
    """``der`` is a CRL signed by ``root``'s key and naming it as issuer; ``HierarchyError`` otherwise."""
    try:
        arl = x509.load_der_x509_crl(der)
    except ValueError:
        raise HierarchyError(f"{what} is not a DER CRL") from None
    if arl.issuer != root.subject or not arl.is_signature_valid(root.public_key()):  # type: ignore[arg-type]
        raise HierarchyError(f"{what} is not signed by {root.subject.rfc4514_string()}")
    if arl.next_update_utc is None:  # RFC 5280 5.1.2.5 / BR 7.2.2: conforming CAs include it
        raise HierarchyError(f"{what} has no nextUpdate")
    return arl


def _load_ca(
    directory: Path, passphrase: bytes | None, ocsp_passphrase: bytes, cert_class: CertClass, label: str, *,
    key: str, key_source: CAKeySource = FILE_KEYS,
) -> tuple[x509.Certificate, PrivateKey | None, OCSPSigner]:
    """One CA's certificate, key (``key``: "required", "optional" or "no"; from ``key_source``) and delegated
    OCSP signer."""
    cert = read_certificate(certificate_path(directory, label))
    private_key = None
    if key == "required" or (key == "optional" and key_source.holds(label, key_path(directory, label))):
        if not passphrase and not key_source.on_token(label):
            raise HierarchyError(f"the {label} CA key needs the CA passphrase, and none was given")
        private_key = key_source.private_key(label, key_path(directory, label), passphrase)
        _check_key_matches(cert, private_key, label)
    signer_cert = read_certificate(ocsp_certificate_path(directory, label))
    try:
        signer_key = keys.read_private_key(ocsp_key_path(directory, label), ocsp_passphrase)
    except keys.KeyDecryptionFailed:
        # A directory made before the OCSP signers had a passphrase of their own keeps them under the CA's.
        if not passphrase or passphrase == ocsp_passphrase:
            raise
        signer_key = keys.read_private_key(ocsp_key_path(directory, label), passphrase)
    signer = OCSPSigner(signer_cert, signer_key)
    check_ocsp_signer(signer, cert, f"ocsp-{label}")
    return cert, private_key, signer


def load_hierarchy(
    directory: Path, passphrase: bytes | None, *, ca_keys: bool = True, ocsp_passphrase: bytes | None = None,
    key_source: CAKeySource = FILE_KEYS,
) -> Hierarchy:
    """Load and cross-check the CA files, and the self-signed Class 3 root and the roots' ARLs where they
    exist: every certificate is signed by its issuer and every key belongs to its certificate, so a
    mixed-up deployment fails at start-up, not at signing.

    With ``ca_keys`` (the issuing mode) the key of every CA that signs leaves is required, and a root's key
    is loaded when it is in the directory (a directory of before issue 18 or one being migrated: its CRL is
    then signed here). With ``ca_keys=False`` (the public status mode) no CA key is read or needed: only
    the certificates and the delegated OCSP signers are loaded. The OCSP signers' key files are read with
    ``ocsp_passphrase`` (default ``passphrase``), so the status mode needs no CA passphrase. ``key_source``
    says where each CA key lives (on a PKCS#11 token, or by default in its encrypted file); the OCSP signers'
    keys are always files."""
    ocsp_secret = ocsp_passphrase or passphrase
    if not ocsp_secret:
        raise HierarchyError("the OCSP signers' keys need a passphrase, and none was given")
    issuing = [c for c in CertClass if certificate_path(directory, issuing_label(c)).exists()]
    loaded: dict[str, tuple[CertClass, x509.Certificate, PrivateKey | None, OCSPSigner]] = {}
    for cls in CertClass:
        root_key = "no" if not ca_keys else ("optional" if cls in issuing else "required")
        loaded[cls.label] = (cls, *_load_ca(directory, passphrase, ocsp_secret, cls, cls.label, key=root_key,
                                            key_source=key_source))
    for cls in issuing:
        label = issuing_label(cls)
        loaded[label] = (cls, *_load_ca(directory, passphrase, ocsp_secret, cls, label,
                                        key="required" if ca_keys else "no", key_source=key_source))

    root = loaded[CertClass.CLASS1.label][1]
    class3 = loaded[CertClass.CLASS3.label][1]
    _check_issued(root, root, "class1 (must be self-signed)")
    _check_issued(class3, root, "class3")
    chains: dict[str, tuple[x509.Certificate, ...]] = {
        CertClass.CLASS1.label: (root,), CertClass.CLASS3.label: (class3, root)}
    for cls in issuing:
        label = issuing_label(cls)
        parent = chains[cls.label]
        _check_issued(loaded[label][1], parent[0], label)
        chains[label] = (loaded[label][1], *parent)

    twin_path = class3_root_path(directory)
    twin = read_certificate(twin_path) if twin_path.exists() else None
    if twin is not None:
        check_class3_root(twin, class3)

    arls: dict[str, bytes] = {}
    for cls in CertClass:
        path = arl_path(directory, cls)
        if path.exists():
            der = path.read_bytes()
            check_arl(der, loaded[cls.label][1], path.name)
            arls[cls.label] = der

    return Hierarchy(
        cas={
            label: IssuingCA(cls, cert, key, signer, chains[label], name="" if label == cls.label else label)
            for label, (cls, cert, key, signer) in loaded.items()
        },
        class3_root=twin,
        arls=arls,
    )
