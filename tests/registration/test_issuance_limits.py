"""Issuance limits (issue 19): certificate requests per member per day and per registered domain per week
(whoever asks), and domains added per member per day. They live in the domain classes, so the API, the
portal and (later) ACME all count against the same limits. Unit tests over the in-memory store."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest

from services.registration.assurance import Assurances
from services.registration.certificate_requests import CertificateRequests, registered_domains
from services.registration.context import Context
from services.registration.csr import parse_csr
from services.registration.domains import DomainClaims
from services.registration.members import Member, Members
from services.registration.ratelimit import RateLimited
from shared.http import ApiError
from tests.approval_keys import RA
from tests.mail_keys import SEALER
from tests.registration.csrs import build_csr
from tests.registration.memory_store import NOW, MemoryStore, settings


class Limited:
    def __init__(self, *, requests_per_member: int = 100, requests_per_domain: int = 300,
                 domain_claims_per_member: int = 30) -> None:
        self.store = MemoryStore()
        limited = dataclasses.replace(settings(), requests_per_member=requests_per_member,
                                      requests_per_domain=requests_per_domain,
                                      domain_claims_per_member=domain_claims_per_member)
        ctx = Context(self.store, limited, lambda: NOW, RA, SEALER)
        self.members = Members(ctx)
        self.domains = DomainClaims(ctx)
        self.requests = CertificateRequests(ctx, Assurances(ctx), self.domains)

    async def member(self, address: str) -> Member:
        return await self.members.create(name="Lim Ited", date_of_birth=date(1990, 1, 1), address=address,
                                         password="correct horse battery staple", roles=("member",), verified=True)

    def stored_requests(self) -> int:
        return len(self.store.collections["requests"])


async def test_a_member_gets_a_clear_429_after_the_daily_request_limit_and_nothing_is_stored() -> None:
    limited = Limited(requests_per_member=2)
    ada = await limited.member("ada@example.org")
    for _ in range(2):
        await limited.requests.submit(ada, build_csr(emails=["ada@example.org"]), "client")
    with pytest.raises(RateLimited) as caught:
        await limited.requests.submit(ada, build_csr(emails=["ada@example.org"]), "client")
    assert str(caught.value).startswith("too many certificate requests from this account today; retry in ")
    assert 0 < caught.value.retry_after <= 86400
    assert limited.stored_requests() == 2
    # another member is not affected
    bob = await limited.member("bob@example.org")
    await limited.requests.submit(bob, build_csr(emails=["bob@example.org"]), "client")


async def test_requests_naming_one_registered_domain_are_limited_whoever_asks() -> None:
    limited = Limited(requests_per_domain=2)
    ada, bob = await limited.member("ada@example.org"), await limited.member("bob@example.org")
    # refused by policy (nobody verified the domain), but counted all the same: the limit is on asking
    for member, name in ((ada, "www.example.co.uk"), (bob, "shop.example.co.uk")):
        with pytest.raises(ApiError) as refused:
            await limited.requests.submit(member, build_csr(dns=[name]), "server")
        assert refused.value.status == 422
    with pytest.raises(RateLimited, match=r"^too many certificate requests for example\.co\.uk this week; retry in "):
        await limited.requests.submit(bob, build_csr(dns=["mail.example.co.uk"]), "server")
    assert limited.stored_requests() == 2
    with pytest.raises(ApiError) as other:  # another registered domain is still looked at (and refused by policy)
        await limited.requests.submit(bob, build_csr(dns=["www.example.org"]), "server")
    assert other.value.status == 422


def test_registered_domains_are_one_below_the_public_suffix_and_ignore_what_is_not_a_domain() -> None:
    csr = parse_csr(build_csr(subject=[("CN", "Ada Lovelace")],
                              dns=["www.example.co.uk", "*.shop.example.co.uk", "mail.example.org"]))
    assert registered_domains(csr) == ["example.co.uk", "example.org"]
    assert registered_domains(parse_csr(build_csr(emails=["ada@example.org"]))) == []


async def test_adding_domains_is_limited_per_member_per_day() -> None:
    limited = Limited(domain_claims_per_member=2)
    ada = await limited.member("ada@example.org")
    await limited.domains.add(ada, "one.example", None)
    await limited.domains.add(ada, "two.example", None)
    with pytest.raises(RateLimited, match=r"^too many domains added from this account today; retry in "):
        await limited.domains.add(ada, "three.example", None)
    assert [d["domain"] for d in await limited.domains.listing(ada)] == ["one.example", "two.example"]
