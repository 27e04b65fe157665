"""CertificateRequests over the in-memory store: what is stored, which event is queued, what is refused."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from services.registration.assurance import Assurances
from services.registration.certificate_requests import CertificateRequests
from services.registration.domains import DomainClaims
from services.registration.members import Member, Members
from shared.approvals import ApprovalVerifier
from shared.events import BY_NAME
from shared.http import ApiError
from tests.approval_keys import RA_PUBLIC_PEM
from tests.registration.csrs import build_csr
from tests.registration.memory_store import MemoryStore, context, with_second_factor

ADA = "ada@example.org"


class Registration:
    def __init__(self) -> None:
        self.store = MemoryStore()
        ctx = context(self.store)
        self.members = Members(ctx)
        self.assurances = Assurances(ctx)
        self.requests = CertificateRequests(ctx, self.assurances, DomainClaims(ctx))

    async def member(self, address: str = ADA, *, name: str = "Ada Lovelace", roles: tuple[str, ...] = ("member",)
                     ) -> Member:
        created = await self.members.create(name=name, date_of_birth=date(1990, 1, 1), address=address,
                                         password="correct horse battery staple", roles=roles, verified=True)
        staff = {"assurer", "admin"} & set(roles)
        return with_second_factor(self.store, created) if staff else created

    async def assured(self, member: Member) -> None:
        """Two Assurers award 25 points each: 50 points make the member Assured."""
        for n in (1, 2):
            assurer = await self.member(f"assurer{n}@example.org", name=f"Assurer {n}", roles=("member", "assurer"))
            await self.assurances.record(assurer, member, points=25, location="Berlin", met_on=date(2026, 2, 1),
                                         documents_checked=True)

    def stored(self) -> list[dict[str, Any]]:
        return list(self.store.collections["requests"].values())


@pytest.fixture
def reg() -> Registration:
    return Registration()


async def test_an_approved_request_is_stored_with_exactly_one_csr_approved_event(reg: Registration) -> None:
    ada = await reg.member()
    pem = build_csr(emails=[ADA])
    view = await reg.requests.submit(ada, pem, "client")

    assert view["status"] == "approved" and view["cert_class"] == 1
    [stored] = reg.stored()
    assert stored["_id"] == view["id"] and stored["member_id"] == ada.id and stored["csr_pem"] == pem
    request_events = [e for (collection, _, e) in reg.store.queued if collection == "requests"]
    assert [e.type for e in request_events] == [BY_NAME["csr.approved"].type]
    data = request_events[0].data
    assert data["request_id"] == view["id"] and data["member_id"] == ada.id
    assert data["profile"] == "client" and data["cert_class"] == 1 and data["csr_pem"] == pem
    assert data["emails"] == [ADA] and data["dns_names"] == [] and data["ip_addresses"] == []
    assert data["subject"] == {} and data["validity_days"] == stored["validity_days"]
    assert [a["action"] for a in reg.store.audit if a["subject"] == view["id"]] == ["csr.approved"]
    # signed by the RA over exactly this event, so the signer can tell it from a forgery
    assert ApprovalVerifier.from_pem(RA_PUBLIC_PEM).problem(request_events[0]) is None


async def test_a_refusal_as_unsigned_leaves_the_request_as_it_was(reg: Registration) -> None:
    """`unauthenticated_approval` means the signer saw an approval this RA may not have made (a forgery
    copying a real request id): it must not fail the member's genuine request."""
    ada = await reg.member()
    view = await reg.requests.submit(ada, build_csr(emails=[ADA]), "client")
    await reg.requests.on_signer_rejected({"request_id": view["id"], "member_id": ada.id,
                                           "reason": "unauthenticated_approval", "details": ["not signed by the RA"]})
    assert (await reg.requests.get(ada, view["id"]))["status"] == "approved"


