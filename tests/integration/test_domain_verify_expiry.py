"""Expiry over real Kafka and FerretDB: a link that ran out is refused, and announced failed once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shared.config import KafkaSettings, MongoSettings
from tests.domain_verify.harness import Harness, running
from tests.mail_keys import params_of

pytestmark = pytest.mark.usefixtures("topics")

LIFETIME_SECONDS = 2.0


@pytest.fixture
async def dv(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Harness]:
    async with running(kafka_settings, mongo_settings, challenge_hours=LIFETIME_SECONDS / 3600,
                       sweep_seconds=0.3) as harness:
        yield harness


async def test_an_expired_link_is_refused_and_the_sweep_announces_it_once(dv: Harness) -> None:
    request = await dv.request()
    (mail,) = await dv.mail_commands(1)
    link = params_of(mail)["link"]
    async with dv.review(link) as page:
        assert page.status == 200
    (failed,) = await dv.outcomes(1, timeout=15)
    assert failed.type == "org.cacert.domain.verification_failed.v1"
    assert failed.data == {**failed.data, "request_id": request.data["request_id"], "member_id": "m-1",
                           "domain": "example.org", "reason": "expired"}
    for step in (dv.review, dv.confirm):
        async with step(link) as page:
            assert page.status == 410 and "expired" in await page.text()
    await asyncio.sleep(1.5)  # several more sweeps: still one failure, and no verification
    outcomes = await dv.outcomes(2, timeout=2)
    assert [e.type for e in outcomes] == ["org.cacert.domain.verification_failed.v1"]
    doc = await dv.challenge_doc(request.data["request_id"])
    assert doc is not None and doc["state"] == "expired"
