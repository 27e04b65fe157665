"""The schema evolution guard: within a version, an event schema may only change additively.

`shared/events/schemas/released/` holds every schema as the last release published it. A current schema
of the same type may differ from its released one only by what a consumer written against the release
already copes with (docs/events.md, "Versioning rules"):

* a new optional field in an object that allows unknown fields (`additionalProperties` not false);
* a new value in an `enum` (a `const` counts as a one-value enum);
* changed annotations: `description`, `title`, `examples`, `$comment`, `deprecated`.

Everything else that changes what validates is breaking: a field removed or renamed, a field newly
required or no longer required, a type changed, an enum value removed, a list of allowed values added
or dropped, a new field in a closed object, `additionalProperties`, `pattern`, `format`, a length,
size or range bound, or a conditional (`allOf`, `if`, ...) changed in any way. New event types are
additive; a released type whose schema is gone is breaking (retire it deliberately, docs/events.md).

    python -m shared.events.evolution check     # exit 1 naming every breaking change
    python -m shared.events.evolution release   # at a release: snapshot today's schemas as released
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
RELEASED_DIR = SCHEMA_DIR / "released"

ANNOTATIONS = frozenset({"description", "title", "examples", "$comment", "deprecated"})


def next_version(type_: str) -> str:
    """`org.cacert.cert.rejected.v1` -> `org.cacert.cert.rejected.v2`."""
    match = re.fullmatch(r"(.+\.v)(\d+)", type_)
    if not match:
        raise ValueError(f"{type_!r} does not end in .v<major>")
    return f"{match.group(1)}{int(match.group(2)) + 1}"


def _strip_annotations(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_annotations(v) for k, v in node.items() if k not in ANNOTATIONS}
    if isinstance(node, list):
        return [_strip_annotations(v) for v in node]
    return node


def _show(value: Any) -> str:
    text = "absent" if value is None else json.dumps(value, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."


def _allowed_values(schema: dict[str, Any]) -> list[Any] | None:
    if "enum" in schema:
        return list(schema["enum"])
    if "const" in schema:
        return [schema["const"]]
    return None


def _types(schema: dict[str, Any]) -> set[str] | None:
    declared = schema.get("type")
    if declared is None:
        return None
    return {declared} if isinstance(declared, str) else set(declared)


def _where(path: str) -> str:
    return f"`{path}`" if path else "the payload"


def _compare(old: Any, new: Any, path: str, problems: list[str]) -> None:
    if not isinstance(old, dict) or not isinstance(new, dict):
        if _strip_annotations(old) != _strip_annotations(new):
            problems.append(f"{_where(path)}: schema changed from {_show(old)} to {_show(new)}")
        return
    closed = old.get("additionalProperties") is False
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    for name, sub in old_props.items():
        field = f"{path}.{name}" if path else name
        if name not in new_props:
            problems.append(f"field `{field}` removed or renamed")
        else:
            _compare(sub, new_props[name], field, problems)
    for name in new_props.keys() - old_props.keys():
        if closed:
            field = f"{path}.{name}" if path else name
            problems.append(f"new field `{field}` in a closed object (additionalProperties false): "
                            "consumers refuse unknown fields there")

    old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
    problems.extend(f"field `{path + '.' if path else ''}{name}` newly required"
                    for name in sorted(new_required - old_required))
    problems.extend(f"field `{path + '.' if path else ''}{name}` no longer required"
                    for name in sorted(old_required - new_required))

    old_types, new_types = _types(old), _types(new)
    if old_types != new_types:
        problems.append(f"{_where(path)}: type changed from {_show(old.get('type'))} to {_show(new.get('type'))}")

    old_values, new_values = _allowed_values(old), _allowed_values(new)
    if old_values is None and new_values is not None:
        problems.append(f"{_where(path)}: values newly restricted to {_show(new_values)}")
    elif old_values is not None and new_values is None:
        problems.append(f"{_where(path)}: the list of allowed values {_show(old_values)} was dropped")
    elif old_values is not None and new_values is not None:
        removed = [v for v in old_values if v not in new_values]
        if removed:
            problems.append(f"{_where(path)}: value(s) {_show(removed)} removed (adding values is allowed, "
                            "removing or renaming one is not)")

    if "items" in old or "items" in new:
        _compare(old.get("items", True), new.get("items", True), f"{path}[]", problems)

    handled = {"properties", "required", "type", "enum", "const", "items"}
    for keyword in sorted((old.keys() | new.keys()) - handled - ANNOTATIONS):
        before, after = _strip_annotations(old.get(keyword)), _strip_annotations(new.get(keyword))
        if before != after:
            problems.append(f"{_where(path)}: `{keyword}` changed from {_show(old.get(keyword))} to "
                            f"{_show(new.get(keyword))}")


def breaking_changes(released: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Every change from `released` to `current` that is not additive, one sentence each (empty: additive)."""
    problems: list[str] = []
    _compare(released, current, "", problems)
    return problems


def check(released_dir: Path = RELEASED_DIR, schema_dir: Path = SCHEMA_DIR) -> list[str]:
    """One message per released type whose current schema is not an additive change of it."""
    messages = []
    for snapshot in sorted(released_dir.glob("*.json")):
        type_ = snapshot.stem
        current = schema_dir / snapshot.name
        if not current.exists():
            messages.append(f"{type_}: released, but its schema is gone. A released type is retired on purpose: "
                            "delete its snapshot in shared/events/schemas/released/ in the same change "
                            "(docs/events.md, 'Introducing a .v2').")
            continue
        problems = breaking_changes(json.loads(snapshot.read_text()), json.loads(current.read_text()))
        if problems:
            messages.append(
                f"{type_}: not an additive change of the released schema, so not allowed within this version:\n"
                + "".join(f"  - {p}\n" for p in problems)
                + f"  Keep {type_} as released and add the change as a new type {next_version(type_)} beside it "
                "(docs/events.md, 'Introducing a .v2').")
    return messages


def release(released_dir: Path = RELEASED_DIR, schema_dir: Path = SCHEMA_DIR) -> list[str]:
    """Make `released_dir` a copy of today's schemas; refused (returning why) while `check` finds anything."""
    problems = check(released_dir, schema_dir)
    if problems:
        return problems
    released_dir.mkdir(parents=True, exist_ok=True)
    for stale in released_dir.glob("*.json"):
        stale.unlink()
    for schema in sorted(schema_dir.glob("*.json")):
        shutil.copyfile(schema, released_dir / schema.name)
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.events.evolution",
                                     description="event schemas change additively within a version")
    parser.add_argument("command", choices=("check", "release"),
                        help="check: compare today's schemas with the released ones; release: snapshot today's "
                             "schemas as released (at a release, after check passes)")
    args = parser.parse_args(argv)
    problems = check() if args.command == "check" else release()
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems and args.command == "release":
        print(f"snapshot of {len(list(RELEASED_DIR.glob('*.json')))} schemas in {RELEASED_DIR}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