async def test_a_refused_request_is_stored_with_csr_rejected_and_the_422_carries_every_reason(
    reg: Registration,
) -> None:
    ada = await reg.member()
    with pytest.raises(ApiError) as refused:
        await reg.requests.submit(ada, build_csr(dns=["one.example.net", "two.example.net"]), "server")

    error = refused.value
    assert error.status == 422 and error.code == "csr_rejected"
    reasons = error.details["reasons"]
    assert any("one.example.net" in r for r in reasons) and any("two.example.net" in r for r in reasons)
    [stored] = reg.stored()
    assert stored["status"] == "rejected" and stored["reasons"] == reasons
    assert error.details["request_id"] == stored["_id"]
    [event] = reg.store.events("csr.rejected")
    assert event.data["request_id"] == stored["_id"] and event.data["reasons"] == reasons
    assert event.data["member_id"] == ada.id and event.data["profile"] == "server"
    assert reg.store.events("csr.approved") == []


async def test_a_csr_over_the_subject_alt_name_cap_stores_and_queues_nothing(reg: Registration) -> None:
    ada = await reg.member()
    queued_before = list(reg.store.queued)
    with pytest.raises(ApiError) as refused:
        await reg.requests.submit(ada, build_csr(dns=[f"h{i}.example.org" for i in range(101)]), "server")

    assert refused.value.status == 422 and "request_id" not in refused.value.details
    assert reg.stored() == [] and reg.store.queued == queued_before
    assert not any(a["action"].startswith("csr.") for a in reg.store.audit)


async def test_an_assured_member_may_choose_class_1(reg: Registration) -> None:
    ada = await reg.member()
    await reg.assured(ada)
    assert (await reg.requests.standing(ada)).points == 50

    chosen = await reg.requests.submit(ada, build_csr(emails=[ADA]), "client", cert_class=1)
    highest = await reg.requests.submit(ada, build_csr(emails=[ADA]), "client")

    assert chosen["cert_class"] == 1 and highest["cert_class"] == 3
    assert [e.data["cert_class"] for e in reg.store.events("csr.approved")] == [1, 3]


async def test_class_3_is_refused_to_an_unassured_member(reg: Registration) -> None:
    ada = await reg.member()
    with pytest.raises(ApiError) as refused:
        await reg.requests.submit(ada, build_csr(emails=[ADA]), "client", cert_class=3)

    assert any("Class 3" in r for r in refused.value.details["reasons"])
    [stored] = reg.stored()
    assert stored["status"] == "rejected" and "cert_class" not in stored
    assert len(reg.store.events("csr.rejected")) == 1


async def test_the_signers_outcomes_update_the_request_status(reg: Registration) -> None:
    ada = await reg.member()
    issued = await reg.requests.submit(ada, build_csr(emails=[ADA]), "client")
    failed = await reg.requests.submit(ada, build_csr(emails=[ADA]), "client")

    await reg.requests.on_issued([{"request_id": issued["id"], "serial": "0a1b"}])
    await reg.requests.on_signer_rejected({"request_id": failed["id"], "reason": "lint", "details": ["bad SAN"]})
    # A late rejection of an issued request changes nothing.
    await reg.requests.on_signer_rejected({"request_id": issued["id"], "reason": "late"})

    assert (await reg.requests.get(ada, issued["id"]))["status"] == "issued"
    assert (await reg.requests.get(ada, issued["id"]))["serial"] == "0a1b"
    failed_now = await reg.requests.get(ada, failed["id"])
    assert failed_now["status"] == "failed" and failed_now["reasons"] == ["lint", "bad SAN"]
    assert [r["id"] for r in await reg.requests.listing(ada)] in ([failed["id"], issued["id"]],
                                                                   [issued["id"], failed["id"]])


async def _verified(reg: Registration, member: Member, domain: str, method: str = "dns_change") -> None:
    from datetime import UTC, datetime, timedelta

    from shared.events import isoformat, make_event

    claims = DomainClaims(context(reg.store))
    claim = await claims.add(member, domain, None, method)
    view = await claims.check_now(member, claim["id"])
    now = datetime.now(UTC)
    await claims.on_verified(make_event("domain.verified", {
        "request_id": view["request_id"], "member_id": member.id, "domain": domain, "method": method,
        "br_section": "3.2.2.4.7", "verified_at": isoformat(now),
        "valid_until": isoformat(now + timedelta(days=200))}, source="domain_verify"))


