"""Which revoked certificates a CRL lists, against a real FerretDB (issue 18 item 6)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from pymongo.asynchronous.database import AsyncDatabase

from services.signer.ca.ceremony import bootstrap
from services.signer.ca.urls import CAUrls
from services.signer.revoking import CRLPublisher
from services.signer.store import CertificateStore
from shared.config import MongoSettings
from shared.events import utcnow
from shared.mongo import connect

PASSPHRASE = b"crl entries test passphrase"


@pytest.fixture
async def db(mongo_settings: MongoSettings) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client, database = connect(mongo_settings, service="test")
    yield database
    await client.drop_database(database.name)
    await client.close()


def _status(serial: str, *, not_after: dt.datetime, status: str = "revoked") -> dict[str, Any]:
    return {"_id": serial, "issuer": "class1", "request_id": f"r-{serial}", "member_id": "m-1", "status": status,
            "not_after": not_after, "spki_sha256": "00" * 32, "revoked_at": not_after - dt.timedelta(days=30),
            "revocation_reason": "key_compromise"}


async def test_an_expired_certificate_leaves_the_crl_and_stays_revoked_in_the_store(
        db: AsyncDatabase[dict[str, Any]], tmp_path: Path) -> None:
    hierarchy = bootstrap(tmp_path / "ca", PASSPHRASE, "p256", class1_urls=CAUrls.under("http://pki.example.net",
                                                                                         "class1"))
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
