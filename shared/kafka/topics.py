"""Create the catalogue's topics and their dead-letter topics (development and tests).

In Kubernetes, Strimzi KafkaTopic resources own topic creation; services are
configured not to create topics there (CACERT_KAFKA_CREATE_TOPICS=false).
"""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.config import KafkaSettings
from shared.events.catalog import Topics
from shared.kafka.connection import client_kwargs


async def ensure_topics(settings: KafkaSettings, partitions: int = 4, names: list[str] | None = None,
                        attempts: int = 5, replication_factor: int = 1) -> None:
    """Create missing topics; a broker that is still starting (or busy) gets a few tries before we give up."""
    for attempt in range(1, attempts + 1):
        try:
            await _create_missing(settings, partitions, names or Topics(settings.topic_prefix).all(),
                                  replication_factor)
            return
        except KafkaError:
            if attempt == attempts:
                raise
            await asyncio.sleep(attempt)


async def delete_topics_with_prefix(settings: KafkaSettings, prefix: str) -> None:
    """Remove a test run's topics so a long-lived development broker does not pile them up."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings), client_id="cacert-topic-cleanup")
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


async def broker_count(settings: KafkaSettings) -> int:
    """How many brokers the cluster has (a replication factor must not exceed it)."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings), client_id="cacert-topic-setup")
    await admin.start()
    try:
        return len((await admin.describe_cluster())["brokers"])
    finally:
        await admin.close()


async def _create_missing(settings: KafkaSettings, partitions: int, names: list[str],
                          replication_factor: int = 1) -> None:
    admin = AIOKafkaAdminClient(**client_kwargs(settings), client_id="cacert-topic-setup")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics([NewTopic(name=n, num_partitions=partitions,
                                                    replication_factor=replication_factor) for n in missing])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
