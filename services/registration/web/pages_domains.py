"""Domain pages: my domains, one domain, and its verification by mail, DNS record or website file."""

from __future__ import annotations

from aiohttp import web

from services.registration.domains import DomainClaims
from services.registration.ratelimit import RateLimiter
from services.registration.web.forms import Form, Route, notice_of, sentence, signed_in, text
from services.registration.web.rendering import render, see_other
from services.registration.web.security import Visitor
from shared.http import ApiError


class DomainPages:
    def __init__(self, domains: DomainClaims, limiter: RateLimiter) -> None:
        self._domains = domains
        self._limiter = limiter

    def routes(self) -> list[Route]:
        return [
            ("GET", "/account/domains", self.domain_list, "member"),
            ("POST", "/account/domains", self.domain_add, "member"),
            ("GET", "/account/domains/{domain_id}", self.domain_page, "member"),
            ("POST", "/account/domains/{domain_id}/verify", self.domain_verify, "member"),
            ("POST", "/account/domains/{domain_id}/method", self.domain_method, "member"),
            ("POST", "/account/domains/{domain_id}/check", self.domain_check, "member"),
        ]

    async def domain_list(
        self,
        request: web.Request,
        visitor: Visitor,
        form: Form,
        *,
        error: str | None = None,
        typed: str = "",
        status: int = 200,
    ) -> web.StreamResponse:
        domains = await self._domains.listing(signed_in(visitor))
        return render(
            visitor,
            "domains.html",
            title="Domains",
            section="domains",
            domains=domains,
            error=error,
            typed=typed,
            status=status,
        )

    async def domain_add(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        typed = text(form, "domain", 300)
        try:
            claim = await self._domains.add(signed_in(visitor), typed, None)
        except ApiError as exc:
            return await self.domain_list(request, visitor, form, error=sentence(exc), typed=typed, status=exc.status)
        return see_other(f"/account/domains/{claim['id']}")

    async def domain_page(
        self, request: web.Request, visitor: Visitor, form: Form, *, error: str | None = None, status: int = 200
    ) -> web.StreamResponse:
        doc = await self._domains.get(signed_in(visitor), request.match_info["domain_id"])
        view = self._domains.view(doc)
        contacts = self._domains.contacts(doc["domain"])["contacts"]
        return render(
            visitor,
            "domain.html",
            title=f"Domain {view['display_name']}",
            section="domains",
            domain=view,
            contacts=contacts,
            error=error,
            status=status,
            notice=notice_of(request),
        )

    async def domain_verify(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        member = signed_in(visitor)
        claim_id = request.match_info["domain_id"]
        await self._domains.get(member, claim_id)
        contact = text(form, "contact", 320)
        if not contact:
            return await self.domain_page(request, visitor, form, error="Choose one of the addresses.", status=422)
        await self._limiter.hit("mail:account", member.id)
        await self._limiter.hit("mail:address", contact.lower())
        try:
            await self._domains.request_verification(member, claim_id, contact)
        except ApiError as exc:
            return await self.domain_page(request, visitor, form, error=sentence(exc), status=exc.status)
        return see_other(f"/account/domains/{claim_id}?notice=mail_sent")

    async def domain_method(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        """Show the random value for the DNS or website method (drawn once, reused for 29 days)."""
        member = signed_in(visitor)
        claim_id = request.match_info["domain_id"]
        method = text(form, "method", 40)
        try:
            await self._domains.prepare_challenge(member, claim_id, method)
        except ApiError as exc:
            return await self.domain_page(request, visitor, form, error=sentence(exc), status=exc.status)
        return see_other(f"/account/domains/{claim_id}#publish")

    async def domain_check(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        """'Check now': ask domain_verify to look for the published record or file."""
        member = signed_in(visitor)
        claim_id = request.match_info["domain_id"]
        await self._limiter.hit("check:account", member.id)
        try:
            await self._domains.check_now(member, claim_id)
        except ApiError as exc:
            return await self.domain_page(request, visitor, form, error=sentence(exc), status=exc.status)
        return see_other(f"/account/domains/{claim_id}?notice=check_started")
