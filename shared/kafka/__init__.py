"""Kafka plumbing on aiokafka: an idempotent producer, topic creation, a consumer-group runner."""

from shared.kafka.consumer import Batch, ConsumerRunner, PermanentError, Subscription, TransientError
from shared.kafka.producer import EventProducer
from shared.kafka.topics import ensure_topics

__all__ = [
    "Batch", "ConsumerRunner", "EventProducer", "PermanentError", "Subscription", "TransientError", "ensure_topics",
]
