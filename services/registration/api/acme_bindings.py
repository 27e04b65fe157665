"""ACME binding routes: a member creates External Account Bindings for their ACME clients, lists and revokes
them (acme_bindings.py). Only ever the member's own: another member's key id is 404."""

from __future__ import annotations

from aiohttp import web

from services.registration.acme_bindings import AcmeBindings
from services.registration.api.common import Authenticator, schema
from shared.http import read_json


class AcmeBindingRoutes:
    def __init__(self, bindings: AcmeBindings, auth: Authenticator) -> None:
        self._bindings = bindings
        self._auth = auth

    def install(self, app: web.Application) -> None:
        app.router.add_post("/v1/acme-bindings", self.create)
        app.router.add_get("/v1/acme-bindings", self.listing)
        app.router.add_delete("/v1/acme-bindings/{key_id}", self.revoke)

    async def create(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        body = await read_json(request, schema("AcmeBindingRequest"))
        created = await self._bindings.create(member, label=body.get("label", ""), cert_class=body.get("cert_class"))
        return web.json_response(created, status=201)

    async def listing(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        return web.json_response({"directory_url": self._bindings.directory_url,
                                  "bindings": await self._bindings.listing(member)})

    async def revoke(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        return web.json_response(await self._bindings.revoke(member, request.match_info["key_id"]))
