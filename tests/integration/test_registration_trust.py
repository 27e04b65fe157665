"""Assurance and support flows over real HTTP/Kafka/FerretDB: points, thresholds, roles, code signing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pyotp
import pytest

from shared.config import KafkaSettings, MongoSettings
from tests.registration.harness import PASSWORD, Stack, running

pytestmark = pytest.mark.usefixtures("topics")


@pytest.fixture
async def stack(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Stack]:
    async with running(kafka_settings, mongo_settings) as s:
        yield s


def assurance(member: str, points: int) -> dict[str, object]:
    return {"member": member, "points": points, "location": "Berlin", "date": "2026-01-10",
            "documents_checked": True}


async def test_assurance_thresholds_self_assurance_and_once_per_pair(stack: Stack) -> None:
    api = stack.api
    member_id, member = await stack.member("Dora Member", "dora@example.org")
    assurers = [
        await stack.founder(f"Assurer {i}", f"assurer{i}@example.org", ("member", "assurer"))
        for i in range(3)
    ]
    (a0_id, a0), (_, a1), (_, a2) = assurers

    assert (
        await api.call("POST", "/v1/assurances", token=member, json_body=assurance(a0_id, 10))
    ).status == 403
    selfish = await api.call("POST", "/v1/assurances", token=a0, json_body=assurance(a0_id, 35))
    assert selfish.status == 422 and selfish.body["error"]["code"] == "self_assurance"
    too_many = await api.call("POST", "/v1/assurances", token=a0, json_body=assurance(member_id, 36))
    assert too_many.status == 422

    first = await api.call("POST", "/v1/assurances", token=a0, json_body=assurance(member_id, 35))
    assert first.status == 201 and first.body["total_points"] == 35 and first.body["assured"] is False
    again = await api.call("POST", "/v1/assurances", token=a0, json_body=assurance("dora@example.org", 10))
    assert again.status == 409 and again.body["error"]["code"] == "already_assured"
    me = (await api.call("GET", "/v1/me", token=member)).body
    assert me["points"] == 35 and me["assured"] is False

    second = await api.call("POST", "/v1/assurances", token=a1, json_body=assurance("Dora@Example.org", 15))
    assert second.status == 201 and second.body["total_points"] == 50 and second.body["assured"] is True
    me = (await api.call("GET", "/v1/me", token=member)).body
    assert me["points"] == 50 and me["assured"] is True
    listing = (await api.call("GET", "/v1/assurances", token=member)).body
    assert listing["total_points"] == 50 and len(listing["received"]) == 2

    events = await stack.events("member", "member.assurance_recorded", expected=2)
    assert [e.data["total_points"] for e in events] == [35, 50] and events[-1].data["assured"] is True

    # Assurer status needs 100 points and the assurer test; code signing needs an Assurer.
    _, admin = await stack.founder("Support", "support@example.org", ("member", "admin"))
    assert (
        await api.call(
            "POST",
            f"/v1/admin/members/{member_id}/assurer",
            token=member,
            json_body={"assurer_test_passed": True},
        )
    ).status == 403
    short = await api.call(
        "POST", f"/v1/admin/members/{member_id}/assurer", token=admin, json_body={"assurer_test_passed": True}
    )
    assert short.status == 409 and short.body["error"]["code"] == "insufficient_points"
    no_codesign = await api.call(
        "POST", f"/v1/admin/members/{member_id}/codesign", token=admin, json_body={"enabled": True}
    )
    assert no_codesign.status == 409
    assert (
        await api.call("POST", "/v1/assurances", token=a2, json_body=assurance(member_id, 35))
    ).status == 201
    untested = await api.call(
        "POST",
        f"/v1/admin/members/{member_id}/assurer",
        token=admin,
        json_body={"assurer_test_passed": False},
    )
    assert untested.status == 409 and untested.body["error"]["code"] == "assurer_test_required"
    still_short = await api.call(
        "POST", f"/v1/admin/members/{member_id}/assurer", token=admin, json_body={"assurer_test_passed": True}
    )
    assert still_short.status == 409 and still_short.body["error"]["details"] == {
        "points": 85,
        "required": 100,
    }


async def test_assurer_status_at_100_points_then_code_signing(stack: Stack) -> None:
    api = stack.api
    member_id, member = await stack.member("Eve Candidate", "eve@example.org")
    for i, points in enumerate((35, 35, 30)):
        _, assurer = await stack.founder(f"A{i}", f"a{i}@example.org", ("member", "assurer"))
        assert (
            await api.call("POST", "/v1/assurances", token=assurer, json_body=assurance(member_id, points))
        ).status == 201
    _, admin = await stack.founder("Support", "support@example.org", ("member", "admin"))
    granted = await api.call(
        "POST", f"/v1/admin/members/{member_id}/assurer", token=admin, json_body={"assurer_test_passed": True}
    )
    assert granted.status == 200 and granted.body["roles"] == ["member", "assurer"]
    assert granted.body["points"] == 100 and granted.body["assurer_test_passed"] is True
    proposed = await api.call(
        "POST", f"/v1/admin/members/{member_id}/codesign", token=admin, json_body={"enabled": True}
    )
    assert proposed.status == 202 and proposed.body["codesign_enabled"] is False
    admin_id = proposed.body["codesign_proposed_by"]
    # the proposer cannot approve it too; a second admin can
    again = await api.call("POST", f"/v1/admin/members/{member_id}/codesign", token=admin, json_body={"enabled": True})
    assert again.status == 409 and again.body["error"]["code"] == "second_admin_required"
    second_id, second = await stack.founder("Support Two", "support2@example.org", ("member", "admin"))
    enabled = await api.call(
        "POST", f"/v1/admin/members/{member_id}/codesign", token=second, json_body={"enabled": True}
    )
    assert enabled.status == 200 and enabled.body["codesign_enabled"] is True
    assert enabled.body["codesign_proposed_by"] is None
    audit = [e async for e in stack.service.db["audit"].find({"subject": member_id})]  # type: ignore[index]
    (approval,) = [e for e in audit if e["action"] == "admin.codesign_changed"]
    assert approval["actor"] == second_id
    assert approval["details"]["proposed_by"] == admin_id and approval["details"]["approved_by"] == second_id
    assert [e["actor"] for e in audit if e["action"] == "admin.codesign_proposed"] == [admin_id]
    changes = [
        e
        for e in await stack.events("member", "member.role_changed", expected=5)
        if e.data["member_id"] == member_id
    ]
    assert [(c.data["roles"], c.data["codesign_enabled"]) for c in changes] == [
        (["member", "assurer"], False),
        (["member", "assurer"], True),
    ]
    # The new Assurer can assure others once the second factor is on (it is off until they turn it on).
    other_id, _ = await stack.member("Fred", "fred@example.org")
    refused = await api.call("POST", "/v1/assurances", token=member, json_body=assurance(other_id, 10))
    assert refused.status == 403 and refused.body["error"]["code"] == "second_factor_required"
    started = await api.call("POST", "/v1/me/second-factor", token=member)
    assert started.status == 201 and started.body["otpauth_uri"].startswith("otpauth://totp/")
    app = pyotp.TOTP(started.body["secret"])
    confirmed = await api.call("POST", "/v1/me/second-factor/confirm", token=member, json_body={"code": app.now()})
    assert confirmed.status == 200 and confirmed.body == {"second_factor": True}
    assert (
        await api.call("POST", "/v1/assurances", token=member, json_body=assurance(other_id, 10))
    ).status == 201
    # ...and from now on a login needs the code
    without = await api.call("POST", "/v1/sessions", json_body={"email": "eve@example.org", "password": PASSWORD})
    assert without.status == 401 and without.body["error"]["code"] == "second_factor_required"
    with_code = await api.call("POST", "/v1/sessions", json_body={"email": "eve@example.org", "password": PASSWORD,
                                                                  "totp": app.now()})
    assert with_code.status == 201


async def test_staff_never_change_their_own_assurer_status_or_code_signing(stack: Stack) -> None:
    """Least trust: an admin who is also a member of the web of trust cannot promote themselves."""
    api = stack.api
    admin_id, admin = await stack.founder("Self Server", "self@example.org", ("member", "admin", "assurer"))
    for path, body, what in ((f"/v1/admin/members/{admin_id}/assurer", {"assurer_test_passed": True}, "Assurer"),
                             (f"/v1/admin/members/{admin_id}/codesign", {"enabled": True}, "code signing")):
        refused = await api.call("POST", path, token=admin, json_body=body)
        assert refused.status == 403 and refused.body["error"]["code"] == "own_account", refused.body
        assert what in refused.body["error"]["message"]
    view = await api.call("GET", f"/v1/admin/members/{admin_id}", token=admin)
    assert view.body["codesign_enabled"] is False and view.body["codesign_proposed_by"] is None
