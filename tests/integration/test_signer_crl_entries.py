"""Which revoked certificates a CRL lists, against a real FerretDB (issue 18 item 6)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from pymongo.asynchronous.database import AsyncDatabase

from services.signer.ca.ceremony import bootstrap
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


@pytest.fixture
def hierarchy(tmp_path: Path) -> Any:
    return bootstrap(tmp_path / "ca", PASSPHRASE, "p256", class1_urls=CAUrls.under("http://pki.example.net", "class1"))


def _status(serial: str, *, not_after: dt.datetime, status: str = "revoked") -> dict[str, Any]:
    return {"_id": serial, "issuer": "class1", "request_id": f"r-{serial}", "member_id": "m-1", "status": status,
            "not_after": not_after, "spki_sha256": "00" * 32, "revoked_at": not_after - dt.timedelta(days=30),
            "revocation_reason": "key_compromise"}


async def test_an_expired_certificate_leaves_the_crl_and_stays_revoked_in_the_store(
        db: AsyncDatabase[dict[str, Any]], hierarchy: Any) -> None:
    store = CertificateStore(db)
    now = utcnow()
    await db.statuses.insert_many([
        _status("0a", not_after=now + dt.timedelta(days=90)),  # revoked, still valid: listed
        _status("0b", not_after=now - dt.timedelta(days=1)),  # revoked, expired yesterday: gone from the CRL
        _status("0c", not_after=now + dt.timedelta(days=90), status="issued"),  # not revoked
    ])
    crls = CRLPublisher(hierarchy, store, validity=dt.timedelta(hours=24), refresh_before=dt.timedelta(hours=1))
    await crls.regenerate("class1")

    current = await store.current_crl("class1")
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
    crls = CRLPublisher(hierarchy, store, validity=dt.timedelta(hours=24), refresh_before=dt.timedelta(hours=1))
    before = await crls.regenerate("class1")
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

    current = await store.current_crl("class1")
    assert current is not None and current["number"] == before + 1  # one rebuild for twenty revocations
    assert {entry.serial_number for entry in x509.load_der_x509_crl(current["der"])} == {int(s, 16) for s in serials}
    announced = await read_topic(kafka_settings.bootstrap, Topics(kafka_settings.topic_prefix).of("cert"),
                                 expected=len(serials))
    assert len(announced) == len(serials)
