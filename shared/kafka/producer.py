"""An idempotent, acks=all event producer.

`publish` returns only once the broker has the event durably (all in-sync
replicas), so callers may mark an outbox entry as sent or commit an offset
right after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer

from shared.config import KafkaSettings
from shared.events.catalog import BY_TYPE, Topics
from shared.events.envelope import CloudEvent, Headers
from shared.kafka.connection import client_kwargs
from shared.kafka.metrics import EVENTS_PUBLISHED


class EventProducer:
    def __init__(self, settings: KafkaSettings, *, client_id: str, linger_ms: int = 2) -> None:
        self.topics = Topics(settings.topic_prefix)
        self._producer = AIOKafkaProducer(
            **client_kwargs(settings),
            client_id=client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            max_request_size=4 * 1024 * 1024,
            request_timeout_ms=30000,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    def topic_for(self, event: CloudEvent) -> str:
        event_type = BY_TYPE.get(event.type)
        if event_type is None:
            raise KeyError(f"event type {event.type!r} is not in the catalogue")
        return self.topics.of(event_type.topic)

    async def publish(self, event: CloudEvent) -> None:
        await self.publish_many([event])

    async def publish_many(self, events: Iterable[CloudEvent]) -> None:
        """Send all, then wait for all: lets the client batch them into few requests."""
        pending = []
        for event in events:
            topic = self.topic_for(event)
            key, value, headers = event.to_kafka()
            pending.append(await self._producer.send(topic, value=value, key=key, headers=headers))
            EVENTS_PUBLISHED.labels(topic, event.type).inc()
        if pending:
            await asyncio.gather(*pending)

    async def send_raw(self, topic: str, *, key: bytes | None, value: bytes | None, headers: Headers) -> None:
        """Forward a message as-is (dead-lettering keeps the original bytes)."""
        await self._producer.send_and_wait(topic, value=value, key=key, headers=headers)

    async def ping(self) -> bool:
        """True when the producer's client can reach a broker (readiness)."""
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout=3)
        except Exception:
            return False
        return True
