"""Fixtures shared by the whole suite.

Integration tests talk to the real local stack (Kafka, FerretDB, SMTP, DNS), which
`devstack.ensure_up()` starts if it is not running. Each test gets its own
topic prefix and database names, so tests never see each other's events.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from services.signer.ca.hsm import PKCS11URI, SOFTHSM2_MODULE, HSMKeyReference
from shared.config import KafkaSettings, MongoSettings


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    """Environment of the running local stack (started on first use).

    Set CACERT_TEST_EXTERNAL_STACK=1 with CACERT_KAFKA_BOOTSTRAP, CACERT_MONGO_URL (and the SMTP and
    CACERT_DNS_* variables) to run the suite against servers you started yourself instead.
    """
    if os.environ.get("CACERT_TEST_EXTERNAL_STACK") == "1":
        yield {k: v for k, v in os.environ.items() if k.startswith("CACERT_")}
        return
    import devstack

    yield devstack.ensure_up()


SOFTHSM_PIN = b"4711"
SOFTHSM_SO_PIN = "0815"


@dataclass(frozen=True)
class SoftHSM:
    """The test session's SoftHSM2 installation: ``SOFTHSM2_CONF`` points at a configuration whose token directory
    is temporary, never a system token. SoftHSM2 reads it, and finds the tokens, once per process (when the
    module is first initialised), so the whole session shares this one and every token is made up front."""

    conf: Path
    module: Path = SOFTHSM2_MODULE
    pin: bytes = SOFTHSM_PIN
    """The user PIN of every token."""
    ca_token: str = "cacert-test"
    """tests/signer's hierarchy (``softhsm_ca_keys``)."""
    test_token: str = "hsm-tests"
    """tests/signer/test_signer_hsm.py's own keys."""
    unopened_token: str = "never-opened"
    """No test logs in to it with the right PIN: PKCS#11 logs in per process and token, so a wrong PIN can only be
    seen on a token this process has not logged in to yet."""
    service_token: str = "signer-service"
    """tests/integration/test_signer_hsm_service.py's signer."""

    def tokens(self) -> tuple[str, ...]:
        return (self.ca_token, self.test_token, self.unopened_token, self.service_token)

    def reference(self, token: str, obj: str, pin: bytes | None = None) -> HSMKeyReference:
        return HSMKeyReference(PKCS11URI(token=token, object=obj), self.module, self.pin if pin is None else pin)

    def environ(self) -> dict[str, str]:
        """The variables a signer process needs to find this installation."""
        return {"SOFTHSM2_CONF": str(self.conf), "CACERT_PKCS11_MODULE": str(self.module)}


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHSM]:
    if shutil.which("softhsm2-util") is None or not SOFTHSM2_MODULE.exists():
        pytest.fail("SoftHSM2 is not installed: `apt-get install softhsm2` (./dev test installs it)")
    directory = tmp_path_factory.mktemp("softhsm")
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    installation = SoftHSM(conf)
    for label in installation.tokens():
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", installation.pin.decode(),
             "--so-pin", SOFTHSM_SO_PIN],
            check=True, capture_output=True, timeout=60,
        )
    yield installation
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def kafka_settings(stack_env: dict[str, str], unique: str) -> AsyncIterator[KafkaSettings]:
    """A topic and consumer-group prefix of the test's own; its topics are deleted afterwards.

    Groups are broker-wide, so they get the prefix too. Deleting the topics keeps a long-lived
    development broker from piling up thousands of them over many test runs.
    """
    from shared.kafka.topics import delete_topics_with_prefix

    settings = KafkaSettings(bootstrap=stack_env["CACERT_KAFKA_BOOTSTRAP"], topic_prefix=f"t{unique}.",
                             group_prefix=f"t{unique}.")
    yield settings
    try:
        await delete_topics_with_prefix(settings, settings.topic_prefix)
    except Exception as exc:  # cleanup must never fail a test
        print(f"could not delete test topics {settings.topic_prefix}*: {exc}")


@pytest.fixture
def mongo_settings(stack_env: dict[str, str], unique: str) -> MongoSettings:
    return MongoSettings(url=stack_env["CACERT_MONGO_URL"], database=f"test_{unique}")


@pytest.fixture
async def topics(kafka_settings: KafkaSettings) -> AsyncIterator[None]:
    from shared.kafka import ensure_topics

    await ensure_topics(kafka_settings, partitions=2)
    yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Integration/e2e tests need the stack; mark them so `-m "not integration"` runs the pure unit tests alone.
    for item in items:
        path = str(item.fspath)
        if os.sep + "integration" + os.sep in path or os.sep + "e2e" + os.sep in path:
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """On a pytest-timeout, add where every unfinished asyncio task was waiting to the report.

    pytest-timeout prints the threads' stacks, which for an async test only show the event loop's
    `select`; the coroutine that never got its answer is in a task's stack, printed here.
    """
    outcome = yield
    if call.excinfo is None or "Timeout" not in str(call.excinfo.value):
        return
    import asyncio
    import gc
    import io

    out = io.StringIO()
    for task in [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]:
        out.write(f"--- {task.get_name()}: {task.get_coro()!r}\n")
        task.print_stack(limit=30, file=out)
    outcome.get_result().sections.append(("unfinished asyncio tasks", out.getvalue()))
