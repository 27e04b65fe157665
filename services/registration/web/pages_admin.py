"""Support pages (admins only): find a member, grant Assurer, (de)activate code signing, revoke any certificate."""

from __future__ import annotations

import re
from urllib.parse import quote

from aiohttp import web

from services.registration.api.accounts import member_view
from services.registration.assurance import Assurances
from services.registration.certificates import REVOCATION_REASONS, Certificates
from services.registration.members import ASSURER_POINTS, Members
from services.registration.staff_actions import StaffActions
from services.registration.web.forms import Form, Route, member_by_reference, notice_of, sentence, signed_in, text
from services.registration.web.rendering import render, see_other
from services.registration.web.security import Visitor
from shared.http import ApiError


class AdminPages:
    def __init__(self, members: Members, assurances: Assurances, certificates: Certificates) -> None:
        self._members = members
        self._assurances = assurances
        self._certificates = certificates

    def routes(self) -> list[Route]:
        return [
            ("GET", "/account/admin", self.admin, "admin"),
            ("POST", "/account/admin/members/{member_id}/assurer", self.admin_grant_assurer, "admin"),
            ("POST", "/account/admin/members/{member_id}/codesign", self.admin_codesign, "admin"),
            ("POST", "/account/admin/revoke", self.admin_revoke, "admin"),
        ]

    async def admin(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        admin = signed_in(visitor)
        reference = request.query.get("member", "")[:320]
        found = None
        error = None
        if reference:
            try:
                target = await member_by_reference(self._members, reference)
            except ApiError as exc:
                error = sentence(exc)
            else:
                await self._members.audit(admin.id, "admin.member_viewed", target.id)
                found = await member_view(target, self._assurances)
        return render(
            visitor,
            "admin.html",
            title="Support",
            section="admin",
            reference=reference,
            found=found,
            error=error,
            reasons=REVOCATION_REASONS,
            assurer_points=ASSURER_POINTS,
            notice=notice_of(request),
        )

    async def admin_grant_assurer(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        member = await member_by_reference(self._members, request.match_info["member_id"])
        await StaffActions(self._members, self._assurances).grant_assurer(
            signed_in(visitor), member, test_passed=text(form, "assurer_test_passed") == "yes"
        )
        return see_other(f"/account/admin?member={quote(member.id)}&notice=roles_changed")

    async def admin_codesign(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        member = await member_by_reference(self._members, request.match_info["member_id"])
        _, done = await StaffActions(self._members, self._assurances).set_codesign(
            signed_in(visitor), member, enabled=text(form, "enabled") == "yes"
        )
        notice = "roles_changed" if done else "codesign_proposed"
        return see_other(f"/account/admin?member={quote(member.id)}&notice={notice}")

    async def admin_revoke(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        reason = text(form, "reason", 64)
        if reason not in REVOCATION_REASONS:
            reason = "unspecified"
        serial = text(form, "serial", 80).strip().lower().replace(":", "")
        if not re.fullmatch(r"[0-9a-f]{1,64}", serial):
            raise ApiError(422, "invalid_serial", "Enter the certificate's serial number in hexadecimal.")
        done = await self._certificates.request_revocation(signed_in(visitor), serial, reason)
        return see_other(f"/account/certificates/{done['serial']}?notice=revocation_requested")
