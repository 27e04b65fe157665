"""The e2e report's targets and README table, from a report's JSON (no servers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks import e2e_report
from benchmarks.e2e_load import STAGES, stage_split


def _report(algorithm: str, steady: float, cpu: float, p50: float, p99: float, achieved: float) -> dict[str, Any]:
    level = {"offered_per_s": 10.0, "http_p50_ms": 20.0}
    return {
        "started_at": "2026-12-03 22:45 UTC", "revision": "abc1234",
        "machine": {"loadavg_start": [0.5, 0.4, 0.3], "nproc": 2},
        "setup": {"ca_algorithm": algorithm},
        "signer_only": {"runs": [{"lint": False, "throughput_per_s": 300.0, "ratio": 0.9},
                                 {"lint": True, "throughput_per_s": 100.0, "ratio": 0.61}]},
        "configs": [{
            "replicas": 1,
            "saturation": {"steady_per_s": steady, "cpu_ms_per_cert": {"registration": cpu / 2, "signer": cpu / 2}},
            "levels": [{"fraction": 0.5, "p50_ms": p50, "p99_ms": p99, "achieved_per_s": 5.0, **level},
                       {"fraction": 0.9, "p50_ms": p50, "p99_ms": p99, "achieved_per_s": achieved, **level}],
            "stage_seconds": {"check_lint_sign": 3.0, "store": 1.0},
            "mean_batch_size": 4.0,
        }],
    }


def test_targets_are_met_or_missed_against_the_issues_goals() -> None:
    met = {row["target"]: row["met"] for row in e2e_report.targets(_report("rsa4096", 60, 20, 40, 200, 9.5))}
    assert all(met.values()), met
    missed = {row["target"]: row for row in e2e_report.targets(_report("rsa4096", 20, 70, 120, 900, 6.0))}
    assert [row["met"] for row in missed.values()] == [False, False, False, False, False, True]
    assert missed["end-to-end saturation / signer alone with lint on (1 replica(s))"]["measured"] == 0.2
    # The signer's 0.6 is set for RSA-4096; with another key it is shown, not judged.
    p256 = e2e_report.targets(_report("p256", 60, 20, 40, 200, 9.5))
    assert p256[-1]["met"] is None and "p256" in p256[-1]["note"]


def test_a_missed_target_says_where_the_time_goes_per_stage() -> None:
    report = _report("rsa4096", 20, 70, 120, 900, 6.0)
    report["targets"] = e2e_report.targets(report)
    text = "\n".join(e2e_report.targets_section(report))
    assert "**missed**" in text
    assert "the HTTP answer" in text and "took 20 ms and the rest" in text and "100 ms" in text
    assert "check_lint_sign 75%, store 25%" in text


def test_a_missed_lint_ratio_says_what_the_lint_costs_against_bare_signing() -> None:
    report = _report("rsa4096", 20, 70, 120, 900, 6.0)
    report["signer_only"] = {"baseline_sign_per_s": 500.0, "runs": [
        {"lint": False, "throughput_per_s": 340.0, "ratio": 0.68, "cpu_ms_per_request": {"signing_workers": 2.4}},
        {"lint": True, "throughput_per_s": 180.0, "ratio": 0.36, "cpu_ms_per_request": {"signing_workers": 6.3}}]}
    text = e2e_report.remaining_time(report)
    assert "6.3 ms of CPU per certificate against 2.4 ms with lint off" in text
    assert "pkilint costs about 3.9 ms" in text and "bare building and signing costs 2.00 ms" in text
    assert "lint on reaches 0.36 of bare signing (lint off: 0.68)" in text
    report["signer_only"]["runs"][1]["ratio"] = 0.61  # met: nothing to explain
    assert "pkilint" not in e2e_report.remaining_time(report)


def test_the_readme_table_is_rewritten_between_its_markers_from_the_json(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.json").write_text(json.dumps(_report("p256", 60, 20, 40, 200, 9.5)))
    (tmp_path / "b.json").write_text(json.dumps(_report("rsa4096", 20, 70, 120, 900, 6.0)))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{e2e_report.README_BEGIN}\nold table\n{e2e_report.README_END}\nafter\n")
    assert e2e_report.main(["--readme-from", "a.json", "b.json"]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("after\n")
    rows = [line for line in text.splitlines() if line.startswith("| P256") or line.startswith("| RSA4096")]
    assert rows == [
        "| P256 | 1 | 60 | 100 | 0.6 | 20.0 | 40 / 200 | 0.95 of offered | 0.5 | 2026-12-03 22:45 UTC, abc1234 |",
        "| RSA4096 | 1 | 20 | 100 | 0.2 | 70.0 | 120 / 900 | 0.60 of offered | 0.5 | 2026-12-03 22:45 UTC, abc1234 |",
    ]
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no <!-- e2e-table:begin"):
        e2e_report.main(["--readme-from", "a.json"])


def test_a_requests_latency_is_split_at_the_moments_its_events_were_produced() -> None:
    produced = {"domain.caa_check_requested": 10.010, "domain.caa_checked": 10.012, "csr.approved": 10.030,
                "cert.issued": 10.045}
    split = stage_split(10.0, 10.050, produced)
    assert split is not None and list(split) == [name for name, _, _ in STAGES]
    assert {k: round(v, 3) for k, v in split.items()} == {
        "request": 10.0, "caa_answer": 2.0, "approval": 18.0, "signer": 15.0, "delivery": 5.0}
    assert stage_split(10.0, 10.050, {k: v for k, v in produced.items() if k != "csr.approved"}) is None
    report = _report("rsa4096", 20, 70, 120, 900, 6.0)
    report["configs"][0]["levels"][0]["stage_p50_ms"] = split
    assert "18 ms in approval (Kafka to registration" in e2e_report.remaining_time(report)
