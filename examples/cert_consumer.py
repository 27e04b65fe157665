"""An example downstream consumer: archive every certificate the CA issues or revokes.

Copy this file to start your own consumer. It shows the four things every
consumer of the CA's events must do:

1. read the CloudEvents attributes from the `ce_*` headers (binary mode);
2. validate the JSON payload against the published schema of its `ce_type`
   (skip types you do not know; ignore fields you do not know);
3. de-duplicate on `ce_id` (delivery is at least once);
4. commit offsets only after acting, so a crash re-delivers instead of skipping.

It writes `<serial>.pem` for each `cert.issued`, checks that the PEM matches
the announced SHA-256 fingerprint, and appends one JSON line per event to
`events.jsonl` (`revoked` lines for `cert.revoked`).

Run: python examples/cert_consumer.py --bootstrap 127.0.0.1:19092 --out ./archive
Needs: aiokafka, jsonschema, cryptography (all in requirements.lock).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import signal
from pathlib import Path
from typing import Any

import jsonschema
from aiokafka import AIOKafkaConsumer
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

SCHEMAS = Path(__file__).resolve().parent.parent / "shared" / "events" / "schemas"
WANTED = ("org.cacert.cert.issued.v1", "org.cacert.cert.revoked.v1")


def load_validators(schema_dir: Path = SCHEMAS) -> dict[str, jsonschema.Draft202012Validator]:
    return {t: jsonschema.Draft202012Validator(json.loads((schema_dir / f"{t}.json").read_text())) for t in WANTED}


class CertificateArchive:
    """The action this example takes: keep every certificate and a journal of what happened."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.journal = directory / "events.jsonl"
        self.seen: set[str] = set()
        if self.journal.exists():  # de-duplication survives restarts
            self.seen = {json.loads(line)["id"] for line in self.journal.read_text().splitlines() if line}

    def record(self, event_id: str, event_type: str, data: dict[str, Any]) -> str:
        if event_id in self.seen:
            return "duplicate"
        if event_type == "org.cacert.cert.issued.v1":
            cert = x509.load_pem_x509_certificate(data["certificate_pem"].encode())
            fingerprint = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
            if fingerprint != data["fingerprint_sha256"]:
                return "fingerprint_mismatch"
            (self.directory / f"{data['serial']}.pem").write_text(data["certificate_pem"] + data["chain_pem"])
            line = {"id": event_id, "issued": data["serial"], "subject": data["subject"], "to": data["not_after"]}
        else:
            line = {"id": event_id, "revoked": data["serial"], "reason": data["reason"]}
        with self.journal.open("a") as journal:
            journal.write(json.dumps(line) + "\n")
        self.seen.add(event_id)
        return "recorded"


def attributes(headers: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in headers or () if k.startswith("ce_")}


async def consume(bootstrap: str, topic: str, group: str, archive: CertificateArchive,
                  stop: asyncio.Event, on_result: Any = None) -> None:
    validators = load_validators()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    ce = attributes(record.headers)
                    validator = validators.get(ce.get("ce_type", ""))
                    if validator is None:
                        continue  # a type we do not act on (or a newer version we do not know yet)
                    data = json.loads(record.value)
                    errors = list(validator.iter_errors(data))
                    if errors:
                        result = f"invalid: {errors[0].message}"
                    else:
                        result = archive.record(ce["ce_id"], ce["ce_type"], data)
                    print(json.dumps({"id": ce.get("ce_id"), "type": ce.get("ce_type"), "result": result}))
                    if on_result:
                        on_result(ce.get("ce_id"), result)
            if batch:
                await consumer.commit()
    finally:
        await consumer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:19092")
    parser.add_argument("--topic", default="cacert.cert")
    parser.add_argument("--group", default="example-cert-archive")
    parser.add_argument("--out", type=Path, default=Path("cert-archive"))
    args = parser.parse_args()

    async def run() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await consume(args.bootstrap, args.topic, args.group, CertificateArchive(args.out), stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
