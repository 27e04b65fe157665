"""docs/asyncapi.json: generated from the catalogue and the access table, current, and valid AsyncAPI 3.0."""

from __future__ import annotations

import copy
import inspect
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shared.events import EVENT_TYPES, TOPICS, Topics, asyncapi, make_event
from shared.events.access import SERVICES
from shared.events.catalog import DLQ_SUFFIX
from shared.kafka.consumer import ConsumerRunner

ASYNCAPI_SCHEMA = Path(__file__).resolve().parents[1] / "data" / "asyncapi" / "3.0.0.json"
REGENERATE = "run `python -m shared.events.asyncapi --write` and commit docs/asyncapi.json"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(asyncapi.DOCUMENT.read_text())
    return loaded


def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_checked_in_document_is_what_the_catalogue_generates() -> None:
    assert asyncapi.DOCUMENT.read_text() == asyncapi.render(), f"docs/asyncapi.json is stale: {REGENERATE}"


def test_check_mode_fails_on_a_stale_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "asyncapi.json"
    stale.write_text(asyncapi.render().replace("cert.issued", "cert.made", 1))
    monkeypatch.setattr(asyncapi, "DOCUMENT", stale)
    assert asyncapi.main(["--check"]) == 1
    assert "--write" in capsys.readouterr().err
    assert asyncapi.main(["--write"]) == 0
    assert asyncapi.main(["--check"]) == 0


def test_generating_twice_gives_the_same_text() -> None:
    assert asyncapi.render() == asyncapi.render()


def test_document_validates_against_the_asyncapi_3_schema(doc: dict[str, Any]) -> None:
    errors = sorted(validator().iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    assert not errors, "\n".join(f"{e.json_path}: {e.message[:300]}" for e in errors)


def test_the_asyncapi_schema_refuses_a_broken_document(doc: dict[str, Any]) -> None:
    broken = copy.deepcopy(doc)
    next(iter(broken["operations"].values()))["action"] = "publish"  # AsyncAPI 2 wording, gone in 3.0
    assert not validator().is_valid(broken)
    broken = copy.deepcopy(doc)
    broken["asyncapi"] = "2.6.0"
    assert not validator().is_valid(broken)


def test_every_internal_reference_resolves(doc: dict[str, Any]) -> None:
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    internal = [ref for ref in refs(doc) if ref.startswith("#/")]
    assert internal
    for ref in internal:
        resolve(doc, ref)


def test_every_topic_is_a_channel_at_its_physical_address(doc: dict[str, Any]) -> None:
    default_prefix = doc["components"]["parameters"]["prefix"]["default"]
    topics = Topics(default_prefix)
    assert default_prefix == Topics().prefix == "cacert."
    expected = {topics.of(t) for t in TOPICS} | {topics.dlq(t) for t in TOPICS}
    addresses = {c["address"].replace("{prefix}", default_prefix) for c in doc["channels"].values()}
    assert addresses == expected == set(topics.all())


def test_every_catalogued_type_is_a_message_on_its_topic_with_its_schema(doc: dict[str, Any]) -> None:
    messages = doc["components"]["messages"]
    assert set(messages) == {e.type for e in EVENT_TYPES} | {asyncapi.DEAD_LETTER_MESSAGE}
    for event_type in EVENT_TYPES:
        channel = doc["channels"][event_type.topic]
        assert resolve(doc, channel["messages"][event_type.type]["$ref"]) is messages[event_type.type]
        payload_ref = messages[event_type.type]["payload"]["schema"]["$ref"]
        schema_file = (asyncapi.DOCUMENT.parent / payload_ref).resolve()
        assert json.loads(schema_file.read_text())["title"] == event_type.type
        assert event_type.key_field in messages[event_type.type]["bindings"]["kafka"]["key"]["description"]
    for topic in TOPICS:
        on_channel = set(doc["channels"][topic]["messages"])
        assert on_channel == {e.type for e in EVENT_TYPES if e.topic == topic}


def test_the_headers_schema_accepts_the_headers_a_real_event_carries(doc: dict[str, Any]) -> None:
    data = {"member_id": "m-1", "name": "Ada", "email": "ada@example.org", "registered_at": "2026-01-01T00:00:00Z"}
    _, _, headers = make_event("member.registered", data, source="registration").to_kafka()
    as_dict = {name: value.decode() for name, value in headers}
    schemas = doc["components"]["messages"]
    checker = jsonschema.Draft7Validator(schemas["org.cacert.member.registered.v1"]["headers"],
                                         format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    checker.validate(as_dict)
    assert set(as_dict) == set(checker.schema["required"])
    wrong_type = jsonschema.Draft7Validator(schemas["org.cacert.cert.issued.v1"]["headers"])
    assert not wrong_type.is_valid(as_dict)


def test_operations_are_what_access_py_grants(doc: dict[str, Any]) -> None:
    expected = set()
    for service, access in SERVICES.items():
        expected |= {(service, "receive", t) for t in access.reads}
        expected |= {(service, "send", t) for t in access.writes}
        expected |= {(service, "send", t + DLQ_SUFFIX) for t in access.reads}
    seen = set()
    for operation in doc["operations"].values():
        (tag,) = operation["tags"]
        channel = operation["channel"]["$ref"].removeprefix("#/channels/")
        seen.add((tag["name"], operation["action"], channel))
        if operation["action"] == "receive":
            group = operation["bindings"]["kafka"]["groupId"]
            assert SERVICES[tag["name"]].consumer_group in group.get("const", group.get("pattern", ""))
    assert seen == expected


def test_dead_letter_headers_are_the_ones_the_consumer_writes(doc: dict[str, Any]) -> None:
    written = set(re.findall(r'"(dlq_\w+)"', inspect.getsource(ConsumerRunner._dead_letter)))
    headers = doc["components"]["messages"][asyncapi.DEAD_LETTER_MESSAGE]["headers"]
    assert written and set(headers["required"]) == set(headers["properties"]) == written
