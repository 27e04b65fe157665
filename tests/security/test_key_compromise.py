"""Key-compromise revocation (issue 19): whoever proves they hold a private key gets every unexpired
certificate with it revoked (keyCompromise, BR 4.9.1.1), and the key is blocked at the RA and at the
signer for all future requests.

Registration and the signer's issuing mode run in-process over the local Kafka and FerretDB; a
member gets real certificates through the API, then an anonymous caller reports the key with a
proof CSR. The signer alone is also fed events directly, as an attacker with produce rights would.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from services.signer.ca.ceremony import bootstrap
from services.signer.ca.urls import CAUrls
from services.signer.revoking import crl_scope_of
from services.signer.service import SignerService
from services.signer.settings import SignerSettings
from shared.approvals import SIGNATURE_FIELD
from shared.config import HttpSettings, KafkaSettings, MongoSettings
from shared.events import CloudEvent, Topics, isoformat, make_event, utcnow
from shared.kafka import EventProducer
from shared.key_compromise import spki_sha256
from shared.settings import CommonSettings
from tests.approval_keys import RA_PUBLIC_PEM, sign
from tests.eventlog import read_topic
from tests.integration.test_registration_certificates import verify_domain
from tests.integration.test_signer_service import PASSPHRASE, approved, make_csr
from tests.registration.csrs import build_csr, compromise_proof
from tests.registration.harness import Stack, running

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("topics")]
PKI_URL = "http://pki.example.net"


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ca")
    bootstrap(directory, PASSPHRASE, "p256", class1_urls=CAUrls.under(PKI_URL, "class1"))
    return directory


@pytest.fixture
async def signer(kafka_settings: KafkaSettings, mongo_settings: MongoSettings, ca_dir: Path
                 ) -> AsyncIterator[SignerService]:
    database = MongoSettings(url=mongo_settings.url, database=f"{mongo_settings.database}_signer")
    common = CommonSettings(kafka=kafka_settings, mongo=database, http=HttpSettings(host="127.0.0.1", port=0),
                            create_topics=False)
    service = SignerService(SignerSettings(common=common, ca_dir=ca_dir, ca_passphrase=PASSPHRASE,
                                           public_base_url=PKI_URL, ra_public_keys=RA_PUBLIC_PEM),
                            mode="issuing", lint=False)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def stack(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Stack]:
    async with running(kafka_settings, mongo_settings) as s:
        yield s


@pytest.fixture
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[EventProducer]:
    producer = EventProducer(kafka_settings, client_id="attacker")
    await producer.start()
    yield producer
    await producer.stop()


async def _status(stack: Stack, token: str, serial: str, wanted: str) -> dict[str, object]:
    for _ in range(300):
        body = (await stack.api.call("GET", f"/v1/certificates/{serial}", token=token)).body
        if body.get("status") == wanted:
            return dict(body)
        await asyncio.sleep(0.1)
    raise AssertionError(f"certificate {serial} never became {wanted}: {body}")


async def test_a_proof_of_possession_revokes_every_certificate_of_the_key_and_blocks_it_at_the_ra(
        stack: Stack, signer: SignerService) -> None:
    member_id, token = await stack.member("Kim Keyholder", "kim@example.org")
    await verify_domain(stack, member_id, token, "example.org")
    stolen = ec.generate_private_key(ec.SECP256R1())
    first = await stack.issued_serial(token, build_csr(dns=["www.example.org"], key=stolen))
    second = await stack.issued_serial(token, build_csr(dns=["shop.example.org"], key=stolen))
    unrelated = await stack.issued_serial(token, build_csr(dns=["mail.example.org"],
                                                              key=ec.generate_private_key(ec.SECP256R1())))

    reported = await stack.api.call("POST", "/v1/key-compromise-reports",
                                    json_body={"proof_csr_pem": compromise_proof(stolen)})
    assert reported.status == 202, reported.body
    assert reported.body["spki_sha256"] == spki_sha256(stolen.public_key())
    for serial in (first, second):
        revoked = await _status(stack, token, serial, "revoked")
        assert revoked["revocation_reason"] == "key_compromise"
    assert (await stack.api.call("GET", f"/v1/certificates/{unrelated}", token=token)).body["status"] == "valid"
    assert signer.store is not None
    now = utcnow()
    scopes = {crl_scope_of(status) for status in await signer.store.statuses_of([first, second, unrelated])}
    listed = {d["_id"] for scope in scopes for d in await signer.store.revoked(scope, now)}
    assert {first, second} <= listed and unrelated not in listed  # on the next CRL

    again = await stack.api.call("POST", "/v1/requests", token=token,
                                 json_body={"csr_pem": build_csr(dns=["www.example.org"], key=stolen),
                                            "profile": "server"})
    assert again.status == 422 and "reported compromised" in again.body["error"]["message"], again.body
    repeated = await stack.api.call("POST", "/v1/key-compromise-reports",
                                    json_body={"proof_csr_pem": compromise_proof(stolen)})
    assert repeated.status == 202 and repeated.body["blocked_at"] == reported.body["blocked_at"]
    announced = await stack.events("cert", "cert.key_compromised")
    assert len({e.id for e in announced}) == 1 and announced[0].data["evidence"] == "proof_of_possession"
    assert SIGNATURE_FIELD in announced[0].data


@pytest.mark.parametrize(("what", "proof", "words"), [
    ("a CSR for a certificate, not a report", lambda key: build_csr(dns=["www.example.org"], key=key),
     "subject must be exactly CN=key compromise"),
    ("the statement with more in the subject",
     lambda key: build_csr(subject=[("CN", "key compromise"), ("O", "Someone")], key=key),
     "subject must be exactly"),
    ("not PEM", lambda key: "key compromise", "not a PEM certificate request"),
])
async def test_what_is_not_a_proof_of_possession_is_refused_and_blocks_nothing(
        stack: Stack, what: str, proof: object, words: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    reply = await stack.api.call("POST", "/v1/key-compromise-reports",
                                 json_body={"proof_csr_pem": proof(key)})  # type: ignore[operator]
    assert reply.status == 422, what
    assert reply.body["error"]["code"] == "proof_refused" and words in reply.body["error"]["message"], what
    assert stack.service.context is not None
    assert await stack.service.context.store.blocked_key(spki_sha256(key.public_key())) is None


async def _cert_events(kafka: KafkaSettings, wanted: int) -> list[CloudEvent]:
    records = await read_topic(kafka.bootstrap, Topics(kafka.topic_prefix).of("cert"), wanted, timeout=30)
    return list({e.id: e for e in (CloudEvent.from_kafka(r.key, r.value, r.headers) for r in records)}.values())


def _compromised(key: ec.EllipticCurvePrivateKey) -> CloudEvent:
    return make_event("cert.key_compromised", {
        "spki_sha256": spki_sha256(key.public_key()), "evidence": "proof_of_possession",
        "requested_by": "key-holder", "reported_at": isoformat(utcnow())}, source="test")


async def test_the_signer_refuses_a_blocked_key_even_from_a_genuine_approval(
        kafka_settings: KafkaSettings, signer: SignerService, producer: EventProducer) -> None:
    """Defence in depth: an approval the RA signed before the key was blocked (or one naming no key,
    from before keys were named) is refused with `compromised_key`, and an approval whose CSR carries
    another key than the one it names is refused as invalid."""
    stolen = ec.generate_private_key(ec.SECP256R1())
    await producer.publish(sign(_compromised(stolen)))
    await asyncio.sleep(0.5)
    csr = make_csr(["late.example.org"], key=stolen)
    named = approved("server", 1, csr, dns=["late.example.org"], subject={"CN": "late.example.org"})
    named = sign(dataclasses.replace(named, data={
        **{k: v for k, v in named.data.items() if k != SIGNATURE_FIELD},
        "spki_sha256": spki_sha256(stolen.public_key())}))
    unnamed = approved("server", 1, csr, dns=["late.example.org"], subject={"CN": "late.example.org"})
    other = ec.generate_private_key(ec.SECP256R1())
    lying = approved("server", 1, csr, dns=["late.example.org"], subject={"CN": "late.example.org"})
    lying = sign(dataclasses.replace(lying, data={
        **{k: v for k, v in lying.data.items() if k != SIGNATURE_FIELD},
        "spki_sha256": spki_sha256(other.public_key())}))
    for event in (named, unnamed, lying):
        await producer.publish(event)
    answers = {e.data["request_id"]: e for e in await _cert_events(kafka_settings, 4)  # + cert.key_compromised
               if e.type.endswith("cert.rejected.v1") or e.type.endswith("cert.issued.v1")}
    assert answers[named.data["request_id"]].data["reason"] == "compromised_key"
    assert answers[unnamed.data["request_id"]].data["reason"] == "compromised_key"
    assert answers[lying.data["request_id"]].data["reason"] == "csr_invalid"
    assert "not the key the approval names" in " ".join(answers[lying.data["request_id"]].data["details"])


async def test_an_unsigned_compromise_report_on_the_topic_blocks_and_revokes_nothing(
        kafka_settings: KafkaSettings, signer: SignerService, producer: EventProducer) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    genuine = approved("server", 1, make_csr(["kept.example.org"], key=key), dns=["kept.example.org"],
                       subject={"CN": "kept.example.org"})
    await producer.publish(genuine)
    (issued,) = [e for e in await _cert_events(kafka_settings, 1) if e.type.endswith("cert.issued.v1")]
    await producer.publish(_compromised(key))  # not signed by the RA
    dead = await read_topic(kafka_settings.bootstrap, Topics(kafka_settings.topic_prefix).dlq("cert"), 1)
    assert len(dead) == 1
    assert signer.store is not None
    assert (await signer.store.status(issued.data["serial"]) or {})["status"] == "issued"
    assert await signer.store.blocked_among({spki_sha256(key.public_key())}) == set()
