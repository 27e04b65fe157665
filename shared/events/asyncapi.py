"""The AsyncAPI 3.0 document of the event contract, generated from the catalogue and the access table.

`docs/asyncapi.json` is this module's output, checked in; tests/shared/test_asyncapi.py fails when the
two differ. Nothing in the document is written by hand: channels are the topics of
`shared/events/catalog.py` (and their dead-letter twins), messages its event types with the CloudEvents
headers `CloudEvent.to_kafka` writes and the payload by `$ref` to the type's JSON Schema, operations
what each service of `shared/events/access.py` reads and writes.

    python -m shared.events.asyncapi            # print the document
    python -m shared.events.asyncapi --write    # regenerate docs/asyncapi.json
    python -m shared.events.asyncapi --check    # exit 1 if docs/asyncapi.json is stale
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from shared.events.access import SERVICES, perspective_group
from shared.events.catalog import DLQ_SUFFIX, EVENT_TYPES, TOPICS, EventType, Topics, load_schema
from shared.events.envelope import CONTENT_TYPE, SPEC_VERSION, CloudEvent

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "asyncapi.json"
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
KAFKA_BINDING_VERSION = "0.5.0"

# The schema format of each JSON Schema dialect our event schemas may declare (AsyncAPI names formats
# by media type; draft 2020-12 is not one of the formats AsyncAPI tools must support, so say it exactly).
_SCHEMA_FORMATS = {
    "https://json-schema.org/draft/2020-12/schema": "application/schema+json;version=draft-2020-12",
    "http://json-schema.org/draft-07/schema#": "application/schema+json;version=draft-07",
}

# What each CloudEvents header means. The names come from CloudEvent.to_kafka, so a header added there
# without a line here stops the generator.
_HEADER_DESCRIPTIONS = {
    "ce_specversion": "CloudEvents version, always `1.0`",
    "ce_id": "unique id of the event, the de-duplication key: a fact re-announced after a retry or crash "
             "carries the same id",
    "ce_type": "the event type, `org.cacert.<aggregate>.<what>.v<major>`",
    "ce_source": "the service that published it (`registration`, `domain_verify`, `domain_verify.<perspective>`, "
                 "`signer`, `notifier`)",
    "ce_subject": "the aggregate id (member id, request id, certificate serial, ...)",
    "ce_time": "RFC 3339 UTC time the event was created",
    "content-type": "the payload's media type",
}

# The headers a consumer adds when it copies a refused message to `<topic>.dlq` (shared/kafka/consumer.py).
_DEAD_LETTER_HEADERS = {
    "dlq_reason": "why it was refused, e.g. `SchemaError: org.cacert.cert.issued.v1 payload invalid at serial: ...`",
    "dlq_source_topic": "the topic it came from",
    "dlq_source_partition": "its partition there (decimal)",
    "dlq_source_offset": "its offset there (decimal)",
    "dlq_consumer_group": "the consumer group that refused it",
    "dlq_failed_at": "RFC 3339 UTC time it was refused",
    "dlq_source_timestamp": "RFC 3339 UTC time of the original record (its Kafka timestamp; empty if it had none)",
    "dlq_first_failed_at": "RFC 3339 UTC time of the first refusal (kept when a replay is refused again)",
}
DEAD_LETTER_MESSAGE = "dead_letter"
_GROUP_PREFIX_NOTE = "As with the default, empty CACERT_KAFKA_GROUP_PREFIX; a deployment's prefix goes in front."
PREFIX_PARAMETER = "prefix"


def _project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version: str = tomllib.load(f)["project"]["version"]
    return version


def _header_names() -> list[str]:
    _, _, headers = CloudEvent(type="t", source="s", subject="k", data={}).to_kafka()
    return [name for name, _ in headers]


def _headers_schema(event_type: EventType) -> dict[str, Any]:
    special: dict[str, dict[str, Any]] = {
        "ce_specversion": {"const": SPEC_VERSION},
        "ce_type": {"const": event_type.type},
        "ce_time": {"format": "date-time"},
        "content-type": {"const": CONTENT_TYPE},
    }
    properties = {
        name: {"type": "string", **special.get(name, {"minLength": 1}), "description": _HEADER_DESCRIPTIONS[name]}
        for name in _header_names()
    }
    return {
        "type": "object",
        "description": "CloudEvents 1.0 attributes as Kafka headers (Kafka protocol binding, binary content mode)",
        "properties": properties,
        "required": list(properties),
    }


def _payload(event_type: EventType) -> dict[str, Any]:
    dialect = load_schema(event_type.type)["$schema"]
    path = os.path.relpath(SCHEMA_DIR / f"{event_type.type}.json", DOCUMENT.parent)
    return {"schemaFormat": _SCHEMA_FORMATS[dialect], "schema": {"$ref": Path(path).as_posix()}}


def _message(event_type: EventType) -> dict[str, Any]:
    return {
        "name": event_type.name,
        "title": event_type.type,
        "summary": load_schema(event_type.type).get("description", event_type.type),
        "contentType": CONTENT_TYPE,
        "headers": _headers_schema(event_type),
        "payload": _payload(event_type),
        "bindings": {"kafka": {
            "key": {"type": "string", "description": f"the payload's `{event_type.key_field}` (the aggregate id): "
                                                     "one aggregate's events share a partition and stay in order"},
            "bindingVersion": KAFKA_BINDING_VERSION,
        }},
    }


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": DEAD_LETTER_MESSAGE,
        "title": "dead letter",
        "summary": "A message its consumer refused (not a CloudEvent, not valid JSON, schema-invalid, or refused "
                   "by the handler), copied unchanged: same key, value and headers, plus the `dlq_*` headers.",
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "properties": {name: {"type": "string", "description": text}
                           for name, text in _DEAD_LETTER_HEADERS.items()},
            "required": list(_DEAD_LETTER_HEADERS),
            "additionalProperties": {"description": "the refused message's own headers, unchanged"},
        },
        "payload": {"description": "the refused message's value, unchanged (any bytes)"},
    }


def _sorted_topics(topics: frozenset[str]) -> list[str]:
    return sorted(topics, key=TOPICS.index)


def _services_of(topic: str, side: str) -> list[str]:
    return [name for name, access in SERVICES.items() if topic in getattr(access, side)]


def _channel(topic: str) -> dict[str, Any]:
    types = [e for e in EVENT_TYPES if e.topic == topic]
    writers, readers = _services_of(topic, "writes"), _services_of(topic, "reads")
    return {
        "address": f"{{{PREFIX_PARAMETER}}}{topic}",
        "title": topic,
        "description": f"Written by {', '.join(writers)}; read by {', '.join(readers)} (Kafka ACLs, "
                       "shared/events/access.py). Keyed by the aggregate id: "
                       + ", ".join(f"`{e.name}` by `{e.key_field}`" for e in types) + ".",
        "parameters": {PREFIX_PARAMETER: {"$ref": f"#/components/parameters/{PREFIX_PARAMETER}"}},
        "messages": {e.type: {"$ref": f"#/components/messages/{e.type}"} for e in types},
    }


def _dead_letter_channel(topic: str) -> dict[str, Any]:
    return {
        "address": f"{{{PREFIX_PARAMETER}}}{topic}{DLQ_SUFFIX}",
        "title": topic + DLQ_SUFFIX,
        "description": f"Dead-letter twin of `{topic}`: what a reader of `{topic}` could not process, written by "
                       f"that reader ({', '.join(_services_of(topic, 'reads'))}).",
        "parameters": {PREFIX_PARAMETER: {"$ref": f"#/components/parameters/{PREFIX_PARAMETER}"}},
        "messages": {DEAD_LETTER_MESSAGE: {"$ref": f"#/components/messages/{DEAD_LETTER_MESSAGE}"}},
    }


def _group_id(service: str) -> dict[str, Any]:
    group = SERVICES[service].consumer_group
    if service == "domain_verify_perspective":
        prefix = perspective_group("")
        return {"type": "string", "pattern": "^" + prefix.replace(".", "\\.") + ".+$",
                "description": f"`{prefix}<perspective name>`: each remote perspective joins its own group. "
                               + _GROUP_PREFIX_NOTE}
    return {"type": "string", "const": group, "description": _GROUP_PREFIX_NOTE}


def _operation(service: str, action: str, channel: str, summary: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "tags": [{"name": service}],
    }
    if action == "receive":
        operation["bindings"] = {"kafka": {"groupId": _group_id(service), "bindingVersion": KAFKA_BINDING_VERSION}}
    return operation


def _operations() -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for service, access in SERVICES.items():
        for topic in _sorted_topics(access.reads):
            operations[f"{service}.receive.{topic}"] = _operation(
                service, "receive", topic, f"{service} reads every message on `{topic}` and handles the types it "
                                           "knows (docs/events.md, by service).")
        for topic in _sorted_topics(access.writes):
            operations[f"{service}.send.{topic}"] = _operation(
                service, "send", topic, f"{service} may write to `{topic}`; which of its types it publishes: "
                                        "docs/events.md, by service.")
        for topic in _sorted_topics(access.reads):
            dlq = topic + DLQ_SUFFIX
            operations[f"{service}.send.{dlq}"] = _operation(
                service, "send", dlq, f"{service} copies what it cannot process from `{topic}` to `{dlq}`.")
    return operations


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document, the same for the same catalogue and access table."""
    channels: dict[str, Any] = {topic: _channel(topic) for topic in TOPICS}
    channels.update({topic + DLQ_SUFFIX: _dead_letter_channel(topic) for topic in TOPICS})
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "CAcert Community CA events",
            "version": _project_version(),
            "description": "Every event the CA announces on Kafka: CloudEvents 1.0 in binary mode (attributes as "
                           "`ce_*` headers, the JSON payload as the value). Generated by "
                           "`python -m shared.events.asyncapi --write` from shared/events/catalog.py and "
                           "shared/events/access.py; do not edit. Delivery guarantees and versioning rules: "
                           "docs/events.md.",
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": _operations(),
        "components": {
            "parameters": {PREFIX_PARAMETER: {
                "description": "the deployment's topic prefix, CACERT_KAFKA_TOPIC_PREFIX (lets several stacks "
                               "share a broker)",
                "default": Topics().prefix,
            }},
            "messages": {
                **{e.type: _message(e) for e in EVENT_TYPES},
                DEAD_LETTER_MESSAGE: _dead_letter_message(),
            },
        },
    }


def render() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.events.asyncapi",
                                     description="the AsyncAPI 3.0 document of the events")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write docs/asyncapi.json")
    mode.add_argument("--check", action="store_true", help="exit 1 if docs/asyncapi.json is stale")
    args = parser.parse_args(argv)
    shown = os.path.relpath(DOCUMENT, ROOT)
    text = render()
    if args.write:
        DOCUMENT.write_text(text)
    elif args.check:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != text:
            print(f"{shown} is stale: run `python -m shared.events.asyncapi --write`",
                  file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
