"""Smoke test of the HSM signing benchmark: a tiny run on a SoftHSM2 token of its own reports both key backends
for every operation, and the ratio of their medians (no timing bound: speed is what the benchmark prints, not
what a test asserts). A subprocess: SoftHSM2 reads its configuration once per process."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(180)


def benchmark(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
    return subprocess.run([sys.executable, "-m", "benchmarks.hsm_signing", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=170, check=False)


def test_a_tiny_run_reports_file_and_softhsm_signing_and_their_ratio(tmp_path: Path) -> None:
    out = tmp_path / "hsm.json"
    proc = benchmark("--algorithms", "p256", "--seconds", "0.05", "--rounds", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert json.loads(proc.stdout) == report
    assert len(report["machine"]["loadavg_start"]) == 3 and len(report["loadavg_end"]) == 3
    assert set(report["results"]) == {"p256"}
    for operation in ("certificate", "crl", "ocsp_response"):
        figures = report["results"]["p256"][operation]
        rounds = figures["each_round"]
        assert len(rounds) == 2 and all(r["file_per_s"] > 0 and r["softhsm_per_s"] > 0 for r in rounds)
        assert figures["file_per_s"] == pytest.approx(statistics.median(r["file_per_s"] for r in rounds), abs=0.1)
        assert figures["ratio"] == pytest.approx(figures["softhsm_per_s"] / figures["file_per_s"], rel=0.01)


def test_an_unknown_algorithm_is_refused() -> None:
    proc = benchmark("--algorithms", "dsa1024")
    assert proc.returncode == 2 and "algorithms from" in proc.stderr
