"""CloudEvents 1.0 in the Kafka protocol binding, binary content mode.

Attributes travel as `ce_*` headers and the payload is the JSON message
value, so consumers that only look at headers (routing, filtering by type)
never parse the body. The Kafka message key is the aggregate id (the
partitioning key), which keeps one aggregate's events in order.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime
from typing import Any

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
TYPE_PREFIX = "org.cacert."

Headers = list[tuple[str, bytes]]


class EnvelopeError(ValueError):
    """A Kafka message is not a well-formed CloudEvent; never retried."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """RFC 3339 with a Z suffix, the form every timestamp in our payloads uses."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def new_event_id() -> str:
    return str(uuid.uuid4())


def deterministic_event_id(*parts: str) -> str:
    """An id derived from what the event announces, so a retried handler re-creates the same id.

    Consumers de-duplicate on `id`; a handler that is re-run after a crash must
    therefore emit the *same* id for the same fact, not a fresh uuid4.
    """
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "cacert:" + "/".join(parts)))


@dataclasses.dataclass(frozen=True)
class CloudEvent:
    type: str
    source: str
    subject: str
    data: dict[str, Any]
    id: str = dataclasses.field(default_factory=new_event_id)
    time: str = dataclasses.field(default_factory=lambda: isoformat(utcnow()))
    key: str | None = None
    extensions: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def partition_key(self) -> str:
        return self.key if self.key is not None else self.subject

    def to_kafka(self) -> tuple[bytes, bytes, Headers]:
        """(key, value, headers) for aiokafka's send()."""
        headers: Headers = [
            ("ce_specversion", SPEC_VERSION.encode()),
            ("ce_id", self.id.encode()),
            ("ce_type", self.type.encode()),
            ("ce_source", self.source.encode()),
            ("ce_subject", self.subject.encode()),
            ("ce_time", self.time.encode()),
            ("content-type", CONTENT_TYPE.encode()),
        ]
        headers.extend((f"ce_{name}", value.encode()) for name, value in sorted(self.extensions.items()))
        value = json.dumps(self.data, separators=(",", ":"), sort_keys=True).encode()
        return self.partition_key.encode(), value, headers

    @classmethod
    def from_kafka(cls, key: bytes | None, value: bytes | None, headers: Any) -> CloudEvent:
        """Decode a binary-mode CloudEvent; raise EnvelopeError naming what is wrong."""
        attrs: dict[str, str] = {}
        for name, raw in headers or ():
            try:
                attrs[name.lower()] = raw.decode() if raw is not None else ""
            except UnicodeDecodeError:
                raise EnvelopeError(f"header {name} is not UTF-8") from None
        if attrs.get("ce_specversion") != SPEC_VERSION:
            raise EnvelopeError(f"ce_specversion must be {SPEC_VERSION}, got {attrs.get('ce_specversion')!r}")
        for required in ("ce_id", "ce_type", "ce_source"):
            if not attrs.get(required):
                raise EnvelopeError(f"missing header {required}")
        content_type = attrs.get("content-type", CONTENT_TYPE)
        if not content_type.startswith(CONTENT_TYPE):
            raise EnvelopeError(f"unsupported content-type {content_type!r}")
        try:
            data = json.loads(value or b"")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EnvelopeError(f"payload is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise EnvelopeError("payload must be a JSON object")
        known = {"ce_specversion", "ce_id", "ce_type", "ce_source", "ce_subject", "ce_time"}
        extensions = {n[3:]: v for n, v in attrs.items() if n.startswith("ce_") and n not in known}
        return cls(
            type=attrs["ce_type"],
            source=attrs["ce_source"],
            subject=attrs.get("ce_subject", ""),
            data=data,
            id=attrs["ce_id"],
            time=attrs.get("ce_time", ""),
            key=key.decode(errors="replace") if key is not None else None,
            extensions=extensions,
        )


def header(headers: Any, name: str) -> str | None:
    """One header's value without decoding the whole event (cheap type filtering)."""
    for key, raw in headers or ():
        if key == name:
            return raw.decode(errors="replace") if raw is not None else None
    return None
