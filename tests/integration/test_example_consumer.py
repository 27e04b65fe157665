"""The example downstream consumer (examples/cert_consumer.py) against a real broker."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from shared.config import KafkaSettings
from shared.events import Topics, make_event
from shared.kafka import EventProducer
from tests.eventlog import wait_until

pytestmark = pytest.mark.usefixtures("topics")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cert_consumer.py"


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("cert_consumer", EXAMPLE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def issued_event(serial: str) -> Any:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.org")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(int(serial, 16)).not_valid_before(now).not_valid_after(now + dt.timedelta(days=90))
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(Encoding.DER)
    return make_event("cert.issued", {
        "request_id": f"req-{serial}", "member_id": "m-1", "serial": serial, "issuer": "class1", "cert_class": 1,
        "profile": "server", "subject": "CN=www.example.org", "dns_names": ["www.example.org"],
        "ip_addresses": [], "emails": [], "not_before": now.isoformat().replace("+00:00", "Z"),
        "not_after": (now + dt.timedelta(days=90)).isoformat().replace("+00:00", "Z"),
        "fingerprint_sha256": hashlib.sha256(der).hexdigest(),
        "certificate_pem": cert.public_bytes(Encoding.PEM).decode(),
        "chain_pem": "", "trust_anchors": ["class1"], "issued_at": now.isoformat().replace("+00:00", "Z"),
    }, source="test")


async def test_example_consumer_archives_validates_and_deduplicates(kafka_settings: KafkaSettings,
                                                                    tmp_path: Path) -> None:
    example = load_example()
    first, second = issued_event("1a2b"), issued_event("3c4d")
    producer = EventProducer(kafka_settings, client_id="test")
    await producer.start()
    try:
        await producer.publish_many([first, second, first])  # the third is an at-least-once duplicate
    finally:
        await producer.stop()
    results: list[tuple[str, str]] = []
    stop = asyncio.Event()
    archive = example.CertificateArchive(tmp_path / "archive")
    task = asyncio.create_task(example.consume(
        kafka_settings.bootstrap, Topics(kafka_settings.topic_prefix).of("cert"), "example-test", archive, stop,
        on_result=lambda event_id, result: results.append((event_id, result))))
    try:
        await wait_until(lambda: len(results) == 3, what="three results")
    finally:
        stop.set()
        await task
    assert [r for _, r in results] == ["recorded", "recorded", "duplicate"]
    assert (tmp_path / "archive" / "1a2b.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    journal = [json.loads(line) for line in (tmp_path / "archive" / "events.jsonl").read_text().splitlines()]
    assert [j["issued"] for j in journal] == ["1a2b", "3c4d"]
