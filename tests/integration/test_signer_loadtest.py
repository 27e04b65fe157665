"""The stand-alone signer load test, run small against the real stack: its report is complete and true."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pymongo import MongoClient

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
    assert report["mode"] == "all_at_once" and "target_rate_per_s" not in report
    assert report["p50_ms"] <= report["p90_ms"] <= report["p99_ms"] <= report["max_ms"]
    run = report["runs"][0]
    assert run["cpu_ms_per_request"]["signing_workers"] > 0  # the workers' CPU is found and counted


def test_an_open_loop_run_reports_latency_percentiles_at_the_target_rate(
        stack_env: dict[str, str], tmp_path: Path) -> None:
    """`--rate` publishes on schedule (an open loop) for `--duration` seconds: the request count follows from
    rate x duration, every request is answered once, and the report carries the percentiles at that rate,
    the target and achieved rates, with the same-run baseline ratio as in the default mode. (Behaviour only:
    how fast this machine is decides the figures, never the test.)"""
    out = tmp_path / "report.json"
    code = signer_loadtest.main([
        "--rate", "20", "--duration", "1.5", "--ca-algorithm", "p256", "--lint", "off", "--partitions", "2",
        "--baseline-seconds", "0.4", "--bootstrap", stack_env["CACERT_KAFKA_BOOTSTRAP"],
        "--mongo-url", stack_env["CACERT_MONGO_URL"], "--database", "signer_loadtest_ci", "--topic-prefix", "ci-load",
        "--out", str(out), "--log-dir", str(tmp_path / "logs"),
    ])
    report = json.loads(out.read_text())
    assert code == 0
    assert report["mode"] == "open_loop" and report["requests"] == 30
    assert (report["issued"], report["duplicates"], report["missing"]) == (30, 0, 0)
    assert report["target_rate_per_s"] == 20 and report["achieved_rate_per_s"] > 0
    assert isinstance(report["late_publishes"], int)
    assert 0 < report["p50_ms"] <= report["p90_ms"] <= report["p99_ms"] <= report["max_ms"]
    assert abs(report["ratio"] - report["throughput_per_s"] / report["baseline_sign_per_s"]) < 0.002
    (run,) = report["runs"]
    assert run["mode"] == "open_loop" and run["requests"] == 30
    client: MongoClient[dict[str, Any]] = MongoClient(stack_env["CACERT_MONGO_URL"])
    try:
        assert client["signer_loadtest_ci"].list_collection_names() == [], "--database is left empty"
    finally:
        client.close()
