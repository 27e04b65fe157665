"""The local DNS of the stack (devstack/dns_server.py): Knot authoritative, Unbound validating.

Runs against the stack's own `dns-auth` and `dns` components, started with devstack.ensure_up
(a no-op when they already run), like tests/conftest.py does for Kafka and FerretDB. Every test
uses names of its own, so they do not see each other's records.
"""

from __future__ import annotations

import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest

from devstack import dns_packages, dns_server, endpoints, paths, stack
from devstack.dns_zone import LocalZone, ZoneUpdateError

BOGUS_EDE = range(6, 13)
"""RFC 8914: 6 DNSSEC Bogus, 7 Signature Expired, 8 Not Yet Valid, 9 DNSKEY Missing, 10 RRSIGs Missing,
11 No Zone Key Bit Set, 12 NSEC Missing."""


@pytest.fixture(scope="module")
def dns_env() -> Iterator[dict[str, str]]:
    if os.environ.get("CACERT_TEST_EXTERNAL_STACK") == "1":
        yield {k: v for k, v in os.environ.items() if k.startswith("CACERT_")}
        return
    yield stack.ensure_up(["dns-auth", "dns"])


@pytest.fixture
def zone(dns_env: dict[str, str]) -> LocalZone:
    return LocalZone.from_env(dns_env)


@pytest.fixture
def label() -> str:
    return "t" + uuid.uuid4().hex[:10]


def _hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)


async def resolve(env: dict[str, str], name: str, rdtype: str, *, source: str | None = None) -> dns.message.Message:
    """Ask the validating resolver, as the validation library does (EDNS, AD asked for)."""
    host, port = _hostport(env["CACERT_DNS_RESOLVER"])
    query = dns.message.make_query(name, rdtype, use_edns=0)
    query.flags |= dns.flags.AD
    return await dns.asyncquery.udp(query, host, port=port, source=source, timeout=5)


async def ask_knot(env: dict[str, str], name: str, rdtype: str) -> dns.message.Message:
    host, port = _hostport(env["CACERT_DNS_AUTH"])
    return await dns.asyncquery.udp(dns.message.make_query(name, rdtype), host, port=port, timeout=5)


def texts(response: dns.message.Message, rdtype: str = "TXT") -> list[str]:
    wanted = dns.rdatatype.from_text(rdtype)
    return sorted(rdata.to_text() for rrset in response.answer if rrset.rdtype == wanted for rdata in rrset)


def authenticated(response: dns.message.Message) -> bool:
    return bool(response.flags & dns.flags.AD)


def ede_codes(response: dns.message.Message) -> list[int]:
    return [int(option.code) for option in response.extended_errors()]


# -- the environment ------------------------------------------------------------------------------


def test_environment_points_at_the_running_servers(dns_env: dict[str, str]) -> None:
    ports = endpoints.current()
    assert dns_env["CACERT_DNS_RESOLVER"] == f"127.0.0.1:{ports.dns}"
    assert dns_env["CACERT_DNS_AUTH"] == f"127.0.0.1:{ports.dns_auth}"
    assert dns_env["CACERT_DNS_TSIG_NAME"] == "cacert-test"
    assert dns_env["CACERT_DNS_TSIG_ALGORITHM"] == "hmac-sha256"
    assert len(dns_env["CACERT_DNS_TSIG_SECRET"]) >= 40  # base64 of 32 bytes
    assert Path(dns_env["CACERT_DNS_CONTROL_CONFIG"]).is_file()


def test_tsig_secret_is_kept_in_the_state_dir_readable_by_its_owner_only(dns_env: dict[str, str]) -> None:
    if os.environ.get("CACERT_TEST_EXTERNAL_STACK") == "1":
        pytest.skip("the secret of an external stack is not in our state dir")
    secret_file = paths.dns_tsig_secret_file()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    # Generated once: asking again (as every start of dns-auth does) gives the same secret.
    assert dns_server.tsig_secret() == dns_env["CACERT_DNS_TSIG_SECRET"] == secret_file.read_text().strip()


def test_status_lists_both_processes_as_running(dns_env: dict[str, str]) -> None:
    if os.environ.get("CACERT_TEST_EXTERNAL_STACK") == "1":
        pytest.skip("not our processes")
    rows = {row.name: row for row in stack.status(["dns-auth", "dns"])}
    assert {name: row.state for name, row in rows.items()} == {"dns-auth": "running", "dns": "running"}


# -- updates and what the resolver sees -----------------------------------------------------------


async def test_update_in_the_signed_zone_is_seen_authenticated(dns_env: dict[str, str], zone: LocalZone,
                                                               label: str) -> None:  # fmt: skip
    name = f"_cacert-challenge.{label}.signed.test"
    await zone.publish(name, "TXT", '"first value"')
    try:
        response = await resolve(dns_env, name, "TXT")
        assert response.rcode() == dns.rcode.NOERROR
        assert texts(response) == ['"first value"']
        assert authenticated(response), "Knot re-signs on update; Unbound validates from the signed.test anchor"
        # A changed record is seen at once (zone.publish flushes the resolver's cache).
        await zone.publish(name, "TXT", '"second value"', '"and a third"')
        response = await resolve(dns_env, name, "TXT")
        assert texts(response) == ['"and a third"', '"second value"'] and authenticated(response)
    finally:
        await zone.remove(name, "TXT")
    response = await resolve(dns_env, name, "TXT")
    assert response.rcode() == dns.rcode.NXDOMAIN and authenticated(response)  # NSEC-proven denial


