"""The schema evolution guard: today's event schemas change the released ones only additively."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.events import BY_TYPE, evolution

TYPE = "org.cacert.thing.happened.v1"

RELEASED: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": TYPE,
    "description": "a thing happened",
    "type": "object",
    "properties": {
        "thing_id": {"type": "string", "minLength": 1, "maxLength": 64},
        "kind": {"enum": ["small", "large"]},
        "count": {"type": "integer", "minimum": 0},
        "at": {"type": "string", "format": "date-time"},
        "code": {"type": "string", "pattern": "^[a-z]+$"},
        "note": {"type": ["string", "null"]},
        "signature": {
            "type": "object",
            "properties": {"alg": {"const": "Ed25519"}, "value": {"type": "string"}},
            "required": ["alg", "value"],
            "additionalProperties": False,
        },
        "names": {
            "type": "array",
            "maxItems": 10,
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "allowed": {"type": "boolean"}},
                "required": ["name"],
                "additionalProperties": True,
            },
        },
    },
    "required": ["thing_id", "kind"],
    "allOf": [{"if": {"properties": {"kind": {"const": "large"}}}, "then": {"required": ["count"]}}],
    "additionalProperties": True,
}

Change = Callable[[dict[str, Any]], None]


def _set(path: list[Any], value: Any) -> Change:
    def change(schema: dict[str, Any]) -> None:
        node: Any = schema
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return change


def _delete(path: list[Any]) -> Change:
    def change(schema: dict[str, Any]) -> None:
        node: Any = schema
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
    return change


P = "properties"
NAME = [P, "names", "items", P]
BREAKING: dict[str, tuple[Change, str]] = {
    "field removed": (_delete([P, "code"]), "field `code` removed or renamed"),
    "field renamed": (lambda s: s[P].__setitem__("kind_of", s[P].pop("kind")), "field `kind` removed or renamed"),
    "nested field removed": (_delete([*NAME, "allowed"]), "field `names[].allowed` removed or renamed"),
    "new required field": (_set(["required"], ["thing_id", "kind", "count"]), "field `count` newly required"),
    "new required nested field": (_set([P, "names", "items", "required"], ["name", "allowed"]),
                                  "field `names[].allowed` newly required"),
    "field no longer required": (_set(["required"], ["thing_id"]), "field `kind` no longer required"),
    "type narrowed": (_set([P, "note", "type"], "string"), "`note`: type changed"),
    "type changed": (_set([P, "count", "type"], "string"), "`count`: type changed"),
    "type widened": (_set([P, "count", "type"], ["integer", "null"]), "`count`: type changed"),
    "nested type changed": (_set([*NAME, "allowed", "type"], "string"), "`names[].allowed`: type changed"),
    "enum value removed": (_set([P, "kind", "enum"], ["small"]), '`kind`: value(s) ["large"] removed'),
    "enum value renamed": (_set([P, "kind", "enum"], ["small", "big"]), '`kind`: value(s) ["large"] removed'),
    "const changed": (_set([P, "signature", P, "alg", "const"], "Ed448"),
                      '`signature.alg`: value(s) ["Ed25519"] removed'),
    "enum added to a free field": (_set([P, "code", "enum"], ["abc"]), "`code`: values newly restricted"),
    "enum dropped": (_delete([P, "kind", "enum"]), "`kind`: the list of allowed values"),
    "additionalProperties closed": (_set(["additionalProperties"], False), "`additionalProperties` changed"),
    "nested additionalProperties closed": (_set([P, "names", "items", "additionalProperties"], False),
                                           "`names[]`: `additionalProperties` changed"),
    "new field in a closed object": (_set([P, "signature", P, "key_id"], {"type": "string"}),
                                     "new field `signature.key_id` in a closed object"),
    "pattern tightened": (_set([P, "code", "pattern"], "^[a-z]{3}$"), "`code`: `pattern` changed"),
    "pattern added": (_set([P, "thing_id", "pattern"], "^t-"), "`thing_id`: `pattern` changed"),
    "format changed": (_set([P, "at", "format"], "date"), "`at`: `format` changed"),
    "format added": (_set([P, "note", "format"], "email"), "`note`: `format` changed"),
    "maxLength tightened": (_set([P, "thing_id", "maxLength"], 32), "`thing_id`: `maxLength` changed"),
    "minimum raised": (_set([P, "count", "minimum"], 1), "`count`: `minimum` changed"),
    "maxItems lowered": (_set([P, "names", "maxItems"], 5), "`names`: `maxItems` changed"),
    "conditional changed": (_set(["allOf"], []), "the payload: `allOf` changed"),
    "items dropped": (_delete([P, "names", "items"]), "`names[]`: schema changed"),
}


def write(directory: Path, schema: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{TYPE}.json").write_text(json.dumps(schema))


def check_change(tmp_path: Path, change: Change) -> list[str]:
    current = copy.deepcopy(RELEASED)
    change(current)
    write(tmp_path / "released", RELEASED)
    write(tmp_path / "schemas", current)
    return evolution.check(tmp_path / "released", tmp_path / "schemas")


@pytest.mark.parametrize("name", BREAKING)
def test_a_change_that_is_not_additive_fails_and_says_to_add_a_v2(tmp_path: Path, name: str) -> None:
    change, expected = BREAKING[name]
    (message,) = check_change(tmp_path, change)
    assert expected in message
    assert "org.cacert.thing.happened.v2" in message and "add the change as a new type" in message


ADDITIVE: dict[str, Change] = {
    "unchanged": lambda s: None,
    "new optional field": _set([P, "colour"], {"type": "string", "maxLength": 10}),
    "new optional nested field": _set([*NAME, "reason"], {"type": "string"}),
    "enum value added": _set([P, "kind", "enum"], ["small", "large", "huge"]),
    "const widened to an enum holding it": _set([P, "signature", P, "alg"], {"enum": ["Ed25519", "Ed448"]}),
    "description changed": _set([P, "code", "description"], "what kind of code"),
    "title and examples changed": lambda s: s.update(title="x", examples=[{"thing_id": "t"}]),
    "field deprecated": _set([P, "note", "deprecated"], True),
    "description inside a conditional": _set(["allOf", 0, "description"], "large things are counted"),
}


@pytest.mark.parametrize("name", ADDITIVE)
def test_an_additive_change_passes(tmp_path: Path, name: str) -> None:
    assert check_change(tmp_path, ADDITIVE[name]) == []


def test_a_new_type_is_additive(tmp_path: Path) -> None:
    write(tmp_path / "released", RELEASED)
    write(tmp_path / "schemas", RELEASED)
    (tmp_path / "schemas" / "org.cacert.thing.other.v1.json").write_text(json.dumps(RELEASED))
    assert evolution.check(tmp_path / "released", tmp_path / "schemas") == []


def test_a_released_type_whose_schema_is_gone_fails(tmp_path: Path) -> None:
    write(tmp_path / "released", RELEASED)
    (tmp_path / "schemas").mkdir()
    (message,) = evolution.check(tmp_path / "released", tmp_path / "schemas")
    assert "its schema is gone" in message


def test_release_refreshes_the_snapshot_only_when_the_check_passes(tmp_path: Path) -> None:
    released, schemas = tmp_path / "released", tmp_path / "schemas"
    write(released, RELEASED)
    broken = copy.deepcopy(RELEASED)
    del broken[P]["code"]
    write(schemas, broken)
    assert evolution.release(released, schemas)
    assert json.loads((released / f"{TYPE}.json").read_text()) == RELEASED

    added = copy.deepcopy(RELEASED)
    added[P]["colour"] = {"type": "string"}
    write(schemas, added)
    (schemas / "org.cacert.thing.other.v1.json").write_text(json.dumps(RELEASED))
    assert evolution.release(released, schemas) == []
    assert sorted(p.name for p in released.glob("*.json")) == sorted(p.name for p in schemas.glob("*.json"))
    assert json.loads((released / f"{TYPE}.json").read_text()) == added


def test_next_version() -> None:
    assert evolution.next_version("org.cacert.cert.rejected.v1") == "org.cacert.cert.rejected.v2"
    assert evolution.next_version("org.cacert.cert.rejected.v9") == "org.cacert.cert.rejected.v10"


def test_todays_schemas_change_the_released_ones_only_additively() -> None:
    released = sorted(p.stem for p in evolution.RELEASED_DIR.glob("*.json"))
    assert len(released) >= 21, "shared/events/schemas/released/ lost its snapshot"
    assert set(released) <= set(BY_TYPE), "a released type is no longer catalogued"
    problems = evolution.check()
    assert not problems, "\n".join(problems)


def test_the_guard_sees_this_release_s_additions() -> None:
    """The snapshot is the previous release's: this release's additions are visible and pass as additive."""
    def load(directory: Path, type_: str) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((directory / f"{type_}.json").read_text())
        return loaded

    rejected = "org.cacert.cert.rejected.v1"
    old, new = load(evolution.RELEASED_DIR, rejected), load(evolution.SCHEMA_DIR, rejected)
    assert "compromised_key" in set(new[P]["reason"]["enum"]) - set(old[P]["reason"]["enum"])
    assert evolution.breaking_changes(old, new) == []
    mail = "org.cacert.mail.send_requested.v1"
    old, new = load(evolution.RELEASED_DIR, mail), load(evolution.SCHEMA_DIR, mail)
    assert "sealed" in set(new[P]) - set(old[P])
    assert evolution.breaking_changes(old, new) == []
    assert not (evolution.RELEASED_DIR / "org.cacert.cert.key_compromised.v1.json").exists()
