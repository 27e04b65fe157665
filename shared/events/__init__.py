"""The event contract: CloudEvents envelope, catalogue of types and topics, JSON Schemas."""

from shared.events.catalog import BY_NAME, BY_TYPE, EVENT_TYPES, TOPICS, SchemaError, Topics, make_event, validate
from shared.events.envelope import CloudEvent, EnvelopeError, deterministic_event_id, isoformat, utcnow

__all__ = [
    "BY_NAME", "BY_TYPE", "EVENT_TYPES", "TOPICS", "CloudEvent", "EnvelopeError", "SchemaError", "Topics",
    "deterministic_event_id", "isoformat", "make_event", "utcnow", "validate",
]
