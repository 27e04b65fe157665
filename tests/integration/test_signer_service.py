"""The signer service over real Kafka and FerretDB, checked with the openssl client."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import subprocess
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp as ocsp_x509
from cryptography.x509.oid import NameOID
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from services.signer.ca.ceremony import bootstrap, create_hierarchy
from services.signer.ca.urls import CAUrls
from services.signer.service import SignerService
from services.signer.settings import SignerSettings
from shared.config import HttpSettings, KafkaSettings, MongoSettings
from shared.events import CloudEvent, Topics, isoformat, make_event, utcnow
from shared.kafka import Batch, EventProducer, TransientError
from shared.mongo import connect
from shared.settings import CommonSettings
from tests.approval_keys import RA_PUBLIC_PEM, sign
from tests.eventlog import read_topic

pytestmark = pytest.mark.usefixtures("topics")
PASSPHRASE = b"correct horse battery staple"


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The layout `init-ca` makes: issuing CAs sign the leaves, the roots' keys are elsewhere (not loaded)."""
    base = tmp_path_factory.mktemp("ca")
    create_hierarchy(base / "ca", base / "roots", PASSPHRASE, "p256", public_base_url="http://pki.example.net")
    return base / "ca"


def signer_settings(kafka: KafkaSettings, mongo: MongoSettings, ca_dir: Path) -> SignerSettings:
    return SignerSettings(
        common=CommonSettings(kafka=kafka, mongo=mongo, http=HttpSettings(port=0), create_topics=False),
        ca_dir=ca_dir, ca_passphrase=PASSPHRASE,
        public_base_url="http://pki.example.net", ra_public_keys=RA_PUBLIC_PEM,
    )


@pytest.fixture
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[EventProducer]:
    producer = EventProducer(kafka_settings, client_id="test")
    await producer.start()
    yield producer
    await producer.stop()


def make_csr(names: list[str], *, key: Any = None, extra_subject: bool = True, email: str | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else (email or "x"))]
    if extra_subject:
        attributes += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Injected Org"),
                       x509.NameAttribute(NameOID.LOCALITY_NAME, "Nowhere")]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def approved(profile: str, cert_class: int, csr_pem: str, *, dns: list[str] | None = None,
             emails: list[str] | None = None, subject: dict[str, str] | None = None,
             request_id: str | None = None, caa_age: timedelta = timedelta(0)) -> CloudEvent:
    data = {
        "request_id": request_id or str(uuid.uuid4()), "member_id": "member-1", "cert_class": cert_class,
        "profile": profile, "csr_pem": csr_pem, "subject": subject if subject is not None else {},
        "dns_names": dns or [], "ip_addresses": [], "emails": emails or [], "validity_days": 90,
        "approved_at": isoformat(utcnow()), "caa_checked_at": isoformat(utcnow() - caa_age),
    }
    return sign(make_event("csr.approved", data, source="test"))


async def cert_events(kafka: KafkaSettings, expected: int) -> list[CloudEvent]:
    records = await read_topic(kafka.bootstrap, Topics(kafka.topic_prefix).of("cert"), expected)
    return [CloudEvent.from_kafka(r.key, r.value, r.headers) for r in records]


def openssl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result


REQUESTS: list[tuple[str, int, dict[str, Any]]] = [
    ("server", 1, {"dns": ["www.example.org", "example.org"], "subject": {"CN": "www.example.org"}}),
    ("server", 3, {"dns": ["shop.example.org"], "subject": {"CN": "shop.example.org"}}),
    ("client", 1, {"emails": ["ada@example.org"], "subject": {}}),
    ("client", 3, {"emails": ["ada@example.org"], "subject": {"CN": "Ada Lovelace", "GN": "Ada", "SN": "Lovelace"}}),
    ("codesign", 3, {"subject": {"CN": "Ada Lovelace"}}),
]


