"""domain_verify's checked methods and CAA, end to end over Kafka, FerretDB and the real local DNS server.

The test publishes records in Knot by RFC 2136 (as a member would at their DNS
provider), sends the requests registration would send, and reads domain_verify's
answers. Remote perspectives run in-process as real `perspective`-mode services;
perspective "c" sends its queries from 127.0.0.3, which the validating resolver
answers from a separate view, so the test can make exactly one perspective see
something else.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from devstack.dns_zone import LocalZone
from services.domain_verify.perspective import RemotePerspective
from shared.config import KafkaSettings, MongoSettings
from shared.events import CloudEvent, isoformat, make_event
from tests.domain_verify.harness import Harness, running, settings_for

pytestmark = pytest.mark.integration

SPLIT_SOURCE = "127.0.0.3"


@pytest.fixture
def zone(stack_env: dict[str, str]) -> LocalZone:
    if "CACERT_DNS_RESOLVER" not in stack_env:
        pytest.fail("the local stack exports no CACERT_DNS_RESOLVER: the DNS server is not part of it")
    return LocalZone.from_env(stack_env)


def dns_overrides(stack_env: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"resolvers": [stack_env["CACERT_DNS_RESOLVER"]], "http_allow_private": ["127.0.0.0/8"], **extra}


def fresh(zone_suffix: str = "example.org") -> str:
    return f"v{uuid.uuid4().hex[:10]}.{zone_suffix}"


async def request(harness: Harness, domain: str, method: str, **fields: Any) -> CloudEvent:
    data = {"request_id": f"req-{uuid.uuid4().hex[:12]}", "member_id": "m-1", "domain": domain,
            "method": method, "requested_at": isoformat(datetime.now(UTC)), **fields}
    event = make_event("domain.verification_requested", data, source="registration")
    await harness.producer.publish(event)
    return event


async def outcome(harness: Harness, request_id: str, timeout: float = 40) -> CloudEvent:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for event in await harness.outcomes(1, timeout=2):
            if event.data.get("request_id") == request_id and event.type.split(".")[-2] in (
                    "verified", "verification_failed", "caa_checked"):
                return event
    raise AssertionError(f"no outcome for {request_id}")


async def caa_check(harness: Harness, names: list[str], **extra: Any) -> CloudEvent:
    request_id = uuid.uuid4().hex
    event = make_event("domain.caa_check_requested", {
        "check_id": request_id, "request_id": request_id, "member_id": "m-1", "names": names,
        "requested_at": isoformat(datetime.now(UTC)), **extra}, source="registration")
    await harness.producer.publish(event)
    return await outcome(harness, request_id)


@contextlib.asynccontextmanager
async def perspectives(kafka: KafkaSettings, mongo: MongoSettings, stack_env: dict[str, str],
                       names: list[str]) -> AsyncIterator[list[RemotePerspective]]:
    started: list[RemotePerspective] = []
    try:
        for name in names:
            source = SPLIT_SOURCE if name.endswith("-c") else ""
            settings = settings_for(kafka, mongo, mode="perspective", perspective_name=name,
                                    **dns_overrides(stack_env, dns_source_address=source))
            perspective = RemotePerspective(settings)
            await perspective.start()
            started.append(perspective)
        yield started
    finally:
        for perspective in reversed(started):
            await perspective.stop()


# -- DNS change (BR 3.2.2.4.7) ----------------------------------------------------------------------


async def test_a_published_txt_record_verifies_the_domain_by_dns_change(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, stack_env: dict[str, str],
        zone: LocalZone) -> None:
    domain, value = fresh(), secrets.token_urlsafe(24)
    await zone.publish(f"_cacert-challenge.{domain}", "TXT", f'"{value}"')
    async with running(kafka_settings, mongo_settings, **dns_overrides(stack_env)) as harness:
        sent = await request(harness, domain, "dns_change", random_value=value,
                             random_value_created_at=isoformat(datetime.now(UTC)))
        result = await outcome(harness, sent.data["request_id"])
    assert result.type == "org.cacert.domain.verified.v1", result.data
    assert result.data["method"] == "dns_change" and result.data["br_section"] == "3.2.2.4.7"
    assert result.data["domain"] == domain


async def test_a_missing_or_wrong_txt_record_fails_and_says_what_was_found(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, stack_env: dict[str, str],
        zone: LocalZone) -> None:
    missing, wrong = fresh(), fresh()
    await zone.publish(f"_cacert-challenge.{wrong}", "TXT", '"not-the-value"')
    async with running(kafka_settings, mongo_settings, **dns_overrides(stack_env)) as harness:
        a = await request(harness, missing, "dns_change", random_value=secrets.token_urlsafe(24))
        b = await request(harness, wrong, "dns_change", random_value=secrets.token_urlsafe(24))
        first, second = await outcome(harness, a.data["request_id"]), await outcome(harness, b.data["request_id"])
    assert first.type.endswith("verification_failed.v1") and second.type.endswith("verification_failed.v1")
    assert first.data["method"] == "dns_change" and first.data["reason"]
    assert second.data["found"] == ["not-the-value"], second.data
    assert first.data["reason"] != second.data["reason"]  # no record at all vs. a record with another value


async def test_a_signed_zone_verifies_and_the_broken_signed_zone_fails_as_bogus_not_as_missing(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, stack_env: dict[str, str],
        zone: LocalZone) -> None:
    signed, bogus, value = fresh("signed.test"), fresh("bogus.test"), secrets.token_urlsafe(24)
    await zone.publish(f"_cacert-challenge.{signed}", "TXT", f'"{value}"')
    await zone.publish(f"_cacert-challenge.{bogus}", "TXT", f'"{value}"')
    async with running(kafka_settings, mongo_settings, **dns_overrides(stack_env)) as harness:
        a = await request(harness, signed, "dns_change", random_value=value)
        b = await request(harness, bogus, "dns_change", random_value=value)
        good, bad = await outcome(harness, a.data["request_id"]), await outcome(harness, b.data["request_id"])
    assert good.type.endswith("domain.verified.v1"), good.data
    assert bad.type.endswith("verification_failed.v1") and "dnssec_bogus" in bad.data["reason"], bad.data


async def test_a_random_value_older_than_30_days_is_refused(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, stack_env: dict[str, str]) -> None:
    async with running(kafka_settings, mongo_settings, **dns_overrides(stack_env)) as harness:
        sent = await request(harness, fresh(), "dns_change", random_value=secrets.token_urlsafe(24),
                             random_value_created_at="2026-01-01T00:00:00Z")
        result = await outcome(harness, sent.data["request_id"])
    assert result.type.endswith("verification_failed.v1") and "30 days" in result.data["reason"]


# -- website change (BR 3.2.2.4.18) ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def website(files: dict[str, str]) -> AsyncIterator[int]:
    async def serve(request: web.Request) -> web.Response:
        body = files.get(request.path)
        return web.Response(text=body) if body is not None else web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_a_file_on_the_website_verifies_the_domain_by_website_change(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, stack_env: dict[str, str],
        zone: LocalZone) -> None:
    domain, other, value = fresh(), fresh(), secrets.token_urlsafe(24)
    await zone.publish(domain, "A", "127.0.0.1")
    await zone.publish(other, "A", "127.0.0.1")
    files = {"/.well-known/pki-validation/cacert-1.txt": value}
    async with website(files) as port, running(kafka_settings, mongo_settings,
                                                **dns_overrides(stack_env, http_port=port)) as harness:
        ok = await request(harness, domain, "website_change", random_value=value, file_name="cacert-1.txt")
        absent = await request(harness, other, "website_change", random_value=value, file_name="cacert-2.txt")
        verified = await outcome(harness, ok.data["request_id"])
        failed = await outcome(harness, absent.data["request_id"])
    assert verified.type.endswith("domain.verified.v1") and verified.data["br_section"] == "3.2.2.4.18"
    assert failed.type.endswith("verification_failed.v1") and "404" in failed.data["reason"], failed.data


async def test_without_the_allow_list_a_website_on_loopback_is_never_fetched(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, stack_env: dict[str, str],
        zone: LocalZone) -> None:
    domain, value = fresh(), secrets.token_urlsafe(24)
    await zone.publish(domain, "A", "127.0.0.1")
    files = {"/.well-known/pki-validation/cacert-1.txt": value}
    async with website(files) as port, running(kafka_settings, mongo_settings,
                                                **dns_overrides(stack_env, http_port=port,
                                                                http_allow_private=[])) as harness:
        sent = await request(harness, domain, "website_change", random_value=value, file_name="cacert-1.txt")
        result = await outcome(harness, sent.data["request_id"])
    assert result.type.endswith("verification_failed.v1") and "private" in result.data["reason"], result.data


# -- ACME http-01 (BR 3.2.2.4.19) and dns-01 (BR 3.2.2.4.7), as the ACME service will ask -------------


def key_authorization(token: str) -> str:
    """token || '.' || base64url(JWK thumbprint), RFC 8555 8.1; the thumbprint is any 43 characters here."""
    return f"{token}.{secrets.token_urlsafe(32)[:43]}"


async def test_acme_dns_01_verifies_by_the_digest_of_the_key_authorization_and_refuses_the_raw_value(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, stack_env: dict[str, str],
        zone: LocalZone) -> None:
    from services.domain_verify.va.methods import acme_dns_digest

    good, raw = fresh("signed.test"), fresh()
    good_ka, raw_ka = key_authorization(secrets.token_urlsafe(32)), key_authorization(secrets.token_urlsafe(32))
    await zone.publish(f"_acme-challenge.{good}", "TXT", f'"{acme_dns_digest(good_ka)}"')
    await zone.publish(f"_acme-challenge.{raw}", "TXT", f'"{raw_ka}"')  # the key authorization, not its digest
    async with running(kafka_settings, mongo_settings, **dns_overrides(stack_env)) as harness:
        a = await request(harness, good, "acme_dns_01", key_authorization=good_ka, wildcard=False)
        b = await request(harness, raw, "acme_dns_01", key_authorization=raw_ka, wildcard=False)
        verified, failed = await outcome(harness, a.data["request_id"]), await outcome(harness, b.data["request_id"])
    assert verified.type.endswith("domain.verified.v1"), verified.data
    assert verified.data["method"] == "acme_dns_01" and verified.data["br_section"] == "3.2.2.4.7"
    assert failed.type.endswith("verification_failed.v1") and failed.data["method"] == "acme_dns_01"
    assert failed.data["found"] == [raw_ka], failed.data


async def test_acme_http_01_verifies_by_the_key_authorization_at_the_token_path(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, stack_env: dict[str, str],
        zone: LocalZone) -> None:
    served, wrong = fresh(), fresh()
    token, other_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    ka = key_authorization(token)
    await zone.publish(served, "A", "127.0.0.1")
    await zone.publish(wrong, "A", "127.0.0.1")
    another_accounts = key_authorization(other_token)  # same token, another account key's thumbprint
    files = {f"/.well-known/acme-challenge/{token}": ka + "\n",
             f"/.well-known/acme-challenge/{other_token}": another_accounts}
    async with website(files) as port, running(kafka_settings, mongo_settings,
                                                **dns_overrides(stack_env, http_port=port)) as harness:
        ok = await request(harness, served, "acme_http_01", token=token, key_authorization=ka)
        bad = await request(harness, wrong, "acme_http_01", token=other_token,
                            key_authorization=key_authorization(other_token))
        verified, failed = await outcome(harness, ok.data["request_id"]), await outcome(harness, bad.data["request_id"])
    assert verified.type.endswith("domain.verified.v1"), verified.data
    assert verified.data["method"] == "acme_http_01" and verified.data["br_section"] == "3.2.2.4.19"
    assert failed.type.endswith("verification_failed.v1") and failed.data["method"] == "acme_http_01", failed.data
    assert failed.data["found"] == [another_accounts], failed.data


# -- multi-perspective corroboration (BR 3.2.2.9) ---------------------------------------------------


async def test_quorum_decides_when_one_perspective_sees_a_different_answer(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, stack_env: dict[str, str],
        zone: LocalZone) -> None:
    names = ["p-a", "p-b", "p-c"]
    tolerant_domain, strict_domain, value = fresh(), fresh(), secrets.token_urlsafe(24)
    for domain in (tolerant_domain, strict_domain):
        await zone.publish(f"_cacert-challenge.{domain}", "TXT", f'"{value}"')
        # Only perspective c (queries from 127.0.0.3) sees an attacker's value instead.
        await zone.split_view(f"_cacert-challenge.{domain}", "TXT", '"hijacked"')
    try:
        async with perspectives(kafka_settings, mongo_settings, stack_env, names):
            async with running(kafka_settings, mongo_settings,
                               **dns_overrides(stack_env, perspectives=names)) as harness:
                sent = await request(harness, tolerant_domain, "dns_change", random_value=value)
                tolerant = await outcome(harness, sent.data["request_id"])
            strict_mongo = MongoSettings(url=mongo_settings.url, database=mongo_settings.database + "_strict")
            async with running(kafka_settings, strict_mongo,
                               **dns_overrides(stack_env, perspectives=names, max_disagreements=0)) as harness:
                sent = await request(harness, strict_domain, "dns_change", random_value=value)
                strict = await outcome(harness, sent.data["request_id"])
    finally:
        for domain in (tolerant_domain, strict_domain):
            await zone.clear_split_view(f"_cacert-challenge.{domain}")
    # BR table: of 3 remote perspectives 1 may disagree, so the primary's success stands...
    assert tolerant.type.endswith("domain.verified.v1"), tolerant.data
    assert tolerant.data["evidence"]["perspectives"] == {"p-a": True, "p-b": True, "p-c": False}
    # ...and with no disagreement allowed the same situation fails, naming the perspective.
    assert strict.type.endswith("verification_failed.v1") and strict.data["reason"] == "perspective_disagreement"
    assert any(f.startswith("p-c:") for f in strict.data["found"]), strict.data


async def test_a_silent_perspective_counts_as_disagreeing_after_the_timeout(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, stack_env: dict[str, str],
        zone: LocalZone) -> None:
    domain, value = fresh(), secrets.token_urlsafe(24)
    await zone.publish(f"_cacert-challenge.{domain}", "TXT", f'"{value}"')
    async with perspectives(kafka_settings, mongo_settings, stack_env, ["p-a"]):
        async with running(kafka_settings, mongo_settings,
                           **dns_overrides(stack_env, perspectives=["p-a", "p-gone"], max_disagreements=0,
                                           perspective_timeout_seconds=3.0)) as harness:
            sent = await request(harness, domain, "dns_change", random_value=value)
            result = await outcome(harness, sent.data["request_id"])
    assert result.type.endswith("verification_failed.v1") and result.data["reason"] == "perspective_disagreement"
    assert "p-gone: no answer in time" in result.data["found"]


# -- CAA (BR 3.2.2.8, RFC 8659) ---------------------------------------------------------------------


async def test_caa_matrix_over_the_real_dns(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, stack_env: dict[str, str],
        zone: LocalZone) -> None:
    base = fresh()
    cases = {
        "none": (f"none.{base}", None, True),
        "ours": (f"ours.{base}", '0 issue "cacert.example"', True),
        "theirs": (f"theirs.{base}", '0 issue "other-ca.example"', False),
        "nobody": (f"nobody.{base}", '0 issue ";"', False),
        "critical": (f"critical.{base}", '128 tbs "unknown"', False),
    }
    for name, record, _ in cases.values():
        if record:
            await zone.publish(name, "CAA", record)
    # issuewild only: a wildcard for us is allowed, the plain name falls back to "no issue property".
    await zone.publish(f"wild.{base}", "CAA", '0 issuewild "cacert.example"', '0 issue "other-ca.example"')
    # A CNAME to a name with a forbidding CAA record: the target's record applies.
    await zone.publish(f"target.{base}", "CAA", '0 issue "other-ca.example"')
    await zone.publish(f"alias.{base}", "CNAME", f"target.{base}.")
    async with running(kafka_settings, mongo_settings, **dns_overrides(stack_env)) as harness:
        verdicts = {label: await caa_check(harness, [name]) for label, (name, _, _) in cases.items()}
        wild = await caa_check(harness, [f"*.wild.{base}"])
        plain = await caa_check(harness, [f"wild.{base}"])
        alias = await caa_check(harness, [f"alias.{base}"])
        bogus = await caa_check(harness, [fresh("bogus.test")])
        # The stack's resolver forwards servfail.test to a port nobody listens on: a plain SERVFAIL.
        servfail = await caa_check(harness, [fresh("servfail.test")])
    for label, (_, _, allowed) in cases.items():
        assert (verdicts[label].data["verdict"] == "allowed") is allowed, (label, verdicts[label].data)
    assert verdicts["theirs"].data["names"][0]["records"], "the refusal names the record that forbade it"
    assert wild.data["verdict"] == "allowed" and plain.data["verdict"] == "refused"
    assert alias.data["verdict"] == "refused", alias.data
    assert bogus.data["verdict"] == "refused" and "bogus" in bogus.data["names"][0]["reason"], bogus.data
    assert servfail.data["verdict"] == "refused", servfail.data
    assert servfail.data["names"][0]["reason"] == "lookup_failed:servfail", servfail.data
