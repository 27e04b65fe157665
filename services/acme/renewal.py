"""ACME Renewal Information (RFC 9773): certificate identifiers and suggested renewal windows.

A certificate's ARI id is base64url(authorityKeyIdentifier keyIdentifier) "." base64url(serial's DER
integer content octets) (RFC 9773 4.1). The suggested window of a good certificate is the span from two
thirds to three quarters of its lifetime, so renewal comes with a quarter of the lifetime left (room to
retry before expiry as lifetimes shrink under SC-081); a revoked one's window starts at its revocation and
ends a minute later, so it lies in the past: "renew now" (RFC 9773 4.2).
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

from cryptography import x509

RETRY_AFTER_SECONDS = 6 * 3600
"""How soon a client should ask again (RFC 9773 4.3)."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def serial_octets(serial: int) -> bytes:
    """The content octets of the serial's DER INTEGER (a leading zero when the high bit is set)."""
    length = serial.bit_length() // 8 + 1
    return serial.to_bytes(length, "big", signed=True) if serial >= 0 else b""


def certificate_id(certificate: x509.Certificate) -> str | None:
    try:
        aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    if aki.key_identifier is None:
        return None
    return f"{_b64(aki.key_identifier)}.{_b64(serial_octets(certificate.serial_number))}"


def suggested_window(not_before: datetime, not_after: datetime,
                     revoked_at: datetime | None = None) -> tuple[datetime, datetime]:
    if revoked_at is not None:
        return revoked_at, revoked_at + timedelta(minutes=1)
    lifetime = not_after - not_before
    return not_before + lifetime * 2 / 3, not_before + lifetime * 3 / 4
