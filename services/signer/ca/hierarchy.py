"""The two-root hierarchy: the Class 1 root, the Class 3 CA under it, and their OCSP signers.

CAcert's model: the Class 1 root is self-signed and covers every certificate; the Class 3 "root"
is technically an intermediate signed by Class 1 and covers only certificates of Assured
members. A relying party picks its anchor: Class 1 (everything) or Class 3 (assured only). Leaves
of Class 3 chain leaf -> Class 3 -> Class 1, leaves of Class 1 chain leaf -> Class 1.

Each issuing CA answers OCSP through a delegated signer (RFC 6960 4.2.2.2) so that the CA key is
used only to sign certificates and CRLs. Those signer certificates carry id-pkix-ocsp-nocheck and
are short-lived instead, hence ``renew_ocsp_signer``.

On disk (one directory, certificates PEM, keys encrypted PKCS#8 PEM with mode 0600)::

    class1.crt.pem  class1.key.pem  ocsp-class1.crt.pem  ocsp-class1.key.pem
    class3.crt.pem  class3.key.pem  ocsp-class3.crt.pem  ocsp-class3.key.pem
"""

from __future__ import annotations

import datetime as dt
import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    CertificatePoliciesOID,
    ExtendedKeyUsageOID,
    NameOID,
)

from services.signer.ca import keys
from services.signer.ca.keys import PrivateKey
from services.signer.ca.serials import new_serial_number
from services.signer.ca.urls import CAUrls


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
class HierarchyNames:
    """Subject naming of the CA certificates (``O=<organization>, CN=<prefix> Class N Root``)."""

    organization: str = "CAcert Community CA"
    common_name_prefix: str = "CAcert Community"
    country: str | None = None

    def subject(self, common_name_suffix: str) -> x509.Name:
        attributes = []
        if self.country:
            attributes.append(x509.NameAttribute(NameOID.COUNTRY_NAME, self.country))
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization))
        attributes.append(
            x509.NameAttribute(NameOID.COMMON_NAME, f"{self.common_name_prefix} {common_name_suffix}")
        )
        return x509.Name(attributes)

    def ca_subject(self, cert_class: CertClass) -> x509.Name:
        return self.subject(f"Class {cert_class.value} Root")

    def ocsp_subject(self, cert_class: CertClass) -> x509.Name:
        return self.subject(f"Class {cert_class.value} OCSP Responder")


@dataclass(frozen=True)
class Lifetimes:
    """Validity periods in days. Class 3 never outlives the root it chains to."""

    root_days: int = 20 * 365 + 5
    class3_days: int = 10 * 365 + 2
    ocsp_signer_days: int = 90


@dataclass(frozen=True)
class OCSPSigner:
    """A delegated OCSP responder of one issuing CA: its certificate and key."""

    certificate: x509.Certificate
    private_key: PrivateKey = field(repr=False)


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


def _all_paths(directory: Path) -> list[Path]:
    return [
        f(directory, c)
        for c in CertClass
        for f in (certificate_path, key_path, ocsp_certificate_path, ocsp_key_path)
    ]


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_new_file(path: Path, data: bytes) -> None:
    try:
        with path.open("xb") as out:
            out.write(data)
    except FileExistsError:
        raise HierarchyError(f"refusing to overwrite existing file {path}") from None


def _replace_file(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- CA certificates


def _utc_seconds(now: dt.datetime | None) -> dt.datetime:
    moment = now or dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return moment.astimezone(dt.UTC).replace(microsecond=0)


def _ca_extensions(
    builder: x509.CertificateBuilder, subject_key: PrivateKey, path_length: int
) -> x509.CertificateBuilder:
    return (
        builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False)
    )


def create_root_certificate(
    key: PrivateKey, names: HierarchyNames, now: dt.datetime, validity_days: int
) -> x509.Certificate:
    """The self-signed Class 1 root (pathLen 1: Class 3 may sit below it, nothing below Class 3)."""
    subject = names.ca_subject(CertClass.CLASS1)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(new_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=validity_days) - dt.timedelta(seconds=1))
    )
    builder = _ca_extensions(builder, key, path_length=1).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
    )
    return builder.sign(key, keys.signature_hash(key))


