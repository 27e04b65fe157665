"""CertificateRequests over the in-memory store: what is stored, which event is queued, what is refused."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from services.registration.assurance import Assurances
from services.registration.certificate_requests import CertificateRequests
from services.registration.domains import DomainClaims
from services.registration.members import Member, Members
from shared.events import BY_NAME
from shared.http import ApiError
from tests.registration.csrs import build_csr
from tests.registration.memory_store import MemoryStore, context

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
        return await self.members.create(name=name, date_of_birth=date(1990, 1, 1), address=address,
                                         password="correct horse battery staple", roles=roles, verified=True)

    async def assured(self, member: Member) -> None:
        """Two Assurers award 25 points each: 50 points make the member Assured."""
        for n in (1, 2):
            assurer = await self.member(f"assurer{n}@example.org", name=f"Assurer {n}", roles=("member", "assurer"))
            await self.assurances.record(assurer, member, points=25, location="Berlin", met_on=date(2026, 2, 1))

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

    await reg.requests.on_issued({"request_id": issued["id"], "serial": "0a1b"})
    await reg.requests.on_signer_rejected({"request_id": failed["id"], "reason": "lint", "details": ["bad SAN"]})
    # A late rejection of an issued request changes nothing.
    await reg.requests.on_signer_rejected({"request_id": issued["id"], "reason": "late"})

    assert (await reg.requests.get(ada, issued["id"]))["status"] == "issued"
    assert (await reg.requests.get(ada, issued["id"]))["serial"] == "0a1b"
    failed_now = await reg.requests.get(ada, failed["id"])
    assert failed_now["status"] == "failed" and failed_now["reasons"] == ["lint", "bad SAN"]
    assert [r["id"] for r in await reg.requests.listing(ada)] in ([failed["id"], issued["id"]],
                                                                   [issued["id"], failed["id"]])
