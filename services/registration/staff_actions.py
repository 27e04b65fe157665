"""What support staff may change about a member, and when: one copy of the rules for API and portal.

CAcert's rules: Assurer status needs the assurer test and at least 100 points; code signing is only
for Assurers. Both the JSON API and the web portal call these, so the two can never disagree.
"""

from __future__ import annotations

from services.registration.assurance import Assurances
from services.registration.members import ASSURER_POINTS, Member, Members
from shared.http import ApiError


class StaffActions:
    def __init__(self, members: Members, assurances: Assurances) -> None:
        self._members = members
        self._assurances = assurances

    async def grant_assurer(self, admin: Member, member: Member, *, test_passed: bool) -> Member:
        if not test_passed:
            raise ApiError(409, "assurer_test_required", "the member must have passed the assurer test")
        points = await self._assurances.points_of(member.id)
        if points < ASSURER_POINTS:
            raise ApiError(
                409,
                "insufficient_points",
                f"an Assurer needs at least {ASSURER_POINTS} points; this member has {points}",
                {"points": points, "required": ASSURER_POINTS},
            )
        roles = list(member.roles) if member.is_assurer else [*member.roles, "assurer"]
        updated = await self._members.change_roles(
            member, roles=roles, codesign=member.codesign_enabled, changed_by=admin.id,
            extra={"assurer_test_passed": True},
        )
        await self._members.audit(admin.id, "admin.assurer_granted", member.id, roles=roles, points=points)
        return updated

    async def set_codesign(self, admin: Member, member: Member, *, enabled: bool) -> Member:
        if enabled and not member.is_assurer:
            raise ApiError(409, "not_an_assurer", "code signing can only be activated for an Assurer")
        updated = await self._members.change_roles(
            member, roles=list(member.roles), codesign=enabled, changed_by=admin.id
        )
        await self._members.audit(admin.id, "admin.codesign_changed", member.id, codesign_enabled=enabled)
        return updated