async def test_each_profile_and_class_is_issued_with_a_verifiable_chain(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, ca_dir: Path, producer: EventProducer,
        tmp_path: Path) -> None:
    service = SignerService(signer_settings(kafka_settings, mongo_settings, ca_dir))
    await service.start()
    try:
        sent = []
        for profile, cert_class, spec in REQUESTS:
            csr = make_csr(spec.get("dns", []), email=(spec.get("emails") or [None])[0])
            event = approved(profile, cert_class, csr, dns=spec.get("dns"), emails=spec.get("emails"),
                             subject=spec["subject"])
            sent.append(event)
            await producer.publish(event)
        issued = await cert_events(kafka_settings, len(REQUESTS))
    finally:
        await service.stop()
    assert sorted(e.data["request_id"] for e in issued) == sorted(e.data["request_id"] for e in sent)
    assert all(e.type == "org.cacert.cert.issued.v1" for e in issued)
    root = tmp_path / "class1.pem"
    root.write_bytes((ca_dir / "class1.crt.pem").read_bytes())
    class3 = tmp_path / "class3.pem"
    class3.write_bytes((ca_dir / "class3.crt.pem").read_bytes())
    for event in issued:
        leaf = tmp_path / f"{event.data['serial']}.pem"
        leaf.write_text(event.data["certificate_pem"])
        cert = x509.load_pem_x509_certificate(leaf.read_bytes())
        assert "Injected Org" not in cert.subject.rfc4514_string()
        untrusted = tmp_path / "chain.pem"
        untrusted.write_text(event.data["chain_pem"])
        issuing = x509.load_pem_x509_certificates(event.data["chain_pem"].encode())[0]
        assert cert.issuer == issuing.subject and event.data["issuer"] == f"class{event.data['cert_class']}-issuing"
        openssl("verify", "-CAfile", str(root), "-untrusted", str(untrusted), str(leaf))
        assert openssl("verify", "-CAfile", str(root), str(leaf), check=False).returncode != 0  # needs its chain
        if event.data["cert_class"] == 3:
            openssl("verify", "-partial_chain", "-CAfile", str(class3), "-untrusted", str(untrusted), str(leaf))
            openssl("verify", "-CAfile", str(ca_dir / "class3-root.crt.pem"),  # the self-signed anchor
                    "-untrusted", str(untrusted), str(leaf))
            assert event.data["trust_anchors"] == ["class1", "class3"]
        else:
            assert event.data["chain_pem"] == (ca_dir / "class1-issuing.crt.pem").read_text()
            refused = openssl("verify", "-CAfile", str(ca_dir / "class3-root.crt.pem"), "-untrusted",
                              str(untrusted), str(leaf), check=False)
            assert refused.returncode != 0


async def test_redelivered_request_yields_one_certificate_across_restarts(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, ca_dir: Path, producer: EventProducer) -> None:
    event = approved("server", 1, make_csr(["once.example.org"]), dns=["once.example.org"],
                     subject={"CN": "once.example.org"})
    settings = signer_settings(kafka_settings, mongo_settings, ca_dir)
    for delivery in range(5):
        service = SignerService(settings)
        await service.start()
        try:
            await producer.publish(event)  # the same event (same id, same request id) every time
            answers = await cert_events(kafka_settings, delivery + 1)
        finally:
            await service.stop()
        assert len(answers) >= delivery + 1
    answers = await cert_events(kafka_settings, 5)
    assert len({a.id for a in answers}) == 1 and len({a.data["serial"] for a in answers}) == 1
    client, db = connect(mongo_settings, service="signer")
    try:
        assert await db.outcomes.count_documents({}) == 1
        assert await db.statuses.count_documents({}) == 1
    finally:
        await client.close()


async def test_an_approval_whose_caa_check_is_over_8_hours_old_is_sent_back_and_signed_once_rechecked(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, ca_dir: Path, producer: EventProducer) -> None:
    csr = make_csr(["late.example.org"])
    stale = approved("server", 1, csr, dns=["late.example.org"], subject={"CN": "late.example.org"},
                     caa_age=timedelta(hours=9))
    service = SignerService(signer_settings(kafka_settings, mongo_settings, ca_dir))
    await service.start()
    try:
        await producer.publish(stale)
        (answer,) = await cert_events(kafka_settings, 1)
        assert answer.type == "org.cacert.cert.rejected.v1" and answer.data["reason"] == "caa_stale"
        assert "more than 8 hours" in answer.data["details"][0]
        # Nothing was stored: the RA re-checks CAA and approves the same request again (new event id).
        fresh = approved("server", 1, csr, dns=["late.example.org"], subject={"CN": "late.example.org"},
                         request_id=stale.data["request_id"])
        await producer.publish(fresh)
        answers = await cert_events(kafka_settings, 2)
    finally:
        await service.stop()
    assert [a.type for a in answers] == ["org.cacert.cert.rejected.v1", "org.cacert.cert.issued.v1"]
    assert answers[1].data["request_id"] == stale.data["request_id"]


