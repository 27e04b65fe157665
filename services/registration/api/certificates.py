"""Certificate routes: submit a CSR, follow requests, list/download certificates, ask for revocation,
report a compromised key (anyone, by proof of possession) or block one (admins)."""

from __future__ import annotations

from aiohttp import web

from services.registration.api.common import Authenticator, query_text, schema
from services.registration.certificate_requests import CertificateRequests
from services.registration.certificates import Certificates
from services.registration.compromised_keys import CompromisedKeys
from services.registration.ratelimit import RateLimiter
from shared.http import client_address, read_json


class CertificateRoutes:
    def __init__(
        self,
        requests: CertificateRequests,
        certificates: Certificates,
        compromised_keys: CompromisedKeys,
        auth: Authenticator,
        limiter: RateLimiter,
    ) -> None:
        self._requests = requests
        self._certificates = certificates
        self._compromised_keys = compromised_keys
        self._auth = auth
        self._limiter = limiter

    def install(self, app: web.Application) -> None:
        app.router.add_post("/v1/requests", self.submit)
        app.router.add_get("/v1/requests", self.list_requests)
        app.router.add_get("/v1/requests/{request_id}", self.get_request)
        app.router.add_get("/v1/certificates", self.list_certificates)
        app.router.add_get("/v1/certificates/{serial}", self.get_certificate)
        app.router.add_get("/v1/certificates/{serial}/download", self.download)
        app.router.add_post("/v1/certificates/{serial}/revoke", self.revoke)
        app.router.add_post("/v1/key-compromise-reports", self.report_key_compromise)
        app.router.add_post("/v1/blocked-keys", self.block_key)

    async def submit(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        body = await read_json(request, schema("CsrRequest"))
        result = await self._requests.submit(
            member, body["csr_pem"], body["profile"], cert_class=body.get("cert_class")
        )
        return web.json_response(result, status=202)

    async def list_requests(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        return web.json_response({"requests": await self._requests.listing(member)})

    async def get_request(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        return web.json_response(await self._requests.get(member, request.match_info["request_id"]))

    async def list_certificates(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        return web.json_response({"certificates": await self._certificates.listing(member)})

    async def get_certificate(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        return web.json_response(await self._certificates.get(member, request.match_info["serial"]))

    async def download(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        fmt = query_text(request, "format", default="pem", max_length=8)
        body, content_type, filename = await self._certificates.download(
            member, request.match_info["serial"], fmt
        )
        return web.Response(
            body=body,
            content_type=content_type,
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    async def revoke(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        body = await read_json(request, schema("RevokeRequest"))
        result = await self._certificates.request_revocation(
            member, request.match_info["serial"], body.get("reason", "unspecified")
        )
        return web.json_response(result, status=202)

    async def report_key_compromise(self, request: web.Request) -> web.Response:
        """No account: the proof of possession is the credential (shared/key_compromise.py)."""
        await self._limiter.hit("confirm:client", client_address(request))
        body = await read_json(request, schema("KeyCompromiseReport"))
        return web.json_response(await self._compromised_keys.report(body["proof_csr_pem"]), status=202)

    async def block_key(self, request: web.Request) -> web.Response:
        admin = await self._auth.admin(request)
        body = await read_json(request, schema("BlockedKeyRequest"))
        return web.json_response(await self._compromised_keys.block(body["spki_sha256"], admin_id=admin.id),
                                 status=202)
