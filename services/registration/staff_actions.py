"""What support staff may change about a member, and when: one copy of the rules for API and portal.

CAcert's rules: Assurer status needs the assurer test and at least 100 points; code signing is only
for Assurers. Least trust (issue 19): no one changes their own Assurer status or code signing, and
activating code signing takes two admins, one who proposes and another who approves (CAcert's
"send an email to support", made into two people's decision); deactivating takes one. Every change is
in the audit log with each admin involved. Both the JSON API and the web portal call these, so the two
can never disagree.
"""

from __future__ import annotations

from services.registration.assurance import Assurances
from services.registration.members import ASSURER_POINTS, Member, Members
from services.registration.second_factor import require_for
from shared.http import ApiError


class StaffActions:
    def __init__(self, members: Members, assurances: Assurances) -> None:
        self._members = members
        self._assurances = assurances

    async def grant_assurer(self, admin: Member, member: Member, *, test_passed: bool) -> Member:
        _not_oneself(admin, member, "Assurer status")
        require_for(admin, "grant Assurer status")
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

    async def set_codesign(self, admin: Member, member: Member, *, enabled: bool) -> tuple[Member, bool]:
        """(the member now, whether the change is done). Activation by a first admin is only a proposal
        (done = False) until a second admin approves it."""
        _not_oneself(admin, member, "code signing")
        if not enabled:
            updated = await self._members.change_roles(
                member, roles=list(member.roles), codesign=False, changed_by=admin.id,
                extra={"codesign_proposal": None})
            await self._members.audit(admin.id, "admin.codesign_changed", member.id, codesign_enabled=False)
            return updated, True
        require_for(admin, "activate code signing")
        if not member.is_assurer:
            raise ApiError(409, "not_an_assurer", "code signing can only be activated for an Assurer")
        if member.codesign_enabled:
            return member, True
        proposer = member.codesign_proposed_by
        if proposer is None:
            updated = await self._members.propose_codesign(member, admin.id)
            await self._members.audit(admin.id, "admin.codesign_proposed", member.id)
            return updated, False
        if proposer == admin.id:
            raise ApiError(409, "second_admin_required",
                           "you proposed this activation; another admin must approve it")
        updated = await self._members.change_roles(
            member, roles=list(member.roles), codesign=True, changed_by=admin.id,
            extra={"codesign_proposal": None})
        await self._members.audit(admin.id, "admin.codesign_changed", member.id, codesign_enabled=True,
                                  proposed_by=proposer, approved_by=admin.id)
        return updated, True


def _not_oneself(admin: Member, member: Member, what: str) -> None:
    if admin.id == member.id:
        raise ApiError(403, "own_account", f"support staff cannot change their own {what}; another admin must")
