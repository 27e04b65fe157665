"""Create the catalogue's topics and their dead-letter topics (development and tests).

In Kubernetes, Strimzi KafkaTopic resources own topic creation; services are
configured not to create topics there (CACERT_KAFKA_CREATE_TOPICS=false).
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.config import KafkaSettings
from shared.events.catalog import Topics
from shared.kafka.connection import client_kwargs


async def ensure_topics(settings: KafkaSettings, partitions: int = 4, names: list[str] | None = None) -> None:
    names = names or Topics(settings.topic_prefix).all()
    admin = AIOKafkaAdminClient(**client_kwargs(settings), client_id="cacert-topic-setup")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(name=n, num_partitions=partitions, replication_factor=1) for n in missing]
                )
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()
