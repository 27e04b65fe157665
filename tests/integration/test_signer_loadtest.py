"""The stand-alone signer load test, run small against the real stack: its report is complete and true."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import signer_loadtest


def test_a_small_load_test_reports_every_request_answered_once(stack_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    code = signer_loadtest.main([
        "--requests", "24", "--ca-algorithm", "p256", "--lint", "off", "--partitions", "2",
        "--baseline-seconds", "0.4", "--bootstrap", stack_env["CACERT_KAFKA_BOOTSTRAP"],
        "--mongo-url", stack_env["CACERT_MONGO_URL"], "--out", str(out), "--log-dir", str(tmp_path / "logs"),
    ])
    report = json.loads(out.read_text())
    assert code == 0
    assert {"issued", "duplicates", "missing", "throughput_per_s", "p50_ms", "p99_ms", "baseline_sign_per_s",
            "ratio"} <= report.keys()
    assert (report["issued"], report["duplicates"], report["missing"]) == (24, 0, 0)
    assert report["baseline_sign_per_s"] > 0 and report["throughput_per_s"] > 0
    assert abs(report["ratio"] - report["throughput_per_s"] / report["baseline_sign_per_s"]) < 0.002
    run = report["runs"][0]
    assert run["cpu_ms_per_request"]["signing_workers"] > 0  # the workers' CPU is found and counted