async def test_overlapping_passes_with_the_same_request_sign_it_once(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, ca_dir: Path) -> None:
    """The runner pipelines fetches, so a duplicate of a request can arrive while a pass is still
    answering it: the later pass must wait, not sign a second certificate."""
    event = approved("server", 1, make_csr(["overlap.example.org"]), dns=["overlap.example.org"],
                     subject={"CN": "overlap.example.org"})
    topic = Topics(kafka_settings.topic_prefix).of("csr")
    service = SignerService(signer_settings(kafka_settings, mongo_settings, ca_dir))
    await service.start()
    try:
        first = asyncio.create_task(service.issuer.handle_batch(Batch(topic, 0, [event], [0])))
        for _ in range(3):  # the first pass starts and is waiting on the database
            await asyncio.sleep(0)
        with pytest.raises(TransientError, match="being answered by this signer"):
            await service.issuer.handle_batch(Batch(topic, 1, [event], [0]))
        await first
        await service.issuer.handle_batch(Batch(topic, 1, [event], [0]))  # the runner's retry
        answers = await cert_events(kafka_settings, 2)
    finally:
        await service.stop()
    assert len(answers) == 2 and len({a.data["serial"] for a in answers}) == 1
    client, db = connect(mongo_settings, service="signer")
    try:
        assert await db.outcomes.count_documents({}) == 1
    finally:
        await client.close()


async def test_bad_csrs_are_rejected_with_reasons_and_next_request_is_issued(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, ca_dir: Path, producer: EventProducer) -> None:
    weak = make_csr(["weak.example.org"], key=rsa.generate_private_key(65537, 1024))
    good_csr = make_csr(["good.example.org"])
    tampered = good_csr.replace(good_csr.splitlines()[3], good_csr.splitlines()[3][::-1])
    bad = {
        "weak": approved("server", 1, weak, dns=["weak.example.org"], subject={"CN": "weak.example.org"}),
        "tampered": approved("server", 1, tampered, dns=["good.example.org"], subject={"CN": "good.example.org"}),
        "garbage": approved("server", 1, "-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----",
                            dns=["good.example.org"], subject={"CN": "good.example.org"}),
    }
    good = approved("server", 1, good_csr, dns=["good.example.org"], subject={"CN": "good.example.org"})

    def answered(outcome: str, reason: str) -> float:
        labels = {"outcome": outcome, "reason": reason}
        return REGISTRY.get_sample_value("cacert_signer_certificates_total", labels) or 0.0

    before = {key: answered(*key) for key in [("issued", ""), ("rejected", "weak_key"), ("rejected", "csr_invalid")]}
    service = SignerService(signer_settings(kafka_settings, mongo_settings, ca_dir))
    await service.start()
    try:
        for event in [*bad.values(), good]:
            await producer.publish(event)
        answers = {e.data["request_id"]: e for e in await cert_events(kafka_settings, 4)}
    finally:
        await service.stop()
    # the operator's alerts count outcomes by reason (deploy/k8s/components/monitoring)
    assert {key: answered(*key) - count for key, count in before.items()} == {
        ("issued", ""): 1, ("rejected", "weak_key"): 1, ("rejected", "csr_invalid"): 2}
    for name, event in bad.items():
        answer = answers[event.data["request_id"]]
        assert answer.type == "org.cacert.cert.rejected.v1", name
        assert answer.data["details"], name
    assert answers[bad["weak"].data["request_id"]].data["reason"] == "weak_key"
    assert answers[good.data["request_id"]].type == "org.cacert.cert.issued.v1"


