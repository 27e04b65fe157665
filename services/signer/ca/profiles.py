"""What each kind of certificate may contain: server (TLS), client (e-mail / S/MIME) and code signing.

A profile is the single place that knows, for one kind of certificate, its extended and plain
key usages, how long it may live, which subjectAltName types and subject attributes it admits,
which policy OID announces it, and which pkilint linter judges it. Issuance and linting read it;
neither hard-codes a rule of its own.

Where the CA/Browser Forum requirements constrain a choice, the rule is cited:

* server: TLS BR 7.1.2.7 (DV subscriber), validity BR 6.3.2 as amended by ballot SC-081
  (398 days before 2026-03-15, then 200, then 100 from 2027-03-15, then 47 from 2029-03-15; the
  schedule and every other validity limit live in shared/certificate_validity.py, which the
  registration's CSR preview uses too);
* client: S/MIME BR 7.1.2.3 multipurpose generation (emailProtection, plus clientAuth which
  CAcert members use to log in), mailbox-validated in Class 1 (no name in the subject) and
  individual-validated in Class 3 when the approved subject carries the member's name;
* codesign: no pkilint profile exists for the Code Signing BR, so the RFC 5280 linter judges it.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from services.signer.ca.keys import PublicKey
from shared.certificate_validity import (
    CLIENT_MAX_VALIDITY_DAYS,
    CODESIGN_CA_MAX_VALIDITY_DAYS,
    CODESIGN_MAX_VALIDITY_DAYS,
    SMIME_MAX_VALIDITY_DAYS,
    max_validity_days,
    tls_max_validity_days,
)

__all__ = ["CODESIGN_MAX_VALIDITY_DAYS", "SMIME_MAX_VALIDITY_DAYS", "tls_max_validity_days"]  # re-exported


class SanType(enum.Enum):
    """subjectAltName GeneralName types the CA issues, named like the request lists."""

    DNS = "dns_names"
    IP = "ip_addresses"
    EMAIL = "emails"


class LinterKind(enum.Enum):
    """Which pkilint linter judges a profile's certificates."""

    CABF_SERVERAUTH = "cabf-serverauth"
    CABF_SMIME = "cabf-smime"
    RFC5280 = "rfc5280"


SUBJECT_ATTRIBUTE_OIDS: Final[Mapping[str, ObjectIdentifier]] = {
    "CN": NameOID.COMMON_NAME,
    "GN": NameOID.GIVEN_NAME,
    "SN": NameOID.SURNAME,
}
"""Subject keys of an approved request and the attribute each becomes (this order, in the DN)."""

PERSONAL_NAME_KEYS: Final = frozenset({"GN", "SN"})

# CA/B Forum reserved policy identifiers.
POLICY_DOMAIN_VALIDATED: Final = ObjectIdentifier("2.23.140.1.2.1")
POLICY_SMIME_MAILBOX_MULTIPURPOSE: Final = ObjectIdentifier("2.23.140.1.5.1.2")
POLICY_SMIME_INDIVIDUAL_MULTIPURPOSE: Final = ObjectIdentifier("2.23.140.1.5.4.2")
POLICY_CODE_SIGNING: Final = ObjectIdentifier("2.23.140.1.4.1")

_KU_FIELDS: Final = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


@dataclass(frozen=True)
class CertificateProfile:
    """The shape of one kind of leaf certificate."""

    name: str
    extended_key_usages: tuple[ObjectIdentifier, ...]
    rsa_key_usages: frozenset[str]
    ec_key_usages: frozenset[str]
    allowed_san_types: frozenset[SanType]
    subject_keys_by_class: Mapping[int, frozenset[str]]
    """Subject keys (``SUBJECT_ATTRIBUTE_OIDS``) allowed per certificate class; absent class = not issued."""
    required_subject_keys: frozenset[str]
    needs_identifier: bool
    """At least one subjectAltName entry is required (server: a name; client: a mailbox)."""
    linter: LinterKind
    policy_oid: ObjectIdentifier
    personal_name_policy_oid: ObjectIdentifier | None = None
    """Used instead of ``policy_oid`` when the subject carries a personal name (GN/SN)."""
    max_validity_days: int | None = None
    """Fixed maximum; ``None`` means the TLS schedule (``tls_max_validity_days``)."""
    subject_key_identifier: bool = True
    """RFC 5280 says SHOULD for end entities; TLS BR 7.1.2.7.6 says NOT RECOMMENDED for TLS leaves."""
    common_name_from_sans: bool = False
    """A CN, if any, must repeat one of the subjectAltName values (TLS BR 7.1.4.3)."""

    def allows_class(self, cert_class: int) -> bool:
        return cert_class in self.subject_keys_by_class

    def max_validity_days_at(self, not_before: dt.datetime) -> int:
        """The longest validity from ``not_before``: the one rule in shared/certificate_validity.py."""
        return max_validity_days(self.name, not_before, self.max_validity_days)

    def key_usage(self, public_key: PublicKey) -> x509.KeyUsage:
        """The keyUsage bits for this profile and key type (RSA can encrypt, EC agrees keys)."""
        if isinstance(public_key, rsa.RSAPublicKey):
            bits = self.rsa_key_usages
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            bits = self.ec_key_usages
        else:
            raise ValueError("unsupported public key type")
        flags = {name: name in bits for name in _KU_FIELDS}
        return x509.KeyUsage(**flags)

    def policy_oids(self, subject: Mapping[str, str]) -> tuple[ObjectIdentifier, ...]:
        if self.personal_name_policy_oid is not None and PERSONAL_NAME_KEYS & subject.keys():
            return (self.personal_name_policy_oid,)
        return (self.policy_oid,)

    def request_problem(
        self,
        cert_class: int,
        subject: Mapping[str, str],
        sans: Mapping[SanType, list[str]],
    ) -> str | None:
        """Why an approved request cannot become a certificate of this profile, or None.

        The registration service approves; this is the signer's own check that what it is asked to
        sign is something this profile can express at all.
        """
        if not self.allows_class(cert_class):
            return f"profile {self.name} is not issued in class {cert_class}"
        allowed_keys = self.subject_keys_by_class[cert_class]
        unexpected = sorted(set(subject) - allowed_keys)
        if unexpected:
            names = ", ".join(unexpected)
            return f"subject attribute(s) {names} not allowed for {self.name} in class {cert_class}"
        missing = sorted(self.required_subject_keys - set(subject))
        if missing:
            return f"subject attribute(s) {', '.join(missing)} required for {self.name}"
        empty = sorted(k for k, v in subject.items() if not v or not v.strip())
        if empty:
            return f"subject attribute(s) {', '.join(empty)} empty"
        for san_type, values in sans.items():
            if values and san_type not in self.allowed_san_types:
                return f"{san_type.value} not allowed in a {self.name} certificate"
        if self.needs_identifier and not any(sans.get(t) for t in self.allowed_san_types):
            kinds = " or ".join(sorted(t.value for t in self.allowed_san_types))
            return f"a {self.name} certificate needs at least one of {kinds}"
        if self.common_name_from_sans and "CN" in subject:
            san_values = [*sans.get(SanType.DNS, []), *sans.get(SanType.IP, [])]
            if subject["CN"] not in san_values:
                return "CN must be one of the approved dns_names or ip_addresses"
        if (
            self.personal_name_policy_oid is not None
            and "CN" in subject
            and not PERSONAL_NAME_KEYS & subject.keys()
        ):
            # S/MIME BR 7.1.4.2.2: an individual-validated subject names the person in givenName
            # and/or surname; a CN alone cannot carry the name.
            return "a personal name in CN needs GN (givenName) or SN (surname) beside it"
        return None


