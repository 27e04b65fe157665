"""Web-of-trust and support routes: recording assurances, granting Assurer status, code signing."""

from __future__ import annotations

from aiohttp import web

from services.registration.api.accounts import member_view
from services.registration.api.common import Authenticator, email_field, parse_date, schema
from services.registration.assurance import Assurances
from services.registration.issuance_policy import ASSURED_POINTS
from services.registration.members import Member, Members
from services.registration.staff_actions import StaffActions
from shared.http import ApiError, read_json


class TrustRoutes:
    def __init__(self, members: Members, assurances: Assurances, auth: Authenticator) -> None:
        self._members = members
        self._assurances = assurances
        self._auth = auth

    def install(self, app: web.Application) -> None:
        app.router.add_get("/v1/assurances", self.listing)
        app.router.add_post("/v1/assurances", self.record)
        app.router.add_get("/v1/admin/members/{member_id}", self.admin_view)
        app.router.add_post("/v1/admin/members/{member_id}/assurer", self.grant_assurer)
        app.router.add_post("/v1/admin/members/{member_id}/codesign", self.set_codesign)

    async def _target(self, reference: str) -> Member:
        """A member named by id or by one of their addresses; 404 if there is none."""
        member = (
            await self._members.by_address(email_field(reference, "member"))
            if "@" in reference
            else await self._members.get(reference)
        )
        if member is None:
            raise ApiError(404, "not_found", "no such member")
        return member

    async def listing(self, request: web.Request) -> web.Response:
        member = await self._auth.member(request)
        result = await self._assurances.listing(member.id)
        total = sum(int(a["points"]) for a in result["received"])
        return web.json_response({**result, "total_points": total, "assured": total >= ASSURED_POINTS})

    async def record(self, request: web.Request) -> web.Response:
        assurer = await self._auth.member(request)
        body = await read_json(request, schema("AssuranceRequest"))
        met_on = parse_date(body["date"], "date")
        location = " ".join(body["location"].split())
        if not location:
            raise ApiError(
                422,
                "validation_failed",
                "location must not be blank",
                [{"field": "location", "problem": "blank"}],
            )
        if not assurer.is_assurer:
            raise ApiError(403, "not_an_assurer", "only Assurers may record assurances")
        member = await self._target(body["member"])
        result = await self._assurances.record(
            assurer, member, points=int(body["points"]), location=location, met_on=met_on,
            documents_checked=body["documents_checked"] is True,
        )
        return web.json_response(result, status=201)

    async def admin_view(self, request: web.Request) -> web.Response:
        admin = await self._auth.admin(request)
        member = await self._target(request.match_info["member_id"])
        await self._members.audit(admin.id, "admin.member_viewed", member.id)
        return web.json_response(await member_view(member, self._assurances))

    async def grant_assurer(self, request: web.Request) -> web.Response:
        admin = await self._auth.admin(request)
        body = await read_json(request, schema("GrantAssurerRequest"))
        member = await self._target(request.match_info["member_id"])
        updated = await StaffActions(self._members, self._assurances).grant_assurer(
            admin, member, test_passed=body["assurer_test_passed"] is True
        )
        return web.json_response(await member_view(updated, self._assurances))

    async def set_codesign(self, request: web.Request) -> web.Response:
        admin = await self._auth.admin(request)
        body = await read_json(request, schema("CodesignRequest"))
        member = await self._target(request.match_info["member_id"])
        updated, done = await StaffActions(self._members, self._assurances).set_codesign(
            admin, member, enabled=bool(body["enabled"])
        )
        # 202: proposed, waiting for a second admin's approval (codesign_proposed_by says who proposed)
        return web.json_response(await member_view(updated, self._assurances), status=200 if done else 202)
