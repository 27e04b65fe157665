"""The relying parties' page: the CA certificates, their fingerprints, downloads one by one and as bundles, and
which file to trust for whom (the self-signed Class 3 root for assured members only, the Class 1 root for all)."""

from __future__ import annotations

from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from services.registration.certificates import FORMATS
from services.registration.web.forms import Form, Route
from services.registration.web.rendering import render
from services.registration.web.security import Visitor
from shared.ca_certificates import (
    CLASS3_ROOT,
    G2_ISSUING_LABELS,
    G2_LABELS,
    G2_ROOT_LABELS,
    ISSUING_LABELS,
    LABELS,
    OPTIONAL,
    CaCertificate,
    CaCertificates,
    CaUnavailable,
    signing_ca,
)
from shared.http import ApiError
from shared.server_snippets import ROOT_CHOICES, client_auth

BUNDLE_NAME = "cacert-roots"
# The same media type as a member's own .p7b download (certs-only PKCS#7, RFC 8551).
PKCS7_TYPE = FORMATS["p7b"][0]


TITLES = {
    "class1": "Class 1 root",
    CLASS3_ROOT: "Class 3 root (self-signed)",
    "class3": "Class 3 root signed by Class 1",
    "class1-issuing": "Class 1 issuing CA (signs unassured members' certificates)",
    "class3-issuing": "Class 3 issuing CA (signs assured members' certificates)",
    "class1-g2": "Class 1 root G2 (the new generation)",
    "class3-root-g2": "Class 3 root G2 (self-signed)",
    "class3-g2": "Class 3 root G2 signed by Class 1 G2",
    "class1-issuing-g2": "Class 1 issuing CA G2 (signs unassured members' certificates from now on)",
    "class3-issuing-g2": "Class 3 issuing CA G2 (signs assured members' certificates from now on)",
}
ORDER = ("class1", CLASS3_ROOT, "class3", *ISSUING_LABELS, *G2_LABELS)
BUNDLED = (*LABELS, *ISSUING_LABELS, *G2_ROOT_LABELS, *G2_ISSUING_LABELS)
"""The bundles: each generation's Class 1 root, the Class 3 root it signed and the issuing CAs."""


def pem_bundle(cas: list[CaCertificate]) -> bytes:
    """The Class 1 root, the Class 3 certificate it signed and the issuing CAs, concatenated PEM: the
    `SSLCACertificateFile` that admits every member's client certificate, whether or not the client sends the
    CA certificates between it and the root."""
    return b"".join(ca.pem for ca in cas)


def pkcs7_bundle(cas: list[CaCertificate]) -> bytes:
    """The same in one DER PKCS#7 certs-only structure (Windows, IIS, Java `keytool -importcert`)."""
    return pkcs7.serialize_certificates([ca.certificate for ca in cas], Encoding.DER)


def _attachment(body: bytes, content_type: str, filename: str) -> web.Response:
    return web.Response(
        body=body, content_type=content_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )


class RootPages:
    def __init__(self, ca: CaCertificates, local_status_url: str | None = None) -> None:
        self._ca = ca
        self._local_status_url = local_status_url

    def routes(self) -> list[Route]:
        return [
            ("GET", "/roots", self.roots, "public"),
            ("GET", f"/roots/{{label:{'|'.join(ORDER)}}}.{{fmt:pem|der}}",
             self.root_download, "public"),
            ("GET", f"/roots/{BUNDLE_NAME}.{{fmt:pem|p7b}}", self.bundle_download, "public"),
        ]

    async def _both(self) -> list[CaCertificate]:
        """The class roots' certificates, Class 1 first, then the issuing CAs the signer has (the bundles)."""
        certificates = await self._ca.all()
        return [certificates[label] for label in BUNDLED if label in certificates]

    async def roots(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        try:
            certificates = await self._ca.all()
        except CaUnavailable:
            return render(visitor, "roots.html", title="Trust the CAcert roots", section="roots", cas=None, status=503)
        snippets = [(choice, *client_auth(choice.cert_class)) for choice in ROOT_CHOICES]
        return render(
            visitor, "roots.html", title="Trust the CAcert roots", section="roots",
            cas=[certificates[label] for label in ORDER if label in certificates],
            issuing=[certificates[label] for label in BUNDLED if label in certificates],
            class3_root=certificates.get(CLASS3_ROOT), titles=TITLES, snippets=snippets, bundle=BUNDLE_NAME,
            local_status_url=self._local_status_url,
            example_ca=(signing_ca(certificates, 1) or certificates[LABELS[0]]).label,
        )

    async def root_download(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        label, fmt = request.match_info["label"], request.match_info["fmt"]
        if label in OPTIONAL and label not in await self._ca.all():
            raise ApiError(404, "not_found", f"the signer does not publish {label} (its CA directory has none)")
        ca = await self._ca.get(label)
        if fmt == "pem":
            return _attachment(ca.pem, "application/x-pem-file", f"cacert-{label}.pem")
        return _attachment(ca.der, "application/pkix-cert", f"cacert-{label}.crt")

    async def bundle_download(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        cas = await self._both()
        known = await self._ca.all()
        if not all(label in known for label in LABELS):
            raise CaUnavailable("a CA certificate is missing")
        if request.match_info["fmt"] == "pem":
            return _attachment(pem_bundle(cas), "application/x-pem-file", f"{BUNDLE_NAME}.pem")
        return _attachment(pkcs7_bundle(cas), PKCS7_TYPE, f"{BUNDLE_NAME}.p7b")
