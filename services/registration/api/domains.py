"""Domain routes: add a domain, see its official contacts, verify it by mail, DNS record or website file."""

from __future__ import annotations

from aiohttp import web

from services.registration.api.common import Authenticator, query_text, schema
from services.registration.domains import DomainClaims, checked_domain
from services.registration.ratelimit import RateLimiter
from shared import dns_names
from shared.http import ApiError, check_value, read_json


class DomainRoutes:
    def __init__(self, domains: DomainClaims, auth: Authenticator, limiter: RateLimiter) -> None:
        self._domains = domains
        self._auth = auth
        self._limiter = limiter

    def install(self, app: web.Application) -> None:
        app.router.add_get("/v1/domains", self.listing)
        app.router.add_post("/v1/domains", self.add)
        app.router.add_get("/v1/domain-contacts", self.contacts_for_name)
        app.router.add_get("/v1/domains/{domain_id}", self.get)
        app.router.add_get("/v1/domains/{domain_id}/contacts", self.contacts)
        app.router.add_post("/v1/domains/{domain_id}/verify", self.verify)
        app.router.add_post("/v1/domains/{domain_id}/check", self.check)

    async def listing(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        return web.json_response({"domains": await self._domains.listing(member)})

    async def add(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        body = await read_json(request, schema("AddDomainRequest"))
        if body.get("contact") is not None:
            checked_domain(body["domain"])
            await self._limiter.hit("mail:account", member.id)
            await self._limiter.hit("mail:address", body["contact"].lower())
        method = body.get("method")
        if method == "email" and body.get("contact") is None:
            raise ApiError(422, "contact_required", "the email method needs one of the official contacts")
        claim = await self._domains.add(member, body["domain"], body.get("contact"), method)
        return web.json_response(claim, status=201)

    async def get(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        doc = await self._domains.get(member, request.match_info["domain_id"])
        return web.json_response(self._domains.view(doc))

    async def contacts(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        doc = await self._domains.get(member, request.match_info["domain_id"])
        return web.json_response(self._domains.contacts(doc["domain"]))

    async def contacts_for_name(self, request: web.Request) -> web.Response:
        await self._auth.member(request)
        raw = query_text(request, "domain")
        check_value(raw, schema("DomainName"), "domain")  # the parameter's schema in openapi.json
        name = checked_domain(raw)
        return web.json_response({"domain": name, "contacts": dns_names.official_contacts(name)})

    async def verify(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        body = await read_json(request, schema("VerifyDomainRequest"))
        await self._domains.get(member, request.match_info["domain_id"])
        method = body.get("method", "email")
        if method != "email":
            return web.json_response(
                await self._domains.prepare_challenge(member, request.match_info["domain_id"], method))
        if not body.get("contact"):
            raise ApiError(422, "contact_required", "the email method needs one of the official contacts")
        await self._limiter.hit("mail:account", member.id)
        await self._limiter.hit("mail:address", body["contact"].lower())
        result = await self._domains.request_verification(
            member, request.match_info["domain_id"], body["contact"]
        )
        return web.json_response(result, status=202)

    async def check(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        await self._limiter.hit("check:account", member.id)
        result = await self._domains.check_now(member, request.match_info["domain_id"])
        return web.json_response(result, status=202)
