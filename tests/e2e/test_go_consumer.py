"""The event contract is language-neutral: examples/go-consumer (Go, franz-go, its own JSON Schema
validator) reads the certificate events the real system produced in this run and accepts every one.

The program is built here with `go build` into the stack's cache (~/.cache/cacert-stack/go-consumer,
outside the repo) with GOFLAGS=-mod=readonly, so go.mod and go.sum decide every module version; on
an empty module cache the first build downloads them from the Go module proxy (about a minute). No
`go` on the machine fails the tests with devstack's hint, as FerretDB's build does.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from shared.config import KafkaSettings
from shared.events import make_event
from tests.e2e.support import DemoRun

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "examples" / "go-consumer"
SCHEMAS = ROOT / "shared" / "events" / "schemas"
ISSUED, REVOKED = "org.cacert.cert.issued.v1", "org.cacert.cert.revoked.v1"
# Collection runs before any test, hence before the demo: every record written since is this run's.
# The broker stamps records with the producer's clock, which is this machine's.
SESSION_STARTED = time.time() - 1


@dataclass
class Run:
    returncode: int
    lines: list[dict[str, Any]]
    summary: dict[str, Any]
    stderr: str


@pytest.fixture(scope="module")
def go_consumer() -> Path:
    from devstack import paths, tools

    try:
        go = tools.find("go")
    except tools.ToolMissing as exc:
        pytest.fail(f"examples/go-consumer needs Go 1.26+ (its go.mod says why): {exc}")
    binary = paths.cache_dir() / "go-consumer" / "go-consumer"
    binary.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOFLAGS": "-mod=readonly -buildvcs=false", "GOWORK": "off", "GOTOOLCHAIN": "local"}
    result = subprocess.run([go, "build", "-trimpath", "-o", str(binary), "."], cwd=SOURCE, env=env,
                            capture_output=True, text=True, timeout=900, check=False,
                            stdin=subprocess.DEVNULL)  # fmt: skip
    assert result.returncode == 0, f"go build of {SOURCE} failed:\n{result.stdout}{result.stderr}"
    return binary


def consume(binary: Path, bootstrap: str, *args: str) -> Run:
    """Run the Go consumer to the end of the topic; the prefix and schemas come from flags, not the caller's env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACERT_", "GO_CONSUMER_"))}
    result = subprocess.run(
        [str(binary), "-bootstrap", bootstrap, "-schemas", str(SCHEMAS), "-timeout", "60s", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert lines and "summary" in lines[-1], f"no summary (exit {result.returncode}):\n{result.stdout}{result.stderr}"
    return Run(result.returncode, lines[:-1], lines[-1]["summary"], result.stderr)


def test_go_consumer_validates_this_runs_certificate_events(demo: DemoRun, system: dict[str, str],
                                                           go_consumer: Path) -> None:  # fmt: skip
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(SESSION_STARTED))
    # Two passes in one process: the second re-delivers every event, and de-duplication must drop them all.
    run = consume(go_consumer, system["kafka"], "-prefix", "cacert.", "-since", since, "-passes", "2")
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr}\n{[x for x in run.lines if not x['valid']]}"
    assert run.summary["topic"] == "cacert.cert"
    assert run.summary["invalid"] == 0 and all(line["valid"] for line in run.lines)

    first = [line for line in run.lines if not line.get("duplicate")]
    again = [line for line in run.lines if line.get("duplicate")]
    assert len({line["id"] for line in first}) == len(first), "an event id was acted on twice"
    assert sorted(line["id"] for line in again) == sorted(line["id"] for line in first)
    assert run.summary["duplicates"] == run.summary["valid"] == len(first)

    # The real signer's certificates of this run's demo, each announced once, with its request id.
    issued = {line["serial"]: line for line in first if line["type"] == ISSUED}
    for label, cert in demo.summary["certificates"].items():
        assert cert["serial"] in issued, f"no cert.issued for the demo's {label} certificate {cert['serial']}"
        assert issued[cert["serial"]]["request_id"] == cert["request_id"], label
    revoked = [line["serial"] for line in first if line["type"] == REVOKED]
    assert revoked.count(demo.summary["revoked_serial"]) == 1


async def test_go_consumer_refuses_what_breaks_the_contract(kafka_settings: KafkaSettings, topics: None,
                                                           go_consumer: Path) -> None:  # fmt: skip
    """On a topic of its own: a re-published duplicate is dropped, and each kind of breach is reported."""
    good = make_event("cert.revoked", {
        "serial": "0a1b2c", "member_id": "m1", "request_id": "r1", "issuer": "class1",
        "reason": "superseded", "revoked_at": "2026-12-03T10:00:00Z",
    }, source="signer")  # fmt: skip
    key, value, headers = good.to_kafka()

    def breach(**changed: str) -> list[tuple[str, bytes]]:
        """The good event's headers with `changed` ones replaced, under a new ce_id (a new event, no duplicate)."""
        new = {"ce_id": str(uuid.uuid4())} | {name.replace("content_type", "content-type"): v
                                              for name, v in changed.items()}  # fmt: skip
        return [(n, new[n].encode() if n in new else v) for n, v in headers]

    bad_payload = json.loads(value) | {"serial": "0A1B2C", "revoked_at": "yesterday"}
    records = [
        (value, headers),
        (value, headers),  # re-published: same ce_id
        (value, breach(ce_specversion="0.3")),
        (value, breach(ce_type="org.cacert.cert.renamed.v1")),
        (value, breach(content_type="text/plain")),
        (json.dumps(bad_payload).encode(), breach()),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_settings.bootstrap)
    await producer.start()
    try:
        for record_value, record_headers in records:
            await producer.send_and_wait(f"{kafka_settings.topic_prefix}cert", record_value, key=key,
                                         headers=record_headers)  # fmt: skip
    finally:
        await producer.stop()

    run = consume(go_consumer, kafka_settings.bootstrap, "-prefix", kafka_settings.topic_prefix)
    assert run.returncode == 1, run.stderr
    assert "4 of 6 events broke the contract" in run.stderr
    assert run.summary | {"by_type": None} == {"topic": f"{kafka_settings.topic_prefix}cert", "passes": 1,
                                               "records": 6, "valid": 1, "invalid": 4, "duplicates": 1,
                                               "by_type": None}  # fmt: skip
    results = [(line["valid"], bool(line.get("duplicate")), line.get("error", "")) for line in run.lines]
    assert results[0] == (True, False, "") and results[1] == (True, True, "")
    assert "ce_specversion" in results[2][2]
    assert "unknown ce_type" in results[3][2]
    assert "content-type" in results[4][2]
    assert "/serial" in results[5][2] and "/revoked_at" in results[5][2], results[5][2]
