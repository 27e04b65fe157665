"""Prometheus metrics for event traffic, shared by every service's runner and producer."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter(
    "cacert_events_consumed_total", "Kafka messages handled, by outcome", ["topic", "type", "outcome"]
)
EVENTS_PUBLISHED = Counter("cacert_events_published_total", "Events published", ["topic", "type"])
HANDLER_SECONDS = Histogram(
    "cacert_event_handler_seconds", "Time spent in event handlers", ["type"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
HANDLER_RETRIES = Counter("cacert_event_handler_retries_total", "Handler retries after a failure", ["type"])
ASSIGNED_PARTITIONS = Gauge(
    "cacert_kafka_assigned_partitions", "Partitions this process consumes now (after the last rebalance)",
    ["group", "topic"],
)
