"""Where relying parties find an issuing CA's status and certificate.

Every leaf points at the CRL, the OCSP responder and the certificate of the CA that issued it;
the Class 3 certificate points at Class 1's. CA/B Forum BR 7.1.2.7.7/7.1.2.11.2 require plain
``http://`` for all three (fetching status over TLS would need status to validate the TLS), so
anything else is refused when the configuration is built rather than when a certificate is.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class CAUrls:
    """The three URLs published in certificates issued by one CA."""

    crl_url: str
    ocsp_url: str
    ca_issuers_url: str

    def __post_init__(self) -> None:
        for field_name in ("crl_url", "ocsp_url", "ca_issuers_url"):
            value = getattr(self, field_name)
            parts = urlsplit(value)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"{field_name} must be an absolute http:// URL, got {value!r}")

    @classmethod
    def under(cls, base_url: str, ca_name: str) -> CAUrls:
        """The conventional layout below one base URL, e.g. ``http://pki.example.org`` and ``class3``:
        ``/class3.crl``, ``/ocsp/class3`` and ``/class3.crt``."""
        base = base_url.rstrip("/")
        return cls(
            crl_url=f"{base}/{ca_name}.crl",
            ocsp_url=f"{base}/ocsp/{ca_name}",
            ca_issuers_url=f"{base}/{ca_name}.crt",
        )

    def crl_shard_url(self, shard: int | None) -> str:
        """The CRL a certificate of CRL shard ``shard`` points at: ``/class3.crl`` becomes ``/class3/7.crl``
        (as Boulder's ``<issuer>/<shard>.crl``); ``None`` (unsharded) is the CA's ``crl_url`` itself."""
        if shard is None:
            return self.crl_url
        return f"{self.crl_url.removesuffix('.crl')}/{shard}.crl"
