"""Which revoked certificates a CRL lists, against a real FerretDB (issue 18 item 6)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pymongo.asynchronous.database import AsyncDatabase

from services.signer.ca.ceremony import bootstrap, create_hierarchy
from services.signer.ca.crl import CRLScope
from services.signer.ca.urls import CAUrls
from services.signer.revoking import CRLPublisher, Revoker
from services.signer.store import CertificateStore
from shared.approvals import ApprovalVerifier
from shared.config import KafkaSettings
from shared.events import Topics, isoformat, make_event, utcnow
from shared.kafka import Batch, EventProducer
from tests.approval_keys import RA_PUBLIC_PEM, sign
from tests.eventlog import read_topic

PASSPHRASE = b"crl entries test passphrase"
BASE = "http://pki.example.net"
UNSHARDED = CRLScope("class1")


@pytest.fixture
def hierarchy(tmp_path: Path) -> Any:
    return bootstrap(tmp_path / "ca", PASSPHRASE, "p256", class1_urls=CAUrls.under(BASE, "class1"))


def _status(serial: str, *, not_after: dt.datetime, status: str = "revoked",
            crl_shard: int | None = None) -> dict[str, Any]:
    doc = {"_id": serial, "issuer": "class1", "request_id": f"r-{serial}", "member_id": "m-1", "status": status,
           "not_after": not_after, "spki_sha256": "00" * 32, "revoked_at": not_after - dt.timedelta(days=30),
           "revocation_reason": "key_compromise"}
    return doc if crl_shard is None else {**doc, "crl_shard": crl_shard}


async def test_an_expired_certificate_leaves_the_crl_and_stays_revoked_in_the_store(
        db: AsyncDatabase[dict[str, Any]], hierarchy: Any) -> None:
    store = CertificateStore(db)
    now = utcnow()
    await db.statuses.insert_many([
        _status("0a", not_after=now + dt.timedelta(days=90)),  # revoked, still valid: listed
        _status("0b", not_after=now - dt.timedelta(days=1)),  # revoked, expired yesterday: gone from the CRL
        _status("0c", not_after=now + dt.timedelta(days=90), status="issued"),  # not revoked
    ])
    crls = CRLPublisher(hierarchy, store, validity=dt.timedelta(hours=24), refresh_before=dt.timedelta(hours=1),
                        public_base_url=BASE, shards=0)
    await crls.regenerate(UNSHARDED)

    current = await store.current_crl(UNSHARDED)
    assert current is not None
    crl = x509.load_der_x509_crl(current["der"])
    assert {entry.serial_number for entry in crl} == {0x0A}
    expired = await store.status("0b")
    assert expired is not None and expired["status"] == "revoked"  # OCSP still answers revoked


@pytest.mark.usefixtures("topics")
async def test_a_burst_of_revocation_requests_costs_one_crl_rebuild_and_announces_each(
        db: AsyncDatabase[dict[str, Any]], hierarchy: Any, kafka_settings: KafkaSettings) -> None:
    store = CertificateStore(db)
    now = utcnow()
    serials = [f"{n:04x}" for n in range(1, 21)]
    await db.statuses.insert_many(
        [_status(serial, not_after=now + dt.timedelta(days=90), status="issued") for serial in serials])
    crls = CRLPublisher(hierarchy, store, validity=dt.timedelta(hours=24), refresh_before=dt.timedelta(hours=1),
                        public_base_url=BASE, shards=0)
    before = await crls.regenerate(UNSHARDED)
    producer = EventProducer(kafka_settings, client_id="test")
    await producer.start()
    try:
        revoker = Revoker(store, producer, crls, ApprovalVerifier.from_pem(RA_PUBLIC_PEM))
        requests = [sign(make_event("cert.revoke_requested", {
            "serial": serial, "member_id": "m-1", "reason": "superseded", "requested_by": "m-1",
            "requested_at": isoformat(now)}, source="registration")) for serial in serials]
        await revoker.handle_batch(Batch("cert", 0, requests, list(range(len(requests)))))
    finally:
        await producer.stop()

    current = await store.current_crl(UNSHARDED)
    assert current is not None and current["number"] == before + 1  # one rebuild for twenty revocations
    assert {entry.serial_number for entry in x509.load_der_x509_crl(current["der"])} == {int(s, 16) for s in serials}
    announced = await read_topic(kafka_settings.bootstrap, Topics(kafka_settings.topic_prefix).of("cert"),
                                 expected=len(serials))
    assert len(announced) == len(serials)


async def test_each_shard_lists_only_its_certificates_and_names_its_url(
        db: AsyncDatabase[dict[str, Any]], hierarchy: Any) -> None:
    """A shard CRL carries the critical Issuing Distribution Point with its URL (TLS BR 7.2.2.1); the unsharded
    CRL keeps listing the certificates issued before sharding (their CDP is /class1.crl); a revocation rebuilds
    only the CRL of its certificate's scope."""
    store = CertificateStore(db)
    now = utcnow()
    later = now + dt.timedelta(days=90)
    await db.statuses.insert_many([
        _status("0a", not_after=later, crl_shard=0),
        _status("0b", not_after=later, crl_shard=1),
        _status("0c", not_after=later, crl_shard=1),
        _status("0d", not_after=later),  # issued before sharding
        _status("0e", not_after=later, crl_shard=2, status="issued"),
    ])
    crls = CRLPublisher(hierarchy, store, validity=dt.timedelta(hours=24), refresh_before=dt.timedelta(hours=1),
                        public_base_url=BASE, shards=4)
    await crls.refresh_due()
    scopes = await store.crl_scopes("class1")
    assert set(scopes) == {UNSHARDED} | {CRLScope("class1", n) for n in range(4)}

    def published(scope: CRLScope, doc: dict[str, Any]) -> tuple[set[int], str]:
        crl = x509.load_der_x509_crl(doc["der"])
        idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
        assert idp.critical and not idp.value.indirect_crl and idp.value.only_some_reasons is None
        [url] = [name.value for name in idp.value.full_name or []]
        return {entry.serial_number for entry in crl}, url

    stored = {scope: published(scope, (await store.current_crl(scope)) or {}) for scope in scopes}
    assert stored[CRLScope("class1", 0)] == ({0x0A}, f"{BASE}/class1/0.crl")
    assert stored[CRLScope("class1", 1)] == ({0x0B, 0x0C}, f"{BASE}/class1/1.crl")
    assert stored[CRLScope("class1", 2)] == (set(), f"{BASE}/class1/2.crl")
    assert stored[UNSHARDED] == ({0x0D}, f"{BASE}/class1.crl")

    numbers = {scope: doc["number"] for scope, doc in scopes.items()}
    await db.statuses.update_one({"_id": "0e"}, {"$set": {"status": "revoked", "revoked_at": now}})
    await crls.regenerate_all([CRLScope("class1", 2)])
    after = await store.crl_scopes("class1")
    assert after[CRLScope("class1", 2)]["number"] > numbers[CRLScope("class1", 2)]
    assert {scope for scope in after if after[scope]["number"] != numbers[scope]} == {CRLScope("class1", 2)}
    assert published(CRLScope("class1", 2), (await store.current_crl(CRLScope("class1", 2))) or {})[0] == {0x0E}


