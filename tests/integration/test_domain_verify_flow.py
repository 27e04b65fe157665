"""domain_verify end to end over real Kafka and FerretDB: the mailed link, the confirm page, the outcome.

The service runs in-process; a producer plays registration. The mail leg is
asserted on the `mail.send_requested` command the notifier consumes (see
test_domain_verify_mail.py for the SMTP leg when the notifier is present).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from services.domain_verify.va.reuse import reuse_days
from shared.config import KafkaSettings, MongoSettings
from tests.domain_verify.harness import PUBLIC_URL, Harness, running
from tests.mail_keys import params_of

pytestmark = pytest.mark.usefixtures("topics")


@pytest.fixture
async def dv(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Harness]:
    async with running(kafka_settings, mongo_settings) as harness:
        yield harness


async def test_request_mail_get_post_verifies_once_and_the_token_stays_in_the_mail(dv: Harness) -> None:
    request = await dv.request(member_id="m-ada", member_name="Ada Lovelace", domain="shop.example.org",
                               contact="Hostmaster@example.org")
    (mail,) = await dv.mail_commands(1)
    assert mail.data["to"] == "hostmaster@example.org"  # the chosen contact, normalised
    assert mail.data["template"] == "domain_challenge" and mail.data["member_id"] == "m-ada"
    params = params_of(mail)
    assert params["domain"] == "shop.example.org" and params["member_name"] == "Ada Lovelace"
    assert params["link"] == f"{PUBLIC_URL}/confirm#token={params['code']}"  # the token only in the fragment
    expires = datetime.fromisoformat(params["expires_at"])
    assert timedelta(hours=71) < expires - datetime.now(UTC) <= timedelta(hours=72)
    link = params["link"]
    token = dv.token(link)

    # GET, as a mail scanner would, several times: the static page, which knows no token and changes nothing.
    for _ in range(3):
        async with dv.http.get(f"{dv.base_url}/confirm") as page:
            html = await page.text()
            assert page.status == 200 and 'action="/confirm/review"' in html and "shop.example.org" not in html
            assert 'src="/static/mailed-link.js"' in html
            assert "default-src 'none'; script-src 'self'" in page.headers["Content-Security-Policy"]
    # The page's script posts the token to the review, which names domain and account and changes nothing.
    for _ in range(3):
        async with dv.review(link) as page:
            html = await page.text()
            assert page.status == 200
            assert "shop.example.org" in html and "Ada Lovelace" in html and "m-ada" in html
            assert '<form method="post" action="/confirm">' in html
            assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    doc = await dv.challenge_doc(request.data["request_id"])
    assert doc is not None and doc["state"] == "pending" and "confirmed_at" not in doc
    assert await dv.outcomes(0, timeout=2) == []

    async with dv.confirm(link) as confirmed:
        assert confirmed.status == 200 and "Domain confirmed" in await confirmed.text()
    async with dv.confirm(link) as replay:  # the replayed token
        assert replay.status == 410 and "already been used" in await replay.text()
    async with dv.review(link) as after:
        assert after.status == 410

    (verified,) = await dv.outcomes(2, timeout=4)  # waits for a second one that must not come
    assert verified.type == "org.cacert.domain.verified.v1"
    assert verified.key == request.data["request_id"] == verified.subject
    data = verified.data
    assert data["member_id"] == "m-ada" and data["domain"] == "shop.example.org" and data["method"] == "email"
    assert data["contact"] == "hostmaster@example.org"
    verified_at = datetime.fromisoformat(data["verified_at"])
    # BR 4.2.1 (SC-081): 200 days for a validation completed between 2026-03-15 and 2027-03-15.
    assert datetime.fromisoformat(data["valid_until"]) - verified_at == timedelta(days=reuse_days(verified_at))

    # The token is in the mail command only: not in the domain topic, not in logs, not in the database.
    for record in await dv.raw("domain", 100, timeout=2):
        blob = (record.value or b"") + b"".join(v for _, v in record.headers) + (record.key or b"")
        assert token.encode() not in blob
    assert token not in dv.logs.getvalue() and "challenge mailed" in dv.logs.getvalue()
    stored = await dv.challenge_doc(request.data["request_id"])
    assert stored is not None and stored["_outbox"] == [] and token not in json.dumps(stored, default=str)


async def test_concurrent_confirmations_verify_exactly_once(dv: Harness) -> None:
    """Several clicks at once (or replicas racing): one wins. FerretDB's non-atomic updates made this fail."""
    await dv.request()
    (mail,) = await dv.mail_commands(1)
    link = params_of(mail)["link"]

    async def post() -> int:
        async with dv.confirm(link) as response:
            return response.status

    statuses = await asyncio.gather(*(post() for _ in range(10)))
    assert sorted(statuses) == [200] + [410] * 9
    assert len(await dv.outcomes(2, timeout=4)) == 1


