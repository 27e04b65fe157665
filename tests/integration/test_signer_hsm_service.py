"""The issuing signer with both CA keys on a SoftHSM2 token and no CA key file, over real Kafka and FerretDB:
certificates signed in its worker process, a revocation, the CRL it publishes and the OCSP answer, all
checked with the openssl client (the same checks as test_signer_service.py's with file keys)."""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509

from services.signer.ca import hierarchy, hsm
from services.signer.ca.ceremony import bootstrap
from services.signer.ca.hierarchy import CertClass
from services.signer.ca.urls import CAUrls
from services.signer.service import SignerService
from shared.config import KafkaSettings, MongoSettings
from shared.events import isoformat, make_event, utcnow
from shared.kafka import EventProducer
from tests.approval_keys import sign
from tests.integration.test_signer_service import (
    PASSPHRASE,
    approved,
    cert_events,
    make_csr,
    openssl,
    signer_settings,
)

pytestmark = pytest.mark.usefixtures("topics")


@pytest.fixture
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[EventProducer]:
    producer = EventProducer(kafka_settings, client_id="test")
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture(scope="module")
def token_ca(tmp_path_factory: pytest.TempPathFactory, softhsm: Any) -> tuple[Path, str]:
    """A CA directory without the CA key files, and the ``CACERT_CA_HSM_KEYS`` naming their keys on the token."""
    made = tmp_path_factory.mktemp("ca")
    bootstrap(made, PASSPHRASE, "p256", class1_urls=CAUrls.under("http://pki.example.net", "class1"))
    on_token = tmp_path_factory.mktemp("ca-on-token")
    entries = []
    on_file = hierarchy.load_hierarchy(made, PASSPHRASE)
    for n, cls in enumerate(CertClass, start=1):
        reference = softhsm.reference(softhsm.service_token, f"{cls.label}-ca")
        hsm.import_private_key(reference, on_file.cas[cls.label].signing_key, bytes([n]))
        entries.append(f"{cls.label}=pkcs11:token={softhsm.service_token};object={cls.label}-ca")
    for path in made.iterdir():
        if path.name not in {hierarchy.key_path(made, cls).name for cls in CertClass}:
            (on_token / path.name).write_bytes(path.read_bytes())
    return on_token, " ".join(entries)


async def test_a_signer_with_its_ca_keys_on_a_token_issues_revokes_and_publishes_crl_and_ocsp(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, token_ca: tuple[Path, str], softhsm: Any,
        producer: EventProducer, tmp_path: Path) -> None:
    ca_dir, hsm_keys = token_ca
    settings = dataclasses.replace(signer_settings(kafka_settings, mongo_settings, ca_dir),
                                   ca_hsm_keys=hsm_keys, pkcs11_module=softhsm.module, pkcs11_pin=softhsm.pin)
    issuing, status = SignerService(settings), SignerService(settings, mode="status")
    await issuing.start()
    await status.start()
    try:
        requests = [approved("server", 3, make_csr(["token.example.org"]), dns=["token.example.org"],
                             subject={"CN": "token.example.org"}),
                    approved("client", 1, make_csr([], email="ada@example.org"), emails=["ada@example.org"])]
        for request in requests:
            await producer.publish(request)
        issued = {e.data["cert_class"]: e for e in await cert_events(kafka_settings, 2)}
        assert {e.type for e in issued.values()} == {"org.cacert.cert.issued.v1"}
        leaf, class3_leaf = tmp_path / "leaf1.pem", tmp_path / "leaf.pem"
        leaf.write_text(issued[1].data["certificate_pem"])
        class3_leaf.write_text(issued[3].data["certificate_pem"])
        issuer, root = tmp_path / "class3.pem", tmp_path / "class1.pem"
        issuer.write_bytes((ca_dir / "class3.crt.pem").read_bytes())
        root.write_bytes((ca_dir / "class1.crt.pem").read_bytes())
        openssl("verify", "-CAfile", str(root), str(leaf))
        openssl("verify", "-CAfile", str(root), "-untrusted", str(issuer), str(class3_leaf))

        await producer.publish(sign(make_event("cert.revoke_requested", {
            "serial": issued[3].data["serial"], "member_id": "member-1", "reason": "key_compromise",
            "requested_by": "member-1", "requested_at": isoformat(utcnow())}, source="test")))
        events = await cert_events(kafka_settings, 4)
        assert any(e.type == "org.cacert.cert.revoked.v1" for e in events), [e.type for e in events]
        url = f"http://127.0.0.1:{status.http_port}/ocsp/class3"
        answer = await asyncio.to_thread(
            lambda: openssl("ocsp", "-issuer", str(issuer), "-cert", str(class3_leaf), "-url", url,
                            "-CAfile", str(root), "-verify_other", str(issuer)))
        assert "leaf.pem: revoked" in answer.stdout and "Response verify OK" in answer.stdout + answer.stderr

        # The CRL the certificate names (its shard), fetched from the status mode.
        certificate = x509.load_pem_x509_certificate(issued[3].data["certificate_pem"].encode())
        [point] = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        [named] = [name.value for name in point.full_name or []]
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{status.http_port}{urllib.parse.urlsplit(named).path}") as response:
            assert response.status == 200
            (tmp_path / "class3.crl").write_bytes(await response.read())
        both = tmp_path / "both.pem"
        both.write_text(issuer.read_text() + root.read_text())
        crl = openssl("crl", "-inform", "DER", "-in", str(tmp_path / "class3.crl"), "-CAfile", str(both),
                      "-noout", "-text")
        assert "verify OK" in crl.stderr + crl.stdout
        served = x509.load_der_x509_crl((tmp_path / "class3.crl").read_bytes())
        assert served.get_revoked_certificate_by_serial_number(int(issued[3].data["serial"], 16)) is not None
    finally:
        await status.stop()
        await issuing.stop()
    assert not any(ca_dir.glob("class*.key.pem"))  # the keys could only have come from the token
