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

A root rollover (``ceremony.create_generation``, ``new-generation``) adds a second generation next to the
first: the same files with labels ending ``-g2`` (``class1-g2``, ``class3-g2``, ``class3-root-g2``,
``class1-issuing-g2``, ``class3-issuing-g2``), the G2 roots' keys offline, and ``cross-class1-issuing-g2.crt.pem``
/ ``cross-class3-issuing-g2.crt.pem``: each G2 issuing CA certified by the G1 root of its class too, so its
leaves verify under the G1 anchors relying parties already have. The newest generation's issuing CAs sign the
leaves; the older ones keep their keys for the CRLs and OCSP signers of their leaves. Chains are found by key
(``Hierarchy.chain_for``: the shortest run of certificates from the issuing CA's key to the anchor's), so a
chain is whatever the certificates in the directory link, whichever generation.

This module is the runtime model: ``load_hierarchy`` reads and cross-checks the files into the
``IssuingCA`` objects the issuer, the CRL publisher and the OCSP responder use. Creating them is
``ceremony.py``.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import hashlib
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
GENERATIONS = (1, 2)
"""The generations of roots a CA directory may hold (issue 18 item 4, "Root rollover" in docs/operations.md):
G1 keeps the labels it always had, G2's end in ``-g2``. A third generation is a change of the event contract
(its labels join the ``issuer`` and ``trust_anchors`` enums), so it is added here then, not guessed now."""


def generation_label(label: str, generation: int = 1) -> str:
    """``label`` in root generation ``generation``: G1 keeps it, a later one appends ``-g<N>``
    (``class1-g2``, ``class3-issuing-g2``)."""
    if generation not in GENERATIONS:
        raise ValueError(f"no root generation {generation}; this signer knows {GENERATIONS}")
    return label if generation == 1 else f"{label}-g{generation}"


def class_label(cert_class: int, generation: int = 1) -> str:
    """The root of a class in a generation: ``class1``, ``class3-g2``."""
    return generation_label(CertClass(cert_class).label, generation)


