"""The checked methods' verdicts and reasons, and the resolver's reading of responses, without a network."""

from __future__ import annotations

import base64
import hashlib
import ipaddress

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest

from services.domain_verify.va import methods
from services.domain_verify.va.http_fetch import Fetched, Fetcher, FetchFailure, _refused_address
from services.domain_verify.va.resolver import LookupFailure, Resolver
from tests.domain_verify.fake_dns import TableResolver


async def test_dns_change_finds_the_value_among_other_txt_records_and_records_the_br_section() -> None:
    resolver = TableResolver({("_cacert-challenge.example.org", "TXT"): ["v=spf1 -all", "VALUE"]},
                             authenticated=True)
    result = await methods.check_dns_change(resolver, "example.org", "VALUE")
    assert result.ok and result.br_section == "3.2.2.4.7" and result.evidence["dnssec"] == "secure"


async def test_missing_and_wrong_txt_records_fail_with_different_reasons_and_show_what_was_found() -> None:
    resolver = TableResolver({("_cacert-challenge.wrong.example", "TXT"): ["other"]})
    missing = await methods.check_dns_change(resolver, "missing.example", "VALUE")
    wrong = await methods.check_dns_change(resolver, "wrong.example", "VALUE")
    assert (missing.ok, missing.reason, missing.found) == (False, "not_found", [])
    assert (wrong.ok, wrong.reason, wrong.found) == (False, "wrong_value", ["other"])


async def test_a_bogus_answer_is_a_failure_of_its_own_never_no_record() -> None:
    resolver = TableResolver({("_cacert-challenge.bogus.example", "TXT"): LookupFailure("dnssec_bogus", "x")})
    result = await methods.check_dns_change(resolver, "bogus.example", "VALUE")
    assert not result.ok and result.reason == "dnssec_bogus"


async def test_acme_dns_01_expects_the_base64url_sha256_of_the_key_authorization() -> None:
    keyauthz = "token.thumbprint"
    digest = base64.urlsafe_b64encode(hashlib.sha256(keyauthz.encode()).digest()).rstrip(b"=").decode()
    resolver = TableResolver({("_acme-challenge.example.org", "TXT"): [digest]})
    result = await methods.check_acme_dns_01(resolver, "example.org", keyauthz)
    assert result.ok and methods.acme_dns_digest(keyauthz) == digest
    assert not (await methods.check_acme_dns_01(resolver, "example.org", "other.thumbprint")).ok


class ScriptedFetcher(Fetcher):
    """A Fetcher whose hops answer from a table instead of the network (the redirect policy stays real)."""

    def __init__(self, hops: dict[str, tuple[int, bytes, str | None]], **kwargs: object) -> None:
        super().__init__(TableResolver({}), **kwargs)  # type: ignore[arg-type]
        self.hops = hops

    async def _hop(self, url: str) -> tuple[int, bytes, str, str | None]:
        status, body, location = self.hops[url]
        return status, body, "192.0.2.1", location


async def test_website_change_needs_a_2xx_and_the_value_in_the_file() -> None:
    url = "http://example.org/.well-known/pki-validation/cacert-1.txt"
    ok = ScriptedFetcher({url: (200, b"VALUE\n", None)})
    assert (await methods.check_website_change(ok, "example.org", "VALUE", "cacert-1.txt")).ok
    gone = ScriptedFetcher({url: (404, b"VALUE", None)})
    result = await methods.check_website_change(gone, "example.org", "VALUE", "cacert-1.txt")
    assert result.reason == "http_status_404" and result.br_section == "3.2.2.4.18"
    wrong = ScriptedFetcher({url: (200, b"something else", None)})
    result = await methods.check_website_change(wrong, "example.org", "VALUE", "cacert-1.txt")
    assert result.reason == "wrong_value" and result.found == ["something else"]


async def test_acme_http_01_needs_the_exact_key_authorization_trailing_whitespace_aside() -> None:
    url = "http://example.org/.well-known/acme-challenge/tok"
    assert (await methods.check_acme_http_01(ScriptedFetcher({url: (200, b"tok.thumb\r\n", None)}),
                                             "example.org", "tok", "tok.thumb")).ok
    result = await methods.check_acme_http_01(ScriptedFetcher({url: (200, b"xtok.thumb", None)}),
                                              "example.org", "tok", "tok.thumb")
    assert result.reason == "wrong_value" and result.br_section == "3.2.2.4.19"


