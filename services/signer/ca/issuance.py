"""Turning an approved request into a certificate.

The registration service (the RA) has already decided what the certificate says; the signer's
job is to say exactly that and nothing more. From the CSR only the public key passes into the
certificate: subject, names, usages and lifetime come from the approval and the profile. The CSR
is still re-checked (defence in depth: a compromised or buggy RA must not make the CA sign a
weak key or a key its requester does not hold).

Issuance is split so that the caller can lint before signing, as Let's Encrypt's Boulder does:
``prepare_certificate`` builds the to-be-signed certificate, ``lint.PreIssuanceLinter`` judges a
throw-away signature of it, and only then ``sign_certificate`` uses the CA key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.signer.ca import keys
from services.signer.ca.extensions import authority_information_access, crl_distribution_points
from services.signer.ca.hierarchy import IssuingCA
from services.signer.ca.profiles import SUBJECT_ATTRIBUTE_OIDS, CertificateProfile, SanType
from services.signer.ca.serials import new_serial_number
from services.signer.ca.urls import CAUrls
from shared import certificate_validity
from shared.key_compromise import spki_sha256
from shared.key_policy import check_public_key, csr_signature_problem

__all__ = [
    "ApprovedRequest",
    "CSRRejected",
    "IssuanceRefused",
    "RequestRejected",
    "build_certificate",
    "check_csr",
    "new_serial_number",
    "prepare_certificate",
    "sign_certificate",
]

MAX_CSR_PEM_BYTES: Final = 65536
BACKDATE: Final = certificate_validity.BACKDATE
"""notBefore lies this far before signing, for relying parties with slightly slow clocks (BR 7.1.2.7
allows up to 48 hours; keep it small so the certificate's stated life is its real life)."""
CN_MAX_LENGTH: Final = 64  # RFC 5280 ub-common-name
MAX_SUBJECT_ALT_NAMES: Final = 100
"""The RA refuses CSRs with more (services/registration/csr.py); checked again here because the
signer trusts no approval blindly, and an oversized certificate is a cost for every relying party."""

_DNS_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DNS_NAME: Final = re.compile(rf"^(\*\.)?({_DNS_LABEL}\.)+{_DNS_LABEL}$")
_EMAIL: Final = re.compile(r"^[!-?A-~]+@[a-z0-9.-]+$")  # printable ASCII local part, lower-case domain


class IssuanceRefused(Exception):
    """The signer will not issue; ``reason`` is precise and safe to publish in ``cert.rejected``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CSRRejected(IssuanceRefused):
    """The CSR is unusable: unparseable, badly signed, or carrying a key we do not certify.

    ``code`` is the ``cert.rejected`` reason: ``weak_key`` only when the shared key policy refused
    the key (shared/key_policy.py), ``csr_invalid`` for everything else.
    """

    def __init__(self, reason: str, *, code: str = "csr_invalid") -> None:
        super().__init__(reason)
        self.code = code


class RequestRejected(IssuanceRefused):
    """The approved request cannot be expressed in its profile (wrong class, names, subject...)."""


@dataclass(frozen=True)
class ApprovedRequest:
    """The payload of ``csr.approved``: what the RA decided the certificate says."""

    request_id: str
    member_id: str
    cert_class: int
    profile: str
    csr_pem: str
    subject: dict[str, str] = field(default_factory=dict)
    dns_names: list[str] = field(default_factory=list)
    ip_addresses: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    validity_days: int = 365
    spki_sha256: str | None = None  # the key the RA approved (shared/key_compromise.py); None: not said

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ApprovedRequest:
        """Build from a (schema-validated) ``csr.approved`` payload; unknown fields are ignored."""
        return cls(
            request_id=str(payload["request_id"]),
            member_id=str(payload["member_id"]),
            cert_class=int(payload["cert_class"]),
            profile=str(payload["profile"]),
            csr_pem=str(payload["csr_pem"]),
            subject={str(k): str(v) for k, v in dict(payload.get("subject") or {}).items()},
            dns_names=[str(n) for n in payload.get("dns_names") or []],
            ip_addresses=[str(n) for n in payload.get("ip_addresses") or []],
            emails=[str(n) for n in payload.get("emails") or []],
            validity_days=int(payload["validity_days"]),
            spki_sha256=str(payload["spki_sha256"]) if payload.get("spki_sha256") else None,
        )

    def sans(self) -> dict[SanType, list[str]]:
        return {SanType.DNS: self.dns_names, SanType.IP: self.ip_addresses, SanType.EMAIL: self.emails}


# ------------------------------------------------------------------------------------- the CSR


def check_csr(csr_pem: str) -> x509.CertificateSigningRequest:
    """Parse the CSR and prove it is acceptable: self-signature valid (the requester holds the
    key) and the key acceptable to the CA's one key policy (shared/key_policy.py). Raises ``CSRRejected``."""
    if not isinstance(csr_pem, str):
        raise CSRRejected("csr must be PEM text")
    data = csr_pem.encode("utf-8", errors="replace")
    if len(data) > MAX_CSR_PEM_BYTES:
        raise CSRRejected(f"csr too large: {len(data)} bytes (limit {MAX_CSR_PEM_BYTES})")
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError:
        raise CSRRejected("csr is not a PEM certificate request") from None
    try:
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise CSRRejected("csr public key cannot be parsed") from None
    hash_problem = csr_signature_problem(csr)
    if hash_problem is not None:
        raise CSRRejected(hash_problem)
    try:
        signature_ok = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm):
        signature_ok = False
    if not signature_ok:
        raise CSRRejected("csr signature invalid")
    verdict = check_public_key(public_key)
    if not verdict.acceptable:
        # The policy's codes lead the text, so `cert.rejected` details name the exact rule.
        raise CSRRejected("; ".join(f"{p.code}: {p.message}" for p in verdict.problems), code="weak_key")
    return csr