def issuing_label(cert_class: int, generation: int = 1) -> str:
    """``class1-issuing`` / ``class3-issuing`` (``-g2`` in G2): the issuing CA of a class (files, URLs,
    ``issuer`` of events)."""
    return generation_label(f"{CertClass(cert_class).label}-{ISSUING}", generation)


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
    name: str = ""
    """The label when it is not the class's own (``class1-issuing``, ``class1-g2``); empty for the G1 roots."""
    generation: int = 1
    """The generation of roots it belongs to (``GENERATIONS``)."""

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
    """Every CA of the directory, loaded and checked for consistency, by label, with the certificates that
    link them besides their own (self-signed Class 3 roots, cross-certificates)."""

    cas: Mapping[str, IssuingCA]
    class3_roots: Mapping[str, x509.Certificate] = field(default_factory=dict)
    """The self-signed Class 3 roots (``class3-root.crt.pem``, ``class3-root-g2.crt.pem``) by the label of
    their Class 3 root (``class3``, ``class3-g2``): trust anchors only, never in a chain sent with a
    certificate. A directory made before them has none."""
    cross_certificates: Mapping[str, x509.Certificate] = field(default_factory=dict)
    """Certificates of a later generation's issuing CA signed by the G1 root of its class
    (``cross-class1-issuing-g2.crt.pem``), by that CA's label: the same subject, key and SKI, so its leaves
    also chain to the roots relying parties already have."""
    arls: Mapping[str, bytes] = field(default_factory=dict)
    """DER CRLs the ceremony signed for roots whose key is offline (``arl-<label>.der``), by label."""

    @property
    def root(self) -> x509.Certificate:
        return self.class_ca(CertClass.CLASS1).certificate

    @property
    def class3_root(self) -> x509.Certificate | None:
        """The self-signed G1 Class 3 root, if the directory has it."""
        return self.class3_roots.get(CertClass.CLASS3.label)

    @property
    def generations(self) -> tuple[int, ...]:
        return tuple(sorted({ca.generation for ca in self.cas.values()}))

    def class_ca(self, cert_class: int, generation: int = 1) -> IssuingCA:
        """The CA named after the class: the Class 1 root, or the Class 3 root (the one signed by Class 1)."""
        return self.cas[class_label(cert_class, generation)]

    def issuing_ca(self, cert_class: int) -> IssuingCA:
        """The CA that signs the leaves of ``cert_class``: the issuing CA of the newest generation, or in a
        directory made before issue 18 (or a class that could not get one, see ``ceremony.add_issuing_cas``)
        the class's own CA."""
        return self.cas.get(issuing_label(cert_class, self.generations[-1])) or self.class_ca(cert_class)

    @property
    def leaf_issuers(self) -> tuple[str, ...]:
        """Labels of the CAs whose leaves may be out there, so whose CRLs are sharded and signed here: the
        issuing CA that signs them now and those of older generations (their certificates keep their CRL and
        OCSP until they expire), and a G1 root without an issuing CA."""
        return tuple(dict.fromkeys(
            (self.cas.get(issuing_label(c, g)) or self.class_ca(c)).label
            for g in self.generations for c in CertClass
        ))

    @property
    def online_root_keys(self) -> tuple[str, ...]:
        """Labels of the roots whose key is loaded although they sign no leaves: a directory still being
        migrated; the keys belong offline (BR 6.1.7), see docs/operations.md."""
        return tuple(label for g in self.generations for c in CertClass
                     if self.cas[label := class_label(c, g)].private_key is not None
                     and label not in self.leaf_issuers)

    @property
    def anchors(self) -> tuple[str, ...]:
        """The roots a relying party may anchor on, oldest generation first, Class 1 before Class 3."""
        return tuple(class_label(c, g) for g in self.generations for c in CertClass)

    def trust_anchors_for(self, cert_class: int) -> tuple[str, ...]:
        """The anchors the leaves the issuing CA of ``cert_class`` signs validate against (``anchors``
        order): Class 3 leaves under either root, Class 1 leaves only under Class 1; after a rollover
        under both generations where a cross-certificate links them."""
        return tuple(a for a in self.anchors if self._path(cert_class, a) is not None)

    def chain_for(
        self, cert_class: int, anchor: int | str = CertClass.CLASS1, *, include_anchor: bool = False
    ) -> tuple[x509.Certificate, ...]:
        """The CA certificates a relying party needs between a ``cert_class`` leaf and ``anchor`` (a class of
        G1, or a root's label such as ``class1-g2``), nearest to the leaf first: the issuing CA, then (Class 3
        leaves, Class 1 anchor) the Class 3 root signed by Class 1; ``include_anchor`` appends the anchor's
        CA certificate. In a directory without issuing CAs, a Class 1 leaf needs nothing under the Class 1
        anchor and a Class 3 leaf nothing under the Class 3 anchor. A leaf that does not chain to ``anchor``
        (Class 1 under Class 3) raises ``ValueError``. The shortest path wins: a G2 leaf reaches a G1 anchor
        through the cross-certificate of its issuing CA."""
        label = class_label(anchor) if isinstance(anchor, int) else anchor
        path = self._path(cert_class, label)
        if path is None:
            raise ValueError(f"a {CertClass(cert_class).label} certificate does not chain to {label}")
        return (*path, self.cas[label].certificate) if include_anchor else path

    def chain_pem(
        self, cert_class: int, anchor: int | str = CertClass.CLASS1, *, include_anchor: bool = False
    ) -> str:
        """``chain_for`` as concatenated PEM (the ``chain_pem`` of ``cert.issued``)."""
        return _pem_text(self.chain_for(cert_class, anchor, include_anchor=include_anchor))

    def anchor_certificate(self, anchor: str) -> x509.Certificate | None:
        """The self-signed certificate of anchor ``anchor``: a Class 1 root itself, a Class 3 root's
        self-signed twin (None when the directory has none)."""
        if anchor.startswith(CertClass.CLASS3.label):
            return self.class3_roots.get(anchor)
        return self.cas[anchor].certificate

    def chains(self, cert_class: int) -> tuple[tuple[str, str, str], ...]:
        """Every chain a ``cert_class`` leaf can be sent with, the default first: ``(anchor, chain_pem,
        anchor_pem)`` for each of ``trust_anchors_for`` that has a self-signed certificate, ``chain_pem`` up to
        and not including the anchor. The default leads to the oldest generation's Class 1 root, which every
        relying party has; the others are the alternates (ACME's ``rel="alternate"``)."""
        found = []
        for anchor in self.anchors:
            path, certificate = self._path(cert_class, anchor), self.anchor_certificate(anchor)
            if path is not None and certificate is not None:
                found.append((anchor, _pem_text(path), _pem_text((certificate,))))
        return tuple(found)

    @functools.cached_property
    def _links(self) -> tuple[tuple[x509.Certificate, bytes, bytes], ...]:
        """Every CA certificate that links one key to another (not self-signed), with its subject's key and
        its issuer's key (by SPKI digest): the CA certificates, then the cross-certificates."""
        certificates = [ca.certificate for ca in self.cas.values()] + list(self.cross_certificates.values())
        by_name: dict[x509.Name, list[x509.Certificate]] = {}
        for ca in self.cas.values():
            by_name.setdefault(ca.certificate.subject, []).append(ca.certificate)
        links = []
        for cert in certificates:
            if cert.issuer == cert.subject:
                continue
            for issuer in by_name.get(cert.issuer, []):
                if _issued_by(cert, issuer):
                    links.append((cert, _key_id(cert), _key_id(issuer)))
                    break
        return tuple(links)

    def _path(self, cert_class: int, anchor: str) -> tuple[x509.Certificate, ...] | None:
        """The shortest run of certificates from the key of ``cert_class``'s issuing CA to the key of
        ``anchor`` (breadth first, in ``_links`` order), or None."""
        target = _key_id(self.cas[anchor].certificate)
        frontier: list[tuple[bytes, tuple[x509.Certificate, ...]]] = [
            (_key_id(self.issuing_ca(cert_class).certificate), ())]
        seen = {frontier[0][0]}
        while frontier:
            following = []
            for key, path in frontier:
                if key == target:
                    return path
                for cert, subject_key, issuer_key in self._links:
                    if subject_key == key and issuer_key not in seen:
                        seen.add(issuer_key)
                        following.append((issuer_key, (*path, cert)))
            frontier = following
        return None

    def signed_ca_certificates(self) -> dict[str, list[x509.Certificate]]:
        """The CA certificates (cross-certificates included) each CA signed, by its label."""
        signed: dict[str, list[x509.Certificate]] = {label: [] for label in self.cas}
        labels = {_key_id(ca.certificate): label for label, ca in self.cas.items()}
        for cert, _, issuer_key in self._links:
            label = labels.get(issuer_key)
            if label is not None:
                signed[label].append(cert)
        return signed


