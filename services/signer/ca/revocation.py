"""Revocation facts shared by the CRL and OCSP builders: which reasons exist and what a status is.

Both status channels must tell relying parties the same thing (BR 7.2.2 / 7.3: the OCSP reason
matches the CRL's), so both read these types. Reason rules (RFC 5280 5.3.1, TLS BR 7.2.2.1,
S/MIME BR 7.2.2):

* ``unspecified`` is expressed by leaving the reason out, never by reasonCode 0;
* ``certificateHold`` is not offered: this CA does not suspend, and the BRs forbid it;
* ``cACompromise`` only applies to CA certificates (it belongs on Class 1's ARL);
* ``removeFromCRL`` only exists for delta CRLs, which this CA does not publish.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography import x509

LEAF_REASONS: Final = frozenset(
    {
        x509.ReasonFlags.key_compromise,
        x509.ReasonFlags.affiliation_changed,
        x509.ReasonFlags.superseded,
        x509.ReasonFlags.cessation_of_operation,
        x509.ReasonFlags.privilege_withdrawn,
    }
)
CA_REASONS: Final = LEAF_REASONS | {x509.ReasonFlags.ca_compromise}


def parse_reason(
    reason: str | x509.ReasonFlags | None, *, ca_certificate: bool = False
) -> x509.ReasonFlags | None:
    """Normalise a reason (the event contract's snake_case name, RFC 5280's camelCase name, or a
    ``ReasonFlags``) to what goes on the CRL: ``None`` for unspecified. Raises ``ValueError`` for a
    reason this CA never publishes, so a revocation request can be refused when it arrives rather
    than break the next CRL."""
    if reason is None:
        return None
    if isinstance(reason, x509.ReasonFlags):
        flag = reason
    else:
        try:
            flag = x509.ReasonFlags[reason]
        except KeyError:
            try:
                flag = x509.ReasonFlags(reason)
            except ValueError:
                raise ValueError(f"unknown revocation reason {reason!r}") from None
    if flag is x509.ReasonFlags.unspecified:
        return None
    allowed = CA_REASONS if ca_certificate else LEAF_REASONS
    if flag not in allowed:
        raise ValueError(f"revocation reason {flag.name} is not used by this CA")
    return flag


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError("revocation time must be timezone-aware")
    return moment.astimezone(dt.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class RevokedCertificate:
    """One CRL entry: serial, when it was revoked, and why (``None`` = unspecified)."""

    serial: int
    revoked_at: dt.datetime
    reason: x509.ReasonFlags | None = None

    def __post_init__(self) -> None:
        if self.serial <= 0:
            raise ValueError("serial must be positive")
        object.__setattr__(self, "revoked_at", _utc(self.revoked_at))
        if self.reason is x509.ReasonFlags.unspecified:
            object.__setattr__(self, "reason", None)

    @classmethod
    def of(
        cls, item: RevokedCertificate | tuple[int, dt.datetime, str | x509.ReasonFlags | None]
    ) -> RevokedCertificate:
        """Accept either an entry or a ``(serial, revoked_at, reason)`` tuple."""
        if isinstance(item, RevokedCertificate):
            return item
        serial, revoked_at, reason = item
        return cls(serial, revoked_at, parse_reason(reason, ca_certificate=True))


@dataclass(frozen=True)
class Good:
    """Issued by this CA and not revoked."""


@dataclass(frozen=True)
class Revoked:
    """Revoked at ``revoked_at`` for ``reason`` (``None`` = unspecified)."""

    revoked_at: dt.datetime
    reason: x509.ReasonFlags | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "revoked_at", _utc(self.revoked_at))
        if self.reason is x509.ReasonFlags.unspecified:
            object.__setattr__(self, "reason", None)


@dataclass(frozen=True)
class Unknown:
    """Not a serial this CA issued (BR 4.9.10: never answer ``good`` for it)."""


GOOD: Final = Good()
UNKNOWN: Final = Unknown()

CertificateStatus = Good | Revoked | Unknown
StatusLookup = Callable[[int], CertificateStatus]
"""Serial number -> status, for the certificates of one issuing CA."""
