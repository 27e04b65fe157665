"""The public CA certificates, fetched from the signer's status endpoint: registration's relying-party
page shows them and the ACME service builds certificate chains from them.

Neither service holds CA files. It fetches `/class1.crt` and
`/class3.crt` (DER) from CACERT_CA_CERTS_URL, the signer's public status base
URL, keeps them for CACERT_CA_CERTS_CACHE_SECONDS, and keeps serving the last
good copy if a refresh fails. It also fetches `/class3-root.crt`, the self-signed
Class 3 root (the anchor for relying parties who trust assured members only), and
`/class1-issuing.crt` / `/class3-issuing.crt`, the issuing CAs that sign the leaves
(issue 18), and after a root rollover the second generation (`G2_LABELS`); a 404 on any
of those means the signer's CA directory does not have it (made before it), and the
pages go on without it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import datetime

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from shared.logging import get_logger

log = get_logger("shared.ca_certificates")
LABELS = ("class1", "class3")
"""The class roots' certificates (`class3` is the one signed by Class 1, which chains carry)."""
CLASS3_ROOT = "class3-root"
"""The self-signed Class 3 root: a trust anchor only, optional (older signers do not publish it)."""
ISSUING_LABELS = ("class1-issuing", "class3-issuing")
"""The issuing CAs, which sign the leaves; optional (a CA directory made before them has none)."""
G2_ISSUING_LABELS = ("class1-issuing-g2", "class3-issuing-g2")
"""The issuing CAs of the second generation of roots, which sign the leaves after a root rollover."""
G2_ROOT_LABELS = ("class1-g2", "class3-g2")
G2_LABELS = ("class1-g2", "class3-root-g2", "class3-g2", *G2_ISSUING_LABELS)
"""The second generation of roots and its issuing CAs after a root rollover (docs/operations.md); optional."""
OPTIONAL = (CLASS3_ROOT, *ISSUING_LABELS, *G2_LABELS)
MAX_BYTES = 64 * 1024


class CaUnavailable(Exception):
    """The CA certificates could not be fetched and none is cached."""


def _colon_hex(data: bytes) -> str:
    return ":".join(f"{b:02X}" for b in data)


@dataclasses.dataclass(frozen=True)
class CaCertificate:
    label: str
    der: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_der_x509_certificate(self.der)

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(Encoding.PEM)

    @property
    def sha256(self) -> str:
        return _colon_hex(self.certificate.fingerprint(hashes.SHA256()))

    @property
    def sha1(self) -> str:
        return _colon_hex(self.certificate.fingerprint(hashes.SHA1()))  # noqa: S303 (shown, as browsers do)

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514_string()

    @property
    def common_name(self) -> str:
        names = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else self.subject

    @property
    def issuer(self) -> str:
        return self.certificate.issuer.rfc4514_string()

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    @property
    def self_signed(self) -> bool:
        return self.certificate.issuer == self.certificate.subject


def signing_ca(known: dict[str, CaCertificate], cert_class: int) -> CaCertificate | None:
    """The CA that signs the leaves of ``cert_class``: its issuing CA (of the second generation after a
    rollover), or where the signer has none (a CA directory made before them) the class root; None when
    neither is known."""
    index = 0 if cert_class == 1 else 1
    return known.get(G2_ISSUING_LABELS[index]) or known.get(ISSUING_LABELS[index]) or known.get(LABELS[index])


def parse(label: str, body: bytes) -> CaCertificate:
    """A CA certificate from DER or PEM bytes; ValueError if it is neither."""
    if body.lstrip().startswith(b"-----BEGIN"):
        body = x509.load_pem_x509_certificate(body).public_bytes(Encoding.DER)
    x509.load_der_x509_certificate(body)
    return CaCertificate(label, body)


class CaCertificates:
    def __init__(self, base_url: str, cache_seconds: float) -> None:
        self._base = base_url.rstrip("/")
        self._ttl = cache_seconds
        self._cached: dict[str, CaCertificate] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def all(self) -> dict[str, CaCertificate]:
        """The CA certificates by label (`LABELS`, and `CLASS3_ROOT` when the signer publishes it);
        CaUnavailable if they cannot be fetched and none is cached."""
        if self._cached and time.monotonic() - self._fetched_at < self._ttl:
            return self._cached
        async with self._lock:
            if self._cached and time.monotonic() - self._fetched_at < self._ttl:
                return self._cached
            try:
                self._cached = await self._fetch()
                self._fetched_at = time.monotonic()
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("CA certificates not fetched", url=self._base, error=f"{type(exc).__name__}: {exc}")
                if not self._cached:
                    raise CaUnavailable(str(exc)) from None
        return self._cached

    async def get(self, label: str) -> CaCertificate:
        found = (await self.all()).get(label)
        if found is None:
            raise CaUnavailable(f"no {label} certificate")
        return found

    async def _fetch(self) -> dict[str, CaCertificate]:
        timeout = aiohttp.ClientTimeout(total=5)
        result = {}
        async with aiohttp.ClientSession(timeout=timeout) as http:
            for label in (*LABELS, *OPTIONAL):
                async with http.get(f"{self._base}/{label}.crt") as response:
                    if label in OPTIONAL and response.status == 404:
                        continue  # not in the signer's CA directory
                    response.raise_for_status()
                    body = await response.content.read(MAX_BYTES + 1)
                    if len(body) > MAX_BYTES:
                        raise ValueError(f"{label}.crt is larger than {MAX_BYTES} bytes")
                    result[label] = parse(label, body)
        return result
