"""The creation ceremony of the hierarchy: new keys, the Class 1 root, the Class 3 root under it, the
self-signed Class 3 root (the same Class 3 key and subject, an anchor for relying parties who trust
assured members only), an issuing CA under each root, a delegated OCSP signer per CA and the roots' ARLs
(``create_hierarchy``, ``init-ca``: the roots' keys go to an offline root directory, everything the signer
needs to the CA directory); ``add_issuing_cas`` adds issuing CAs to a directory made before them,
``issue_arl`` signs a root's CRL, ``self_sign_class3`` adds the self-signed Class 3 root to an older
directory; and the renewal of the short-lived OCSP signers: offline into the files (``renew-ocsp``), or in
memory for the issuing mode's automatic renewal (``reissue_ocsp_signer``). The files it writes are what
``hierarchy.load_hierarchy`` reads. ``bootstrap`` makes the single-directory layout of before issue 18
(roots that sign leaves), which the migration tests and the signer-alone fixtures use.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import CertificatePoliciesOID, ExtendedKeyUsageOID, NameOID

from services.signer.ca import keys
from services.signer.ca.crl import build_arl
from services.signer.ca.extensions import authority_information_access, crl_distribution_points
from services.signer.ca.hierarchy import (
    CertClass,
    Hierarchy,
    HierarchyError,
    IssuingCA,
    OCSPSigner,
    all_paths,
    arl_path,
    certificate_path,
    check_arl,
    check_class3_root,
    class3_root_path,
    class_label,
    cross_certificate_path,
    issuing_label,
    key_path,
    load_hierarchy,
    ocsp_certificate_path,
    ocsp_key_path,
    path_length_of,
    read_certificate,
)
from services.signer.ca.keys import PrivateKey
from services.signer.ca.serials import new_serial_number
from services.signer.ca.urls import CAUrls


@dataclasses.dataclass(frozen=True)
class HierarchyNames:
    """Subject naming of the CA certificates (``O=<organization>, CN=<prefix> Class N Root``)."""

    organization: str = "CAcert Community CA"
    common_name_prefix: str = "CAcert Community"
    country: str | None = None
    generation: int = 1
    """A later generation of roots ends every common name in `` G<N>``: no two CAs share a name."""

    def subject(self, common_name_suffix: str) -> x509.Name:
        attributes = []
        if self.country:
            attributes.append(x509.NameAttribute(NameOID.COUNTRY_NAME, self.country))
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization))
        generation = "" if self.generation == 1 else f" G{self.generation}"
        attributes.append(
            x509.NameAttribute(NameOID.COMMON_NAME, f"{self.common_name_prefix} {common_name_suffix}{generation}")
        )
        return x509.Name(attributes)

    def ca_subject(self, cert_class: CertClass) -> x509.Name:
        return self.subject(f"Class {cert_class.value} Root")

    def ocsp_subject(self, cert_class: CertClass) -> x509.Name:
        return self.subject(f"Class {cert_class.value} OCSP Responder")

    def issuing_subject(self, cert_class: CertClass) -> x509.Name:
        return self.subject(f"Class {cert_class.value} Issuing CA")

    def issuing_ocsp_subject(self, cert_class: CertClass) -> x509.Name:
        return self.subject(f"Class {cert_class.value} Issuing CA OCSP Responder")


@dataclasses.dataclass(frozen=True)
class Lifetimes:
    """Validity periods in days. No CA certificate outlives the one it chains to."""

    root_days: int = 20 * 365 + 5
    class3_days: int = 10 * 365 + 2
    issuing_days: int = 5 * 365 + 1
    ocsp_signer_days: int = 90
    root_ocsp_signer_days: int = 365
    """A root's OCSP signer is renewed offline (its key is there), so it lives a year, the longest a root's
    status information may go without an update (TLS BR 4.9.10 for subordinate CA certificates)."""
    arl_days: int = 365
    """TLS BR 4.9.7: a CRL of CA certificates is re-issued within twelve months."""


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


def ca_certificate(
    *,
    subject: x509.Name,
    public_key: keys.PublicKey,
    signing_key: PrivateKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
    path_length: int | None,
    issuer: x509.Certificate | None = None,
    issuer_urls: CAUrls | None = None,
    ski: x509.SubjectKeyIdentifier | None = None,
) -> x509.Certificate:
    """A CA certificate of this hierarchy: basicConstraints CA with ``path_length`` and keyUsage keyCertSign +
    cRLSign (both critical), the SKI (``ski``, or computed from ``public_key``: a cross-certificate or the
    self-signed Class 3 root copies the existing one), and

    * without ``issuer``, a root: self-signed, the AKI naming its own key (BR 7.1.2.1.3), no CRL Distribution
      Points, AIA or policies (nothing above a root to point at);
    * with ``issuer`` (whose key is ``signing_key``), a subordinate CA: the issuer's AKI, CRL Distribution
      Points and AIA from ``issuer_urls`` (its CRL, OCSP responder and certificate), and anyPolicy (BR
      7.1.2.10.5: a CA operated by the root's own operator may assert it; the leaves carry the specific CA/B
      Forum policy OIDs). No extendedKeyUsage: like CAcert's Class 3 it issues server, client and code
      signing leaves (current TLS BR 7.1.2.10.6 wants one purpose per subordinate CA; pkilint's serverauth
      linter reports it, by design of the two-root model).

    ``not_after`` never goes beyond the issuer's (a CA certificate does not outlive the one it chains to).
    """
    own_ski = ski or x509.SubjectKeyIdentifier.from_public_key(public_key)
    if issuer is not None:
        not_after = min(not_after, issuer.not_valid_after_utc)
    if not_after <= not_before:
        raise HierarchyError(f"{subject.rfc4514_string()} would end before it starts")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(public_key)
        .serial_number(new_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
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
        .add_extension(own_ski, critical=False)
    )
    if issuer is None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(own_ski), critical=False)
    else:
        if issuer_urls is None:
            raise ValueError("a subordinate CA certificate needs its issuer's URLs")
        issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False)
            .add_extension(crl_distribution_points(issuer_urls), critical=False)
            .add_extension(authority_information_access(issuer_urls), critical=False)
            .add_extension(
                x509.CertificatePolicies([x509.PolicyInformation(CertificatePoliciesOID.ANY_POLICY, None)]),
                critical=False,
            )
        )
    return builder.sign(signing_key, keys.signature_hash(signing_key))


def _days_from(now: dt.datetime, days: int) -> dt.datetime:
    return now + dt.timedelta(days=days) - dt.timedelta(seconds=1)


def create_root_certificate(
    key: PrivateKey, names: HierarchyNames, now: dt.datetime, validity_days: int, path_length: int = 1
) -> x509.Certificate:
    """The self-signed Class 1 root. pathLen 2 with issuing CAs (Class 3 root, then Class 3 issuing CA below
    it); 1 in the layout before them (Class 3 below it, nothing below Class 3)."""
    return ca_certificate(
        subject=names.ca_subject(CertClass.CLASS1), public_key=key.public_key(), signing_key=key,
        not_before=now, not_after=_days_from(now, validity_days), path_length=path_length,
    )


def create_class3_certificate(
    key: PrivateKey,
    root: x509.Certificate,
    root_key: PrivateKey,
    class1_urls: CAUrls,
    names: HierarchyNames,
    now: dt.datetime,
    validity_days: int,
    path_length: int = 0,
) -> x509.Certificate:
    """The Class 3 root, signed by Class 1, with revocation pointers to Class 1. pathLen 1 with issuing CAs
    (the Class 3 issuing CA below it), 0 in the layout before them (it signed the leaves)."""
    return create_subordinate_certificate(
        key, names.ca_subject(CertClass.CLASS3), root, root_key, class1_urls, now, validity_days, path_length
    )


def create_subordinate_certificate(
    key: PrivateKey,
    subject: x509.Name,
    issuer: x509.Certificate,
    issuer_key: PrivateKey,
    issuer_urls: CAUrls,
    now: dt.datetime,
    validity_days: int,
    path_length: int,
) -> x509.Certificate:
    """A CA certificate signed by ``issuer`` (the Class 3 root under Class 1, an issuing CA under its root),
    valid ``validity_days`` from ``now`` at most (``ca_certificate``)."""
    return ca_certificate(
        subject=subject, public_key=key.public_key(), signing_key=issuer_key, not_before=now,
        not_after=_days_from(now, validity_days), path_length=path_length, issuer=issuer, issuer_urls=issuer_urls,
    )


def create_class3_root_certificate(
    key: PrivateKey, class3: x509.Certificate, now: dt.datetime
) -> x509.Certificate:
    """The self-signed Class 3 root: a twin of ``class3`` (the Class-1-signed Class 3 certificate of
    ``key``) with the same subject, public key and subject key identifier, so every certificate the
    Class 3 key signs verifies under either, like a cross-signed root.

    Root profile (BR 7.1.2.1, ``ca_certificate`` without issuer) with the pathLen of ``class3`` (1 above the
    Class 3 issuing CA, 0 where the Class 3 key signs leaves; pkilint warns that a root's pathLen is not
    recommended, as it does for the Class 1 root) and the SKI copied from ``class3``. Validity: from ``now``
    (BR 7.1.2.1.1: within a week of signing, so a later ``self_sign_class3`` does not backdate) until
    ``class3`` ends, so the Class 3 key is trusted for exactly as long under either anchor.
    """
    if class3.not_valid_after_utc <= now:
        raise HierarchyError("the Class 3 certificate has ended; a self-signed twin would end before it starts")
    return ca_certificate(
        subject=class3.subject, public_key=key.public_key(), signing_key=key, not_before=now,
        not_after=class3.not_valid_after_utc, path_length=path_length_of(class3),
        ski=class3.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value,
    )


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
    """A delegated OCSP responder certificate of ``cert_class``'s naming (``ocsp_signer_certificate``) valid
    ``validity_days`` from ``now``; ``subject`` (a renewal keeps the current signer's) overrides ``names``."""
    return ocsp_signer_certificate(
        subject=subject or names.ocsp_subject(cert_class), issuer=ca_certificate, issuer_key=ca_key,
        public_key=signer_key.public_key(), not_before=now, not_after=_days_from(now, validity_days),
    )


def ocsp_signer_certificate(
    *,
    subject: x509.Name,
    issuer: x509.Certificate,
    issuer_key: PrivateKey,
    public_key: keys.PublicKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.Certificate:
    """A delegated OCSP responder certificate (RFC 6960 4.2.2.2, BR 7.1.2.8), ending no later than ``issuer``.

    EKU id-kp-OCSPSigning makes it a responder for exactly this CA; id-pkix-ocsp-nocheck tells
    clients not to check its own status, which is why its lifetime is kept short.
    """
    not_after = min(not_after, issuer.not_valid_after_utc)
    ca_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(new_serial_number())
        .not_valid_before(not_before)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )
    return builder.sign(issuer_key, keys.signature_hash(issuer_key))


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
    _refuse_existing(directory)

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


def _refuse_existing(*directories: Path) -> None:
    existing = [str(p) for d in directories for p in all_paths(d) if p.exists()]
    if existing:
        raise HierarchyError(f"refusing to overwrite an existing hierarchy: {', '.join(existing)} exist")


def _write_ca(directory: Path, label: str, cert: x509.Certificate, key: PrivateKey | None,
              signer: OCSPSigner, passphrase: bytes, ocsp_passphrase: bytes, *, certificate: bool = True) -> None:
    """A CA's certificate (unless ``certificate`` is false: the caller writes it last), its key (unless it
    stays elsewhere) and its delegated OCSP signer, never overwriting."""
    try:
        if key is not None:
            keys.write_private_key(key_path(directory, label), key, passphrase)
        keys.write_private_key(ocsp_key_path(directory, label), signer.private_key, ocsp_passphrase)
    except keys.KeyFileExists as exc:
        raise HierarchyError(str(exc)) from None
    if certificate:
        _write_new_file(certificate_path(directory, label), _pem(cert))
    _write_new_file(ocsp_certificate_path(directory, label), _pem(signer.certificate))


def create_hierarchy(
    directory: Path,
    root_directory: Path,
    passphrase: bytes,
    algorithm: str,
    *,
    public_base_url: str,
    now: dt.datetime | None = None,
    names: HierarchyNames | None = None,
    lifetimes: Lifetimes | None = None,
    ocsp_passphrase: bytes | None = None,
) -> Hierarchy:
    """The whole hierarchy (``init-ca``): both roots, the self-signed Class 3 root, an issuing CA per class,
    a delegated OCSP signer per CA and an empty ARL per root, and return it as the issuing mode loads it.

    The roots' keys are written to ``root_directory`` only (with copies of the roots' certificates, which the
    later ceremonies need): move it offline, since no serving process needs it (BR 6.1.7: a root key signs
    no leaves). Everything else goes to ``directory``, the CA directory the signer reads. Nothing is written
    when either directory already holds a hierarchy's file. pathLens: Class 1 root 2, Class 3 root 1,
    issuing CAs 0. CRL/OCSP/caIssuers URLs of each CA certificate point at its issuer under
    ``public_base_url`` (``CAUrls.under``). The OCSP signers' keys are encrypted with ``ocsp_passphrase``
    (default ``passphrase``): the status mode, which holds them, then needs no CA passphrase.
    """
    ocsp_secret = ocsp_passphrase or passphrase
    names = names or HierarchyNames()
    lifetimes = lifetimes or Lifetimes()
    moment = _utc_seconds(now)
    if directory.resolve() == root_directory.resolve():
        raise HierarchyError("the root directory must not be the CA directory: the roots' keys stay offline")
    for d in (directory, root_directory):
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    _refuse_existing(directory, root_directory)

    root_key = keys.generate_private_key(algorithm)
    class3_key = keys.generate_private_key(algorithm)
    root = create_root_certificate(root_key, names, moment, lifetimes.root_days, path_length=2)
    class3 = create_class3_certificate(
        class3_key, root, root_key, CAUrls.under(public_base_url, CertClass.CLASS1.label), names, moment,
        lifetimes.class3_days, path_length=1,
    )
    for cert_class, (ca_cert, ca_key) in {CertClass.CLASS1: (root, root_key),
                                          CertClass.CLASS3: (class3, class3_key)}.items():
        signer_key = keys.generate_private_key(algorithm)
        signer = OCSPSigner(create_ocsp_signer_certificate(
            cert_class, ca_cert, ca_key, signer_key, names, moment, lifetimes.root_ocsp_signer_days
        ), signer_key)
        _write_ca(directory, cert_class.label, ca_cert, None, signer, passphrase, ocsp_secret)
        try:
            keys.write_private_key(key_path(root_directory, cert_class), ca_key, passphrase)
        except keys.KeyFileExists as exc:
            raise HierarchyError(str(exc)) from None
        _write_new_file(certificate_path(root_directory, cert_class), _pem(ca_cert))
    _write_new_file(class3_root_path(directory), _pem(create_class3_root_certificate(class3_key, class3, moment)))
    for cert_class in CertClass:
        issue_arl(directory, root_directory, passphrase, cert_class, now=moment, days=lifetimes.arl_days)
    refused = add_issuing_cas(directory, root_directory, passphrase, public_base_url=public_base_url,
                              now=moment, names=names, lifetimes=lifetimes, ocsp_passphrase=ocsp_secret)
    if refused:
        raise HierarchyError("; ".join(refused.values()))
    return load_hierarchy(directory, passphrase, ocsp_passphrase=ocsp_secret)


def add_issuing_cas(
    directory: Path,
    root_directory: Path,
    passphrase: bytes,
    *,
    public_base_url: str,
    now: dt.datetime | None = None,
    names: HierarchyNames | None = None,
    lifetimes: Lifetimes | None = None,
    ocsp_passphrase: bytes | None = None,
) -> dict[CertClass, str]:
    """Add an issuing CA (key, certificate, OCSP signer) under each root of ``directory`` that has none, with
    the root's key from ``root_directory`` (the CA directory itself for a directory made before issue 18).
    From the signer's next start the new CA signs that class's leaves; everything the root signed before
    keeps verifying and keeps its CRL and OCSP.

    A class whose certificates forbid a CA below it is left as it is, and returned with the reason (an
    empty dict: every class has its issuing CA). Before issue 18 the Class 3 certificate and its self-signed
    twin carry pathLen 0 and the Class 1 root pathLen 1, so only Class 1 can get one; Class 3 keeps signing
    its leaves until a new generation of roots (docs/operations.md, "Issuing CAs").
    """
    names = names or HierarchyNames()
    lifetimes = lifetimes or Lifetimes()
    moment = _utc_seconds(now)
    root = read_certificate(certificate_path(directory, CertClass.CLASS1))
    refused: dict[CertClass, str] = {}
    for cert_class in CertClass:
        label = issuing_label(cert_class)
        if certificate_path(directory, label).exists():
            continue
        parent = read_certificate(certificate_path(directory, cert_class))
        twin_path = class3_root_path(directory)
        blocked = _path_lengths_blocking(cert_class, parent, root,
                                         read_certificate(twin_path) if twin_path.exists() else None)
        if blocked:
            refused[cert_class] = (
                f"{label} not added: the pathLen of {', '.join(c.subject.rfc4514_string() for c in blocked)} "
                "allows no CA below it; that class keeps signing its leaves with its own key")
            continue
        parent_key = keys.read_private_key(key_path(root_directory, cert_class), passphrase)
        key = keys.generate_private_key(keys.algorithm_of(parent_key))
        cert = create_subordinate_certificate(
            key, names.issuing_subject(cert_class), parent, parent_key,
            CAUrls.under(public_base_url, cert_class.label), moment, lifetimes.issuing_days, path_length=0,
        )
        signer_key = keys.generate_private_key(keys.algorithm_of(parent_key))
        signer = OCSPSigner(create_ocsp_signer_certificate(
            cert_class, cert, key, signer_key, names, moment, lifetimes.ocsp_signer_days,
            subject=names.issuing_ocsp_subject(cert_class),
        ), signer_key)
        _write_ca(directory, label, cert, key, signer, passphrase, ocsp_passphrase or passphrase)
    return refused



def create_generation(
    directory: Path,
    root_directory: Path,
    passphrase: bytes,
    *,
    public_base_url: str,
    generation: int = 2,
    algorithm: str | None = None,
    now: dt.datetime | None = None,
    names: HierarchyNames | None = None,
    lifetimes: Lifetimes | None = None,
    ocsp_passphrase: bytes | None = None,
) -> tuple[Hierarchy, dict[str, str]]:
    """A new generation of roots next to the current one (``new-generation``, a root rollover): the shape of
    ``create_hierarchy`` with labels ending ``-g<N>`` and names ending `` G<N>`` (its roots' keys to
    ``root_directory`` only, everything else to ``directory``), plus a cross-certificate of each new issuing
    CA signed by the G1 root of its class (``cross-<label>.crt.pem``): the new CA's subject, key and SKI, so
    the leaves it signs verify under the G1 anchors relying parties already have as well as under the new
    roots. From the signer's next start the new issuing CAs sign the leaves; the G1 issuing CAs keep signing
    the CRLs and OCSP signers of theirs until they expire.

    The cross-certificates sit one level below a G1 root, where its pathLen leaves room (a root-level cross,
    G1 Class 1 over the G2 Class 1 root, would put a G2 Class 3 leaf three CAs below G1 Class 1, whose
    pathLen is 2). A G1 Class 3 root of before issue 18 (pathLen 0) cannot sign one: the G1 Class 1 root
    signs the Class 3 cross-certificate instead (such leaves then chain to G1 Class 1, not to G1 Class 3),
    and the second dict names every cross-certificate that could not be made and why. The G1 roots' keys are
    read from ``root_directory``, or from ``directory`` for a directory made before issue 18. The key
    algorithm is the G1 Class 1 root's unless ``algorithm`` says otherwise.
    """
    ocsp_secret = ocsp_passphrase or passphrase
    names = dataclasses.replace(names or HierarchyNames(), generation=generation)
    lifetimes = lifetimes or Lifetimes()
    moment = _utc_seconds(now)
    if directory.resolve() == root_directory.resolve():
        raise HierarchyError("the root directory must not be the CA directory: the roots' keys stay offline")
    current = load_hierarchy(directory, passphrase, ca_keys=False, ocsp_passphrase=ocsp_secret)
    if generation != current.generations[-1] + 1:
        raise HierarchyError(f"the CA directory holds generations {current.generations}: the next is "
                             f"{current.generations[-1] + 1}, not {generation}")
    labels = [f(c, generation) for c in CertClass for f in (class_label, issuing_label)]
    existing = [str(p) for d in (directory, root_directory) for label in labels
                for p in (certificate_path(d, label), key_path(d, label), cross_certificate_path(d, label))
                if p.exists()]
    if existing:
        raise HierarchyError(f"refusing to overwrite generation {generation}: {', '.join(existing)} exist")
    root_directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def g1_key(cert_class: CertClass) -> PrivateKey:
        path = key_path(root_directory, cert_class)
        return keys.read_private_key(path if path.exists() else key_path(directory, cert_class), passphrase)

    g1 = {c: (current.class_ca(c).certificate, g1_key(c)) for c in CertClass}
    algorithm = algorithm or keys.algorithm_of(g1[CertClass.CLASS1][1])
    root_key, class3_key = keys.generate_private_key(algorithm), keys.generate_private_key(algorithm)
    root = create_root_certificate(root_key, names, moment, lifetimes.root_days, path_length=2)
    root_label, class3_label = class_label(1, generation), class_label(3, generation)
    class3 = create_class3_certificate(class3_key, root, root_key, CAUrls.under(public_base_url, root_label),
                                       names, moment, lifetimes.class3_days, path_length=1)
    roots = {CertClass.CLASS1: (root_label, root, root_key), CertClass.CLASS3: (class3_label, class3, class3_key)}
    for cert_class, (label, ca_cert, ca_key) in roots.items():
        signer_key = keys.generate_private_key(algorithm)
        signer = OCSPSigner(create_ocsp_signer_certificate(
            cert_class, ca_cert, ca_key, signer_key, names, moment, lifetimes.root_ocsp_signer_days), signer_key)
        # The loader knows a generation by its Class 1 root's certificate: written last, so a ceremony cut
        # short leaves files the signer ignores (and a rerun refuses, naming them).
        _write_ca(directory, label, ca_cert, None, signer, passphrase, ocsp_secret,
                  certificate=cert_class is not CertClass.CLASS1)
        try:
            keys.write_private_key(key_path(root_directory, label), ca_key, passphrase)
        except keys.KeyFileExists as exc:
            raise HierarchyError(str(exc)) from None
        _write_new_file(certificate_path(root_directory, label), _pem(ca_cert))
    _write_new_file(class3_root_path(directory, generation),
                    _pem(create_class3_root_certificate(class3_key, class3, moment)))
    for label in (root_label, class3_label):
        issue_arl(directory, root_directory, passphrase, label, now=moment, days=lifetimes.arl_days)

    refused: dict[str, str] = {}
    for cert_class, (parent_label, parent, parent_key) in roots.items():
        label = issuing_label(cert_class, generation)
        key = keys.generate_private_key(algorithm)
        cert = create_subordinate_certificate(
            key, names.issuing_subject(cert_class), parent, parent_key, CAUrls.under(public_base_url, parent_label),
            moment, lifetimes.issuing_days, path_length=0)
        signer_key = keys.generate_private_key(algorithm)
        signer = OCSPSigner(create_ocsp_signer_certificate(
            cert_class, cert, key, signer_key, names, moment, lifetimes.ocsp_signer_days,
            subject=names.issuing_ocsp_subject(cert_class)), signer_key)
        _write_ca(directory, label, cert, key, signer, passphrase, ocsp_secret)
        # pathLen counts the CA certificates that may follow (RFC 5280 4.2.1.9): one below the signing G1 root.
        candidates = [cert_class] + ([CertClass.CLASS1] if cert_class is CertClass.CLASS3 else [])
        signers = [c for c in candidates if _room_below(current, c)]
        if not signers:
            refused[label] = f"no G1 root of {cert_class.label} allows a CA below it: no cross-certificate"
            continue
        if signers[0] is not cert_class:
            refused[label] = (f"the G1 {cert_class.label} root allows no CA below it: the cross-certificate is "
                              f"signed by G1 {signers[0].label}, so these leaves do not chain to G1 {cert_class.label}")
        g1_cert, g1_root_key = g1[signers[0]]
        cross = ca_certificate(
            subject=cert.subject, public_key=key.public_key(), signing_key=g1_root_key, not_before=moment,
            not_after=cert.not_valid_after_utc, path_length=0, issuer=g1_cert,
            issuer_urls=CAUrls.under(public_base_url, signers[0].label),
            ski=cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value)
        _write_new_file(cross_certificate_path(directory, label), _pem(cross))
    _write_new_file(certificate_path(directory, root_label), _pem(root))
    return load_hierarchy(directory, passphrase, ocsp_passphrase=ocsp_secret), refused


def _path_lengths_blocking(
    cert_class: CertClass, parent: x509.Certificate, root: x509.Certificate, class3_twin: x509.Certificate | None
) -> list[x509.Certificate]:
    """The certificates whose pathLen forbids a CA directly below ``parent`` (the G1 root of ``cert_class``;
    ``root`` the Class 1 root, ``class3_twin`` the self-signed Class 3 root if any). pathLen counts the CA
    certificates that may follow (RFC 5280 4.2.1.9): the new CA is one more below its parent, and below a
    Class 3 root two below Class 1; OpenSSL enforces an anchor's own pathLen too."""
    above = [(parent, 1)]
    if cert_class is CertClass.CLASS3:
        above.append((root, 2))
        if class3_twin is not None:
            above.append((class3_twin, 1))
    return [c for c, needed in above if (length := path_length_of(c)) is not None and length < needed]


def _room_below(hierarchy: Hierarchy, cert_class: CertClass) -> bool:
    return not _path_lengths_blocking(cert_class, hierarchy.class_ca(cert_class).certificate, hierarchy.root,
                                      hierarchy.class3_root)


def issue_arl(
    directory: Path,
    root_directory: Path,
    passphrase: bytes,
    ca: int | str,
    revoked: Sequence[tuple[int, dt.datetime, str | x509.ReasonFlags | None]] | None = None,
    *,
    now: dt.datetime | None = None,
    days: int | None = None,
) -> x509.CertificateRevocationList:
    """Sign a root's CRL (``ca``: a class of G1, or a root's label such as ``class1-g2``; an ARL: the CA
    certificates it revoked, the earlier ARL's entries and ``revoked``,
    ``(serial, time, reason)``) with its key
    from ``root_directory`` and write it as ``arl-<root>.der`` into both directories; the signer publishes
    the one in ``directory`` from its next start. The CRL number grows with each (RFC 5280 5.2.3): the
    signing time in seconds, or one more than the last ARL's; nextUpdate ``days`` (default a year, the most
    TLS BR 4.9.7 allows for CA certificates)."""
    cls = class_label(ca) if isinstance(ca, int) else ca
    moment = _utc_seconds(now)
    # The root directory keeps a copy of each root's certificate (the CA directory's of a new generation's
    # Class 1 root is written last, ``create_generation``).
    published = certificate_path(directory, cls)
    root = read_certificate(published if published.exists() else certificate_path(root_directory, cls))
    root_key = keys.read_private_key(key_path(root_directory, cls), passphrase)
    # Above every earlier ARL and above the counter the signer used while the key was online (a directory
    # migrated from before issue 18): the seconds since 1970 outgrow any count of CRLs signed since.
    number = int(moment.timestamp())
    entries: dict[int, tuple[int, dt.datetime, str | x509.ReasonFlags | None]] = {}
    for d in (directory, root_directory):
        if arl_path(d, cls).exists():
            previous = check_arl(arl_path(d, cls).read_bytes(), root, str(arl_path(d, cls)))
            number = max(number, previous.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1)
            for entry in previous:  # a revocation stays on every later ARL
                try:
                    reason: x509.ReasonFlags | None = entry.extensions.get_extension_for_class(
                        x509.CRLReason).value.reason
                except x509.ExtensionNotFound:
                    reason = None
                entries[entry.serial_number] = (entry.serial_number, entry.revocation_date_utc, reason)
    for serial, revoked_at, why in revoked or []:
        entries.setdefault(serial, (serial, revoked_at, why))
    der = build_arl(root, root_key, list(entries.values()), crl_number=number, now=moment,
                    next_update_in=dt.timedelta(days=days or Lifetimes().arl_days))
    for d in dict.fromkeys((directory, root_directory)):
        _replace_file(arl_path(d, cls), der)
    return x509.load_der_x509_crl(der)


def self_sign_class3(
    directory: Path, passphrase: bytes, *, root_directory: Path | None = None, now: dt.datetime | None = None,
    ocsp_passphrase: bytes | None = None,
) -> x509.Certificate:
    """Add the self-signed Class 3 root to a hierarchy made before it existed (``self-sign-class3``).

    Loads and cross-checks the directory first, needs the Class 3 key (from ``root_directory``, default the
    CA directory as before issue 18), and refuses when ``class3-root.crt.pem`` exists. Nothing else is
    touched: every certificate issued so far keeps verifying as before, and now also under the new anchor
    (same subject, key and SKI).
    """
    moment = _utc_seconds(now)
    path = class3_root_path(directory)
    if path.exists():
        raise HierarchyError(f"refusing to overwrite existing file {path}")
    loaded = load_hierarchy(directory, passphrase, ca_keys=False, ocsp_passphrase=ocsp_passphrase)
    class3 = loaded.class_ca(CertClass.CLASS3).certificate
    class3_key = keys.read_private_key(key_path(root_directory or directory, CertClass.CLASS3), passphrase)
    twin = create_class3_root_certificate(class3_key, class3, moment)
    check_class3_root(twin, class3)
    _write_new_file(path, _pem(twin))
    return twin


def renew_ocsp_signer(
    directory: Path,
    passphrase: bytes,
    ca: int | str,
    *,
    key_directory: Path | None = None,
    now: dt.datetime | None = None,
    validity_days: int | None = None,
    names: HierarchyNames | None = None,
    ocsp_passphrase: bytes | None = None,
) -> OCSPSigner:
    """Replace one CA's OCSP signer (``ca``: a class, or a label such as ``class1-issuing``) with a new key
    and certificate and return it, signed with the CA key from ``key_directory`` (default ``directory``; a
    root's is the offline root directory). The current signer's subject is kept.

    Run it well before ``OCSPSigner.expires_soon`` turns true (the status mode's readiness warns).
    Each file is replaced atomically; a crash between the two leaves a key that does not match its certificate, which
    ``load_hierarchy`` reports, and running this again repairs.
    """
    label = CertClass(ca).label if isinstance(ca, int) else ca
    cls = CertClass(int(label[len("class")]))
    names = names or HierarchyNames()
    moment = _utc_seconds(now)
    ca_cert = read_certificate(certificate_path(directory, label))
    ca_key = keys.read_private_key(key_path(key_directory or directory, label), passphrase)
    current = read_certificate(ocsp_certificate_path(directory, label))
    signer_key = keys.generate_private_key(keys.algorithm_of(ca_key))
    days = validity_days if validity_days is not None else Lifetimes().ocsp_signer_days
    signer_cert = create_ocsp_signer_certificate(cls, ca_cert, ca_key, signer_key, names, moment, days,
                                                 subject=current.subject)
    keys.replace_private_key(ocsp_key_path(directory, label), signer_key, ocsp_passphrase or passphrase)
    _replace_file(ocsp_certificate_path(directory, label), _pem(signer_cert))
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