def _caa_verdict(check: dict[str, Any], *, allowed: bool, reason: str = "no_caa",
                 records: list[str] | None = None) -> dict[str, Any]:
    from datetime import UTC, datetime

    return {"check_id": check["check_id"], "request_id": check["request_id"], "member_id": check["member_id"],
            "verdict": "allowed" if allowed else "refused", "reason": reason,
            "names": [{"name": n, "allowed": allowed, "reason": reason, "relevant_name": "example.org",
                       "records": records or []} for n in check["names"]],
            "checked_at": datetime.now(UTC).isoformat()}


def _queued(reg: Registration, name: str) -> list[dict[str, Any]]:
    return [e.data for (_, _, e) in reg.store.queued if e.type == BY_NAME[name].type]


async def test_a_server_request_waits_for_caa_and_is_announced_to_the_signer_only_when_caa_allows(
    reg: Registration,
) -> None:
    ada = await reg.member()
    await _verified(reg, ada, "example.org")
    view = await reg.requests.submit(ada, build_csr(dns=["www.example.org"]), "server")

    assert view["status"] == "caa_pending"
    assert _queued(reg, "csr.approved") == []
    (check,) = _queued(reg, "domain.caa_check_requested")
    assert check["names"] == ["www.example.org"] and check["request_id"] == view["id"]
    # For RFC 8657 validationmethods: the method that verified the covering domain.
    assert check["validation_methods"] == [{"name": "www.example.org", "method": "dns_change"}]

    await reg.requests.on_caa_checked(_caa_verdict(check, allowed=True))
    (approved,) = _queued(reg, "csr.approved")
    assert approved["request_id"] == view["id"] and "caa_checked_at" in approved
    assert (await reg.requests.get(ada, view["id"]))["status"] == "approved"
    # A redelivered verdict changes nothing.
    await reg.requests.on_caa_checked(_caa_verdict(check, allowed=True))
    assert len(_queued(reg, "csr.approved")) == 1


async def test_a_caa_refusal_rejects_the_request_with_the_record_that_forbade_it(reg: Registration) -> None:
    ada = await reg.member()
    await _verified(reg, ada, "example.org")
    view = await reg.requests.submit(ada, build_csr(dns=["www.example.org"]), "server")
    (check,) = _queued(reg, "domain.caa_check_requested")

    await reg.requests.on_caa_checked(_caa_verdict(check, allowed=False, reason="not_permitted",
                                                   records=['0 issue "other-ca.example"']))
    (rejected,) = _queued(reg, "csr.rejected")
    assert rejected["code"] == "caa" and rejected["request_id"] == view["id"]
    assert 'other-ca.example' in rejected["reasons"][0] and "not_permitted" in rejected["reasons"][0]
    assert rejected["caa"]["names"][0]["records"] == ['0 issue "other-ca.example"']
    stored = await reg.requests.get(ada, view["id"])
    assert stored["status"] == "rejected" and stored["caa"]["verdict"] == "refused"
    assert _queued(reg, "csr.approved") == []


async def test_a_batch_of_caa_verdicts_approves_refuses_and_ignores_each_as_one_verdict_would(
    reg: Registration,
) -> None:
    ada = await reg.member()
    await _verified(reg, ada, "example.org")
    allowed = await reg.requests.submit(ada, build_csr(dns=["www.example.org"]), "server")
    refused = await reg.requests.submit(ada, build_csr(dns=["mail.example.org"]), "server")
    first, second = _queued(reg, "domain.caa_check_requested")
    stale = {**_caa_verdict(first, allowed=True), "check_id": "not-the-current-check"}

    await reg.requests.on_caa_verdicts([
        _caa_verdict(first, allowed=True), stale,
        _caa_verdict(second, allowed=False, reason="not_permitted", records=['0 issue "other-ca.example"']),
        _caa_verdict(first, allowed=True),  # redelivered within the same batch
    ])

    (approved,) = _queued(reg, "csr.approved")
    (rejected,) = _queued(reg, "csr.rejected")
    assert approved["request_id"] == allowed["id"] and rejected["request_id"] == refused["id"]
    assert (await reg.requests.get(ada, allowed["id"]))["status"] == "approved"
    assert (await reg.requests.get(ada, refused["id"]))["status"] == "rejected"
    assert sorted(a["action"] for a in reg.store.audit if a["action"].startswith("csr.caa")) == [
        "csr.caa_allowed", "csr.caa_refused"]


