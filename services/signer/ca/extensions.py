"""The revocation and issuer pointers in every certificate a CA signs, built from its ``CAUrls``:
CRL Distribution Points (RFC 5280 4.2.1.13) and Authority Information Access (4.2.2.1)."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from services.signer.ca.urls import CAUrls


def crl_distribution_points(urls: CAUrls, crl_shard: int | None = None) -> x509.CRLDistributionPoints:
    """One DistributionPoint, an http fullName (TLS BR 7.1.2.11.2): the CRL of the certificate's shard."""
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(urls.crl_shard_url(crl_shard))],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )


def authority_information_access(urls: CAUrls) -> x509.AuthorityInformationAccess:
    return x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(urls.ocsp_url)
            ),
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(urls.ca_issuers_url),
            ),
        ]
    )