async def test_update_in_an_unsigned_zone_is_seen_but_not_authenticated(dns_env: dict[str, str], zone: LocalZone,
                                                                        label: str) -> None:  # fmt: skip
    name = f"{label}.example.org"
    await zone.publish(name, "CAA", '0 issue "cacert.example"')
    try:
        response = await resolve(dns_env, name, "CAA")
        assert response.rcode() == dns.rcode.NOERROR
        assert texts(response, "CAA") == ['0 issue "cacert.example"']
        assert not authenticated(response)
    finally:
        await zone.remove(name, "CAA")
    response = await resolve(dns_env, "example.org", "SOA")
    assert response.rcode() == dns.rcode.NOERROR and not authenticated(response)


@pytest.mark.parametrize("zone_name", ["example.", "test."])
async def test_the_other_unsigned_zones_take_updates(dns_env: dict[str, str], zone: LocalZone, label: str,
                                                     zone_name: str) -> None:  # fmt: skip
    name = f"{label}.{zone_name}"
    await zone.publish(name, "A", "127.0.0.1")
    try:
        response = await resolve(dns_env, name, "A")
        assert texts(response, "A") == ["127.0.0.1"] and not authenticated(response)
    finally:
        await zone.remove(name, "A")


async def test_the_bogus_zone_fails_validation_with_an_extended_error(dns_env: dict[str, str], zone: LocalZone,
                                                                      label: str) -> None:  # fmt: skip
    name = f"{label}.bogus.test"
    await zone.publish(name, "TXT", '"never trusted"')  # the update itself is accepted, like any other
    try:
        knot = await ask_knot(dns_env, name, "TXT")
        assert texts(knot) == ['"never trusted"']
        for qname, rdtype in ((name, "TXT"), ("bogus.test", "SOA"), (f"nothing.{label}.bogus.test", "CAA")):
            response = await resolve(dns_env, qname, rdtype)
            assert response.rcode() == dns.rcode.SERVFAIL, qname
            codes = ede_codes(response)
            assert codes and all(code in BOGUS_EDE for code in codes), (qname, codes)
    finally:
        await zone.remove(name, "TXT")


async def test_a_name_nobody_hosts_is_an_authoritative_nxdomain_not_a_failure(dns_env: dict[str, str],
                                                                              label: str) -> None:  # fmt: skip
    for name in (f"{label}.nosuchtld", f"www.{label}.nosuchtld", "pia.example"):
        response = await resolve(dns_env, name, "CAA")
        assert response.rcode() == dns.rcode.NXDOMAIN, name
        assert not authenticated(response) and not ede_codes(response), name  # insecure, not bogus
    response = await resolve(dns_env, ".", "SOA")
    assert response.rcode() == dns.rcode.NOERROR and not authenticated(response)


async def test_the_servfail_zone_fails_fast_without_a_dnssec_error(dns_env: dict[str, str], label: str) -> None:
    for _ in range(3):  # also once the resolver has marked the dead forwarder as down
        started = time.monotonic()
        response = await resolve(dns_env, f"{label}.servfail.test", "CAA")
        assert response.rcode() == dns.rcode.SERVFAIL
        assert not any(code in BOGUS_EDE for code in ede_codes(response))
        assert time.monotonic() - started < 2.0


# -- TSIG -----------------------------------------------------------------------------------------


async def test_an_update_without_tsig_is_refused(dns_env: dict[str, str], label: str) -> None:
    name = f"{label}.example.org."
    update = dns.update.UpdateMessage("example.org.")
    update.add(name, 60, "TXT", '"unsigned"')
    host, port = _hostport(dns_env["CACERT_DNS_AUTH"])
    response = await dns.asyncquery.tcp(update, host, port=port, timeout=5)
    assert response.rcode() in (dns.rcode.REFUSED, dns.rcode.NOTAUTH)
    assert (await ask_knot(dns_env, name, "TXT")).rcode() == dns.rcode.NXDOMAIN


@pytest.mark.parametrize(
    ("key_name", "secret"),
    [("cacert-test", "c2VjcmV0IHRoYXQgaXMgbm90IHRoZSBzdGFjaydzIGtleSE="), ("someone-else", None)],
    ids=["wrong-secret", "unknown-key"],
)
async def test_an_update_with_the_wrong_key_is_refused(dns_env: dict[str, str], zone: LocalZone, label: str,
                                                       key_name: str, secret: str | None) -> None:  # fmt: skip
    name = f"{label}.example.org"
    wrong = LocalZone(zone.server, zone.port, key_name, zone.tsig_algorithm, secret or zone.tsig_secret,
                      zone.control_config)  # fmt: skip
    with pytest.raises((ZoneUpdateError, dns.tsig.PeerError)):
        await wrong.publish(name, "TXT", '"forged"')
    assert (await ask_knot(dns_env, name, "TXT")).rcode() == dns.rcode.NXDOMAIN


