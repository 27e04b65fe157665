"""The public, read-only status endpoints: CRLs, CA certificates, and the OCSP responder.

This runs in the signer's *status mode*, which holds only the CA certificates
and the delegated OCSP signing keys, never the CA keys. Statuses come from
the signer's database, so a revocation is visible to OCSP the moment the
issuing process stores it.

Routes follow `CAUrls.under()`, which is what issued certificates point at:
`/class1.crl`, `/class1.crt`, `/ocsp/class1` (POST, or GET with the
base64 request appended, RFC 6960 A.1), the same for `class3`, `class1-issuing` and
`class3-issuing`; `/ocsp` answers for any CA. A CA that signs leaves also has its CRL shards,
`/class1-issuing/<shard>.crl` (the CRL in a certificate's CRL Distribution Points, `CAUrls.crl_shard_url`);
its `/<ca>.crl` lists the certificates issued without a shard (before sharding). A root's responder
answers for the CA certificates it signed from the CA directory itself (good, or revoked when its ARL lists
them) and for the leaves it signed before issuing CAs existed from the database.
`/class3-root.crt` is the self-signed Class 3 root, the anchor for relying parties
who trust Class 3 alone (no certificate points at it; 404 while the CA directory
has none, see `self-sign-class3`).

The delegated OCSP signers live 90 days and the issuing mode renews them (`ocsp_signers.py`); the
status mode switches to a renewed one without a restart (`StatusEndpoints.use_signer`). `OCSPSignerExpiry`
exports when each current signer ends (`cacert_ocsp_signer_not_after_seconds`,
`cacert_ocsp_signer_renewal_due` on `/metrics`) and logs a warning from the readiness check while one is
inside its renewal window and not yet renewed, without failing it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import urllib.parse
from collections.abc import Callable

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client import Gauge

from services.signer.ca import ocsp
from services.signer.ca.crl import CRLScope
from services.signer.ca.hierarchy import (
    CLASS3_ROOT,
    CROSS,
    Hierarchy,
    OCSPSigner,
    class_label,
    cross_label,
    generation_label,
)
from services.signer.ca.revocation import GOOD, UNKNOWN, CertificateStatus, Revoked, parse_reason
from services.signer.ca.serials import parse_serial_hex, serial_hex
from services.signer.store import CertificateStore
from shared.events import utcnow
from shared.logging import get_logger

log = get_logger("services.signer.status")
OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"
RENEWAL_MARGIN = dt.timedelta(days=30)
"""The default renewal window; the service passes ``CACERT_OCSP_SIGNER_RENEW_BEFORE_DAYS``."""
SIGNER_NOT_AFTER = Gauge(
    "cacert_ocsp_signer_not_after_seconds", "End of the loaded OCSP signer certificate (Unix time)", ["issuer"]
)
SIGNER_RENEWAL_DUE = Gauge(
    "cacert_ocsp_signer_renewal_due",
    "1 when the current OCSP signer certificate is inside its renewal window (not renewed yet)",
    ["issuer"],
)


class OCSPSignerExpiry:
    """Tells operators when a delegated OCSP signer is due and not renewed: metrics and a readiness warning.

    An expired signer makes every OCSP answer of its CA unverifiable, but the responder must go on
    answering (and the CRLs stay valid), so this never fails readiness; it warns at most once an hour.
    """

    def __init__(self, hierarchy: Hierarchy, *, clock: Callable[[], dt.datetime] = utcnow,
                 margin: dt.timedelta = RENEWAL_MARGIN) -> None:
        self._signers = {ca.label: ca.ocsp_signer for ca in hierarchy.cas.values()}
        self._clock = clock
        self._margin = margin
        self._warned: dict[str, dt.datetime] = {}

    def due(self) -> list[str]:
        """Labels of the CAs whose OCSP signer should be renewed now."""
        now = self._clock()
        return [label for label, signer in self._signers.items() if signer.expires_soon(now, self._margin)]

    def export_metrics(self) -> None:
        for label, signer in self._signers.items():
            SIGNER_NOT_AFTER.labels(label).set(signer.certificate.not_valid_after_utc.timestamp())
            SIGNER_RENEWAL_DUE.labels(label).set_function(self._renewal_due(label))

    def use(self, label: str, signer: OCSPSigner) -> None:
        """A CA's current signer changed (renewed): watch the new one."""
        self._signers[label] = signer
        self._warned.pop(label, None)
        SIGNER_NOT_AFTER.labels(label).set(signer.certificate.not_valid_after_utc.timestamp())

    def _renewal_due(self, label: str) -> Callable[[], float]:
        return lambda: float(self._signers[label].expires_soon(self._clock(), self._margin))

    async def readiness(self) -> bool:
        now = self._clock()
        for label in self.due():
            last = self._warned.get(label)
            if last is None or now - last >= dt.timedelta(hours=1):
                self._warned[label] = now
                log.warning("OCSP signer expires soon and is not renewed: check the issuing signer "
                            "(it renews them), or run `python -m services.signer renew-ocsp`",
                            issuer=label, not_after=self._signers[label].certificate.not_valid_after_utc.isoformat())
        return True


