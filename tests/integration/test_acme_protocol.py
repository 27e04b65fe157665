"""The ACME service's protocol over real Kafka and FerretDB, driven by the `acme` client library.

The rest of the CA is played by the test (tests/acme/harness.py): bindings as registration publishes
them, verifications as domain_verify announces them, certificates as the signer issues them. The edge
cases RFC 8555 names are sent as hand-made JWS (bad nonce, wrong url, unknown account, unprotected
header), the rest through the library certbot uses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import josepy
import pytest
import requests
from acme import challenges, errors, messages
from acme import jws as acme_jws
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.config import KafkaSettings, MongoSettings
from shared.events import CloudEvent, isoformat
from tests.acme.harness import CLASS1_ROOT, CLASS3_ROOT, Harness, certificate_for, csr_for, running
from tests.eventlog import read_topic

pytestmark = pytest.mark.integration


def fresh() -> str:
    return f"a{uuid.uuid4().hex[:10]}.example.org"


async def verified(h: Harness, member_id: str, domain: str, days: int = 200) -> None:
    """domain_verify announces that `member_id` proved control of `domain` (by any method)."""
    now = datetime.now(UTC)
    await h.publish("domain.verified", {
        "request_id": uuid.uuid4().hex, "member_id": member_id, "domain": domain, "method": "email",
        "verified_at": isoformat(now), "valid_until": isoformat(now + timedelta(days=days))}, "domain_verify")
    store = h.service.store
    assert store is not None
    for _ in range(100):
        if (domain, "email") in await store.verified_domains_of(member_id, now):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the ACME service did not record the verified domain")


async def events_on(h: Harness, topic: str, type_suffix: str, expected: int = 1) -> list[CloudEvent]:
    records = await read_topic(h.kafka.bootstrap, h.topics.of(topic), expected, timeout=20)
    events = [CloudEvent.from_kafka(r.key, r.value, r.headers) for r in records]
    return [e for e in events if e.type.endswith(type_suffix)]


async def order_status(acme: Any, url: str, want: str, timeout: float = 20) -> messages.Order:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        body = messages.Order.from_json((await asyncio.to_thread(acme._post_as_get, url)).json())
        if body.status.name == want or asyncio.get_running_loop().time() > deadline:
            return body
        await asyncio.sleep(0.2)


def _raw_post(h: Harness, url: str, payload: bytes, key: josepy.JWK, *, nonce: str | None = None,
             signed_url: str | None = None, kid: str | None = None, body: Any = None,
             content_type: str = "application/jose+json") -> requests.Response:
    if nonce is None:
        nonce = requests.head(h.directory_url.replace("/directory", "/new-nonce"), timeout=10).headers["Replay-Nonce"]
    signed = acme_jws.JWS.sign(payload, key, josepy.ES256, josepy.b64.b64decode(nonce), signed_url or url, kid)
    data = body if body is not None else signed.json_dumps()
    return requests.post(url, data=data, headers={"Content-Type": content_type}, timeout=10)


async def raw_post(h: Harness, url: str, payload: bytes, key: josepy.JWK, **kwargs: Any) -> requests.Response:
    """A hand-made JWS POST (in a thread: the service answers on this test's event loop)."""
    return await asyncio.to_thread(_raw_post, h, url, payload, key, **kwargs)


async def new_nonce(url: str) -> str:
    return (await asyncio.to_thread(requests.head, url, timeout=10)).headers["Replay-Nonce"]


def account_url(acme: Any) -> str:
    assert acme.net.account is not None
    return str(acme.net.account.uri)


def error_of(order: messages.Order) -> messages.Error:
    assert order.error is not None, "the order carries no problem document"
    return order.error


def problem_of(response: requests.Response) -> str:
    assert response.headers["Content-Type"].startswith("application/problem+json"), response.text
    assert "Replay-Nonce" in response.headers, "every response, errors included, carries a fresh nonce"
    return str(response.json()["type"]).removeprefix("urn:ietf:params:acme:error:")


# -- accounts and External Account Binding -------------------------------------------------------------


async def test_a_new_account_needs_a_live_binding_proven_with_its_hmac_key(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    async with running(kafka_settings, mongo_settings) as h:
        binding = await h.binding("member-eab")
        acme, key = await h.client()
        assert acme.external_account_required()
        with pytest.raises(messages.Error) as missing:
            await asyncio.to_thread(acme.new_account, messages.NewRegistration.from_data(
                terms_of_service_agreed=True))
        assert missing.value.code == "externalAccountRequired"

        forged = messages.ExternalAccountBinding.from_data(
            account_public_key=key.public_key(), kid=binding.key_id,
            hmac_key=josepy.b64.b64encode(b"x" * 32).decode(), directory=acme.directory)
        with pytest.raises(messages.Error) as wrong_key:
            await asyncio.to_thread(acme.new_account, messages.NewRegistration.from_data(
                terms_of_service_agreed=True, external_account_binding=forged))
        assert wrong_key.value.code == "unauthorized"

        unknown = messages.ExternalAccountBinding.from_data(
            account_public_key=key.public_key(), kid="no-such-binding-key-id", hmac_key=binding.hmac_key,
            directory=acme.directory)
        with pytest.raises(messages.Error) as unknown_kid:
            await asyncio.to_thread(acme.new_account, messages.NewRegistration.from_data(
                terms_of_service_agreed=True, external_account_binding=unknown))
        assert unknown_kid.value.code == "unauthorized"

        acme, key = await h.account(binding)
        store = h.service.store
        assert store is not None
        accounts = [a async for a in store.accounts.find({"member_id": "member-eab"})]
        assert len(accounts) == 1 and accounts[0]["status"] == "valid"
        assert "hmac" not in json.dumps(accounts[0], default=str).lower()

        again, _ = await h.client(key)  # the same key finds its account (RFC 8555 7.3.1)
        with pytest.raises(errors.ConflictError) as found:  # the library's way of saying "200, it exists"
            await asyncio.to_thread(again.new_account, messages.NewRegistration.from_data(
                terms_of_service_agreed=True, only_return_existing=True))
        assert found.value.location == account_url(acme)

        stranger, _ = await h.client()
        with pytest.raises(messages.Error) as none:
            await asyncio.to_thread(stranger.new_account, messages.NewRegistration.from_data(
                terms_of_service_agreed=True, only_return_existing=True))
        assert none.value.code == "accountDoesNotExist"


async def test_revoking_the_binding_deactivates_its_accounts(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    async with running(kafka_settings, mongo_settings) as h:
        binding = await h.binding("member-revoked")
        acme, _ = await h.account(binding)
        await h.publish("acme.binding_revoked", {"key_id": binding.key_id, "member_id": "member-revoked",
                                                 "revoked_at": isoformat(datetime.now(UTC))}, "registration")
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            try:
                await asyncio.to_thread(acme.new_order, csr_for(fresh())[0])
            except messages.Error as exc:
                assert exc.code == "unauthorized" and "deactivated" in str(exc.detail)
                break
            assert asyncio.get_running_loop().time() < deadline, "the account still orders after revocation"
            await asyncio.sleep(0.3)
        fresh_client, key = await h.client()
        eab = messages.ExternalAccountBinding.from_data(account_public_key=key.public_key(), kid=binding.key_id,
                                                        hmac_key=binding.hmac_key, directory=fresh_client.directory)
        with pytest.raises(messages.Error) as refused:
            await asyncio.to_thread(fresh_client.new_account, messages.NewRegistration.from_data(
                terms_of_service_agreed=True, external_account_binding=eab))
        assert refused.value.code == "unauthorized" and "revoked" in str(refused.value.detail)


async def test_bad_nonce_wrong_url_unknown_account_and_unprotected_headers_are_refused(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    async with running(kafka_settings, mongo_settings) as h:
        binding = await h.binding("member-jws")
        acme, key = await h.account(binding)
        kid = account_url(acme)
        new_order = acme.directory["newOrder"]
        payload = json.dumps({"identifiers": [{"type": "dns", "value": fresh()}]}).encode()

        nonce = await new_nonce(acme.directory["newNonce"])
        first = await raw_post(h, new_order, payload, key, nonce=nonce, kid=kid)
        assert first.status_code == 201, first.text
        replayed = await raw_post(h, new_order, payload, key, nonce=nonce, kid=kid)
        assert (replayed.status_code, problem_of(replayed)) == (400, "badNonce")
        made_up = await raw_post(h, new_order, payload, key, nonce=josepy.b64.b64encode(b"0" * 16).decode(), kid=kid)
        assert problem_of(made_up) == "badNonce"

        wrong_url = await raw_post(h, new_order, payload, key, signed_url=acme.directory["revokeCert"], kid=kid)
        assert (wrong_url.status_code, problem_of(wrong_url)) == (403, "unauthorized")

        unknown = await raw_post(h, new_order, payload, key, kid=kid.rsplit("/", 1)[0] + "/nobody")
        assert problem_of(unknown) == "accountDoesNotExist"
        other_key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        impostor = await raw_post(h, new_order, payload, other_key, kid=kid)
        assert problem_of(impostor) == "malformed" and "signature" in impostor.json()["detail"]

        with_header = json.loads(acme_jws.JWS.sign(payload, key, josepy.ES256, b"n", new_order, kid).json_dumps())
        with_header["header"] = {"kid": kid}
        unprotected = await raw_post(h, new_order, payload, key, kid=kid, body=json.dumps(with_header))
        assert problem_of(unprotected) == "malformed" and "unprotected" in unprotected.json()["detail"]
        plain_json = await raw_post(h, new_order, payload, key, kid=kid, content_type="application/json")
        assert (plain_json.status_code, problem_of(plain_json)) == (415, "malformed")
        jwk_for_order = await raw_post(h, new_order, payload, key)  # newOrder must name its account by kid
        assert problem_of(jwk_for_order) == "malformed"


async def test_after_a_key_change_the_old_key_is_refused_and_a_deactivated_account_cannot_act(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    async with running(kafka_settings, mongo_settings) as h:
        binding = await h.binding("member-keys")
        acme, old_key = await h.account(binding)
        kid = account_url(acme)
        new_key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        inner = acme_jws.JWS.sign(json.dumps({"account": kid, "oldKey": old_key.public_key().to_json()}).encode(),
                                  new_key, josepy.ES256, None, acme.directory["keyChange"], None)
        changed = await raw_post(h, acme.directory["keyChange"], inner.json_dumps().encode(), old_key, kid=kid)
        assert changed.status_code == 200, changed.text

        payload = json.dumps({"identifiers": [{"type": "dns", "value": fresh()}]}).encode()
        stale = await raw_post(h, acme.directory["newOrder"], payload, old_key, kid=kid)
        assert problem_of(stale) == "malformed" and "signature" in stale.json()["detail"]
        nonce = await new_nonce(acme.directory["newNonce"])
        signed = acme_jws.JWS.sign(payload, new_key, josepy.ES256, josepy.b64.b64decode(nonce),
                                   acme.directory["newOrder"], kid)
        fresh_order = await asyncio.to_thread(requests.post, acme.directory["newOrder"], data=signed.json_dumps(),
                                              headers={"Content-Type": "application/jose+json"}, timeout=10)
        assert fresh_order.status_code == 201, fresh_order.text

        other, other_key = await h.account(await h.binding("member-keys-2"))
        taken = acme_jws.JWS.sign(json.dumps({"account": account_url(other),
                                              "oldKey": other_key.public_key().to_json()}).encode(),
                                  new_key, josepy.ES256, None, acme.directory["keyChange"], None)
        conflict = await raw_post(h, acme.directory["keyChange"], taken.json_dumps().encode(), other_key,
                            kid=account_url(other))
        assert (conflict.status_code, problem_of(conflict)) == (409, "conflict")
        assert conflict.headers["Location"] == kid

        assert other.net.account is not None
        await asyncio.to_thread(other.deactivate_registration, other.net.account)
        with pytest.raises(messages.Error) as refused:
            await asyncio.to_thread(other.new_order, csr_for(fresh())[0])
        assert refused.value.code == "unauthorized"


# -- orders, authorizations, finalization ----------------------------------------------------------------


async def test_challenges_go_to_domain_verify_and_its_answers_move_the_orders(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    async with running(kafka_settings, mongo_settings) as h:
        acme, key = await h.account(await h.binding("member-chall"))
        good, bad = fresh(), fresh()
        order = await asyncio.to_thread(acme.new_order, csr_for(good)[0])
        assert order.body.status.name == "pending"
        authz = order.authorizations[0]
        assert sorted(c.chall.typ for c in authz.body.challenges) == ["dns-01", "http-01"]
        wildcard = await asyncio.to_thread(acme.new_order, csr_for("*." + bad)[0])
        assert [c.chall.typ for c in wildcard.authorizations[0].body.challenges] == ["dns-01"]
        assert wildcard.authorizations[0].body.wildcard is True

        http = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
        response, validation = http.response_and_validation(key)
        await asyncio.to_thread(acme.answer_challenge, http, response)
        asked = await events_on(h, "domain", "domain.verification_requested.v1")
        request = next(e for e in asked if e.data["domain"] == good)
        assert request.data["method"] == "acme_http_01" and request.data["member_id"] == "member-chall"
        assert request.data["token"] == http.chall.encode("token")
        assert request.data["key_authorization"] == validation

        now = datetime.now(UTC)
        await h.publish("domain.verified", {
            "request_id": request.data["request_id"], "member_id": "member-chall", "domain": good,
            "method": "acme_http_01", "verified_at": isoformat(now),
            "valid_until": isoformat(now + timedelta(days=200))}, "domain_verify")
        assert (await order_status(acme, order.uri, "ready")).status.name == "ready"

        dns = wildcard.authorizations[0].body.challenges[0]
        await asyncio.to_thread(acme.answer_challenge, dns, dns.response(key))
        asked = await events_on(h, "domain", "domain.verification_requested.v1", expected=2)
        wild = next(e for e in asked if e.data["domain"] == bad)
        assert wild.data["method"] == "acme_dns_01" and wild.data["wildcard"] is True
        await h.publish("domain.verification_failed", {
            "request_id": wild.data["request_id"], "member_id": "member-chall", "domain": bad,
            "reason": "record_mismatch", "found": ["something-else"], "failed_at": isoformat(now)},
            "domain_verify")
        failed = await order_status(acme, wildcard.uri, "invalid")
        assert failed.status.name == "invalid"
        error = error_of(failed)
        assert error.code == "incorrectResponse" and "something-else" in str(error.detail)


async def test_a_name_under_a_verified_domain_is_authorized_at_once_and_finalize_asks_the_ra(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    async with running(kafka_settings, mongo_settings) as h:
        binding = await h.binding("member-ready", cert_class=3)
        acme, _ = await h.account(binding)
        domain = fresh()
        await verified(h, "member-ready", domain)
        name = "www." + domain
        csr_pem, _ = csr_for(name)
        order = await asyncio.to_thread(acme.new_order, csr_pem)
        assert order.body.status.name == "ready"
        assert order.authorizations[0].body.status.name == "valid" and not order.authorizations[0].body.challenges

        mismatched = await asyncio.to_thread(acme.new_order, csr_for("mail." + domain)[0])
        with pytest.raises(messages.Error) as bad_csr:
            await asyncio.to_thread(acme.begin_finalization, mismatched.update(csr_pem=csr_pem))
        assert bad_csr.value.code == "badCSR" and "RFC 8555 7.4" in str(bad_csr.value.detail)

        processing = await asyncio.to_thread(acme.begin_finalization, order)
        assert processing.body.status.name == "processing"
        submitted = (await events_on(h, "acme", "acme.csr_submitted.v1"))[0].data
        order_id = order.uri.rsplit("/", 1)[1]
        assert submitted["request_id"] == order_id and submitted["dns_names"] == [name]
        assert (submitted["member_id"], submitted["binding_key_id"], submitted["cert_class"]) == (
            "member-ready", binding.key_id, 3)
        assert _der(submitted["csr_pem"].encode()) == _der(csr_pem)


def _der(csr_pem: bytes) -> bytes:
    return x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER)

async def test_the_ra_and_signer_outcomes_end_the_order_with_a_certificate_or_a_problem(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    async with running(kafka_settings, mongo_settings) as h:
        acme, _ = await h.account(await h.binding("member-outcome", cert_class=3))
        domain = fresh()
        await verified(h, "member-outcome", domain)
        csr_pem, _ = csr_for(domain)
        issued_order = await asyncio.to_thread(acme.new_order, csr_pem)
        await asyncio.to_thread(acme.begin_finalization, issued_order)
        caa_order = await asyncio.to_thread(acme.new_order, csr_for("caa." + domain)[0])
        await asyncio.to_thread(acme.begin_finalization, caa_order)

        pem, cert = certificate_for(csr_pem, serial=0x1234ABCD)
        await h.publish("cert.issued", issued_data(issued_order.uri, "member-outcome", pem, cert, [domain]), "signer")
        done = await order_status(acme, issued_order.uri, "valid")
        assert done.status.name == "valid" and done.certificate
        download = await asyncio.to_thread(acme._post_as_get, done.certificate)
        assert download.headers["Content-Type"] == "application/pem-certificate-chain"
        class1_root = CLASS1_ROOT.public_bytes(serialization.Encoding.PEM).decode()
        # leaf, then the issuing CA and the Class 3 root signed by Class 1 (the event's chain), then Class 1
        assert download.text.startswith(pem.strip()) and "ISSUING" in download.text
        assert download.text.endswith(class1_root), "the default chain ends with the Class 1 root"
        alternates = acme._get_links(download, "alternate")
        assert len(alternates) == 1, "a Class 3 certificate offers the chain to the self-signed Class 3 root"
        alternate = await asyncio.to_thread(acme._post_as_get, alternates[0])
        # the same chain with the self-signed Class 3 root in place of the one signed by Class 1
        assert alternate.text == pem.strip() + "\n" + ISSUING_PEM + CLASS3_ROOT.public_bytes(
            serialization.Encoding.PEM).decode()

        # A signer that names its chains (cert.issued `chains`, after a root rollover one per anchor): the
        # default is the first, each other one an alternate, each ending in its anchor.
        rolled_csr, _ = csr_for("rolled." + domain)
        rolled_order = await asyncio.to_thread(acme.new_order, rolled_csr)
        await asyncio.to_thread(acme.begin_finalization, rolled_order)
        rolled_pem, rolled_cert = certificate_for(rolled_csr, serial=0x5678ABCD)
        chains = [{"anchor": anchor, "chain_pem": chain, "anchor_pem": root} for anchor, chain, root in (
            ("class1", ISSUING_PEM.replace("ISSUING", "CROSS"), class1_root),
            ("class3", ISSUING_PEM.replace("ISSUING", "CROSS3"), CLASS3_ROOT.public_bytes(
                serialization.Encoding.PEM).decode()),
            ("class1-g2", ISSUING_PEM.replace("ISSUING", "G2"), ISSUING_PEM.replace("ISSUING", "ROOTG2")))]
        rolled_data = issued_data(rolled_order.uri, "member-outcome", rolled_pem, rolled_cert, ["rolled." + domain])
        await h.publish("cert.issued", {**rolled_data, "issuer": "class3-issuing-g2", "chains": chains,
                                        "chain_pem": chains[0]["chain_pem"],
                                        "trust_anchors": ["class1", "class3", "class1-g2"]}, "signer")
        rolled = await order_status(acme, rolled_order.uri, "valid")
        download = await asyncio.to_thread(acme._post_as_get, rolled.certificate)
        served = [download.text] + [
            (await asyncio.to_thread(acme._post_as_get, link)).text for link in acme._get_links(download, "alternate")]
        assert served == [rolled_pem.strip() + "\n" + c["chain_pem"] + c["anchor_pem"] for c in chains]

        renew_at, _ = await asyncio.to_thread(acme.renewal_time, pem.encode())
        assert renew_at is not None and renew_at > datetime.now(UTC) + timedelta(days=55)

        await h.publish("csr.rejected", {
            "request_id": caa_order.uri.rsplit("/", 1)[1], "member_id": "member-outcome", "profile": "server",
            "reasons": [f"caa: caa.{domain}: issue forbids cacert.example"], "code": "caa",
            "caa": {"names": [{"name": "caa." + domain, "reason": "issue forbids cacert.example"}]},
            "rejected_at": isoformat(datetime.now(UTC))}, "registration")
        refused = await order_status(acme, caa_order.uri, "invalid")
        error = error_of(refused)
        assert error.code == "caa" and "forbid" in str(error.detail)
        assert error.subproblems and error.subproblems[0].identifier is not None
        assert error.subproblems[0].identifier.value == "caa." + domain


ISSUING_PEM = "-----BEGIN CERTIFICATE-----\nISSUING\n-----END CERTIFICATE-----\n"
"""Stands for the Class 3 issuing CA in a chain (the ACME service handles a chain as text)."""


def issued_data(order_uri: str, member_id: str, pem: str, cert: x509.Certificate, names: list[str]) -> dict[str, Any]:
    return {
        "request_id": order_uri.rsplit("/", 1)[1], "member_id": member_id, "serial": format(cert.serial_number, "x"),
        "issuer": "class3-issuing", "cert_class": 3, "profile": "server", "subject": "", "dns_names": names,
        "ip_addresses": [], "emails": [], "not_before": isoformat(cert.not_valid_before_utc),
        "not_after": isoformat(cert.not_valid_after_utc), "fingerprint_sha256": "0" * 64,
        "certificate_pem": pem,
        "chain_pem": ISSUING_PEM + CLASS3_ROOT.public_bytes(serialization.Encoding.PEM).decode(),
        "trust_anchors": ["class1", "class3"], "issued_at": isoformat(datetime.now(UTC))}


async def test_killed_between_finalize_and_issuance_the_order_still_ends_valid_with_one_certificate(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    async with running(kafka_settings, mongo_settings) as h:
        acme, _ = await h.account(await h.binding("member-crash"))
        domain = fresh()
        await verified(h, "member-crash", domain)
        csr_pem, _ = csr_for(domain)
        order = await asyncio.to_thread(acme.new_order, csr_pem)
        await asyncio.to_thread(acme.begin_finalization, order)
        await h.service.stop()  # the ACME service dies; the CA goes on and issues meanwhile
        pem, cert = certificate_for(csr_pem, serial=0xC0FFEE01)
        data = issued_data(order.uri, "member-crash", pem, cert, [domain])
        await h.publish("cert.issued", data, "signer")
        await h.publish("cert.issued", data, "signer")  # a redelivery, as after a signer restart
        await h.service.start()
        done = await order_status(acme, order.uri, "valid")
        assert done.status.name == "valid"
        store = h.service.store
        assert store is not None
        assert await store.certificates.count_documents({"order_id": order.uri.rsplit("/", 1)[1]}) == 1


async def test_revocation_by_the_owner_or_the_certificate_key_goes_to_the_ra_and_ari_then_says_now(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    async with running(kafka_settings, mongo_settings) as h:
        acme, _ = await h.account(await h.binding("member-rev"))
        stranger, _ = await h.account(await h.binding("member-other"))
        domain = fresh()
        await verified(h, "member-rev", domain)
        certs: list[tuple[str, x509.Certificate, Any]] = []
        for serial, name in ((0xABC001, domain), (0xABC002, "two." + domain)):
            csr_pem, cert_key = csr_for(name)
            order = await asyncio.to_thread(acme.new_order, csr_pem)
            await asyncio.to_thread(acme.begin_finalization, order)
            pem, cert = certificate_for(csr_pem, serial=serial)
            await h.publish("cert.issued", issued_data(order.uri, "member-rev", pem, cert, [name]), "signer")
            await order_status(acme, order.uri, "valid")
            certs.append((pem, cert, cert_key))

        with pytest.raises(messages.Error) as not_theirs:
            await asyncio.to_thread(stranger.revoke, certs[0][1], 0)
        assert not_theirs.value.code == "unauthorized"
        with pytest.raises(messages.Error) as hold:
            await asyncio.to_thread(acme.revoke, certs[0][1], 6)  # certificateHold: not for subscribers
        assert hold.value.code == "badRevocationReason"
        await asyncio.to_thread(acme.revoke, certs[0][1], 4)
        with pytest.raises(messages.Error) as twice:
            await asyncio.to_thread(acme.revoke, certs[0][1], 4)
        assert twice.value.code == "alreadyRevoked"

        by_key, _ = await h.client(josepy.JWKEC(key=certs[1][2]))  # no account: signed by the certificate's key
        await asyncio.to_thread(by_key.revoke, certs[1][1], 1)

        asked = await events_on(h, "acme", "acme.revocation_requested.v1", expected=4)
        by_serial = {e.data["serial"]: e.data for e in asked}
        assert by_serial["abc001"]["proof"] == "account" and by_serial["abc001"]["reason"] == "superseded"
        assert by_serial["abc002"]["proof"] == "certificate_key"
        assert by_serial["abc002"]["reason"] == "key_compromise"

        revoked_at = datetime.now(UTC)
        await h.publish("cert.revoked", {"serial": "abc001", "member_id": "member-rev", "request_id": "x",
                                         "issuer": "class1", "reason": "superseded",
                                         "revoked_at": isoformat(revoked_at)}, "signer")
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            renew_at, _ = await asyncio.to_thread(acme.renewal_time, certs[0][0].encode())
            if renew_at is not None and renew_at <= datetime.now(UTC):
                break
            assert asyncio.get_running_loop().time() < deadline, f"ARI still says {renew_at}"
            await asyncio.sleep(0.3)


async def test_orders_beyond_the_hourly_limit_get_rate_limited_with_retry_after(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    async with running(kafka_settings, mongo_settings, orders_per_account_per_hour=2) as h:
        acme, key = await h.account(await h.binding("member-limit"))
        for _ in range(2):
            await asyncio.to_thread(acme.new_order, csr_for(fresh())[0])
        payload = json.dumps({"identifiers": [{"type": "dns", "value": fresh()}]}).encode()
        limited = await raw_post(h, acme.directory["newOrder"], payload, key, kid=account_url(acme))
        assert (limited.status_code, problem_of(limited)) == (429, "rateLimited")
        assert int(limited.headers["Retry-After"]) > 0


async def test_unsupported_and_invalid_identifiers_are_named_in_subproblems(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    async with running(kafka_settings, mongo_settings) as h:
        acme, key = await h.account(await h.binding("member-ids"))
        payload = json.dumps({"identifiers": [{"type": "ip", "value": "192.0.2.1"},
                                              {"type": "dns", "value": "bad_name..example"},
                                              {"type": "dns", "value": fresh()}]}).encode()
        refused = await raw_post(h, acme.directory["newOrder"], payload, key, kid=account_url(acme))
        assert problem_of(refused) == "rejectedIdentifier"
        subs = refused.json()["subproblems"]
        assert {s["identifier"]["value"] for s in subs} == {"192.0.2.1", "bad_name..example"}
        assert {s["type"].rsplit(":", 1)[1] for s in subs} == {"unsupportedIdentifier", "rejectedIdentifier"}


async def test_a_nonce_is_good_once_across_replicas(kafka_settings: KafkaSettings,
                                                    mongo_settings: MongoSettings) -> None:
    """Two replicas behind one public URL share the nonce store: a nonce from one is good at the other,
    once; sent to both at the same moment, exactly one accepts it."""
    from services.acme.service import AcmeService
    from tests.acme.harness import free_port, settings_for

    async with running(kafka_settings, mongo_settings) as h:
        acme, key = await h.account(await h.binding("member-replicas"))
        public = h.service.settings
        twin_port = free_port()
        twin = AcmeService(dataclasses.replace(settings_for(kafka_settings, mongo_settings, twin_port),
                                               public_url=public.public_url, ca_certs_url=public.ca_certs_url))
        await twin.start()
        try:
            new_order = acme.directory["newOrder"]
            at_twin = new_order.replace(f":{public.common.http.port}/", f":{twin_port}/")

            def post(url: str, nonce: str) -> requests.Response:
                signed = acme_jws.JWS.sign(json.dumps({"identifiers": [{"type": "dns", "value": fresh()}]}).encode(),
                                           key, josepy.ES256, josepy.b64.b64decode(nonce), new_order,
                                           account_url(acme))
                return requests.post(url, data=signed.json_dumps(), headers={"Content-Type": "application/jose+json"},
                                     timeout=10)

            nonce = await new_nonce(acme.directory["newNonce"])
            assert (await asyncio.to_thread(post, at_twin, nonce)).status_code == 201
            assert problem_of(await asyncio.to_thread(post, new_order, nonce)) == "badNonce"
            for _ in range(5):
                nonce = await new_nonce(acme.directory["newNonce"])
                both = await asyncio.gather(asyncio.to_thread(post, new_order, nonce),
                                            asyncio.to_thread(post, at_twin, nonce))
                assert sorted(r.status_code for r in both) == [201, 400], [r.text for r in both]
        finally:
            await twin.stop()


async def test_replaces_names_a_certificate_of_the_member_and_is_used_once(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    from services.acme import renewal

    async with running(kafka_settings, mongo_settings) as h:
        acme, key = await h.account(await h.binding("member-ari"))
        domain = fresh()
        await verified(h, "member-ari", domain)

        async def issue(replaces: str | None = None,
                        serial: int = 0) -> tuple[requests.Response, x509.Certificate | None]:
            csr_pem, _ = csr_for(domain)
            payload: dict[str, Any] = {"identifiers": [{"type": "dns", "value": domain}]}
            if replaces:
                payload["replaces"] = replaces
            made = await raw_post(h, acme.directory["newOrder"], json.dumps(payload).encode(), key,
                                  kid=account_url(acme))
            if made.status_code != 201:
                return made, None
            order = messages.OrderResource(body=messages.Order.from_json(made.json()),
                                           uri=made.headers["Location"], csr_pem=csr_pem)
            await asyncio.to_thread(acme.begin_finalization, order)
            pem, cert = certificate_for(csr_pem, serial=serial)
            await h.publish("cert.issued", issued_data(order.uri, "member-ari", pem, cert, [domain]), "signer")
            assert (await order_status(acme, order.uri, "valid")).status.name == "valid"
            return made, cert

        _, first = await issue(serial=0xA1A1)
        assert first is not None
        ari_id = renewal.certificate_id(first)
        assert ari_id is not None
        renewal_order, _ = await issue(ari_id, serial=0xA1A2)
        assert renewal_order.json()["replaces"] == ari_id
        again, _ = await issue(ari_id)
        assert (again.status_code, problem_of(again)) == (409, "conflict")
        unknown, _ = await issue("AAAA.AAAA")
        assert problem_of(unknown) == "malformed"


async def test_contact_updates_authorization_deactivation_and_the_orders_list(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    async with running(kafka_settings, mongo_settings) as h:
        acme, key = await h.account(await h.binding("member-misc"))
        assert acme.net.account is not None
        updated = await asyncio.to_thread(acme.update_registration, acme.net.account.update(
            body=acme.net.account.body.update(contact=("mailto:new@example.org",))))
        assert updated.body.contact == ("mailto:new@example.org",)
        bad = await raw_post(h, account_url(acme), json.dumps({"contact": ["tel:+1555"]}).encode(), key,
                             kid=account_url(acme))
        assert problem_of(bad) == "unsupportedContact"

        order = await asyncio.to_thread(acme.new_order, csr_for(fresh())[0])
        authz = order.authorizations[0]
        gone = await asyncio.to_thread(acme.deactivate_authorization, authz)
        assert gone.body.status.name == "deactivated"
        body = await order_status(acme, order.uri, "invalid")
        assert body.status.name == "invalid" and error_of(body).code == "unauthorized"

        listing = await raw_post(h, account_url(acme) + "/orders", b"", key, kid=account_url(acme))
        assert listing.json()["orders"] == [order.uri]
        other, other_key = await h.account(await h.binding("member-misc-2"))
        foreign = await raw_post(h, account_url(acme) + "/orders", b"", other_key, kid=account_url(other))
        assert problem_of(foreign) == "unauthorized"
        peek = await raw_post(h, order.uri, b"", other_key, kid=account_url(other))
        assert problem_of(peek) == "unauthorized"
