"""Smoke test of the end-to-end benchmark report: the whole pipeline with a tiny load (one replica, one level)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import e2e_report
from benchmarks.e2e_load import STAGES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def test_tiny_report_has_every_key_and_a_plot(stack_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    opts = e2e_report.Options(
        requests_per_level=5,
        replicas=(1,),
        levels=(0.5,),
        saturation_requests=10,
        concurrency=5,
        members=1,
        partitions=2,
        signer_requests=10,
        signer_lint="on",
        baseline_seconds=0.5,
        timeout=60,
        bootstrap=stack_env["CACERT_KAFKA_BOOTSTRAP"],
        mongo_url=stack_env["CACERT_MONGO_URL"],
        out=out,
        command="smoke",
    )
    report = e2e_report.run(opts)

    assert set(e2e_report.REPORT_KEYS) <= report.keys()
    (config,) = report["configs"]
    assert config["replicas"] == 1
    assert config["saturation"]["issued"] == 10 and config["saturation"]["steady_per_s"] > 0
    (level,) = config["levels"]
    assert level["fraction"] == 0.5 and level["issued"] == level["requests"] == 5
    assert level["missing"] == level["duplicates"] == level["http_errors"] == 0
    # every request's latency split at the moments its events were produced, each stage measured
    assert set(level["stage_p50_ms"]) == {name for name, _, _ in STAGES}
    assert all(v is not None and v >= 0 for v in level["stage_p50_ms"].values()), level["stage_p50_ms"]
    for key in ("offered_per_s", "achieved_per_s", "p50_ms", "p99_ms"):
        assert level[key] is not None and level[key] > 0, key
    # Issue 21 item 1: database commands and Kafka records per certificate, per service, measured.
    traffic = config["saturation"]["traffic_per_cert"]
    assert traffic["registration"]["db_commands"] > 0 and traffic["signer"]["db_commands"] > 0
    assert traffic["registration"]["kafka_produced"] >= 1  # at least its csr.approved per certificate
    assert traffic["signer"]["kafka_consumed"] >= 1 and traffic["signer"]["kafka_produced"] >= 1
    assert any(key.startswith("db insert ") or key.startswith("db update ") for key in traffic["signer"])
    assert report["signer_only"]["baseline_sign_per_s"] > 0 and report["signer_only"]["ratio"] > 0
    assert report["machine"]["nproc"] >= 1 and report["machine"]["loadavg_start"]
    # Issue 21's targets, each with this run's value: throughput against the signer alone, CPU, latency at 50 %.
    by_name = {row["target"]: row for row in report["targets"]}
    assert {"end-to-end saturation / signer alone with lint on (1 replica(s))",
            "CPU per certificate end to end, ms (1 replica(s))",
            "p50 at 50 % of saturation, ms (1 replica(s))"} <= by_name.keys()
    assert all(row["measured"] is not None and row["measured"] > 0 for row in by_name.values())

    text = out.read_text()
    for heading in (
        "## Machine",
        "## End-to-end results",
        "## Signer alone against bare signing",
        "## Per certificate, per service",
        "## Where the time goes",
        "## Targets (issue 21)",
    ):
        assert heading in text
    assert "p50 (ms)" in text and "p99 (ms)" in text and "ratio" in text
    png = tmp_path / "benchmarks" / "e2e_latency.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](benchmarks/e2e_latency.png)" in text