async def test_contact_outside_the_constructed_list_fails_with_reason_and_no_mail(dv: Harness) -> None:
    request = await dv.request(contact="root@example.org")
    (failed,) = await dv.outcomes(1)
    assert failed.type == "org.cacert.domain.verification_failed.v1"
    assert failed.data["request_id"] == request.data["request_id"] and failed.data["member_id"] == "m-1"
    assert "not an official contact" in failed.data["reason"]
    assert "postmaster@example.org" in failed.data["reason"]
    assert await dv.mail_commands(1, timeout=2) == []


async def test_a_subdomain_contact_cannot_verify_its_parent(dv: Harness) -> None:
    await dv.request(domain="example.org", contact="admin@shop.example.org")
    (failed,) = await dv.outcomes(1)
    assert "not an official contact" in failed.data["reason"]


async def test_a_public_suffix_fails(dv: Harness) -> None:
    await dv.request(domain="co.uk", contact="admin@co.uk")
    (failed,) = await dv.outcomes(1)
    assert failed.type.endswith("verification_failed.v1") and "public suffix" in failed.data["reason"]
    assert await dv.mail_commands(1, timeout=2) == []


async def test_idn_contact_in_unicode_or_punycode_mails_the_same_a_label_address(dv: Harness) -> None:
    await dv.request(member_id="m-1", domain="xn--bcher-kva.de", contact="admin@bücher.de")
    await dv.request(member_id="m-2", domain="xn--bcher-kva.de", contact="admin@xn--bcher-kva.de")
    mails = await dv.mail_commands(2)
    assert {m.data["to"] for m in mails} == {"admin@xn--bcher-kva.de"}
    assert {params_of(m)["domain"] for m in mails} == {"xn--bcher-kva.de"}
    unicode_mail = next(m for m in mails if m.data["member_id"] == "m-1")
    async with dv.review(params_of(unicode_mail)["link"]) as page:
        assert "bücher.de" in await page.text()  # people see the Unicode form
    async with dv.confirm(params_of(unicode_mail)["link"]) as confirmed:
        assert confirmed.status == 200
    (verified,) = await dv.outcomes(1)
    assert verified.data["domain"] == "xn--bcher-kva.de"
    assert verified.data["contact"] == "admin@xn--bcher-kva.de"


async def test_a_redelivered_request_sends_no_second_mail_nor_second_challenge(dv: Harness) -> None:
    request = await dv.request()
    await dv.republish(request)  # the same event, delivered again
    await dv.request(request_id=request.data["request_id"], requested_at=datetime.fromisoformat(
        request.data["requested_at"]))  # registration retried with a fresh event id
    await dv.wait_handled(3)
    assert len(await dv.mail_commands(2, timeout=3)) == 1
    assert dv.service.store is not None
    assert await dv.service.store.collection.count_documents({}) == 1
    assert await dv.outcomes(1, timeout=1) == []