async def test_a_verdict_for_a_request_this_process_stored_is_decided_without_reading_it_back(
    reg: Registration, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ada = await reg.member()
    await _verified(reg, ada, "example.org")
    ours = await reg.requests.submit(ada, build_csr(dns=["www.example.org"]), "server")
    replica = CertificateRequests(context(reg.store), reg.assurances, DomainClaims(context(reg.store)))
    theirs = await replica.submit(ada, build_csr(dns=["mail.example.org"]), "server")
    checks = {c["request_id"]: c for c in _queued(reg, "domain.caa_check_requested")}
    read: list[list[str]] = []
    real = reg.store.requests_by_ids

    async def spy(request_ids: list[str]) -> dict[str, Any]:
        read.append(sorted(request_ids))
        return await real(request_ids)

    monkeypatch.setattr(reg.store, "requests_by_ids", spy)
    await reg.requests.on_caa_verdicts([_caa_verdict(checks[ours["id"]], allowed=True),
                                        _caa_verdict(checks[theirs["id"]], allowed=True)])

    assert read == [[theirs["id"]]]  # the other replica's request is read; ours was kept as stored
    approved = {a["request_id"]: a for a in _queued(reg, "csr.approved")}
    assert set(approved) == {ours["id"], theirs["id"]}
    assert approved[ours["id"]]["dns_names"] == ["www.example.org"] and "caa_checked_at" in approved[ours["id"]]
    assert (await reg.requests.get(ada, ours["id"]))["status"] == "approved"


async def test_a_kept_request_another_replica_has_decided_meanwhile_is_not_decided_again(
    reg: Registration,
) -> None:
    """The verdict went to another replica first (a rebalance redelivers it here): the request this process
    kept as caa_pending is approved already, and the write's condition is what notices."""
    ada = await reg.member()
    await _verified(reg, ada, "example.org")
    view = await reg.requests.submit(ada, build_csr(dns=["www.example.org"]), "server")
    (check,) = _queued(reg, "domain.caa_check_requested")
    replica = CertificateRequests(context(reg.store), reg.assurances, DomainClaims(context(reg.store)))
    await replica.on_caa_checked(_caa_verdict(check, allowed=True))
    assert len(_queued(reg, "csr.approved")) == 1

    await reg.requests.on_caa_checked(_caa_verdict(check, allowed=False, reason="not_permitted"))

    assert len(_queued(reg, "csr.approved")) == 1 and _queued(reg, "csr.rejected") == []
    assert (await reg.requests.get(ada, view["id"]))["status"] == "approved"
    assert [a["action"] for a in reg.store.audit if a["action"].startswith("csr.caa")] == ["csr.caa_allowed"]


async def test_a_stale_caa_result_at_signing_time_is_checked_again_and_approved_under_a_new_event_id(
    reg: Registration,
) -> None:
    ada = await reg.member()
    await _verified(reg, ada, "example.org")
    view = await reg.requests.submit(ada, build_csr(dns=["www.example.org"]), "server")
    (check,) = _queued(reg, "domain.caa_check_requested")
    await reg.requests.on_caa_checked(_caa_verdict(check, allowed=True))

    await reg.requests.on_signer_rejected({"request_id": view["id"], "member_id": ada.id, "reason": "caa_stale",
                                           "details": ["checked more than 8 hours ago"]})
    assert (await reg.requests.get(ada, view["id"]))["status"] == "caa_pending"
    first, second = _queued(reg, "domain.caa_check_requested")
    assert second["check_id"] != first["check_id"] and second["request_id"] == view["id"]
    # The old verdict no longer counts; the new one approves again, as a new event.
    await reg.requests.on_caa_checked(_caa_verdict(first, allowed=True))
    assert len(_queued(reg, "csr.approved")) == 1
    await reg.requests.on_caa_checked(_caa_verdict(second, allowed=True))
    approvals = [e for (_, _, e) in reg.store.queued if e.type == BY_NAME["csr.approved"].type]
    assert len(approvals) == 2 and approvals[0].id != approvals[1].id
    assert {a.data["request_id"] for a in approvals} == {view["id"]}
