import io
import json

from shared.logging import bound, configure, get_logger


def _lines(stream: io.StringIO) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_log_lines_are_json_with_service_and_bound_ids() -> None:
    stream = io.StringIO()
    configure("signer", stream=stream)
    with bound(event_id="e-1", request_id="r-1"):
        get_logger().info("issued", serial="ab")
    get_logger().info("after")
    first, second = _lines(stream)
    assert first["service"] == "signer" and first["event_id"] == "e-1" and first["request_id"] == "r-1"
    assert first["event"] == "issued" and first["level"] == "info" and "timestamp" in first
    assert "event_id" not in second


def test_secrets_and_private_keys_are_redacted() -> None:
    stream = io.StringIO()
    configure("registration", stream=stream)
    pem = "-----BEGIN PRIVATE KEY-----\nMIIBVwIBADANBg\n-----END PRIVATE KEY-----"
    get_logger().info("oops", password="hunter2", token="abc", note=f"key was {pem}", token_hash="h")
    (line,) = _lines(stream)
    text = json.dumps(line)
    assert "hunter2" not in text and "MIIBVwIBADANBg" not in text and '"abc"' not in text
    assert line["token_hash"] == "h"