async def test_a_newer_request_supersedes_the_older_link(dv: Harness) -> None:
    now = datetime.now(UTC)
    old = await dv.request(requested_at=now - timedelta(minutes=5))
    await dv.wait_handled(1)
    new = await dv.request(requested_at=now, contact="webmaster@example.org")
    mails = await dv.mail_commands(2)
    links = {m.subject: params_of(m)["link"] for m in mails}
    (failed,) = await dv.outcomes(1)
    assert failed.data["request_id"] == old.data["request_id"] and failed.data["reason"] == "superseded"
    for step in (dv.review, dv.confirm):
        async with step(links[old.data["request_id"]]) as stale:
            assert stale.status == 410 and "newer verification request" in await stale.text()
    async with dv.confirm(links[new.data["request_id"]]) as confirmed:
        assert confirmed.status == 200
    outcomes = {e.data["request_id"]: e for e in await dv.outcomes(3, timeout=3)}
    assert len(outcomes) == 2 and outcomes[old.data["request_id"]].type.endswith("verification_failed.v1")
    verified = outcomes[new.data["request_id"]]
    assert verified.type.endswith("domain.verified.v1")
    assert verified.data["contact"] == "webmaster@example.org"


async def test_an_older_request_arriving_late_is_superseded_at_once_and_mails_nothing(dv: Harness) -> None:
    now = datetime.now(UTC)
    await dv.request(requested_at=now)
    await dv.wait_handled(1)
    late = await dv.request(requested_at=now - timedelta(minutes=5))
    (failed,) = await dv.outcomes(1)
    assert failed.data["request_id"] == late.data["request_id"] and failed.data["reason"] == "superseded"
    assert len(await dv.mail_commands(2, timeout=2)) == 1


async def test_a_token_is_bound_to_its_member(dv: Harness) -> None:
    """Two members ask for the same domain: each link verifies only its own member's request."""
    req_a = await dv.request(member_id="m-a", member_name="Alice")
    req_b = await dv.request(member_id="m-b", member_name="Bob")
    mails = {m.data["member_id"]: m for m in await dv.mail_commands(2)}
    link_a = params_of(mails["m-a"])["link"]
    link_b = params_of(mails["m-b"])["link"]
    async with dv.review(link_b) as page:
        html = await page.text()
        assert "Bob" in html and "m-b" in html and "Alice" not in html
    async with dv.confirm(link_a) as confirmed:
        assert confirmed.status == 200
    (verified,) = await dv.outcomes(1)
    assert verified.data["member_id"] == "m-a" and verified.data["request_id"] == req_a.data["request_id"]
    doc_b = await dv.challenge_doc(req_b.data["request_id"])
    assert doc_b is not None and doc_b["state"] == "pending"  # Bob's request is untouched by Alice's link
    async with dv.confirm(link_a) as replay:  # Alice's link cannot be spent again, e.g. on Bob's request
        assert replay.status == 410
    async with dv.confirm(link_b) as confirmed_b:
        assert confirmed_b.status == 200
    outcomes = await dv.outcomes(2)
    assert {(e.data["member_id"], e.data["request_id"]) for e in outcomes} == {
        ("m-a", req_a.data["request_id"]), ("m-b", req_b.data["request_id"])}


async def test_unknown_tokens_get_a_clear_page(dv: Harness) -> None:
    for step in ("review", ""):
        async with dv.http.post(f"{dv.base_url}/confirm{'/' if step else ''}{step}", data={"token": "x" * 43}) as page:
            assert page.status == 404 and "not valid" in await page.text()
            assert page.headers["Referrer-Policy"] == "no-referrer"


async def test_the_dns_method_is_refused_until_it_is_offered(dv: Harness) -> None:
    await dv.request(method="dns")
    (failed,) = await dv.outcomes(1)
    assert "method 'dns' is not offered" in failed.data["reason"]
    assert await dv.mail_commands(1, timeout=2) == []