class PrefetchedStatuses:
    """The StatusLookup the pure responder calls, filled from MongoDB before each answer.

    The responder is synchronous; the database is not. Statuses for exactly the
    serials in the request are fetched first, then the responder runs without awaiting.
    """

    def __init__(self) -> None:
        self.statuses: dict[int, CertificateStatus] = {}

    def __call__(self, serial: int) -> CertificateStatus:
        return self.statuses.get(serial, UNKNOWN)


class StatusEndpoints:
    def __init__(self, hierarchy: Hierarchy, store: CertificateStore, *, ocsp_validity: dt.timedelta) -> None:
        self._store = store
        self._hierarchy = hierarchy
        self._ocsp_validity = ocsp_validity
        self._cas = {ca.label: ca for ca in hierarchy.cas.values()}
        self._lookups: dict[str, PrefetchedStatuses] = {}
        self._responders: dict[str, ocsp.OCSPResponder] = {}
        for ca in hierarchy.cas.values():
            lookup = PrefetchedStatuses()
            self._lookups[ca.label] = lookup
            self._responders[ca.label] = ocsp.OCSPResponder(ca, lookup, validity=ocsp_validity)
        self._ca_der = {ca.label: ca.certificate.public_bytes(Encoding.DER) for ca in hierarchy.cas.values()}
        for generation in hierarchy.generations:
            twin = hierarchy.class3_roots.get(class_label(3, generation))
            if twin is not None:
                self._ca_der[generation_label(CLASS3_ROOT, generation)] = twin.public_bytes(Encoding.DER)
        for label, cross in hierarchy.cross_certificates.items():
            self._ca_der[cross_label(label)] = cross.public_bytes(Encoding.DER)

        self._ca_statuses = ca_certificate_statuses(hierarchy)

    def use_signer(self, label: str, signer: OCSPSigner) -> None:
        """Answer for CA ``label`` through ``signer`` from the next request on (a renewed delegate)."""
        ca = dataclasses.replace(self._cas[label], ocsp_signer=signer)
        self._responders[label] = ocsp.OCSPResponder(ca, self._lookups[label], validity=self._ocsp_validity)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get(f"/{{issuer:{CA_LABEL}}}.crl", self.crl)
        app.router.add_get(f"/{{issuer:{CA_LABEL}}}/{{shard:(?:0|[1-9][0-9]{{0,3}})}}.crl", self.crl)
        app.router.add_get(f"/{{issuer:{CA_LABEL}}}.crt", self.ca_certificate)
        app.router.add_get(f"/{{issuer:{CLASS3_ROOT}(?:-g2)?|{CROSS}-{CA_LABEL}}}.crt", self.ca_certificate)
        app.router.add_post("/ocsp", self.ocsp_post)
        app.router.add_post(f"/ocsp/{{issuer:{CA_LABEL}}}", self.ocsp_post)
        app.router.add_get(f"/ocsp/{{issuer:{CA_LABEL}}}/{{request:.+}}", self.ocsp_get)
        app.router.add_get("/ocsp/{request:.+}", self.ocsp_get)

    async def crl(self, request: web.Request) -> web.Response:
        shard = request.match_info.get("shard")
        scope = CRLScope(request.match_info["issuer"], None if shard is None else int(shard))
        current = await self._store.current_crl(scope)
        if current is None:
            return web.Response(
                status=503, text="CRL not generated yet; retry shortly\n", headers={"Retry-After": "30"}
            )
        return web.Response(
            body=current["der"],
            content_type="application/pkix-crl",
            headers={
                "Cache-Control": "public, max-age=300",
                "Last-Modified": current["this_update"].strftime("%a, %d %b %Y %H:%M:%S GMT"),
            },
        )

    async def ca_certificate(self, request: web.Request) -> web.Response:
        der = self._ca_der.get(request.match_info["issuer"])
        if der is None:  # class3-root.crt.pem not in the CA directory yet
            return web.Response(status=404, text="not published here\n")
        return web.Response(
            body=der,
            content_type="application/pkix-cert",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    async def ocsp_post(self, request: web.Request) -> web.Response:
        if request.content_type != OCSP_REQUEST:
            return web.Response(status=415, text=f"send the request as {OCSP_REQUEST}\n")
        body = await request.content.read(ocsp.MAX_REQUEST_BYTES + 1)
        return await self._answer(body, request.match_info.get("issuer"))

    async def ocsp_get(self, request: web.Request) -> web.Response:
        encoded = urllib.parse.unquote(request.match_info["request"])
        try:
            body = base64.b64decode(encoded, validate=False)
        except (binascii.Error, ValueError):
            body = b""
        return await self._answer(body, request.match_info.get("issuer"))

    async def _answer(self, der: bytes, issuer: str | None) -> web.Response:
        if issuer is not None and issuer not in self._responders:  # an issuing CA this directory does not have
            return web.Response(status=404, text="no such CA here\n")
        labels = [issuer] if issuer else list(self._responders)
        try:
            parsed = ocsp.parse_request(der)
        except ocsp.MalformedRequest:
            parsed = None
        if parsed is not None:
            serials = [int(cert_id["serialNumber"]) for cert_id in parsed.cert_ids]
            await self._prefetch(labels, serials)
        answer = ocsp.respond([self._responders[label] for label in labels], der)
        return web.Response(body=answer, content_type=OCSP_RESPONSE, headers={"Cache-Control": "no-cache"})

    async def _prefetch(self, labels: list[str], serials: list[int]) -> None:
        hexes = [serial_hex(s) for s in serials if s > 0]
        for label in labels:
            self._lookups[label].statuses = {}
        for doc in await self._store.statuses_of(hexes):
            lookup = self._lookups.get(doc["issuer"])
            if lookup is None:
                continue
            status: CertificateStatus = GOOD
            if doc["status"] == "revoked":
                status = Revoked(doc["revoked_at"], parse_reason(doc.get("revocation_reason")))
            lookup.statuses[parse_serial_hex(doc["_id"])] = status
        for label in labels:
            known = self._ca_statuses.get(label, {})
            for serial in serials:
                if serial in known:
                    self._lookups[label].statuses[serial] = known[serial]


CA_LABEL = "class[13](?:-issuing)?(?:-g2)?"
"""The CA part of the status URLs: a class root (`class1`, `class3`) or an issuing CA (`class1-issuing`), of
G1 or of G2 (`class1-g2`, `class3-issuing-g2`: ``hierarchy.GENERATIONS``)."""


def ca_certificate_statuses(hierarchy: Hierarchy) -> dict[str, dict[int, CertificateStatus]]:
    """What each CA's responder answers for the CA certificates it signed, which are not in the database
    (the ceremony makes them offline): good, or revoked as the root's ARL says. Self-signed ones are left
    out (nobody asks a root's status of itself)."""
    statuses: dict[str, dict[int, CertificateStatus]] = {label: {} for label in hierarchy.cas}
    for label, certificates in hierarchy.signed_ca_certificates().items():  # cross-certificates too
        for cert in certificates:
            statuses[label][cert.serial_number] = GOOD
    for label, der in hierarchy.arls.items():
        for entry in x509.load_der_x509_crl(der):
            try:
                reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
            except x509.ExtensionNotFound:
                reason = None
            statuses[label][entry.serial_number] = Revoked(entry.revocation_date_utc, parse_reason(
                reason, ca_certificate=True))
    return statuses
