"""JSON bodies built to break the parser, against the running registration service over HTTP.

Found by probing the system as an attacker would: a deeply nested array made `POST /v1/sessions`
answer 500 (RecursionError), and so did an integer of 5,000 digits (ValueError from Python's digit
limit) and, in sign-up, a password holding a lone surrogate (`"\\ud800"`: valid JSON, but not text).
Every JSON endpoint reads its body through `shared.http.read_json`, so each such body must get a 400
with a reason there, on every operation, for a member signed in or not, and the service keeps serving.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from shared.config import KafkaSettings, MongoSettings
from shared.http import MAX_JSON_DEPTH
from tests.registration.harness import Stack, running

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("topics")]

HOSTILE: dict[str, bytes] = {
    # deeper than the interpreter's recursion limit: the parser itself gives up
    "array nested 50,000 deep": b"[" * 50_000 + b"]" * 50_000,
    "object nested 20,000 deep": b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
    # shallow enough to parse, too deep to validate safely
    "object nested past the limit": b'{"email":' + b'{"a":' * MAX_JSON_DEPTH + b"1" + b"}" * (MAX_JSON_DEPTH + 1),
    "an integer of 5,000 digits": b'{"email": "a@example.org", "password": ' + b"9" * 5000 + b"}",
    "an integer of 5,000 digits, nested": b'{"x": [[' + b"1" * 5000 + b"]]}",
    # valid JSON, but no text: hashing the password (UTF-8) failed with a 500
    "a lone surrogate in a string": b'{"name": "N", "date_of_birth": "1990-01-01", "email": "a@example.org", '
                                    b'"password": "\\ud800 and long enough"}',
}


@pytest.fixture
async def stack(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Stack]:
    async with running(kafka_settings, mongo_settings) as s:
        yield s


def _json_operations(spec: dict) -> list[tuple[str, str]]:
    """(method, path with placeholders filled) of every operation that takes a JSON body."""
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {}) if isinstance(operation, dict) else {}
            if "application/json" in content:
                found.append((method.upper(), path.replace("{", "x").replace("}", "")))
    return found


async def test_sessions_and_signup_refuse_hostile_json_with_a_400_and_a_reason(stack: Stack) -> None:
    for path in ("/v1/sessions", "/v1/members"):
        for name, body in HOSTILE.items():
            reply = await stack.api.call("POST", path, data=body, headers={"Content-Type": "application/json"})
            assert reply.status == 400, f"{path} {name}: {reply.status} {reply.body}"
            error = reply.body["error"]
            assert error["code"] == "invalid_json" and error["message"].startswith("request body"), error
    assert (await stack.api.call("GET", "/healthz")).status == 200


async def test_no_json_operation_answers_500_to_hostile_json_signed_in_or_not(stack: Stack) -> None:
    spec = (await stack.api.call("GET", "/openapi.json")).body
    operations = _json_operations(spec)
    assert len(operations) >= 10, operations
    _, token = await stack.member("Jason Nested", "jason@example.org")
    failures = []
    for method, path in operations:
        for who in (None, token):
            for name, body in HOSTILE.items():
                reply = await stack.api.call(method, path, data=body, token=who,
                                             headers={"Content-Type": "application/json"})
                if reply.status >= 500:
                    failures.append(f"{method} {path} ({'member' if who else 'anonymous'}) {name}: "
                                    f"{reply.status} {json.dumps(reply.body)[:200]}")
    assert not failures, "\n".join(failures)
    assert (await stack.api.call("GET", "/healthz")).status == 200