def _profiles(
    client_max_validity_days: int, codesign_max_validity_days: int
) -> dict[str, CertificateProfile]:
    if not 1 <= client_max_validity_days <= SMIME_MAX_VALIDITY_DAYS:
        raise ValueError(f"client validity must be 1..{SMIME_MAX_VALIDITY_DAYS} days")
    if not 1 <= codesign_max_validity_days <= CODESIGN_MAX_VALIDITY_DAYS:
        raise ValueError(f"codesign validity must be 1..{CODESIGN_MAX_VALIDITY_DAYS} days")
    signature_only = frozenset({"digital_signature"})
    return {
        "server": CertificateProfile(
            name="server",
            extended_key_usages=(ExtendedKeyUsageOID.SERVER_AUTH,),
            rsa_key_usages=frozenset({"digital_signature", "key_encipherment"}),
            ec_key_usages=signature_only,
            allowed_san_types=frozenset({SanType.DNS, SanType.IP}),
            subject_keys_by_class={1: frozenset({"CN"}), 3: frozenset({"CN"})},
            required_subject_keys=frozenset(),
            needs_identifier=True,
            linter=LinterKind.CABF_SERVERAUTH,
            policy_oid=POLICY_DOMAIN_VALIDATED,
            max_validity_days=None,
            subject_key_identifier=False,
            common_name_from_sans=True,
        ),
        "client": CertificateProfile(
            name="client",
            extended_key_usages=(ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.CLIENT_AUTH),
            rsa_key_usages=frozenset({"digital_signature", "key_encipherment"}),
            ec_key_usages=frozenset({"digital_signature", "key_agreement"}),
            allowed_san_types=frozenset({SanType.EMAIL}),
            # Unassured members get no name at all (Class 1); assured members may (Class 3).
            subject_keys_by_class={1: frozenset(), 3: frozenset({"CN", "GN", "SN"})},
            required_subject_keys=frozenset(),
            needs_identifier=True,
            linter=LinterKind.CABF_SMIME,
            policy_oid=POLICY_SMIME_MAILBOX_MULTIPURPOSE,
            personal_name_policy_oid=POLICY_SMIME_INDIVIDUAL_MULTIPURPOSE,
            max_validity_days=client_max_validity_days,
        ),
        "codesign": CertificateProfile(
            name="codesign",
            extended_key_usages=(ExtendedKeyUsageOID.CODE_SIGNING,),
            rsa_key_usages=signature_only,
            ec_key_usages=signature_only,
            allowed_san_types=frozenset({SanType.EMAIL}),
            subject_keys_by_class={1: frozenset({"CN"}), 3: frozenset({"CN"})},
            required_subject_keys=frozenset({"CN"}),
            needs_identifier=False,
            linter=LinterKind.RFC5280,
            policy_oid=POLICY_CODE_SIGNING,
            max_validity_days=codesign_max_validity_days,
        ),
    }


def build_profiles(
    *,
    client_max_validity_days: int = CLIENT_MAX_VALIDITY_DAYS,
    codesign_max_validity_days: int = CODESIGN_CA_MAX_VALIDITY_DAYS,
) -> Mapping[str, CertificateProfile]:
    """All profiles, with the configurable maxima checked against the BR limits."""
    return _profiles(client_max_validity_days, codesign_max_validity_days)


PROFILES: Final = build_profiles()


def get_profile(name: str, profiles: Mapping[str, CertificateProfile] = PROFILES) -> CertificateProfile:
    try:
        return profiles[name]
    except KeyError:
        raise ValueError(f"unknown certificate profile {name!r}") from None