async def test_revocation_flips_ocsp_and_lands_in_the_crl(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, ca_dir: Path, producer: EventProducer,
        tmp_path: Path) -> None:
    settings = signer_settings(kafka_settings, mongo_settings, ca_dir)
    issuing, status = SignerService(settings), SignerService(settings, mode="status")
    await issuing.start()
    await status.start()
    try:
        request = approved("server", 3, make_csr(["revoke.example.org"]), dns=["revoke.example.org"],
                           subject={"CN": "revoke.example.org"})
        await producer.publish(request)
        (issued,) = await cert_events(kafka_settings, 1)
        leaf, issuer, root = tmp_path / "leaf.pem", tmp_path / "class3-issuing.pem", tmp_path / "class1.pem"
        leaf.write_text(issued.data["certificate_pem"])
        issuer.write_bytes((ca_dir / "class3-issuing.crt.pem").read_bytes())
        root.write_bytes((ca_dir / "class1.crt.pem").read_bytes())
        chain = tmp_path / "chain.pem"
        chain.write_text(issued.data["chain_pem"])
        url = f"http://127.0.0.1:{status.http_port}/ocsp/class3-issuing"

        def ask() -> str:
            result = openssl("ocsp", "-issuer", str(issuer), "-cert", str(leaf), "-url", url,
                             "-CAfile", str(root), "-verify_other", str(chain))
            return result.stdout + result.stderr

        before = await asyncio.to_thread(ask)
        assert "leaf.pem: good" in before and "Response verify OK" in before
        await producer.publish(sign(make_event("cert.revoke_requested", {
            "serial": issued.data["serial"], "member_id": "member-1", "reason": "key_compromise",
            "requested_by": "member-1", "requested_at": isoformat(utcnow())}, source="test")))
        events = await cert_events(kafka_settings, 3)
        assert any(e.type == "org.cacert.cert.revoked.v1" for e in events)
        after = await asyncio.to_thread(ask)
        assert "leaf.pem: revoked" in after and "Reason: keyCompromise" in after

        import aiohttp

        # The CRL the certificate names (its shard, /class3/<n>.crl), fetched from the status mode.
        certificate = x509.load_pem_x509_certificate(issued.data["certificate_pem"].encode())
        [point] = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        [named] = [name.value for name in point.full_name or []]
        path = urllib.parse.urlsplit(named).path
        assert re.fullmatch(r"/class3-issuing/[0-9]+\.crl", path), named
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{status.http_port}{path}") as response:
            assert response.status == 200
            (tmp_path / "class3.crl").write_bytes(await response.read())
        both = tmp_path / "both.pem"
        both.write_text(chain.read_text() + root.read_text())
        crl = openssl("crl", "-inform", "DER", "-in", str(tmp_path / "class3.crl"), "-CAfile", str(both),
                      "-noout", "-text")
        served = x509.load_der_x509_crl((tmp_path / "class3.crl").read_bytes())
        assert served.next_update_utc is not None
        # The CA's metric is its CRL closest to going stale: this one was just rebuilt, the others earlier.
        exported = REGISTRY.get_sample_value("cacert_crl_next_update_seconds", {"issuer": "class3-issuing"})
        assert exported is not None and exported <= served.next_update_utc.timestamp()
        idp = served.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
        assert idp.critical and [n.value for n in idp.value.full_name or []] == [named]
        # The roots' CRLs are the ARLs the ceremony signed (their keys are not here), and a root's responder
        # answers for the issuing CA it signed.
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{status.http_port}/class3.crl") as response:
            assert response.status == 200 and await response.read() == (ca_dir / "arl-class3.der").read_bytes()
        class3 = tmp_path / "class3.pem"
        class3.write_bytes((ca_dir / "class3.crt.pem").read_bytes())
        answer = await asyncio.to_thread(openssl, "ocsp", "-issuer", str(class3), "-cert", str(issuer), "-url",
                         f"http://127.0.0.1:{status.http_port}/ocsp/class3", "-CAfile", str(root),
                         "-verify_other", str(class3))
        assert "class3-issuing.pem: good" in answer.stdout and "Response verify OK" in answer.stderr
        assert "verify OK" in crl.stderr + crl.stdout
        assert issued.data["serial"].upper().lstrip("0") in crl.stdout.replace(":", "").upper()
    finally:
        await status.stop()
        await issuing.stop()