# -- the split view -------------------------------------------------------------------------------


async def test_the_split_view_gives_127_0_0_3_its_own_answer(dns_env: dict[str, str], zone: LocalZone,
                                                             label: str) -> None:  # fmt: skip
    name = f"_cacert-challenge.{label}.example.org"
    await zone.publish(name, "TXT", '"what everyone sees"')
    try:
        await zone.split_view(name, "TXT", '"what the split perspective sees"')
        main = await resolve(dns_env, name, "TXT")
        split = await resolve(dns_env, name, "TXT", source=dns_server.SPLIT_VIEW_SOURCE)
        assert texts(main) == ['"what everyone sees"']
        assert texts(split) == ['"what the split perspective sees"']
        # Everything else resolves for the split client as for everyone (view-first), validation included.
        other = await resolve(dns_env, "signed.test", "SOA", source=dns_server.SPLIT_VIEW_SOURCE)
        assert other.rcode() == dns.rcode.NOERROR and authenticated(other)
        missing = await resolve(dns_env, f"{label}.nosuchtld", "TXT", source=dns_server.SPLIT_VIEW_SOURCE)
        assert missing.rcode() == dns.rcode.NXDOMAIN
        bogus = await resolve(dns_env, "bogus.test", "SOA", source=dns_server.SPLIT_VIEW_SOURCE)
        assert bogus.rcode() == dns.rcode.SERVFAIL
    finally:
        await zone.clear_split_view(name)
        await zone.remove(name, "TXT")
    assert texts(await resolve(dns_env, name, "TXT", source=dns_server.SPLIT_VIEW_SOURCE)) == []


# -- restarts -------------------------------------------------------------------------------------


async def test_knot_restarted_keeps_records_and_keys_and_the_resolver_recovers_at_once(
    dns_env: dict[str, str], zone: LocalZone, label: str
) -> None:
    if os.environ.get("CACERT_TEST_EXTERNAL_STACK") == "1":
        pytest.skip("does not stop servers it did not start")
    name = f"{label}.signed.test"
    await zone.publish(name, "TXT", '"kept"', ttl=60)
    try:
        assert stack.stop("dns-auth")
        try:
            started = time.monotonic()
            down = await resolve(dns_env, f"{label}.example.org", "A")
            assert down.rcode() == dns.rcode.SERVFAIL and time.monotonic() - started < 2.0  # TCP: refused at once
        finally:
            stack.start("dns-auth")
        await zone.flush(name)
        response = await resolve(dns_env, name, "TXT")
        # Same record (Knot wrote it to its zone file), same keys (the resolver's anchor still holds).
        assert texts(response) == ['"kept"'] and authenticated(response)
    finally:
        await zone.remove(name, "TXT")


# -- pieces that need no running server ----------------------------------------------------------


def test_the_resolver_requires_the_authoritative_server() -> None:
    assert stack.with_requirements(stack.resolve(["dns"])) == ["dns-auth", "dns"]
    assert stack.resolve(["unbound", "knot"]) == ["dns-auth", "dns"]
    assert stack.with_requirements(["smtp"]) == ["smtp"]
    assert set(stack.resolve(None)) >= {"dns-auth", "dns"}


def test_the_wrong_anchor_never_matches_the_real_key() -> None:
    real = "bogus.test. DS 37292 13 2 " + "ab" * 32
    wrong = dns_server.wrong_ds("bogus.test.", [real])
    owner, rdtype, tag, algorithm, digest_type, digest = wrong.split()
    assert (owner, rdtype, algorithm, digest_type) == ("bogus.test.", "DS", "13", "2")
    assert tag != "37292" and len(digest) == 64


def test_zone_files_have_soa_and_ns_and_the_root_the_nameserver_address() -> None:
    import dns.zone

    for name in dns_server.ZONES:
        parsed = dns.zone.from_text(dns_server.zone_text(name), origin=name, relativize=False)
        assert parsed.get_rdataset(name, "SOA") and parsed.get_rdataset(name, "NS")
    root = dns.zone.from_text(dns_server.zone_text("."), origin=".", relativize=False)
    assert root.get_rdataset(dns_server.NAMESERVER, "A")


def test_a_copy_runs_when_apparmor_confines_the_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if dns_packages.program("unbound") is None:
        pytest.skip("unbound is not installed")
    profiles = tmp_path / "profiles"
    monkeypatch.setattr(dns_packages, "APPARMOR_PROFILES", profiles)
    monkeypatch.setenv("CACERT_STACK_CACHE", str(tmp_path / "cache"))
    profiles.write_text("unbound (complain)\n/usr/bin/man (enforce)\n")
    assert dns_packages.runnable("unbound") == dns_packages.program("unbound")
    profiles.write_text("unbound (enforce)\n")
    copy = dns_packages.runnable("unbound")
    assert copy == str(tmp_path / "cache" / "bin" / "unbound")
    assert Path(copy).read_bytes() == Path(str(dns_packages.program("unbound"))).read_bytes()
    assert os.access(copy, os.X_OK)
