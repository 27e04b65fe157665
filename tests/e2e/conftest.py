"""The whole system, up once per session, and one demo run whose output the tests check with real clients.

`system` brings the CA up with devstack (`python -m devstack up --system` in-process: reuses what
runs, starts what does not); `demo` runs `python -m demo --out <tmp>` as a subprocess, exactly like
`./dev demo`. The session's durations and the demo's CSR -> mail p50 are printed at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import DemoRun

ROOT = Path(__file__).resolve().parents[2]
TIMINGS: dict[str, float] = {}
_SPAN: dict[str, float] = {}


@pytest.fixture(scope="session")
def system() -> Iterator[dict[str, str]]:
    from devstack import system

    started = _SPAN["start"] = time.monotonic()
    urls = system.up(lambda line: print(line, file=sys.stderr))
    TIMINGS["system_up_seconds"] = time.monotonic() - started
    yield urls


@pytest.fixture(scope="session")
def demo(system: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    out = tmp_path_factory.mktemp("demo")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "demo", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    TIMINGS["demo_seconds"] = time.monotonic() - started
    assert result.returncode == 0, f"demo failed:\n{result.stdout}\n{result.stderr}"
    summary = json.loads((out / "summary.json").read_text())
    TIMINGS["csr_to_mail_p50_ms"] = summary["timings"]["csr_to_mail_p50_seconds"] * 1000
    TIMINGS["csr_to_mail_max_ms"] = summary["timings"]["csr_to_mail_max_seconds"] * 1000
    return DemoRun(out, summary)


@pytest.fixture(autouse=True)
def _e2e_span() -> Iterator[None]:
    yield
    _SPAN["end"] = time.monotonic()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if "start" not in _SPAN:
        return
    TIMINGS["e2e_seconds"] = _SPAN.get("end", time.monotonic()) - _SPAN["start"]
    parts = [
        f"e2e {TIMINGS['e2e_seconds']:.1f}s",
        f"system up {TIMINGS.get('system_up_seconds', 0):.1f}s",
        f"demo {TIMINGS.get('demo_seconds', 0):.1f}s",
    ]
    if "csr_to_mail_p50_ms" in TIMINGS:
        parts.append(
            f"CSR -> certificate mail p50 {TIMINGS['csr_to_mail_p50_ms']:.0f} ms "
            f"(max {TIMINGS['csr_to_mail_max_ms']:.0f} ms)"
        )
    terminalreporter.write_line("e2e timings: " + ", ".join(parts))
    record = os.environ.get("CACERT_E2E_TIMINGS")
    if record:
        Path(record).write_text(json.dumps(TIMINGS, indent=2) + "\n")