async def test_status_mode_runs_without_the_ca_key_files(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, ca_dir: Path, tmp_path: Path) -> None:
    public = tmp_path / "status-ca"
    public.mkdir()
    # What the signer-status-ca Secret holds (deploy/k8s): no CA key at all.
    for path in ca_dir.iterdir():
        if not path.name.endswith(".key.pem") or path.name.startswith("ocsp-"):
            (public / path.name).write_bytes(path.read_bytes())
    assert not [p for p in public.iterdir() if p.name.endswith(".key.pem") and not p.name.startswith("ocsp-")]
    # ... and no CA passphrase: only the one of the OCSP signers' keys (here the same value).
    settings = dataclasses.replace(signer_settings(kafka_settings, mongo_settings, public), ca_passphrase=b"",
                                   ocsp_signer_passphrase=PASSPHRASE)
    status = SignerService(settings, mode="status")
    await status.start()
    try:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            for name in ("class1", "class3", "class3-root", "class1-issuing", "class3-issuing"):
                async with http.get(f"http://127.0.0.1:{status.http_port}/{name}.crt") as response:
                    assert response.status == 200 and response.content_type == "application/pkix-cert"
                    served = x509.load_der_x509_certificate(await response.read())
                assert served == x509.load_pem_x509_certificate((public / f"{name}.crt.pem").read_bytes())
            async with http.get(f"http://127.0.0.1:{status.http_port}/class1-root.crt") as response:
                assert response.status == 404
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{status.http_port}/metrics") as response:
                metrics = await response.text()
            async with http.get(f"http://127.0.0.1:{status.http_port}/readyz") as response:
                ready = await response.json()
        assert 'cacert_ocsp_signer_renewal_due{issuer="class3"} 0.0' in metrics  # a fresh signer is not due
        assert "cacert_ocsp_signer_not_after_seconds" in metrics
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(metrics) for s in family.samples}
        for label in ("class1", "class3"):
            for kind, name in (("ca", f"{label}.crt.pem"), ("ocsp_signer", f"ocsp-{label}.crt.pem")):
                ends = x509.load_pem_x509_certificate((public / name).read_bytes()).not_valid_after_utc
                assert samples[("cacert_ca_certificate_expiry_seconds", (("ca", label), ("kind", kind)))] == (
                    ends.timestamp())
        assert ready["checks"]["ocsp_signers"] is True
    finally:
        await status.stop()


async def test_status_mode_of_a_ca_directory_without_the_self_signed_class3_root(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, ca_dir: Path, tmp_path: Path) -> None:
    """A CA directory made before `class3-root.crt.pem` existed keeps working; only that URL is missing."""
    old = tmp_path / "old-ca"
    old.mkdir()
    for name in ("class1.crt.pem", "class3.crt.pem", "ocsp-class1.crt.pem", "ocsp-class1.key.pem",
                 "ocsp-class3.crt.pem", "ocsp-class3.key.pem"):
        (old / name).write_bytes((ca_dir / name).read_bytes())
    status = SignerService(signer_settings(kafka_settings, mongo_settings, old), mode="status")
    await status.start()
    try:
        import aiohttp

        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{status.http_port}/class3.crt") as response:
                assert response.status == 200
            async with http.get(f"http://127.0.0.1:{status.http_port}/class3-root.crt") as response:
                assert response.status == 404
    finally:
        await status.stop()


async def test_issuance_and_revocation_are_in_the_verified_audit_chain(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, ca_dir: Path, producer: EventProducer) -> None:
    from shared.audit import AuditLog

    service = SignerService(signer_settings(kafka_settings, mongo_settings, ca_dir))
    await service.start()
    try:
        request = approved("server", 1, make_csr(["audit.example.org"]), dns=["audit.example.org"],
                           subject={"CN": "audit.example.org"})
        await producer.publish(request)
        (issued,) = await cert_events(kafka_settings, 1)
        await producer.publish(request)  # a redelivery adds no second issuance entry
        await producer.publish(sign(make_event("cert.revoke_requested", {
            "serial": issued.data["serial"], "member_id": "member-1", "reason": "superseded",
            "requested_by": "member-1", "requested_at": isoformat(utcnow())}, source="test")))
        for _ in range(100):  # the redelivery and the revocation travel on different topics: wait for both
            events = await cert_events(kafka_settings, 3)
            if sum(e.type == "org.cacert.cert.revoked.v1" for e in events) and len(events) >= 3:
                break
        audit = AuditLog(service.store.db)
        entries = await audit.collection.find({}).sort("_id", 1).to_list()
        assert [(e["action"], e["subject"]) for e in entries] == [
            ("certificate.issued", issued.data["serial"]), ("certificate.revoked", issued.data["serial"])]
        assert (await audit.verify()).ok
    finally:
        await service.stop()


