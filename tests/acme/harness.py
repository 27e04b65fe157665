"""Runs the ACME service in-process against the real stack (Kafka, FerretDB) for integration tests.

The rest of the CA is played by the test: it publishes the bindings registration would publish, the
verifications domain_verify would announce and the certificates the signer would issue, and reads what
the ACME service asks of them from Kafka. Clients are the `acme` library's (the one certbot uses).
The service listens on a free loopback port under the path `/acme`, as behind an ingress path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import josepy
from acme import client as acme_client
from acme import messages
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.acme.service import AcmeService
from services.acme.settings import AcmeSettings
from shared.acme_binding import BindingOpener, encode_hmac_key, new_hmac_key, new_key_id
from shared.config import HttpSettings, KafkaSettings, MongoSettings
from shared.events import CloudEvent, Topics, isoformat, make_event
from shared.kafka import EventProducer
from shared.settings import CommonSettings

OPENER = BindingOpener.generate()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class Binding:
    key_id: str
    hmac_key: str
    member_id: str


@dataclasses.dataclass
class Harness:
    service: AcmeService
    kafka: KafkaSettings
    producer: EventProducer
    directory_url: str

    @property
    def topics(self) -> Topics:
        return Topics(self.kafka.topic_prefix)

    async def binding(self, member_id: str, cert_class: int = 1) -> Binding:
        """What registration publishes when a member creates an ACME binding."""
        key_id, raw = new_key_id(), new_hmac_key()
        await self.producer.publish(make_event("acme.binding_created", {
            "key_id": key_id, "member_id": member_id, "cert_class": cert_class,
            "hmac_key": OPENER.sealer().seal(key_id, member_id, raw), "created_at": isoformat(datetime.now(UTC))},
            source="registration"))
        assert self.service.store is not None
        for _ in range(100):
            if await self.service.store.binding(key_id) is not None:
                break
            await asyncio.sleep(0.1)
        return Binding(key_id, encode_hmac_key(raw), member_id)

    async def publish(self, name: str, data: dict[str, Any], source: str = "test") -> CloudEvent:
        event = make_event(name, data, source=source)
        await self.producer.publish(event)
        return event

    async def client(self, key: josepy.JWK | None = None) -> tuple[acme_client.ClientV2, josepy.JWK]:
        """A client of the `acme` library (blocking: call its methods with asyncio.to_thread, since the
        service answers on this very event loop)."""
        key = key or josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        net = acme_client.ClientNetwork(key, user_agent="cacert-tests", alg=josepy.ES256)
        response = await asyncio.to_thread(net.get, self.directory_url)
        return acme_client.ClientV2(messages.Directory.from_json(response.json()), net), key

    async def account(self, binding: Binding, key: josepy.JWK | None = None) -> tuple[acme_client.ClientV2, josepy.JWK]:
        acme, key = await self.client(key)
        eab = messages.ExternalAccountBinding.from_data(account_public_key=key.public_key(), kid=binding.key_id,
                                                        hmac_key=binding.hmac_key, directory=acme.directory)
        registration = messages.NewRegistration.from_data(email="ops@example.org", terms_of_service_agreed=True,
                                                          external_account_binding=eab)
        await asyncio.to_thread(acme.new_account, registration)
        return acme, key


def csr_for(*names: str) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM), key


def certificate_for(csr_pem: bytes, *, serial: int, days: int = 90,
                    issuer_key: ec.EllipticCurvePrivateKey | None = None) -> tuple[str, x509.Certificate]:
    """A certificate as the signer would issue it for `csr_pem` (signed by a throwaway issuer)."""
    csr = x509.load_pem_x509_csr(csr_pem)
    issuer_key = issuer_key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Issuing CA")]))
        .public_key(csr.public_key()).serial_number(serial)
        .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(days=days))
        .add_extension(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode(), cert


def self_signed(common_name: str) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650)).sign(key, hashes.SHA256()))


CLASS1_ROOT = self_signed("Test Class 1 Root")
CLASS3_ROOT = self_signed("Test Class 3 Root")


@contextlib.asynccontextmanager
async def ca_certificates_endpoint() -> AsyncIterator[str]:
    """What the signer's status endpoint serves of the CA certificates (DER), on a free loopback port."""
    files = {"class1": CLASS1_ROOT, "class3": CLASS3_ROOT, "class3-root": CLASS3_ROOT}

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=files[request.match_info["label"]].public_bytes(serialization.Encoding.DER),
                            content_type="application/pkix-cert")

    app = web.Application()
    app.router.add_get("/{label:class1|class3|class3-root}.crt", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def settings_for(kafka: KafkaSettings, mongo: MongoSettings, port: int, **overrides: Any) -> AcmeSettings:
    return AcmeSettings(
        common=CommonSettings(kafka=kafka, mongo=mongo, http=HttpSettings(host="127.0.0.1", port=port)),
        public_url=f"http://127.0.0.1:{port}/acme", sealing_key=OPENER.private_pem(), **overrides)


@contextlib.asynccontextmanager
async def running(kafka: KafkaSettings, mongo: MongoSettings, **overrides: Any) -> AsyncIterator[Harness]:
    port = free_port()
    async with ca_certificates_endpoint() as ca_url:
        settings = settings_for(kafka, mongo, port, ca_certs_url=ca_url, **overrides)
        service = AcmeService(settings)
        producer = EventProducer(kafka, client_id="acme-tests")
        await service.start()
        await producer.start()
        try:
            yield Harness(service, kafka, producer, settings.url("/directory"))
        finally:
            await producer.stop()
            await service.stop()
