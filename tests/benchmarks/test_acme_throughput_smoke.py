"""Smoke test of the ACME throughput benchmark: a tiny run against the whole system reports both paths, the
ratio and the load average, with nothing lost, failed or duplicated. No speed bound (not even the 0.8 target):
speed is what the benchmark prints, not what a test asserts."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from benchmarks import acme_throughput

PATH_KEYS = {"count", "completed", "seconds", "completed_per_s", "p50_ms", "p99_ms", "lost", "failed", "duplicate",
             "unlisted", "per_phase_per_s", "warmup"}


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (a loopback URL of the stack)
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def system() -> dict[str, str]:
    """The whole system (tests/e2e's `system`), reused as it is when registration and ACME answer: the
    benchmark measures whatever runs and must not restart a system other sessions are using."""
    from devstack import system as devstack_system

    urls = devstack_system.urls()
    if _answers(urls["api"] + "/readyz") and _answers(urls["acme_directory"]):
        return urls
    return devstack_system.up(lambda line: print(line, file=sys.stderr))


@pytest.mark.integration
@pytest.mark.timeout(300)
async def test_a_tiny_run_reports_both_paths_with_nothing_lost_or_duplicated(system: dict[str, str]) -> None:
    opts = acme_throughput.Options(orders=6, concurrency=3, warmup=1, timeout=90, settle=10, mail_wait=60)
    result = await acme_throughput.measure(opts, system)

    for path in ("api", "acme"):
        summary = result[path]
        assert PATH_KEYS <= summary.keys(), path
        assert summary["count"] == summary["completed"] == 6, summary
        assert summary["lost"] == summary["failed"] == summary["duplicate"] == summary["unlisted"] == 0, summary
        assert summary["completed_per_s"] > 0 and 0 < summary["p50_ms"] <= summary["p99_ms"], summary
        cost = result["where_the_time_goes"][path]
        assert cost["cpu_ms_per_order"]["load_generator"] >= 0 and "acme" in cost and "registration" in cost
    assert result["acme_accounts"] == 3
    assert [p["path"] for p in result["phases"]] == ["api", "acme"]
    assert result["ratio"] > 0 and result["target"] == 0.8 and isinstance(result["pass"], bool)
    assert len(result["machine"]["loadavg_before"]) == len(result["machine"]["loadavg_after"]) == 3
    assert "/new-order" in result["where_the_time_goes"]["acme"]["acme"]["http"]
    assert result["mails_deleted"] >= 12  # one per certificate, the confirmation mail too
    assert acme_throughput.bad(result) == []
    json.dumps(result)  # what the command prints


def test_the_command_fails_when_an_order_is_lost_or_duplicated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    def path(**counts: int) -> dict[str, Any]:
        return {"count": 2, "completed": 2, "completed_per_s": 1.0, "lost": 0, "failed": 0, "duplicate": 0,
                "warmup": {"count": 1, "lost": 0, "failed": 0}, **counts}

    outcomes = iter([
        {"api": path(), "acme": path(), "ratio": 1.0, "pass": True},
        {"api": path(), "acme": path(lost=1), "ratio": 1.0, "pass": True},
        {"api": path(duplicate=1), "acme": path(), "ratio": 1.0, "pass": True},
        {"api": path(), "acme": path(), "ratio": 0.5, "pass": False},  # slow is reported, not a failure
    ])

    async def measure(opts: acme_throughput.Options, *_: Any) -> dict[str, Any]:
        return next(outcomes)

    monkeypatch.setattr(acme_throughput, "measure", measure)
    out = tmp_path / "result.json"
    assert acme_throughput.main(["--orders", "2", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["pass"] is True
    assert acme_throughput.main(["--orders", "2"]) == 1
    assert "acme: lost 1" in capsys.readouterr().err
    assert acme_throughput.main(["--orders", "2"]) == 1
    assert "api: duplicate 1" in capsys.readouterr().err
    assert acme_throughput.main(["--orders", "2"]) == 0


def test_the_e2e_report_keeps_the_sections_below_its_marker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """docs/benchmarks.md holds the ACME throughput section below e2e_report's page: a rewrite keeps it."""
    from benchmarks import e2e_report

    monkeypatch.setattr(e2e_report, "plot", lambda report, png: None)
    monkeypatch.setattr(e2e_report, "render", lambda report, rel: f"# page {report['n']}\n")
    out = tmp_path / "benchmarks.md"
    opts = e2e_report.Options(out=out)
    e2e_report.write({"n": 1}, opts)
    assert out.read_text() == "# page 1\n"
    out.write_text(out.read_text() + f"\n{e2e_report.KEPT}\n\n## ACME\n\nfigures\n")
    e2e_report.write({"n": 2}, opts)
    assert out.read_text() == f"# page 2\n\n{e2e_report.KEPT}\n\n## ACME\n\nfigures\n"