# ----------------------------------------------------------------------------- the request


def _san_entries(req: ApprovedRequest) -> list[x509.GeneralName]:
    count = len(req.dns_names) + len(req.ip_addresses) + len(req.emails)
    if count > MAX_SUBJECT_ALT_NAMES:
        raise RequestRejected(f"{count} subjectAltNames approved; at most {MAX_SUBJECT_ALT_NAMES} are issued")
    entries: list[x509.GeneralName] = []
    seen: set[str] = set()
    for name in req.dns_names:
        if not _DNS_NAME.match(name) or len(name) > 253:
            raise RequestRejected(f"dns name is not a lower-case A-label host name: {name!r}")
        if name not in seen:
            seen.add(name)
            entries.append(x509.DNSName(name))
    for text in req.ip_addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise RequestRejected(f"not an IP address: {text!r}") from None
        if str(address) not in seen:
            seen.add(str(address))
            entries.append(x509.IPAddress(address))
    for email in req.emails:
        if not _EMAIL.match(email) or len(email) > 254:
            raise RequestRejected(f"email is not an ASCII mailbox with a lower-case domain: {email!r}")
        if email not in seen:
            seen.add(email)
            entries.append(x509.RFC822Name(email))
    return entries


def _subject(req: ApprovedRequest) -> x509.Name:
    if "CN" in req.subject and len(req.subject["CN"]) > CN_MAX_LENGTH:
        raise RequestRejected(f"CN longer than {CN_MAX_LENGTH} characters")
    return x509.Name(
        [
            x509.NameAttribute(oid, req.subject[key])
            for key, oid in SUBJECT_ATTRIBUTE_OIDS.items()
            if key in req.subject
        ]
    )


