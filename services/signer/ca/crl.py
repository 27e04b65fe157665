"""Certificate revocation lists, one full CRL per issuing CA.

The CA key signs its own CRL (no indirect CRLs), so relying parties check it with the same key
that signed the certificate. The CRL number must grow with every CRL a CA publishes (RFC 5280
5.2.3); the caller keeps that counter in its store and passes the next value in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from services.signer.ca import keys
from services.signer.ca.hierarchy import IssuingCA
from services.signer.ca.revocation import RevokedCertificate

DEFAULT_NEXT_UPDATE: Final = dt.timedelta(hours=24)
MAX_NEXT_UPDATE: Final = dt.timedelta(days=10)
"""TLS BR 4.9.7: a CRL covering subscriber certificates must be re-issued within 10 days."""
MAX_ARL_NEXT_UPDATE: Final = dt.timedelta(days=365)
"""TLS BR 4.9.7: a root's CRL of CA certificates (ARL, signed at a ceremony) within twelve months."""

RevokedItem = RevokedCertificate | tuple[int, dt.datetime, str | x509.ReasonFlags | None]


def build_crl(
    ca: IssuingCA,
    revoked: Iterable[RevokedItem],
    *,
    crl_number: int,
    now: dt.datetime,
    next_update_in: dt.timedelta = DEFAULT_NEXT_UPDATE,
    max_next_update: dt.timedelta = MAX_NEXT_UPDATE,
) -> bytes:
    """The DER CRL of ``ca`` listing ``revoked`` (``RevokedCertificate`` or ``(serial, time, reason)``).

    thisUpdate is ``now``, nextUpdate ``now + next_update_in``. Entries carry a reasonCode unless
    the reason is unspecified (RFC 5280 5.3.1 says omit it then). The CRL carries the CRL number
    and the CA's AKI. ``max_next_update`` is ``MAX_ARL_NEXT_UPDATE`` for a root's ARL.
    """
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
        .issuer_name(ca.certificate.subject)
        .last_update(this_update)
        .next_update(this_update + next_update_in)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(ca.authority_key_identifier(), critical=False)
    )
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
    crl = builder.sign(ca.signing_key, keys.signature_hash(ca.signing_key))
    return crl.public_bytes(serialization.Encoding.DER)
