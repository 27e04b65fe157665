"""The creation ceremony of the hierarchy: new keys, the Class 1 root, the Class 3 CA under it, the
self-signed Class 3 root (the same Class 3 key and subject, an anchor for relying parties who trust
assured members only) and a delegated OCSP signer per CA, written encrypted into one directory
(``init-ca``; ``self_sign_class3`` adds the self-signed Class 3 root to an older directory); and the renewal of
the short-lived OCSP signers: offline into the files (``renew-ocsp``), or in memory for the issuing mode's
automatic renewal (``reissue_ocsp_signer``). The files it writes are what ``hierarchy.load_hierarchy`` reads.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import CertificatePoliciesOID, ExtendedKeyUsageOID, NameOID

from services.signer.ca import keys
from services.signer.ca.extensions import authority_information_access, crl_distribution_points
from services.signer.ca.hierarchy import (
    CertClass,
    Hierarchy,
    HierarchyError,
    IssuingCA,
    OCSPSigner,
    all_paths,
    certificate_path,
    check_class3_root,
    class3_root_path,
    key_path,
    load_hierarchy,
    ocsp_certificate_path,
    ocsp_key_path,
    read_certificate,
)
from services.signer.ca.keys import PrivateKey
from services.signer.ca.serials import new_serial_number
from services.signer.ca.urls import CAUrls


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
    builder: x509.CertificateBuilder, subject_key: PrivateKey, path_length: int,
    ski: x509.SubjectKeyIdentifier | None = None,
) -> x509.CertificateBuilder:
    """basicConstraints, keyUsage and the SKI (``ski``, or computed from ``subject_key``) of a CA."""
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
        .add_extension(ski or x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False)
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


def create_class3_root_certificate(
    key: PrivateKey, class3: x509.Certificate, now: dt.datetime
) -> x509.Certificate:
    """The self-signed Class 3 root: a twin of ``class3`` (the Class-1-signed Class 3 certificate of
    ``key``) with the same subject, public key and subject key identifier, so every certificate the
    Class 3 key signs verifies under either, like a cross-signed root.

    Root profile (BR 7.1.2.1): basicConstraints CA (pathLen 0, as ``class3``: the Class 3 key signs
    leaves only; pkilint warns that a root's pathLen is not recommended, as it does for the Class 1
    root), keyUsage keyCertSign and cRLSign, the SKI copied from ``class3`` and the AKI naming that same
    key (BR 7.1.2.1.3; pkilint warns when a root lacks it). No CRL Distribution Points, AIA or policies:
    nothing above a root to point at. Validity: from ``now`` (BR 7.1.2.1.1: within a week of signing, so
    a later ``self_sign_class3`` does not backdate) until ``class3`` ends, so the Class 3 key is trusted
    for exactly as long under either anchor.
    """
    ski = class3.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    not_after = class3.not_valid_after_utc
    if not_after <= now:
        raise HierarchyError("the Class 3 certificate has ended; a self-signed twin would end before it starts")
    builder = (
        x509.CertificateBuilder()
        .subject_name(class3.subject)
        .issuer_name(class3.subject)
        .public_key(key.public_key())
        .serial_number(new_serial_number())
        .not_valid_before(now)
        .not_valid_after(not_after)
    )
    builder = _ca_extensions(builder, key, path_length=0, ski=ski).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
    )
    return builder.sign(key, keys.signature_hash(key))


def create_ocsp_signer_certificate(
    cert_class: CertClass,
    ca_certificate: x509.Certificate,
    ca_key: PrivateKey,
    signer_key: PrivateKey,
    names: HierarchyNames,
    now: dt.datetime,
    validity_days: int,
    *,
    subject: x509.Name | None = None,
) -> x509.Certificate:
    """A delegated OCSP responder certificate (RFC 6960 4.2.2.2, BR 7.1.2.8).

    EKU id-kp-OCSPSigning makes it a responder for exactly this CA; id-pkix-ocsp-nocheck tells
    clients not to check its own status, which is why its lifetime is kept short. ``subject``
    (a renewal keeps the current signer's) overrides ``names``.
    """
    not_after = min(
        now + dt.timedelta(days=validity_days) - dt.timedelta(seconds=1), ca_certificate.not_valid_after_utc
    )
    ca_ski = ca_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or names.ocsp_subject(cert_class))
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
    """Create both CAs, the self-signed Class 3 root and the OCSP signers in ``directory`` and return
    the loaded hierarchy.

    Nothing is written unless none of the nine files exists: a second bootstrap over a live CA
    would orphan every certificate it issued. Keys are written with ``O_EXCL`` as a second guard
    against a concurrent bootstrap. ``class1_urls`` are the Class 1 CRL/OCSP/certificate URLs that
    the Class 3 certificate points at. A bootstrap interrupted half-way leaves files that a rerun
    refuses to overwrite; nothing can have been issued yet, so remove them by hand and rerun.
    """
    names = names or HierarchyNames()
    lifetimes = lifetimes or Lifetimes()
    moment = _utc_seconds(now)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    existing = [str(p) for p in [*all_paths(directory), class3_root_path(directory)] if p.exists()]
    if existing:
        raise HierarchyError(f"refusing to overwrite an existing hierarchy: {', '.join(existing)} exist")

    root_key = keys.generate_private_key(algorithm)
    class3_key = keys.generate_private_key(algorithm)
    root = create_root_certificate(root_key, names, moment, lifetimes.root_days)
    class3 = create_class3_certificate(
        class3_key, root, root_key, class1_urls, names, moment, lifetimes.class3_days
    )
    class3_root = create_class3_root_certificate(class3_key, class3, moment)
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
    _write_new_file(class3_root_path(directory), _pem(class3_root))

    return load_hierarchy(directory, passphrase)


def self_sign_class3(directory: Path, passphrase: bytes, *, now: dt.datetime | None = None) -> x509.Certificate:
    """Add the self-signed Class 3 root to a hierarchy made before it existed (``self-sign-class3``).

    Loads and cross-checks the directory first, needs the Class 3 key, and refuses when
    ``class3-root.crt.pem`` exists. Nothing else is touched: every certificate issued so far keeps
    verifying as before, and now also under the new anchor (same subject, key and SKI).
    """
    moment = _utc_seconds(now)
    path = class3_root_path(directory)
    if path.exists():
        raise HierarchyError(f"refusing to overwrite existing file {path}")
    loaded = load_hierarchy(directory, passphrase)
    class3 = loaded.issuing_ca(CertClass.CLASS3)
    twin = create_class3_root_certificate(class3.signing_key, class3.certificate, moment)
    check_class3_root(twin, class3.certificate)
    _write_new_file(path, _pem(twin))
    return twin


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

    Run it well before ``OCSPSigner.expires_soon`` turns true (the status mode's readiness warns).
    Each file is replaced atomically; a crash between the two leaves a key that does not match its certificate, which
    ``load_hierarchy`` reports, and running this again repairs.
    """
    cls = CertClass(cert_class)
    names = names or HierarchyNames()
    moment = _utc_seconds(now)
    ca_cert = read_certificate(certificate_path(directory, cls))
    ca_key = keys.read_private_key(key_path(directory, cls), passphrase)
    signer_key = keys.generate_private_key(keys.algorithm_of(ca_key))
    days = validity_days if validity_days is not None else Lifetimes().ocsp_signer_days
    signer_cert = create_ocsp_signer_certificate(cls, ca_cert, ca_key, signer_key, names, moment, days)
    keys.replace_private_key(ocsp_key_path(directory, cls), signer_key, passphrase)
    _replace_file(ocsp_certificate_path(directory, cls), _pem(signer_cert))
    return OCSPSigner(signer_cert, signer_key)


def reissue_ocsp_signer(
    ca: IssuingCA, *, now: dt.datetime | None = None, validity_days: int | None = None
) -> OCSPSigner:
    """A new delegated OCSP signer for a loaded CA, in memory: a new key of the CA key's algorithm and a
    certificate with the same profile as ``init-ca``'s (``create_ocsp_signer_certificate``) and the current
    signer's subject, signed with the CA key. The issuing mode stores it (``ocsp_signers.py``); the current
    signer is left alone and keeps verifying until it ends."""
    moment = _utc_seconds(now)
    signer_key = keys.generate_private_key(keys.algorithm_of(ca.signing_key))
    days = validity_days if validity_days is not None else Lifetimes().ocsp_signer_days
    certificate = create_ocsp_signer_certificate(
        ca.cert_class, ca.certificate, ca.signing_key, signer_key, HierarchyNames(), moment, days,
        subject=ca.ocsp_signer.certificate.subject,
    )
    return OCSPSigner(certificate, signer_key)
