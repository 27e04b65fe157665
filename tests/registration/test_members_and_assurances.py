"""Members, addresses and assurances over the in-memory store: uniqueness and points that add up."""

from __future__ import annotations

from datetime import date

import pytest

from services.registration.assurance import Assurances
from services.registration.email_addresses import EmailAddresses
from services.registration.members import Member, Members
from shared.http import ApiError
from tests.mail_keys import params_of
from tests.registration.memory_store import MemoryStore, context, with_second_factor

MET = date(2026, 2, 1)


class Registration:
    def __init__(self) -> None:
        self.store = MemoryStore()
        ctx = context(self.store)
        self.members = Members(ctx)
        self.emails = EmailAddresses(ctx, self.members)
        self.assurances = Assurances(ctx)

    async def member(self, address: str, roles: tuple[str, ...] = ("member",), name: str = "Ada Lovelace"
                     ) -> Member:
        created = await self.members.create(name=name, date_of_birth=date(1990, 1, 1), address=address,
                                         password="correct horse battery staple", roles=roles, verified=True)
        staff = {"assurer", "admin"} & set(roles)
        return with_second_factor(self.store, created) if staff else created


@pytest.fixture
def reg() -> Registration:
    return Registration()


async def test_an_address_belongs_to_one_account_only(reg: Registration) -> None:
    ada = await reg.member("ada@example.org")
    with pytest.raises(ApiError) as taken:
        await reg.member("ada@example.org")
    assert taken.value.status == 409 and taken.value.code == "email_taken"

    bob = await reg.member("bob@example.org")
    with pytest.raises(ApiError) as taken_again:
        await reg.emails.add(bob, "ada@example.org")
    assert taken_again.value.code == "email_taken"
    assert (await reg.members.by_address("ada@example.org")) == ada
    assert len(reg.store.collections["members"]) == 2


async def test_an_added_address_queues_its_events_and_is_verified_once_by_its_link(reg: Registration) -> None:
    ada = await reg.member("ada@example.org")
    await reg.emails.add(ada, "ada@work.example.org")
    [mail] = [e for e in reg.store.events("mail.send_requested") if e.data["to"] == "ada@work.example.org"]
    token = params_of(mail)["code"]

    confirmed = await reg.emails.confirm(token)
    with pytest.raises(ApiError) as replay:
        await reg.emails.confirm(token)

    assert confirmed == {"email": "ada@work.example.org", "verified": True, "member_id": ada.id}
    assert replay.value.status == 404
    member = await reg.members.get(ada.id)
    assert member is not None and "ada@work.example.org" in member.verified_emails
    verified = [e for e in reg.store.events("member.email_verified") if e.data["email"] == "ada@work.example.org"]
    assert len(verified) == 1 and verified[0].data["primary"] is False


async def test_points_add_up_and_each_assurer_assures_a_member_once(reg: Registration) -> None:
    member = await reg.member("m@example.org")
    first = await reg.member("a1@example.org", ("member", "assurer"))
    second = await reg.member("a2@example.org", ("member", "assurer"))

    one = await reg.assurances.record(first, member, points=30, location="Berlin", met_on=MET, documents_checked=True)
    two = await reg.assurances.record(second, member, points=25, location="Paris", met_on=MET, documents_checked=True)
    with pytest.raises(ApiError) as again:
        await reg.assurances.record(first, member, points=35, location="Berlin", met_on=MET, documents_checked=True)

    assert (one["total_points"], one["assured"]) == (30, False)
    assert (two["total_points"], two["assured"]) == (55, True)
    assert again.value.status == 409 and again.value.code == "already_assured"
    assert await reg.assurances.points_of(member.id) == 55
    assert [e.data["total_points"] for e in reg.store.events("member.assurance_recorded")] == [30, 55]
    listing = await reg.assurances.listing(member.id)
    assert sorted(a["points"] for a in listing["received"]) == [25, 30] and listing["given"] == []
    assert "_id" not in listing["received"][0]


async def test_only_assurers_assure_and_never_themselves(reg: Registration) -> None:
    member = await reg.member("m@example.org")
    assurer = await reg.member("a@example.org", ("member", "assurer"))
    with pytest.raises(ApiError) as not_assurer:
        await reg.assurances.record(member, assurer, points=10, location="Berlin", met_on=MET, documents_checked=True)
    with pytest.raises(ApiError) as self_assured:
        await reg.assurances.record(assurer, assurer, points=10, location="Berlin", met_on=MET, documents_checked=True)
    assert (not_assurer.value.status, self_assured.value.code) == (403, "self_assurance")
    assert reg.store.collections["assurances"] == {}


async def test_an_assurer_sees_the_identity_to_compare_and_must_confirm_the_documents(reg: Registration) -> None:
    member = await reg.member("m@example.org", name="Grace Brewster Hopper")
    assurer = await reg.member("a@example.org", ("member", "assurer"), name="Alan Assurer")
    other = await reg.member("o@example.org", name="Otto Other")

    shown = await reg.assurances.identity_for_assurer(assurer, member)
    with pytest.raises(ApiError) as not_assurer:
        await reg.assurances.identity_for_assurer(other, member)
    with pytest.raises(ApiError) as unchecked:
        await reg.assurances.record(assurer, member, points=10, location="Berlin", met_on=MET,
                                    documents_checked=False)
    assert shown == {"id": member.id, "name": "Grace Brewster Hopper", "date_of_birth": "1990-01-01",
                     "email": "m@example.org"}
    assert not_assurer.value.status == 403
    assert (unchecked.value.status, unchecked.value.code) == (422, "documents_not_checked")
    assert reg.store.collections["assurances"] == {}
    assert [(a["actor"], a["action"], a["subject"]) for a in reg.store.audit
            if a["action"] == "assurance.identity_shown"] == [(assurer.id, "assurance.identity_shown", member.id)]

    await reg.assurances.record(assurer, member, points=35, location="Berlin", met_on=MET, documents_checked=True)
    received = await reg.assurances.received_naming_assurers(member.id)
    assert [(a["assurer_name"], a["points"]) for a in received] == [("Alan Assurer", 35)]
    [event] = reg.store.events("member.assurance_recorded")
    assert event.data["assurer_name"] == "Alan Assurer"
