"""An idempotent, acks=all event producer.

`publish` returns only once the broker has the event durably (all in-sync
replicas), so callers may mark an outbox entry as sent or commit an offset
right after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    UnknownProducerId,
)
from aiokafka.structs import RecordMetadata

from shared.config import KafkaSettings
from shared.events.catalog import BY_TYPE, Topics
from shared.events.envelope import CloudEvent, Headers
from shared.kafka.connection import client_kwargs
from shared.kafka.metrics import EVENTS_PUBLISHED
from shared.logging import get_logger

log = get_logger("shared.kafka.producer")

# After these, an idempotent producer's sequence state no longer matches the broker's (typically after
# a broker restart): the client never recovers by itself, so it is replaced by a new one (new producer id).
# Re-sending is safe: every consumer de-duplicates on the CloudEvent id.
FATAL_PRODUCER_ERRORS = (OutOfOrderSequenceNumber, InvalidProducerEpoch, InvalidProducerIdMapping, ProducerFenced,
                         UnknownProducerId, ProducerClosed)


class EventProducer:
    def __init__(self, settings: KafkaSettings, *, client_id: str, linger_ms: int = 0) -> None:
        """`linger_ms` 0: a record goes out at once. Every linger sits on the path of a certificate (four
        hops from the POST to `cert.issued`); records still batch, because the client sends one request
        at a time to a broker and what is appended meanwhile goes in the next one (issue 21)."""
        self.topics = Topics(settings.topic_prefix)
        self._settings = settings
        self._client_id = client_id
        self._linger_ms = linger_ms
        self._producer = self._new_client()
        self._replacing = asyncio.Lock()

    def _new_client(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **client_kwargs(self._settings),
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=self._linger_ms,
            max_request_size=4 * 1024 * 1024,
            request_timeout_ms=30000,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def _replace_client(self, broken: AIOKafkaProducer, error: Exception) -> None:
        async with self._replacing:
            if self._producer is not broken:
                return  # another publisher already replaced it
            log.warning("producer state lost by the broker; replacing the producer", error=type(error).__name__)
            try:
                await broken.stop()
            except Exception as exc:  # it is broken already; what matters is the new one
                log.info("stopping the broken producer failed", error=type(exc).__name__)
            fresh = self._new_client()
            await fresh.start()
            self._producer = fresh

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
        batch = list(events)
        for attempt in (1, 2):
            producer = self._producer
            try:
                await self._send_all(producer, batch)
                return
            except FATAL_PRODUCER_ERRORS as exc:
                if attempt == 2:
                    raise
                await self._replace_client(producer, exc)

    async def _send_all(self, producer: AIOKafkaProducer, events: list[CloudEvent]) -> None:
        pending = []
        for event in events:
            topic = self.topic_for(event)
            key, value, headers = event.to_kafka()
            pending.append(await producer.send(topic, value=value, key=key, headers=headers))
        if pending:
            await asyncio.gather(*pending)
        for event in events:
            EVENTS_PUBLISHED.labels(self.topic_for(event), event.type).inc()

    async def send_raw(self, topic: str, *, key: bytes | None, value: bytes | None, headers: Headers) -> RecordMetadata:
        """Forward a message as-is (dead-lettering keeps the original bytes); where it was written."""
        producer = self._producer
        try:
            return await producer.send_and_wait(topic, value=value, key=key, headers=headers)
        except FATAL_PRODUCER_ERRORS as exc:
            await self._replace_client(producer, exc)
            return await self._producer.send_and_wait(topic, value=value, key=key, headers=headers)

    async def ping(self) -> bool:
        """True when the producer's client can reach a broker (readiness)."""
        try:
            await asyncio.wait_for(self._producer.client.fetch_all_metadata(), timeout=3)
        except Exception:
            return False
        return True