async def test_the_issuing_signer_renews_an_ocsp_signer_and_the_running_status_mode_answers_with_it(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, producer: EventProducer,
        tmp_path: Path) -> None:
    """Issue 18 item 5: a signer 10 days from its end (inside the 45-day window) is re-issued by the issuing
    mode at its start; the status mode, started before and never restarted, answers with the new one."""
    import aiohttp

    from services.signer.ca.ceremony import Lifetimes
    from services.signer.ca.keys import KeyDecryptionFailed, decrypt_private_key

    short = tmp_path / "short-ca"
    bootstrap(short, PASSPHRASE, "p256", class1_urls=CAUrls.under("http://pki.example.net", "class1"),
              lifetimes=Lifetimes(ocsp_signer_days=10))
    old = x509.load_pem_x509_certificate((short / "ocsp-class3.crt.pem").read_bytes())
    settings = dataclasses.replace(signer_settings(kafka_settings, mongo_settings, short),
                                   ocsp_signer_check_seconds=0.2, ocsp_signer_passphrase=b"only the OCSP keys")
    status = SignerService(settings, mode="status")
    await status.start()
    base = f"http://127.0.0.1:{status.http_port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/readyz") as response:
                assert response.status == 200  # due, not renewed: a warning, never unready
            async with http.get(f"{base}/metrics") as response:
                assert 'cacert_ocsp_signer_renewal_due{issuer="class3"} 1.0' in await response.text()

        issuing = SignerService(settings)
        await issuing.start()
        try:
            await producer.publish(approved("server", 3, make_csr(["renewed.example.org"]),
                                            dns=["renewed.example.org"], subject={"CN": "renewed.example.org"}))
            (issued,) = await cert_events(kafka_settings, 1)
        finally:
            await issuing.stop()  # the status mode needs nothing more from it

        leaf, issuer, root = tmp_path / "leaf.pem", tmp_path / "class3.pem", tmp_path / "class1.pem"
        leaf.write_text(issued.data["certificate_pem"])
        issuer.write_bytes((short / "class3.crt.pem").read_bytes())
        root.write_bytes((short / "class1.crt.pem").read_bytes())

        def ask() -> tuple[str, x509.Certificate]:
            result = openssl("ocsp", "-issuer", str(issuer), "-cert", str(leaf), "-url", f"{base}/ocsp/class3",
                             "-CAfile", str(root), "-verify_other", str(issuer),
                             "-respout", str(tmp_path / "resp.der"))
            answer = ocsp_x509.load_der_ocsp_response((tmp_path / "resp.der").read_bytes())
            return result.stdout + result.stderr, answer.certificates[0]

        deadline = asyncio.get_running_loop().time() + 10
        while True:
            out, responder = await asyncio.to_thread(ask)
            if responder != old or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        assert responder != old, "the status mode still answers with the old signer"
        assert "leaf.pem: good" in out and "Response verify OK" in out
        assert responder.issuer == old.issuer and responder.subject == old.subject
        assert responder.not_valid_after_utc - responder.not_valid_before_utc == timedelta(days=90, seconds=-1)
        assert responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
        assert not (short / ".ocsp-class3.crt.pem.new").exists()  # nothing was written into the CA directory
        assert x509.load_pem_x509_certificate((short / "ocsp-class3.crt.pem").read_bytes()) == old

        client, db = connect(mongo_settings, service="test")
        try:
            stored = await db.ocsp_signers.find({}).to_list()
        finally:
            await client.close()
        assert sorted(d["issuer"] for d in stored) == ["class1", "class3"]
        (doc,) = [d for d in stored if d["issuer"] == "class3"]
        assert doc["_id"] == f"class3:after:{old.serial_number:x}"
        decrypt_private_key(doc["key_pem"], b"only the OCSP keys")
        with pytest.raises(KeyDecryptionFailed):
            decrypt_private_key(doc["key_pem"], PASSPHRASE)  # under the OCSP signer passphrase only

        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/metrics") as response:
                metrics = await response.text()
        assert 'cacert_ocsp_signer_renewal_due{issuer="class3"} 0.0' in metrics
        assert REGISTRY.get_sample_value("cacert_ca_certificate_expiry_seconds",
                                         {"ca": "class3", "kind": "ocsp_signer"}) == (
            responder.not_valid_after_utc.timestamp())
    finally:
        await status.stop()
