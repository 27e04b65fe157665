import json

import pytest

from shared.events import (
    BY_TYPE,
    EVENT_TYPES,
    CloudEvent,
    EnvelopeError,
    SchemaError,
    Topics,
    deterministic_event_id,
    make_event,
    validate,
)
from shared.events.catalog import load_schema

REGISTERED = {"member_id": "m-1", "name": "Ada", "email": "ada@example.org", "registered_at": "2026-01-01T00:00:00Z"}


def test_event_round_trips_through_kafka_binary_mode() -> None:
    event = make_event("member.registered", REGISTERED, source="registration")
    key, value, headers = event.to_kafka()
    assert key == b"m-1"
    assert dict(headers)["ce_type"] == b"org.cacert.member.registered.v1"
    assert json.loads(value) == REGISTERED
    decoded = CloudEvent.from_kafka(key, value, headers)
    assert decoded.id == event.id and decoded.type == event.type and decoded.data == REGISTERED


@pytest.mark.parametrize("value, problem", [(b"{not json", "not JSON"), (b"[1]", "JSON object")])
def test_undecodable_payload_is_an_envelope_error(value: bytes, problem: str) -> None:
    _, _, headers = make_event("member.registered", REGISTERED, source="t").to_kafka()
    with pytest.raises(EnvelopeError, match=problem):
        CloudEvent.from_kafka(b"k", value, headers)


def test_missing_ce_headers_are_an_envelope_error() -> None:
    with pytest.raises(EnvelopeError, match="ce_specversion"):
        CloudEvent.from_kafka(b"k", b"{}", [])


def test_schema_invalid_payload_names_the_field() -> None:
    bad = dict(REGISTERED, email=42)
    with pytest.raises(SchemaError, match="email"):
        validate("org.cacert.member.registered.v1", bad)


def test_unknown_fields_are_allowed_within_a_version() -> None:
    validate("org.cacert.member.registered.v1", dict(REGISTERED, nickname="ada"))


def test_every_catalogued_type_has_a_schema_titled_with_its_type() -> None:
    for event_type in EVENT_TYPES:
        schema = load_schema(event_type.type)
        assert schema["title"] == event_type.type
        assert event_type.key_field in schema["properties"]


def test_deterministic_ids_are_stable_and_distinct() -> None:
    assert deterministic_event_id("cert.issued", "r1") == deterministic_event_id("cert.issued", "r1")
    assert deterministic_event_id("cert.issued", "r1") != deterministic_event_id("cert.issued", "r2")


def test_topics_have_dead_letter_twins() -> None:
    topics = Topics("cacert.")
    assert topics.of("cert") == "cacert.cert"
    assert topics.dlq("cert") == "cacert.cert.dlq"
    assert len(topics.all()) == 2 * len({e.topic for e in BY_TYPE.values()})
