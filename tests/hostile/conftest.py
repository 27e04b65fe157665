"""Own consumer groups per test: groups are broker-wide, and sharing `registration`/`signer` with other
suites (or the running system) on the same broker makes their rebalances ours."""

from __future__ import annotations

import pytest

from shared.config import KafkaSettings


@pytest.fixture
def kafka_settings(stack_env: dict[str, str], unique: str) -> KafkaSettings:
    return KafkaSettings(bootstrap=stack_env["CACERT_KAFKA_BOOTSTRAP"], topic_prefix=f"t{unique}.",
                         group_prefix=f"t{unique}.")