def _validity(
    req: ApprovedRequest, profile: CertificateProfile, ca: IssuingCA, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    if req.validity_days < 1:
        raise RequestRejected("validity_days must be at least 1")
    # One rule for the signer and the registration's preview: shared/certificate_validity.py.
    maximum = profile.max_validity_days_at(certificate_validity.not_before_for(now))
    try:
        period = certificate_validity.validity_period(
            req.validity_days, maximum, now, ca.certificate.not_valid_after_utc
        )
    except certificate_validity.IssuerExpiresTooSoon:
        raise RequestRejected(f"issuing CA {ca.label} expires too soon to issue") from None
    not_before, not_after = period.not_before, period.not_after
    return not_before, not_after


def _key_identifiers(
    builder: x509.CertificateBuilder, profile: CertificateProfile, public_key: keys.PublicKey, ca: IssuingCA
) -> x509.CertificateBuilder:
    if profile.subject_key_identifier:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    return builder.add_extension(ca.authority_key_identifier(), critical=False)


def prepare_certificate(
    req: ApprovedRequest,
    ca: IssuingCA,
    profile: CertificateProfile,
    urls: CAUrls,
    now: dt.datetime,
    serial: int,
    crl_shard: int | None = None,
) -> x509.CertificateBuilder:
    """The complete to-be-signed certificate for ``req`` (everything but the signature).

    ``urls`` are the issuing CA's own CRL/OCSP/certificate URLs; ``crl_shard`` the CRL shard whose URL the
    CRL Distribution Points names (``None``: the CA's unsharded CRL). Raises ``CSRRejected`` or
    ``RequestRejected``; a serial outside 1..2**159-1 is a programming error (``ValueError``).
    """
    if not 0 < serial < 2**159:
        raise ValueError("serial must be positive and fit in 20 octets")
    if req.profile != profile.name:
        raise RequestRejected(f"request is for profile {req.profile!r}, not {profile.name!r}")
    if req.cert_class != ca.cert_class:
        raise RequestRejected(f"request is for class {req.cert_class}, the CA is {ca.label}")
    problem = profile.request_problem(req.cert_class, req.subject, req.sans())
    if problem:
        raise RequestRejected(problem)

    csr = check_csr(req.csr_pem)
    public_key = csr.public_key()
    if req.spki_sha256 is not None and spki_sha256(public_key) != req.spki_sha256:
        # The blocklist was checked against the key the approval names; it must be the CSR's.
        raise CSRRejected("csr key is not the key the approval names (spki_sha256)")
    assert isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)  # check_csr ensured it
    subject = _subject(req)
    sans = _san_entries(req)
    not_before, not_after = _validity(req, profile, ca, now)

    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(profile.key_usage(public_key), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(profile.extended_key_usages)), critical=False)
    )
    builder = _key_identifiers(builder, profile, public_key, ca)
    builder = (
        builder.add_extension(crl_distribution_points(urls, crl_shard), critical=False)
        .add_extension(authority_information_access(urls), critical=False)
        .add_extension(
            x509.CertificatePolicies(
                [x509.PolicyInformation(oid, None) for oid in profile.policy_oids(req.subject)]
            ),
            critical=False,
        )
    )
    if sans:
        # RFC 5280 4.2.1.6: with an empty subject the identity lives only here, so it is critical.
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=len(subject) == 0)
    elif len(subject) == 0:
        raise RequestRejected("a certificate needs a subject or at least one subjectAltName")
    return builder


def sign_certificate(builder: x509.CertificateBuilder, ca: IssuingCA) -> x509.Certificate:
    """Sign with the CA key: SHA-384 for a P-384 CA, SHA-256 otherwise."""
    return builder.sign(ca.signing_key, keys.signature_hash(ca.signing_key))


def build_certificate(
    req: ApprovedRequest,
    ca: IssuingCA,
    profile: CertificateProfile,
    urls: CAUrls,
    now: dt.datetime,
    serial: int,
) -> x509.Certificate:
    """``prepare_certificate`` then ``sign_certificate``, for callers that lint afterwards or not at all."""
    return sign_certificate(prepare_certificate(req, ca, profile, urls, now, serial), ca)


def certificate_problems_against_request(cert: x509.Certificate, req: ApprovedRequest) -> Sequence[str]:
    """Post-signing self-check: differences between what was signed and what was approved.

    Cheap insurance against a bug between approval and signature; the caller refuses to publish a
    certificate for which this returns anything.
    """
    problems: list[str] = []
    expected_subject = _subject(req)
    if cert.subject != expected_subject:
        problems.append("subject differs from the approved subject")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
        ips = [str(a) for a in san.get_values_for_type(x509.IPAddress)]
        emails = san.get_values_for_type(x509.RFC822Name)
    except x509.ExtensionNotFound:
        dns, ips, emails = [], [], []
    if sorted(set(dns)) != sorted(set(req.dns_names)):
        problems.append("dns names differ from the approved list")
    if sorted(set(ips)) != sorted({str(ipaddress.ip_address(i)) for i in req.ip_addresses}):
        problems.append("ip addresses differ from the approved list")
    if sorted(set(emails)) != sorted(set(req.emails)):
        problems.append("emails differ from the approved list")
    return problems
