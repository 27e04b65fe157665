"""Certificate revocation lists: each issuing CA's CRLs, partitioned into shards.

The CA key signs its own CRLs (no indirect CRLs), so relying parties check them with the same key
that signed the certificate. The CRL number must grow with every CRL a CA publishes (RFC 5280
5.2.3); the caller keeps that counter in its store and passes the next value in.

Partitioned ("sharded") CRLs, TLS BR 7.2.2: a certificate's shard is decided when it is issued
(``crl_shard_of`` its serial) and its CRL Distribution Points names that shard's URL alone (BR
7.1.2.11.2: one DistributionPoint, an http fullName). Each shard CRL carries a critical Issuing
Distribution Point whose fullName is byte-for-byte that URL (BR 7.2.2.1, RFC 5280 5.2.5), so a CRL of
one shard cannot be passed off as another's. Together the shards and the unsharded CRL (certificates
issued before sharding, or with sharding off) cover every certificate the CA issued.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from services.signer.ca import keys
from services.signer.ca.hierarchy import IssuingCA
from services.signer.ca.keys import PrivateKey
from services.signer.ca.revocation import RevokedCertificate

DEFAULT_NEXT_UPDATE: Final = dt.timedelta(hours=24)
MAX_NEXT_UPDATE: Final = dt.timedelta(days=10)
"""TLS BR 4.9.7: a CRL covering subscriber certificates must be re-issued within 10 days."""
MAX_ARL_NEXT_UPDATE: Final = dt.timedelta(days=365)
"""TLS BR 4.9.7: a root's CRL of CA certificates (ARL, signed at a ceremony) within twelve months."""

DEFAULT_SHARDS: Final = 16
"""CRL shards per issuing CA for new certificates (``CACERT_CRL_SHARDS``); 0 turns sharding off."""
MAX_SHARDS: Final = 1024


def crl_shard_of(serial: int, shards: int) -> int | None:
    """The CRL shard of a new certificate with ``serial``: its low bits (the serial is random, BR 7.1),
    modulo ``shards``; ``None`` when sharding is off (``shards`` 0). Decided once, at issuance: the shard's
    URL is in the certificate, so the index is stored with its status, never recomputed."""
    if not 0 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards must be between 0 and {MAX_SHARDS}")
    return serial % shards if shards else None


@dataclass(frozen=True)
class CRLScope:
    """The certificates one CRL covers (RFC 5280 5: its scope): those of ``issuer`` in CRL shard ``shard``,
    or, for ``shard`` None, those issued without a shard (before sharding, or with it off). ``name`` is
    both the path it is served at (``/<name>.crl``) and its key in the store."""

    issuer: str
    shard: int | None = None

    @property
    def name(self) -> str:
        return self.issuer if self.shard is None else f"{self.issuer}/{self.shard}"


RevokedItem = RevokedCertificate | tuple[int, dt.datetime, str | x509.ReasonFlags | None]


def build_crl(
    ca: IssuingCA,
    revoked: Iterable[RevokedItem],
    *,
    crl_number: int,
    now: dt.datetime,
    next_update_in: dt.timedelta = DEFAULT_NEXT_UPDATE,
    distribution_point: str | None = None,
) -> bytes:
    """The DER CRL of ``ca`` listing ``revoked`` (``RevokedCertificate`` or ``(serial, time, reason)``).

    thisUpdate is ``now``, nextUpdate ``now + next_update_in``. Entries carry a reasonCode unless
    the reason is unspecified (RFC 5280 5.3.1 says omit it then). The CRL carries the CRL number
    and the CA's AKI. A partitioned CRL
    names its ``distribution_point`` (the URL in the CRL Distribution Points of the certificates in its
    scope) in a critical Issuing Distribution Point (TLS BR 7.2.2.1); a full and complete CRL has none (NOT
    RECOMMENDED there).
    """
    return _signed_crl(ca.certificate, ca.signing_key, ca.authority_key_identifier(), revoked,
                       crl_number=crl_number, now=now, next_update_in=next_update_in, max_next_update=MAX_NEXT_UPDATE,
                       distribution_point=distribution_point)


def build_arl(
    root: x509.Certificate,
    root_key: PrivateKey,
    revoked: Iterable[RevokedItem],
    *,
    crl_number: int,
    now: dt.datetime,
    next_update_in: dt.timedelta,
) -> bytes:
    """A root's CRL of the CA certificates it revoked (an ARL), signed at a ceremony with ``root_key``: as
    ``build_crl``, with nextUpdate up to ``MAX_ARL_NEXT_UPDATE`` and the AKI naming the root's own key."""
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return _signed_crl(root, root_key, x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), revoked,
                       crl_number=crl_number, now=now, next_update_in=next_update_in,
                       max_next_update=MAX_ARL_NEXT_UPDATE, distribution_point=None)


def _signed_crl(
    issuer: x509.Certificate,
    key: PrivateKey,
    aki: x509.AuthorityKeyIdentifier,
    revoked: Iterable[RevokedItem],
    *,
    crl_number: int,
    now: dt.datetime,
    next_update_in: dt.timedelta,
    max_next_update: dt.timedelta,
    distribution_point: str | None,
) -> bytes:
    if not 0 <= crl_number < 2**159:
        raise ValueError("crl_number must be a non-negative integer of at most 20 octets")
    if not dt.timedelta(0) < next_update_in <= max_next_update:
        raise ValueError(f"next_update_in must be positive and at most {max_next_update}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    this_update = now.astimezone(dt.UTC).replace(microsecond=0)

    entries = sorted((RevokedCertificate.of(item) for item in revoked), key=lambda e: e.serial)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(this_update + next_update_in)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(aki, critical=False)
    )
    if distribution_point is not None:
        builder = builder.add_extension(issuing_distribution_point(distribution_point), critical=True)
    seen: set[int] = set()
    for entry in entries:
        if entry.serial in seen:
            continue  # a serial is revoked once; a duplicate row must not produce a duplicate entry
        seen.add(entry.serial)
        revoked_builder = (
            x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.revoked_at)
        )
        if entry.reason is not None:
            revoked_builder = revoked_builder.add_extension(x509.CRLReason(entry.reason), critical=False)
        builder = builder.add_revoked_certificate(revoked_builder.build())
    crl = builder.sign(key, keys.signature_hash(key))
    return crl.public_bytes(serialization.Encoding.DER)


def issuing_distribution_point(url: str) -> x509.IssuingDistributionPoint:
    """TLS BR 7.2.2.1: distributionPoint present as a fullName holding the certificates' CDP URL; indirectCRL
    and onlyContainsAttributeCerts not asserted, no onlySomeReasons (the shard covers every reason)."""
    return x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)],
        relative_name=None,
        only_contains_user_certs=False,
        only_contains_ca_certs=False,
        only_some_reasons=None,
        indirect_crl=False,
        only_contains_attribute_certs=False,
    )