async def test_a_lowered_shard_count_keeps_publishing_the_shards_certificates_point_at(
        db: AsyncDatabase[dict[str, Any]], hierarchy: Any) -> None:
    store = CertificateStore(db)
    options: dict[str, Any] = {"validity": dt.timedelta(hours=24), "refresh_before": dt.timedelta(hours=25),
                               "public_base_url": BASE}
    await CRLPublisher(hierarchy, store, shards=4, **options).refresh_due()
    await CRLPublisher(hierarchy, store, shards=2, **options).refresh_due()  # refresh_before > validity: all due
    assert set(await store.crl_scopes("class1")) == {UNSHARDED} | {CRLScope("class1", n) for n in range(4)}
    assert set(await CRLPublisher(hierarchy, store, shards=2, **options).scopes("class1")) == (
        {UNSHARDED} | {CRLScope("class1", n) for n in range(4)})


async def test_issuing_cas_have_shards_and_an_offline_root_keeps_its_ceremony_arl(
        db: AsyncDatabase[dict[str, Any]], tmp_path: Path) -> None:
    """With issuing CAs under offline roots (issue 18 item 1), the issuing CAs sign the leaves and publish the
    shards; a root whose key is not here publishes only the ARL its ceremony signed, never a shard."""
    issuing = create_hierarchy(tmp_path / "ca", tmp_path / "roots", PASSPHRASE, "p256", public_base_url=BASE)
    store = CertificateStore(db)
    crls = CRLPublisher(issuing, store, validity=dt.timedelta(hours=24), refresh_before=dt.timedelta(hours=1),
                        public_base_url=BASE, shards=2)
    await crls.refresh_due()
    published = {scope.name for issuer in issuing.cas for scope in await store.crl_scopes(issuer)}
    assert published == {"class1", "class3", "class1-issuing", "class1-issuing/0", "class1-issuing/1",
                         "class3-issuing", "class3-issuing/0", "class3-issuing/1"}
    arl = x509.load_der_x509_crl(((await store.current_crl(CRLScope("class1"))) or {})["der"])
    assert arl.public_bytes(serialization.Encoding.DER) == issuing.arls["class1"]  # the ceremony's, as signed
    shard = x509.load_der_x509_crl(((await store.current_crl(CRLScope("class3-issuing", 1))) or {})["der"])
    idp = shard.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    assert [name.value for name in idp.full_name or []] == [f"{BASE}/class3-issuing/1.crl"]
    key = issuing.cas["class3-issuing"].certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and shard.is_signature_valid(key)
