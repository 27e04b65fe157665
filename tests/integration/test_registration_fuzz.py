"""OpenAPI-driven fuzzing (schemathesis) of the real service: no input may cause a 500.

The service runs as its own process (`python -m services.registration`), as
in production; the first admin is created with the documented
`create-admin` command, and its session token authenticates the fuzzer so
the protected operations are exercised too.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pyotp
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from shared.config import KafkaSettings, MongoSettings
from tests.acme_keys import ACME_SEALING_PUBLIC_PEM
from tests.approval_keys import RA_PRIVATE_PEM
from tests.mail_keys import SEALING_PUBLIC_PEM

pytestmark = pytest.mark.usefixtures("topics")
PASSWORD = "fuzzing admin passphrase"
SECOND_FACTOR: list[str] = []  # the admin's TOTP secret, as create-admin printed it
EXAMPLES_PER_OPERATION = 40


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def service_url(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "CACERT_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "CACERT_KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "CACERT_MONGO_URL": mongo_settings.url,
        "CACERT_MONGO_DATABASE": mongo_settings.database,
        "CACERT_HTTP_PORT": str(port),
        "CACERT_KAFKA_CREATE_TOPICS": "false",
        "CACERT_LOG_LEVEL": "WARNING",
        "CACERT_RATE_SIGNUP_PER_CLIENT": "100000",
        "CACERT_RATE_LOGIN_PER_CLIENT": "100000",
        "CACERT_ADMIN_PASSWORD": PASSWORD,
        "CACERT_RA_SIGNING_KEY": RA_PRIVATE_PEM,
        "CACERT_MAIL_SEALING_PUBLIC_KEY": SEALING_PUBLIC_PEM,
        "CACERT_ACME_SEALING_PUBLIC_KEY": ACME_SEALING_PUBLIC_PEM,
    }
    created = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.registration",
            "create-admin",
            "--email",
            "admin@example.org",
            "--name",
            "Fuzz Admin",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    secret = re.search(r"^two-factor secret \(add it to an authenticator app\): (\S+)$", created.stdout, re.M)
    assert secret, created.stdout
    SECOND_FACTOR.append(secret.group(1))
    process = subprocess.Popen(
        [sys.executable, "-m", "services.registration"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "registration did not become ready"
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _login(url: str) -> str:
    request = urllib.request.Request(  # noqa: S310 (a loopback http URL built here)
        url + "/v1/sessions",
        method="POST",
        data=json.dumps({"email": "admin@example.org", "password": PASSWORD,
                         "totp": pyotp.TOTP(SECOND_FACTOR[-1]).now()}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return str(json.loads(response.read())["token"])


def test_no_operation_answers_500(service_url: str) -> None:
    token = _login(service_url)
    schema = schemathesis.openapi.from_url(service_url + "/openapi.json")
    failures: list[str] = []
    statuses: dict[int, int] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid operation fails the test here
        if operation.method.upper() == "DELETE":
            continue  # logging out would end the fuzzer's own session
        operations += 1

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            response = case.call(
                base_url=service_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
                )
            assert response.status_code < 500

        try:
            run()
        except AssertionError:
            pass  # collected above, keep fuzzing the other operations
    assert operations >= 20
    assert sum(statuses.values()) >= operations * 10, statuses
    assert any(200 <= status < 300 for status in statuses), statuses  # the fuzzer got past validation too
    assert not failures, "\n".join(failures[:10])
    with urllib.request.urlopen(service_url + "/healthz", timeout=5) as response:  # noqa: S310
        assert response.status == 200