def _key_id(cert: x509.Certificate) -> bytes:
    """What tells CA keys apart: the SHA-256 of the certificate's SubjectPublicKeyInfo."""
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _pem_text(certificates: Iterable[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certificates)



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
"""The self-signed Class 3 root's name: its file ``class3-root.crt.pem`` and URL ``/class3-root.crt``
(``class3-root-g2`` in G2)."""


def class3_root_path(directory: Path, generation: int = 1) -> Path:
    return directory / f"{generation_label(CLASS3_ROOT, generation)}.crt.pem"


CROSS = "cross"


def cross_label(label: str) -> str:
    """The name of the cross-certificate of CA ``label`` by the G1 root of its class: ``cross-class1-issuing-g2``
    (its file ``.crt.pem`` and URL ``.crt``)."""
    return f"{CROSS}-{label}"


def cross_certificate_path(directory: Path, label: str) -> Path:
    return directory / f"{cross_label(label)}.crt.pem"


def all_paths(directory: Path) -> list[Path]:
    """Every file a hierarchy may have in ``directory`` (either layout, either directory, any generation)."""
    labels = [f(c, g) for g in GENERATIONS for c in CertClass for f in (class_label, issuing_label)]
    return [
        f(directory, label)
        for label in labels
        for f in (certificate_path, key_path, ocsp_certificate_path, ocsp_key_path, arl_path, cross_certificate_path)
    ] + [class3_root_path(directory, g) for g in GENERATIONS]


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


def check_class3_root(twin: x509.Certificate, class3: x509.Certificate, generation: int = 1) -> None:
    """``twin`` is a self-signed Class 3 root of the same CA as ``class3`` (the Class-1-signed Class 3
    certificate): self-signed, a CA, the same subject, public key and subject key identifier, so every
    certificate the Class 3 key signed verifies under either. ``HierarchyError`` otherwise."""
    class3_label = class_label(CertClass.CLASS3, generation)
    what = f"{generation_label(CLASS3_ROOT, generation)} (the self-signed Class 3 root)"
    _check_issued(twin, twin, f"{what} (must be self-signed)")
    check_same_ca(twin, class3, what, class3_label)


def check_same_ca(other: x509.Certificate, ca: x509.Certificate, what: str, name: str) -> None:
    """``other`` certifies the CA of ``ca`` (labelled ``name``) too, as a twin or a cross-certificate does:
    a CA certificate with the same subject, public key and subject key identifier. ``HierarchyError``
    otherwise."""
    if other.subject != ca.subject:
        raise HierarchyError(f"{what} has another subject than {name}: {other.subject.rfc4514_string()}")
    if not keys.public_keys_equal(other.public_key(), ca.public_key()):
        raise HierarchyError(f"{what} does not have the key of {name}")
    try:
        other_ski = other.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        constraints = other.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound as exc:
        raise HierarchyError(f"{what} lacks {exc.oid.dotted_string}") from None
    if other_ski != ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value:
        raise HierarchyError(f"{what} has another subject key identifier than {name}")
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
    keys are always files.

    Each generation of roots in the directory (G2 from ``class1-g2.crt.pem`` on) is loaded the same way, and
    the issuing CAs of every generation need their keys in the issuing mode: the older generation's sign no
    more leaves, but the CRLs and OCSP signers of the leaves they signed. A later generation's issuing CA may
    have a cross-certificate by the G1 root of its class (``cross-<label>.crt.pem``), checked to certify the
    same CA. No two CAs may share a subject."""
    ocsp_secret = ocsp_passphrase or passphrase
    if not ocsp_secret:
        raise HierarchyError("the OCSP signers' keys need a passphrase, and none was given")
    generations = [g for g in GENERATIONS if g == 1 or certificate_path(directory, class_label(1, g)).exists()]
    loaded: dict[str, IssuingCA] = {}

    def load(cls: CertClass, generation: int, label: str, key: str) -> IssuingCA:
        cert, private_key, signer = _load_ca(directory, passphrase, ocsp_secret, cls, label, key=key,
                                             key_source=key_source)
        ca = IssuingCA(cls, cert, private_key, signer, name="" if label == cls.label else label,
                       generation=generation)
        loaded[label] = ca
        return ca

    class3_roots: dict[str, x509.Certificate] = {}
    crosses: dict[str, x509.Certificate] = {}
    for generation in generations:
        # G1 may be a directory of before issue 18 (its roots sign the leaves); a later generation always has
        # its issuing CAs, and its roots' keys stay offline.
        issuing = [c for c in CertClass if generation > 1
                   or certificate_path(directory, issuing_label(c, generation)).exists()]
        roots = {}
        for cls in CertClass:
            root_key = "no" if not ca_keys else ("optional" if cls in issuing else "required")
            roots[cls] = load(cls, generation, class_label(cls, generation), root_key)
        class1, class3 = roots[CertClass.CLASS1].certificate, roots[CertClass.CLASS3].certificate
        _check_issued(class1, class1, f"{class_label(1, generation)} (must be self-signed)")
        _check_issued(class3, class1, class_label(3, generation))
        for cls in issuing:
            label = issuing_label(cls, generation)
            ca = load(cls, generation, label, "required" if ca_keys else "no")
            _check_issued(ca.certificate, roots[cls].certificate, label)
            cross_path = cross_certificate_path(directory, label)
            if generation > 1 and cross_path.exists():
                cross = read_certificate(cross_path)
                check_same_ca(cross, ca.certificate, cross_path.name, label)
                # By the G1 root of its class; a Class 3 one by G1 Class 1 where G1 Class 3 allows no CA below it
                # (a directory of before issue 18, ``ceremony.create_generation``).
                g1_roots = [cls.label] + ([CertClass.CLASS1.label] if cls is CertClass.CLASS3 else [])
                if not any(_issued_by(cross, loaded[r].certificate) for r in g1_roots):
                    raise HierarchyError(f"{cross_path.name} is not signed by the G1 {' or '.join(g1_roots)} root")
                crosses[label] = cross
        twin_path = class3_root_path(directory, generation)
        if twin_path.exists():
            twin = read_certificate(twin_path)
            check_class3_root(twin, class3, generation)
            class3_roots[class_label(3, generation)] = twin

    names: dict[x509.Name, str] = {}
    for label, ca in loaded.items():  # relying parties tell CAs apart by name: a new generation gets new ones
        if (same := names.setdefault(ca.certificate.subject, label)) != label:
            raise HierarchyError(f"{label} has the subject of {same}: {ca.certificate.subject.rfc4514_string()}")

    arls: dict[str, bytes] = {}
    for generation in generations:
        for cls in CertClass:
            label = class_label(cls, generation)
            path = arl_path(directory, label)
            if path.exists():
                der = path.read_bytes()
                check_arl(der, loaded[label].certificate, path.name)
                arls[label] = der

    return Hierarchy(cas=loaded, class3_roots=class3_roots, cross_certificates=crosses, arls=arls)
