"""How long a leaf certificate lives: the one rule the signer applies and the portal's preview shows.

The signer (services/signer/ca/issuance.py) computes every certificate's notBefore/notAfter with
`validity_period`; registration's CSR preview calls the same function with the same inputs, so
what the member is shown before confirming is what the certificate will carry.

* server: TLS BR 6.3.2 as amended by ballot SC-081: 398 days before 2026-03-15, then 200, then 100
  from 2027-03-15, then 47 from 2029-03-15 (the CA issues one day under each limit, where pkilint
  warns);
* client (S/MIME BR 6.3.2): 825 days; code signing (Code Signing BR 6.3.2): 460 days (again one
  day under each);
* within those, the CA's own maximum for client and code-signing certificates (365 days, the
  signer's `PROFILES`) and the RA's `validity_days` for the profile (CACERT_*_VALIDITY_DAYS);
* a certificate never outlives its issuing CA: notAfter is at most the CA certificate's notAfter.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Final

SMIME_MAX_VALIDITY_DAYS: Final = 824  # S/MIME BR 6.3.2: 825 days; pkilint warns at the maximum
CODESIGN_MAX_VALIDITY_DAYS: Final = 459  # Code Signing BR 6.3.2: 460 days
CLIENT_MAX_VALIDITY_DAYS: Final = 365  # the CA's own maximum for client certificates (signer PROFILES)
CODESIGN_CA_MAX_VALIDITY_DAYS: Final = 365  # the CA's own maximum for code-signing certificates
BACKDATE: Final = dt.timedelta(minutes=1)  # notBefore is this much before the signing time (clock skew)

_TLS_VALIDITY_SCHEDULE: Final = (
    # (notBefore earlier than, maximum days): one day under each BR limit, where pkilint warns.
    (dt.datetime(2026, 3, 15, tzinfo=dt.UTC), 397),
    (dt.datetime(2027, 3, 15, tzinfo=dt.UTC), 199),
    (dt.datetime(2029, 3, 15, tzinfo=dt.UTC), 99),
)
_TLS_VALIDITY_AFTER_SCHEDULE: Final = 46
_BR_MAXIMUM: Final = {"client": SMIME_MAX_VALIDITY_DAYS, "codesign": CODESIGN_MAX_VALIDITY_DAYS}
_CA_MAXIMUM: Final = {"client": CLIENT_MAX_VALIDITY_DAYS, "codesign": CODESIGN_CA_MAX_VALIDITY_DAYS}


class IssuerExpiresTooSoon(ValueError):
    """The issuing CA's certificate ends before the certificate could start."""


def tls_max_validity_days(not_before: dt.datetime) -> int:
    """The longest TLS subscriber validity allowed for a certificate starting at ``not_before``."""
    for before, days in _TLS_VALIDITY_SCHEDULE:
        if not_before < before:
            return days
    return _TLS_VALIDITY_AFTER_SCHEDULE


def max_validity_days(profile: str, not_before: dt.datetime, configured: int | None = None) -> int:
    """The longest validity of a ``profile`` certificate starting at ``not_before``.

    ``configured`` is the signer's maximum for the profile (client, codesign; default: the CA's own
    maximum above), never beyond the BR limit; a server certificate follows the TLS schedule alone.
    """
    if profile == "server":
        return tls_max_validity_days(not_before)
    return min(_BR_MAXIMUM[profile], _CA_MAXIMUM[profile] if configured is None else configured)


def not_before_for(now: dt.datetime) -> dt.datetime:
    """notBefore of a certificate signed at ``now``: whole seconds, backdated by `BACKDATE`."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(dt.UTC).replace(microsecond=0) - BACKDATE


@dataclasses.dataclass(frozen=True)
class ValidityPeriod:
    not_before: dt.datetime
    not_after: dt.datetime
    capped_by_issuer: bool

    @property
    def days(self) -> int:
        """Whole days covered (RFC 5280: the period includes notAfter)."""
        return (self.not_after - self.not_before + dt.timedelta(seconds=1)).days


def validity_period(
    requested_days: int,
    maximum_days: int,
    now: dt.datetime,
    issuer_not_after: dt.datetime | None,
) -> ValidityPeriod:
    """notBefore/notAfter of a certificate signed at ``now``.

    ``requested_days`` is the RA's validity for the profile, ``maximum_days`` the profile's maximum
    (`max_validity_days` at `not_before_for(now)`), ``issuer_not_after`` the issuing CA
    certificate's notAfter (None: not known, as in a preview without the CA certificates).
    Raises ValueError for fewer than 1 day and `IssuerExpiresTooSoon` when the issuer ends first.
    """
    if requested_days < 1:
        raise ValueError("validity_days must be at least 1")
    not_before = not_before_for(now)
    days = min(requested_days, maximum_days)
    # RFC 5280 4.1.2.5: the period includes notAfter, so N days end one second before N*24h.
    not_after = not_before + dt.timedelta(days=days) - dt.timedelta(seconds=1)
    capped = issuer_not_after is not None and not_after > issuer_not_after
    if capped:
        assert issuer_not_after is not None
        not_after = issuer_not_after  # a certificate never outlives its issuer
        if not_after <= now:
            raise IssuerExpiresTooSoon("the issuing CA expires too soon to issue")
    return ValidityPeriod(not_before, not_after, capped)
