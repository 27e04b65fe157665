"""No secret in any log line or event: a whole flow through registration, domain_verify and the signer.

Sign-up, email confirmation, domain verification by mail link, CSR approved, certificate issued,
revocation, with every service in-process writing its JSON logs into one buffer (DEBUG). Then the
logs and every message on every topic of the run's prefix are scanned for: private keys (PEM or the
CSR key's own bytes), the password, session tokens, the email confirmation and domain challenge
tokens, the CA passphrase, the RA signing key and the notifier's sealing key. No topic carries the two
confirmation tokens, not even `mail.commands`: its commands hold them sealed to the notifier's key, and
the test opens them there with that key, so the scan is known to look at the messages that hold them.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.domain_verify.service import DomainVerifyService
from services.signer.ca.ceremony import bootstrap
from services.signer.ca.urls import CAUrls
from services.signer.service import SignerService
from shared.config import KafkaSettings, MongoSettings
from shared.events import CloudEvent, Topics
from shared.logging import configure
from tests.approval_keys import RA_PRIVATE_PEM
from tests.domain_verify.harness import settings_for as domain_verify_settings
from tests.eventlog import read_topic
from tests.integration.test_signer_service import signer_settings
from tests.mail_keys import NOTIFIER_PRIVATE_PEM, link_parts, params_of
from tests.registration.csrs import build_csr
from tests.registration.harness import PASSWORD, running

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("topics")]
CA_PASSPHRASE = b"scan-me-ca-passphrase-7f3a"


async def until(check, what: str, timeout: float = 30):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout}s")


async def test_no_secret_reaches_a_log_line_or_an_event(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, tmp_path: Path) -> None:
    logs = io.StringIO()
    configure("secrets-scan", "DEBUG", stream=logs)
    ca_dir = tmp_path / "ca"
    bootstrap(ca_dir, CA_PASSPHRASE, "p256", class1_urls=CAUrls.under("http://pki.example.net", "class1"))
    signer = SignerService(dataclasses.replace(
        signer_settings(kafka_settings, dataclasses.replace(mongo_settings, database=f"{mongo_settings.database}_s"),
                        ca_dir), ca_passphrase=CA_PASSPHRASE), lint=False)
    verifier = DomainVerifyService(domain_verify_settings(
        kafka_settings, dataclasses.replace(mongo_settings, database=f"{mongo_settings.database}_d")))
    await signer.start()
    await verifier.start()
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    secrets: dict[str, str] = {"password": PASSWORD, "CA passphrase": CA_PASSPHRASE.decode(),
                               "CSR private key bytes": key_pem.splitlines()[1],
                               "RA signing key bytes": RA_PRIVATE_PEM.splitlines()[1],
                               "notifier sealing key bytes": NOTIFIER_PRIVATE_PEM.splitlines()[1]}
    try:
        async with running(kafka_settings, mongo_settings) as stack, aiohttp.ClientSession() as http:
            api = stack.api
            member_id, token = await stack.member("Sam Secret", "sam@example.org")
            secrets["session token"] = token
            secrets["email confirmation token"] = await stack.confirmation_token("sam@example.org")
            added = await api.call("POST", "/v1/domains", token=token,
                                   json_body={"domain": "example.org", "contact": "hostmaster@example.org"})
            assert added.status == 201, added.body

            async def challenge_link() -> str | None:
                mails = await stack.events("mail.commands", "mail.send_requested", expected=2, timeout=2)
                return next((params_of(m)["link"] for m in mails if m.data["template"] == "domain_challenge"),
                            None)

            link = await until(challenge_link, "domain challenge mail")
            _, secrets["domain challenge token"] = link_parts(link)
            async with http.post(f"http://127.0.0.1:{verifier.http_port}/confirm",
                                 data={"token": secrets["domain challenge token"]}) as confirmed:
                assert confirmed.status == 200

            async def domain_verified() -> bool:
                reply = await api.call("GET", f"/v1/domains/{added.body['id']}", token=token)
                return bool(reply.body["status"] == "verified")

            await until(domain_verified, "domain verified")
            request = await api.call("POST", "/v1/requests", token=token, json_body={
                "csr_pem": build_csr(dns=["www.example.org"], key=key), "profile": "server"})
            assert request.status == 202, request.body

            async def certificate() -> str | None:
                listing = (await api.call("GET", "/v1/certificates", token=token)).body["certificates"]
                return str(listing[0]["serial"]) if listing else None

            serial = await until(certificate, "certificate issued")
            revoke = await api.call("POST", f"/v1/certificates/{serial}/revoke", token=token,
                                    json_body={"reason": "key_compromise"})
            assert revoke.status == 202

            async def revoked() -> bool:
                return bool((await api.call("GET", f"/v1/certificates/{serial}", token=token)).body["status"]
                            == "revoked")

            await until(revoked, "certificate revoked")
            await api.call("POST", "/v1/sessions", json_body={"email": "sam@example.org", "password": "wrong" * 4})
            assert member_id
    finally:
        await verifier.stop()
        await signer.stop()
        configure("tests")

    topics = Topics(kafka_settings.topic_prefix)
    carried: dict[str, str] = {}
    for name in topics.all():
        records = await read_topic(kafka_settings.bootstrap, name, expected=10**6, timeout=2)
        carried[name] = "\n".join(
            (r.key or b"").decode("utf-8", "replace") + (r.value or b"").decode("utf-8", "replace")
            + "".join(f"{k}={(v or b'').decode('utf-8', 'replace')}" for k, v in r.headers or ())
            for r in records)
    log_text = logs.getvalue()
    for line in ('"domain verified"', '"certificate issued"', '"certificate revoked"'):
        assert line in log_text, f"the services' logs were not captured ({line} missing)"

    records = await read_topic(kafka_settings.bootstrap, topics.of("mail.commands"), expected=10**6, timeout=2)
    opened = [params_of(CloudEvent.from_kafka(r.key, r.value, r.headers)) for r in records]
    for token_name in ("email confirmation token", "domain challenge token"):
        assert any(secrets[token_name] in str(p) for p in opened), \
            f"the {token_name} must be in a sealed mail command, where the scan must not find it"
    # PEM private keys, whatever their kind, and their base64 bodies
    secrets["private key PEM"] = "PRIVATE KEY-----"
    secrets["CSR private key (base64 DER)"] = base64.b64encode(
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()))[:40].decode()
    leaks = []
    for place, text in [("logs", log_text), *((f"topic {n}", t) for n, t in carried.items())]:
        for what, secret in secrets.items():
            if secret in text:
                leaks.append(f"{what} found in {place}")
    assert not leaks, leaks
