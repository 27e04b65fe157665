"""A root rollover on a running signer (issue 18 item 4), over real Kafka and FerretDB: a G1 certificate is
issued, the G2 generation is added (`new-generation`) and the signers restarted; the next certificate is
signed by the G2 issuing CA, `cert.issued` names a chain to each anchor and every one verifies, and the G1
certificate is still revoked through its own OCSP responder and CRL shard."""

from __future__ import annotations

import asyncio
import urllib.parse
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from services.signer.ca.ceremony import create_generation, create_hierarchy
from services.signer.service import SignerService
from shared.events import isoformat, make_event, utcnow
from shared.kafka import EventProducer
from shared.settings import KafkaSettings, MongoSettings
from tests.approval_keys import sign
from tests.integration.test_signer_service import (
    PASSPHRASE,
    approved,
    cert_events,
    make_csr,
    openssl,
    producer,
    signer_settings,
)

pytestmark = pytest.mark.usefixtures("topics")
__all__ = ["producer"]  # the fixture, shared with the signer's service tests
BASE = "http://pki.example.net"


async def _get(port: int, path: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.read()


async def test_after_a_rollover_g2_signs_with_chains_to_both_generations_and_g1_keeps_its_revocation(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, producer: EventProducer,
        tmp_path: Path) -> None:
    base = tmp_path / "pki"
    create_hierarchy(base / "ca", base / "roots", PASSPHRASE, "p256", public_base_url=BASE)
    settings = signer_settings(kafka_settings, mongo_settings, base / "ca")

    issuing = SignerService(settings)
    await issuing.start()
    try:
        await producer.publish(approved("server", 3, make_csr(["old.example.org"]), dns=["old.example.org"],
                                        subject={"CN": "old.example.org"}))
        (old,) = await cert_events(kafka_settings, 1)
    finally:
        await issuing.stop()
    assert old.data["issuer"] == "class3-issuing"

    _, refused = await asyncio.to_thread(create_generation, base / "ca", base / "roots", PASSPHRASE,
                                         public_base_url=BASE)
    assert refused == {}
    issuing, status = SignerService(settings), SignerService(settings, mode="status")
    await issuing.start()
    await status.start()
    try:
        await producer.publish(approved("server", 3, make_csr(["new.example.org"]), dns=["new.example.org"],
                                        subject={"CN": "new.example.org"}))
        new = (await cert_events(kafka_settings, 2))[1]
        assert new.data["issuer"] == "class3-issuing-g2"
        assert new.data["trust_anchors"] == ["class1", "class3", "class1-g2", "class3-g2"]
        leaf = tmp_path / "new.pem"
        leaf.write_text(new.data["certificate_pem"])
        for chain in new.data["chains"]:  # the default to G1 Class 1 through the cross-certificate, then the rest
            (tmp_path / "anchor.pem").write_text(chain["anchor_pem"])
            (tmp_path / "chain.pem").write_text(chain["chain_pem"])
            openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", str(tmp_path / "anchor.pem"),
                    "-untrusted", str(tmp_path / "chain.pem"), str(leaf))

        port = status.http_port
        assert port is not None
        ca_dir = base / "ca"
        for name in ("class1-g2", "class3-g2", "class3-issuing-g2", "class3-root-g2", "cross-class3-issuing-g2"):
            code, body = await _get(port, f"/{name}.crt")
            assert code == 200, name
            served = x509.load_der_x509_certificate(body)
            assert served == x509.load_pem_x509_certificate((ca_dir / f"{name}.crt.pem").read_bytes())
        code, body = await _get(port, "/class1-g2.crl")  # a G2 root's CRL: the ARL its ceremony signed
        assert code == 200 and body == (ca_dir / "arl-class1-g2.der").read_bytes()

        # OCSP for the G2 leaf, from the G2 issuing CA's responder, verified up to the G1 Class 1 root.
        default = new.data["chains"][0]
        (tmp_path / "g1-root.pem").write_text(default["anchor_pem"])
        (tmp_path / "issuer.pem").write_bytes((ca_dir / "class3-issuing-g2.crt.pem").read_bytes())
        (tmp_path / "default-chain.pem").write_text(default["chain_pem"])
        answer = await asyncio.to_thread(
            openssl, "ocsp", "-issuer", str(tmp_path / "issuer.pem"), "-cert", str(leaf), "-url",
            f"http://127.0.0.1:{port}/ocsp/class3-issuing-g2", "-CAfile", str(tmp_path / "g1-root.pem"),
            "-verify_other", str(tmp_path / "default-chain.pem"))
        assert "new.pem: good" in answer.stdout and "Response verify OK" in answer.stderr

        # The G1 certificate is revoked after the rollover: its issuing CA's responder and CRL shard say so.
        await producer.publish(sign(make_event("cert.revoke_requested", {
            "serial": old.data["serial"], "member_id": "member-1", "reason": "key_compromise",
            "requested_by": "member-1", "requested_at": isoformat(utcnow())}, source="test")))
        events = await cert_events(kafka_settings, 4)  # the request is on the topic too
        [revoked] = [e for e in events if e.type == "org.cacert.cert.revoked.v1"]
        assert revoked.data["issuer"] == "class3-issuing"
        (tmp_path / "old.pem").write_text(old.data["certificate_pem"])
        (tmp_path / "old-issuer.pem").write_bytes((ca_dir / "class3-issuing.crt.pem").read_bytes())
        (tmp_path / "old-chain.pem").write_text(old.data["chain_pem"])
        answer = await asyncio.to_thread(
            openssl, "ocsp", "-issuer", str(tmp_path / "old-issuer.pem"), "-cert", str(tmp_path / "old.pem"),
            "-url", f"http://127.0.0.1:{port}/ocsp/class3-issuing", "-CAfile", str(tmp_path / "g1-root.pem"),
            "-verify_other", str(tmp_path / "old-chain.pem"))
        assert "old.pem: revoked" in answer.stdout and "Response verify OK" in answer.stderr
        certificate = x509.load_pem_x509_certificate(old.data["certificate_pem"].encode())
        [point] = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        [named] = [name.value for name in point.full_name or []]
        for _ in range(50):  # the shard is rebuilt right after the revocation is stored
            code, body = await _get(port, urllib.parse.urlsplit(named).path)
            crl = x509.load_der_x509_crl(body) if code == 200 else None
            if crl is not None and crl.get_revoked_certificate_by_serial_number(certificate.serial_number):
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"the G1 certificate never reached its CRL shard {named}")
        g1_issuing = x509.load_pem_x509_certificate((ca_dir / "class3-issuing.crt.pem").read_bytes())
        assert crl.is_signature_valid(g1_issuing.public_key())  # type: ignore[arg-type]
    finally:
        await status.stop()
        await issuing.stop()