@pytest.mark.parametrize("file_name", ["../etc/passwd", "a/b", "", ".hidden/..", "a b"])
async def test_unsafe_file_names_and_tokens_are_refused(file_name: str) -> None:
    with pytest.raises(ValueError):
        await methods.check_website_change(ScriptedFetcher({}), "example.org", "V", file_name)


async def test_redirects_go_only_to_http_or_https_on_80_or_443_and_at_most_ten_times() -> None:
    start = "http://example.org/a"
    fine = ScriptedFetcher({start: (301, b"", "https://www.example.org/b"),
                            "https://www.example.org/b": (200, b"ok", None)})
    fetched = await fine.get(start)
    assert isinstance(fetched, Fetched) and fetched.url == "https://www.example.org/b" and fetched.redirects
    for target, why in (("http://example.org:8080/x", "port 8080"), ("ftp://example.org/x", "scheme ftp")):
        with pytest.raises(FetchFailure) as caught:
            await ScriptedFetcher({start: (302, b"", target)}).get(start)
        assert caught.value.reason == "redirect_refused" and why in caught.value.detail
    loop = ScriptedFetcher({start: (302, b"", start)})
    with pytest.raises(FetchFailure) as caught:
        await loop.get(start)
    assert caught.value.reason == "too_many_redirects"


def test_private_and_loopback_addresses_are_refused_unless_allow_listed() -> None:
    for address in ("10.1.2.3", "127.0.0.1", "169.254.169.254", "::1", "fe80::1", "::ffff:10.0.0.1", "::"):
        assert _refused_address(address, []), address
    assert not _refused_address("127.0.0.1", [ipaddress.ip_network("127.0.0.0/8")])
    assert not _refused_address("8.8.8.8", [])


async def test_a_host_resolving_only_to_private_addresses_is_not_fetched() -> None:
    fetcher = Fetcher(TableResolver({("intranet.example", "A"): ["10.0.0.5"]}))
    with pytest.raises(FetchFailure) as caught:
        await fetcher.get("http://intranet.example/x")
    assert caught.value.reason == "private_address"


def _response(rcode: dns.rcode.Rcode, *, ede: int | None = None, ad: bool = False,
              text: str = "") -> dns.message.Message:
    query = dns.message.make_query("x.example.", "TXT", use_edns=0)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    if ad:
        response.flags |= dns.flags.AD
    if ede is not None:
        response.use_edns(0, options=[dns.edns.EDEOption(dns.edns.EDECode(ede), "why")])
    if text:
        response.answer = dns.message.from_text(text).answer
    return response


class OneAnswer(Resolver):
    def __init__(self, response: dns.message.Message) -> None:
        super().__init__([("127.0.0.1", 53)])
        self.response = response

    async def _ask(self, host: str, port: int, query: dns.message.Message) -> dns.message.Message:
        return self.response


async def test_servfail_with_a_dnssec_ede_is_bogus_and_without_one_is_servfail() -> None:
    with pytest.raises(LookupFailure) as bogus:
        await OneAnswer(_response(dns.rcode.SERVFAIL, ede=6)).lookup("x.example", "TXT")
    assert bogus.value.reason == "dnssec_bogus" and "dnssec_bogus" in str(bogus.value)
    with pytest.raises(LookupFailure) as plain:
        await OneAnswer(_response(dns.rcode.SERVFAIL, ede=22)).lookup("x.example", "TXT")
    assert plain.value.reason == "servfail"
    with pytest.raises(LookupFailure) as refused:
        await OneAnswer(_response(dns.rcode.REFUSED)).lookup("x.example", "TXT")
    assert refused.value.reason == "refused"


async def test_answers_follow_cnames_and_carry_the_ad_bit() -> None:
    text = ("id 1\nopcode QUERY\nrcode NOERROR\nflags QR RD RA\n;ANSWER\n"
            "x.example. 60 IN CNAME y.example.\ny.example. 60 IN TXT \"a\" \"b\"\n")
    answer = await OneAnswer(_response(dns.rcode.NOERROR, ad=True, text=text)).lookup("x.example", "TXT")
    assert answer.records == ["ab"] and answer.authenticated and answer.cname_chain == ["y.example."]
    nx = await OneAnswer(_response(dns.rcode.NXDOMAIN)).lookup("x.example", "TXT")
    assert nx.nxdomain and nx.records == [] and not nx.authenticated
