"""The second factor (TOTP, RFC 6238): turning it on takes a code from the app, a login then needs the
current code, and Assurers and admins cannot assure, grant or activate anything without it. Unit tests
over the in-memory store, with pyotp playing the member's authenticator app."""

from __future__ import annotations

from datetime import date

import pyotp
import pytest

from services.registration.assurance import Assurances
from services.registration.members import Member, Members
from services.registration.second_factor import SecondFactor
from services.registration.sessions import Sessions
from services.registration.staff_actions import StaffActions
from shared.http import ApiError
from tests.registration.memory_store import MemoryStore, context

PASSWORD = "correct horse battery staple"


def not_now(app: pyotp.TOTP) -> str:
    """A well-formed code that is not the app's current one."""
    return "000000" if app.now() != "000000" else "111111"


async def _member(members: Members, address: str, roles: tuple[str, ...] = ("member",)) -> Member:
    return await members.create(name="Tess Totp", date_of_birth=date(1990, 1, 1), address=address,
                                password=PASSWORD, roles=roles, verified=True)


async def test_turning_it_on_takes_a_code_from_the_app_and_then_every_login_needs_one() -> None:
    store = MemoryStore()
    ctx = context(store)
    members = Members(ctx)
    tess = await _member(members, "tess@example.org")
    factor, sessions = SecondFactor(ctx, members), Sessions(ctx, members)
    started = await factor.begin(tess)
    assert started["otpauth_uri"].startswith("otpauth://totp/CAcert%20Community%20CA:tess%40example.org?secret=")
    app = pyotp.TOTP(started["secret"])
    assert (await sessions.login("tess@example.org", PASSWORD))["member_id"] == tess.id, "not on until confirmed"
    with pytest.raises(ApiError) as wrong:
        await factor.confirm(tess, not_now(app))
    assert wrong.value.code == "second_factor_invalid"
    await factor.confirm(tess, app.now())
    tess = await members.get(tess.id) or tess
    assert tess.second_factor
    with pytest.raises(ApiError) as missing:
        await sessions.login("tess@example.org", PASSWORD)
    assert missing.value.status == 401 and missing.value.code == "second_factor_required"
    with pytest.raises(ApiError) as bad:
        await sessions.login("tess@example.org", PASSWORD, not_now(app))
    assert bad.value.code == "second_factor_invalid"
    assert (await sessions.login("tess@example.org", PASSWORD, app.now()))["member_id"] == tess.id
    with pytest.raises(ApiError) as again:
        await factor.begin(tess)
    assert again.value.code == "second_factor_enabled"
    assert "totp_secret" not in str(store.audit) and started["secret"] not in str(store.audit)


async def test_assurers_and_admins_without_it_can_neither_assure_nor_grant_nor_activate() -> None:
    store = MemoryStore()
    ctx = context(store)
    members = Members(ctx)
    assurances = Assurances(ctx)
    assurer = await _member(members, "assurer@example.org", ("member", "assurer"))
    admin = await _member(members, "admin@example.org", ("member", "admin"))
    newcomer = await _member(members, "new@example.org")
    with pytest.raises(ApiError) as assure:
        await assurances.record(assurer, newcomer, points=10, location="Berlin", met_on=date(2026, 2, 1),
                                         documents_checked=True)
    assert assure.value.status == 403 and assure.value.code == "second_factor_required"
    staff = StaffActions(members, assurances)
    with pytest.raises(ApiError) as grant:
        await staff.grant_assurer(admin, newcomer, test_passed=True)
    assert grant.value.code == "second_factor_required"
    with pytest.raises(ApiError) as activate:
        await staff.set_codesign(admin, assurer, enabled=True)
    assert activate.value.code == "second_factor_required"
    assert store.collections.get("assurances", {}) == {}
