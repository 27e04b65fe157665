"""Kafka plumbing on aiokafka: an idempotent producer, topic creation, a consumer-group runner."""

from shared.kafka.consumer import ConsumerRunner, PermanentError, Subscription, TransientError
from shared.kafka.producer import EventProducer
from shared.kafka.topics import ensure_topics

__all__ = ["ConsumerRunner", "EventProducer", "PermanentError", "Subscription", "TransientError", "ensure_topics"]
