"""CAA decisions (BR 3.2.2.8, RFC 8659, RFC 8657) over a table resolver: climbing, issue/issuewild, flags."""

from __future__ import annotations

import pytest

from services.domain_verify.va.caa import check_caa, parse_issue_value
from services.domain_verify.va.resolver import LookupFailure
from tests.domain_verify.fake_dns import TableResolver

US = ["cacert.example"]


async def verdict(records: dict[tuple[str, str], list[str] | LookupFailure], name: str = "www.shop.example.org",
                  **kwargs: object):  # type: ignore[no-untyped-def]
    return await check_caa(TableResolver(records), name, identities=US, **kwargs)  # type: ignore[arg-type]


async def test_no_caa_anywhere_allows_and_climbs_to_the_tld_but_not_the_root() -> None:
    resolver = TableResolver({})
    result = await check_caa(resolver, "a.b.example.org", identities=US)
    assert result.allowed and result.reason == "no_caa" and result.relevant_name is None
    assert [n for n, _ in resolver.asked] == ["a.b.example.org", "b.example.org", "example.org", "org"]


async def test_the_first_non_empty_rrset_up_the_tree_decides_and_is_named() -> None:
    result = await verdict({("example.org", "CAA"): ['0 issue "other-ca.example"'],
                            ("shop.example.org", "CAA"): ['0 issue "cacert.example"']})
    assert result.allowed and result.reason == "permitted" and result.relevant_name == "shop.example.org"
    refused = await verdict({("example.org", "CAA"): ['0 issue "other-ca.example"']})
    assert not refused.allowed and refused.reason == "not_permitted"
    assert refused.relevant_name == "example.org" and refused.records == ['0 issue "other-ca.example"']


@pytest.mark.parametrize(("value", "allowed"), [
    ("cacert.example", True), ("CACert.Example", True), ("cacert.example; foo=bar", True),
    (";", False), ("", False), ("other.example", False), ("cacert.example; bad param", False),
])
async def test_issue_values(value: str, allowed: bool) -> None:
    result = await verdict({("www.shop.example.org", "CAA"): [f'0 issue "{value}"']})
    assert result.allowed is allowed, result


async def test_one_permitting_issue_property_among_several_is_enough() -> None:
    result = await verdict({("example.org", "CAA"): ['0 issue "other.example"', '0 issue "cacert.example"']})
    assert result.allowed


async def test_wildcards_use_issuewild_when_present_and_issue_otherwise() -> None:
    records: dict[tuple[str, str], list[str] | LookupFailure] = {
        ("example.org", "CAA"): ['0 issuewild "cacert.example"', '0 issue "other.example"']}
    assert (await verdict(records, "example.org", wildcard=True)).allowed
    assert not (await verdict(records, "example.org", wildcard=False)).allowed
    only_issue: dict[tuple[str, str], list[str] | LookupFailure] = {
        ("example.org", "CAA"): ['0 issue "cacert.example"']}
    assert (await verdict(only_issue, "example.org", wildcard=True)).allowed
    forbid_wild: dict[tuple[str, str], list[str] | LookupFailure] = {
        ("example.org", "CAA"): ['0 issue "cacert.example"', '0 issuewild ";"']}
    assert not (await verdict(forbid_wild, "example.org", wildcard=True)).allowed


async def test_only_iodef_or_unknown_non_critical_tags_do_not_restrict() -> None:
    result = await verdict({("example.org", "CAA"): ['0 iodef "mailto:sec@example.org"', '0 future "x"']})
    assert result.allowed and result.reason == "no_issue_property"


async def test_an_unknown_critical_tag_forbids_even_with_a_permitting_issue() -> None:
    result = await verdict({("example.org", "CAA"): ['0 issue "cacert.example"', '128 tbs "x"']})
    assert not result.allowed and result.reason == "critical_unknown_tag"
    known = await verdict({("example.org", "CAA"): ['128 issue "cacert.example"']})
    assert known.allowed, "the critical flag on a tag we understand is fine"


@pytest.mark.parametrize("reason", ["servfail", "timeout", "dnssec_bogus"])
async def test_a_failed_lookup_refuses_and_says_why(reason: str) -> None:
    result = await verdict({("shop.example.org", "CAA"): LookupFailure(reason, "detail")})
    assert not result.allowed and result.reason == f"lookup_failed:{reason}"


async def test_accounturi_binds_to_one_acme_account_and_never_matches_a_non_acme_request() -> None:
    records: dict[tuple[str, str], list[str] | LookupFailure] = {
        ("example.org", "CAA"): ['0 issue "cacert.example; accounturi=https://acme.cacert.example/acct/1"']}
    assert (await verdict(records, account_uri="https://acme.cacert.example/acct/1")).allowed
    assert not (await verdict(records, account_uri="https://acme.cacert.example/acct/2")).allowed
    assert not (await verdict(records)).allowed


async def test_validationmethods_lists_the_methods_allowed() -> None:
    records: dict[tuple[str, str], list[str] | LookupFailure] = {
        ("example.org", "CAA"): ['0 issue "cacert.example; validationmethods=dns-01,ca-dns-change"']}
    assert (await verdict(records, validation_method="dns_change")).allowed
    assert (await verdict(records, validation_method="acme_dns_01")).allowed
    assert not (await verdict(records, validation_method="acme_http_01")).allowed
    assert not (await verdict(records, validation_method="email")).allowed
    assert not (await verdict(records)).allowed


def test_issue_value_grammar() -> None:
    assert parse_issue_value("ca.example") == ("ca.example", {})
    assert parse_issue_value("  ca.example ; a=1;b = 2 ") == ("ca.example", {"a": "1", "b": "2"})
    assert parse_issue_value(";") == ("", {})
    assert parse_issue_value("not a domain") is None
    assert parse_issue_value("ca.example; novalue") is None