def create_class3_certificate(
    key: PrivateKey,
    root: x509.Certificate,
    root_key: PrivateKey,
    class1_urls: CAUrls,
    names: HierarchyNames,
    now: dt.datetime,
    validity_days: int,
) -> x509.Certificate:
    """The Class 3 CA, signed by Class 1 (pathLen 0), with revocation pointers to Class 1.

    It carries no extendedKeyUsage: like CAcert's Class 3 it issues server, client and code
    signing leaves. (Current TLS BR 7.1.2.10.6 wants one purpose per subordinate CA; pkilint's
    serverauth linter reports the missing EKU on this certificate, by design of the two-root model.)
    """
    not_after = min(
        now + dt.timedelta(days=validity_days) - dt.timedelta(seconds=1), root.not_valid_after_utc
    )
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(names.ca_subject(CertClass.CLASS3))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(new_serial_number())
        .not_valid_before(now)
        .not_valid_after(not_after)
    )
    builder = (
        _ca_extensions(builder, key, path_length=0)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), critical=False
        )
        .add_extension(crl_distribution_points(class1_urls), critical=False)
        .add_extension(authority_information_access(class1_urls), critical=False)
        # BR 7.1.2.10.5: a CA operated by the root's own operator may assert anyPolicy; the leaves
        # carry the specific CA/B Forum policy OIDs.
        .add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(CertificatePoliciesOID.ANY_POLICY, None)]),
            critical=False,
        )
    )
    return builder.sign(root_key, keys.signature_hash(root_key))


def crl_distribution_points(urls: CAUrls) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(urls.crl_url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )


def authority_information_access(urls: CAUrls) -> x509.AuthorityInformationAccess:
    return x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(urls.ocsp_url)
            ),
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(urls.ca_issuers_url),
            ),
        ]
    )


def create_ocsp_signer_certificate(
    cert_class: CertClass,
    ca_certificate: x509.Certificate,
    ca_key: PrivateKey,
    signer_key: PrivateKey,
    names: HierarchyNames,
    now: dt.datetime,
    validity_days: int,
) -> x509.Certificate:
    """A delegated OCSP responder certificate (RFC 6960 4.2.2.2, BR 7.1.2.8).

    EKU id-kp-OCSPSigning makes it a responder for exactly this CA; id-pkix-ocsp-nocheck tells
    clients not to check its own status, which is why its lifetime is kept short.
    """
    not_after = min(
        now + dt.timedelta(days=validity_days) - dt.timedelta(seconds=1), ca_certificate.not_valid_after_utc
    )
    ca_ski = ca_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(names.ocsp_subject(cert_class))
        .issuer_name(ca_certificate.subject)
        .public_key(signer_key.public_key())
        .serial_number(new_serial_number())
        .not_valid_before(now)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )
    return builder.sign(ca_key, keys.signature_hash(ca_key))


# ------------------------------------------------------------------------------ entry points


def bootstrap(
    directory: Path,
    passphrase: bytes,
    algorithm: str,
    *,
    class1_urls: CAUrls,
    now: dt.datetime | None = None,
    names: HierarchyNames | None = None,
    lifetimes: Lifetimes | None = None,
) -> Hierarchy:
    """Create both CAs and their OCSP signers in ``directory`` and return the loaded hierarchy.

    Nothing is written unless none of the eight files exists: a second bootstrap over a live CA
    would orphan every certificate it issued. Keys are written with ``O_EXCL`` as a second guard
    against a concurrent bootstrap. ``class1_urls`` are the Class 1 CRL/OCSP/certificate URLs that
    the Class 3 certificate points at. A bootstrap interrupted half-way leaves files that a rerun
    refuses to overwrite; nothing can have been issued yet, so remove them by hand and rerun.
    """
    names = names or HierarchyNames()
    lifetimes = lifetimes or Lifetimes()
    moment = _utc_seconds(now)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    existing = [str(p) for p in _all_paths(directory) if p.exists()]
    if existing:
        raise HierarchyError(f"refusing to overwrite an existing hierarchy: {', '.join(existing)} exist")

    root_key = keys.generate_private_key(algorithm)
    class3_key = keys.generate_private_key(algorithm)
    root = create_root_certificate(root_key, names, moment, lifetimes.root_days)
    class3 = create_class3_certificate(
        class3_key, root, root_key, class1_urls, names, moment, lifetimes.class3_days
    )
    materials = {CertClass.CLASS1: (root, root_key), CertClass.CLASS3: (class3, class3_key)}

    for cert_class, (ca_cert, ca_key) in materials.items():
        signer_key = keys.generate_private_key(algorithm)
        signer_cert = create_ocsp_signer_certificate(
            cert_class, ca_cert, ca_key, signer_key, names, moment, lifetimes.ocsp_signer_days
        )
        try:
            keys.write_private_key(key_path(directory, cert_class), ca_key, passphrase)
            keys.write_private_key(ocsp_key_path(directory, cert_class), signer_key, passphrase)
        except keys.KeyFileExists as exc:
            raise HierarchyError(str(exc)) from None
        _write_new_file(certificate_path(directory, cert_class), _pem(ca_cert))
        _write_new_file(ocsp_certificate_path(directory, cert_class), _pem(signer_cert))

    return load_hierarchy(directory, passphrase)


