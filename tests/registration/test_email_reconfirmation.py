"""A confirmed address counts for client certificates for CACERT_EMAIL_REUSE_DAYS (S/MIME BR 4.2.1: 30
days); after that the member confirms it again by a fresh link, and the refusal says so. Unit tests over
the in-memory store, with a clock the test moves."""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta

import pytest

from services.registration.assurance import Assurances
from services.registration.certificate_requests import CertificateRequests
from services.registration.context import Context
from services.registration.domains import DomainClaims
from services.registration.email_addresses import EmailAddresses
from services.registration.members import Member, Members
from shared.http import ApiError
from tests.approval_keys import RA
from tests.mail_keys import SEALER, params_of
from tests.registration.csrs import build_csr
from tests.registration.memory_store import NOW, MemoryStore, settings

ADA = "ada@example.org"


class World:
    def __init__(self) -> None:
        self.now = NOW
        self.store = MemoryStore()
        ctx = Context(self.store, dataclasses.replace(settings(), email_reuse_days=30), lambda: self.now, RA, SEALER)
        self.members = Members(ctx)
        self.emails = EmailAddresses(ctx, self.members)
        self.requests = CertificateRequests(ctx, Assurances(ctx), DomainClaims(ctx))

    def latest_link_token(self) -> str:
        mails = [e for (_, _, e) in self.store.queued if e.data.get("template") == "email_confirmation"]
        return str(params_of(mails[-1])["code"])


async def test_an_address_confirmed_over_30_days_ago_is_refused_until_it_is_confirmed_again() -> None:
    world = World()

    async def reloaded(member: Member) -> Member:
        found = await world.members.get(member.id)
        assert found is not None
        return found

    ada = await world.members.create(name="Ada Lovelace", date_of_birth=date(1990, 1, 1), address=ADA,
                                     password="correct horse battery staple", roles=("member",), verified=True)
    await world.requests.submit(ada, build_csr(emails=[ADA]), "client")  # fresh: approved

    world.now = NOW + timedelta(days=31)
    ada = await reloaded(ada)
    with pytest.raises(ApiError) as refused:
        await world.requests.submit(ada, build_csr(emails=[ADA]), "client")
    assert refused.value.status == 422
    assert f"{ADA} was confirmed too long ago to be used again: confirm it again" in str(refused.value.details)

    (eid,) = ada.emails
    await world.emails.resend(ada, eid)  # allowed although the address is verified: it is stale
    confirmed = await world.emails.confirm(world.latest_link_token())
    assert confirmed["verified"] is True
    ada = await reloaded(ada)
    assert ada.emails[eid]["verified_at"] == world.now
    await world.requests.submit(ada, build_csr(emails=[ADA]), "client")  # counts again

    with pytest.raises(ApiError) as fresh:  # a recently confirmed address has nothing to renew
        await world.emails.resend(ada, eid)
    assert fresh.value.code == "already_verified"


def test_the_default_reuse_period_is_the_s_mime_brs_30_days() -> None:
    assert settings().email_reuse_days == 30
