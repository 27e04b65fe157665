"""Acceptance: an Assured member who asks for Class 1 gets a certificate from the Class 1 root.

Registration (with the portal) and the signer's issuing service run in-process against the local
Kafka and FerretDB; domain_verify's answer is simulated by its `domain.verified` event. The issued
certificate is checked with openssl against the signer's own Class 1 root file.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pymongo import AsyncMongoClient

from services.signer.ca.ceremony import bootstrap
from services.signer.ca.urls import CAUrls
from services.signer.service import SignerService
from services.signer.settings import SignerSettings
from shared.config import HttpSettings, KafkaSettings, MongoSettings
from shared.settings import CommonSettings
from tests.approval_keys import RA_PUBLIC_PEM
from tests.integration.test_registration_web_portal import Browser, _verified_domain, assured_member
from tests.registration.csrs import build_csr
from tests.registration.harness import Stack, running

pytestmark = pytest.mark.usefixtures("topics")
PASSPHRASE = b"class choice test passphrase"
PKI_URL = "http://pki.example.net"


@pytest.fixture
async def signer(kafka_settings: KafkaSettings, mongo_settings: MongoSettings, tmp_path: Path
                 ) -> AsyncIterator[Path]:
    """The signer issuing on the test's topics; yields its CA directory."""
    ca_dir = tmp_path / "ca"
    bootstrap(ca_dir, PASSPHRASE, "p256", class1_urls=CAUrls.under(PKI_URL, "class1"))
    database = MongoSettings(url=mongo_settings.url, database=f"{mongo_settings.database}_signer")
    common = CommonSettings(kafka=kafka_settings, mongo=database, http=HttpSettings(host="127.0.0.1", port=0),
                            create_topics=False)
    service = SignerService(SignerSettings(common=common, ca_dir=ca_dir, ca_passphrase=PASSPHRASE,
                                           public_base_url=PKI_URL, ra_public_keys=RA_PUBLIC_PEM),
                            mode="issuing")
    await service.start()
    try:
        yield ca_dir
    finally:
        await service.stop()
        cleaner: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_settings.url)
        await cleaner.drop_database(database.database)
        await cleaner.close()


async def _issued(stack: Stack, token: str, request_id: str) -> x509.Certificate:
    await stack.answer_caa(request_id)  # the test plays domain_verify's CAA check
    for _ in range(300):
        found = (await stack.api.call("GET", f"/v1/requests/{request_id}", token=token)).body
        if found.get("status") == "issued" and found.get("serial"):
            pem = await stack.api.call("GET", f"/v1/certificates/{found['serial']}/download?format=pem", token=token)
            assert pem.status == 200
            return x509.load_pem_x509_certificates(pem.raw)[0]
        assert found.get("status") in ("caa_pending", "approved", "pending"), found
        await asyncio.sleep(0.1)
    raise AssertionError(f"request {request_id} was not issued")


async def _submit(stack: Stack, browser: Browser, token: str, csr: str, cert_class: str | None) -> str:
    form = {"csrf": await browser.csrf("/account/server-certs/new"), "profile": "server", "csr_pem": csr}
    if cert_class:
        form["cert_class"] = cert_class
    status, _, headers = await browser.post("/account/server-certs/submit", form)
    assert status == 303 and headers["Location"].startswith("/account/requests/"), status
    return str(headers["Location"].rsplit("/", 1)[1])


async def test_an_assured_member_who_asks_for_class_1_gets_a_certificate_from_the_class_1_root(
    kafka_settings: KafkaSettings, mongo_settings: MongoSettings, signer: Path, tmp_path: Path
) -> None:
    class1 = x509.load_pem_x509_certificate((signer / "class1.crt.pem").read_bytes())
    class3 = x509.load_pem_x509_certificate((signer / "class3.crt.pem").read_bytes())
    async with running(kafka_settings, mongo_settings) as stack:
        browser = Browser(stack.api.base)
        try:
            member_id, token = await assured_member(stack, "Ada Assured", "ada@example.org")
            await _verified_domain(stack, member_id, token, "ada.example.org")
            await browser.login("ada@example.org")
            csr = build_csr(subject=[("CN", "www.ada.example.org")], dns=["www.ada.example.org"])
            chosen = await _issued(stack, token, await _submit(stack, browser, token, csr, "1"))
            default = await _issued(stack, token, await _submit(stack, browser, token, csr, None))
        finally:
            await browser.close()

    assert chosen.issuer == class1.subject, chosen.issuer.rfc4514_string()
    assert default.issuer == class3.subject, "without a choice an Assured member gets Class 3"
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(chosen.public_bytes(Encoding.PEM))
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(signer / "class1.crt.pem"), str(leaf)],
                              capture_output=True, text=True)
    assert verified.returncode == 0 and verified.stdout.strip().endswith(": OK"), verified.stdout + verified.stderr
