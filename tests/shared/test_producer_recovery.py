"""The producer replaces its client when the broker lost the idempotent producer's state."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import OutOfOrderSequenceNumber

from shared.config import KafkaSettings
from shared.events import make_event
from shared.kafka import EventProducer


class FakeClient:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.sent: list[str] = []
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes, key: bytes, headers: Any) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail:
            future.set_exception(OutOfOrderSequenceNumber())
        else:
            self.sent.append(topic)
            future.set_result(None)
        return future


def event() -> Any:
    return make_event("member.registered", {"member_id": "m", "name": "A", "email": "a@example.org",
                                            "registered_at": "2026-01-01T00:00:00Z"}, source="test")


async def test_lost_producer_state_replaces_the_client_and_resends(monkeypatch: pytest.MonkeyPatch) -> None:
    clients = [FakeClient(fail=True), FakeClient(fail=False)]
    monkeypatch.setattr(EventProducer, "_new_client", lambda self: clients.pop(0))
    producer = EventProducer(KafkaSettings(bootstrap="unused:1"), client_id="t")
    broken = producer._producer
    await producer.start()
    await producer.publish(event())
    assert broken.stopped and producer._producer is not broken
    assert producer._producer.sent == ["cacert.member"]


async def test_a_second_failure_is_raised_not_looped(monkeypatch: pytest.MonkeyPatch) -> None:
    clients = [FakeClient(fail=True), FakeClient(fail=True)]
    monkeypatch.setattr(EventProducer, "_new_client", lambda self: clients.pop(0))
    producer = EventProducer(KafkaSettings(bootstrap="unused:1"), client_id="t")
    await producer.start()
    with pytest.raises(OutOfOrderSequenceNumber):
        await producer.publish(event())
