"""What the e2e fixtures hand to the tests (kept out of conftest.py so test modules can import it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DemoRun:
    out: Path
    summary: dict[str, Any]

    def path(self, name: str) -> Path:
        return self.out / name

    @property
    def urls(self) -> dict[str, Any]:
        return dict(self.summary["urls"])
