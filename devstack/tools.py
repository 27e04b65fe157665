"""Finding the external tools the stack needs (java, mvn, go), with one actionable error line each.

The tools are looked up on PATH first, then in the places their usual installers put them, so a
shell whose PATH lacks e.g. /usr/local/go/bin still works.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from devstack.errors import StackError

_HINTS = {
    "java": "a JDK 17+ runs the Kafka broker: install one (e.g. `apt-get install openjdk-17-jdk-headless`)"
    " and put `java` on PATH or set JAVA_HOME",
    "mvn": "Maven fetches the Kafka jars from Maven Central once: install it (e.g. `apt-get install maven`)"
    " and put `mvn` on PATH",
    "go": "Go 1.24+ builds FerretDB once: install it from https://go.dev/dl/ and put `go` on PATH"
    " (usually /usr/local/go/bin)",
}

_EXTRA_PLACES = {
    "java": [],
    "mvn": ["/usr/share/maven/bin/mvn", "/opt/maven/bin/mvn"],
    "go": ["/usr/local/go/bin/go", str(Path.home() / "go" / "bin" / "go"), "/usr/lib/go/bin/go"],
}


class ToolMissing(StackError):
    """A required program is not installed; the message says which and how to get it."""


def find(tool: str) -> str:
    """Absolute path of `tool` (java, mvn or go), or raise ToolMissing."""
    candidates: list[str] = []
    if tool == "java" and os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    on_path = shutil.which(tool)
    if on_path:
        candidates.append(on_path)
    candidates.extend(_EXTRA_PLACES.get(tool, []))
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise ToolMissing(f"`{tool}` not found: {_HINTS[tool]}")