def renew_ocsp_signer(
    directory: Path,
    passphrase: bytes,
    cert_class: int,
    *,
    now: dt.datetime | None = None,
    validity_days: int | None = None,
    names: HierarchyNames | None = None,
) -> OCSPSigner:
    """Replace one CA's OCSP signer with a new key and certificate and return it.

    Run it well before ``ocsp_signer_expires_soon`` turns true. Each file is replaced atomically;
    a crash between the two leaves a key that does not match its certificate, which
    ``load_hierarchy`` reports, and running this again repairs.
    """
    cls = CertClass(cert_class)
    names = names or HierarchyNames()
    moment = _utc_seconds(now)
    ca_cert = _read_certificate(certificate_path(directory, cls))
    ca_key = keys.read_private_key(key_path(directory, cls), passphrase)
    signer_key = keys.generate_private_key(keys.algorithm_of(ca_key))
    days = validity_days if validity_days is not None else Lifetimes().ocsp_signer_days
    signer_cert = create_ocsp_signer_certificate(cls, ca_cert, ca_key, signer_key, names, moment, days)
    keys.replace_private_key(ocsp_key_path(directory, cls), signer_key, passphrase)
    _replace_file(ocsp_certificate_path(directory, cls), _pem(signer_cert))
    return OCSPSigner(signer_cert, signer_key)


def ocsp_signer_expires_soon(
    signer: OCSPSigner, now: dt.datetime, margin: dt.timedelta = dt.timedelta(days=30)
) -> bool:
    """Whether the signer certificate ends within ``margin`` of ``now`` (time to renew)."""
    return signer.certificate.not_valid_after_utc - margin <= now


def _read_certificate(path: Path) -> x509.Certificate:
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


def load_hierarchy(directory: Path, passphrase: bytes, *, ca_keys: bool = True) -> Hierarchy:
    """Load and cross-check the eight files: every certificate is signed by its issuer and every
    key belongs to its certificate, so a mixed-up deployment fails at start-up, not at signing.

    With ``ca_keys=False`` (the public status mode) the CA key files are neither read nor needed:
    only the certificates and the delegated OCSP signers are loaded."""
    loaded: dict[CertClass, tuple[x509.Certificate, PrivateKey | None, OCSPSigner]] = {}
    for cls in CertClass:
        cert = _read_certificate(certificate_path(directory, cls))
        key = keys.read_private_key(key_path(directory, cls), passphrase) if ca_keys else None
        if key is not None:
            _check_key_matches(cert, key, cls.label)
        signer_cert = _read_certificate(ocsp_certificate_path(directory, cls))
        signer_key = keys.read_private_key(ocsp_key_path(directory, cls), passphrase)
        _check_key_matches(signer_cert, signer_key, f"ocsp-{cls.label}")
        _check_issued(signer_cert, cert, f"ocsp-{cls.label}")
        loaded[cls] = (cert, key, OCSPSigner(signer_cert, signer_key))

    root = loaded[CertClass.CLASS1][0]
    class3 = loaded[CertClass.CLASS3][0]
    _check_issued(root, root, "class1 (must be self-signed)")
    _check_issued(class3, root, "class3")

    chains = {CertClass.CLASS1: (root,), CertClass.CLASS3: (class3, root)}
    return Hierarchy(
        cas={
            cls: IssuingCA(cls, cert, key, signer, chains[cls]) for cls, (cert, key, signer) in loaded.items()
        }
    )
