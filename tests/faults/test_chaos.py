"""The whole system under faults, CI size (issue 23): `benchmarks.chaos` with a fixed seed.

Every service runs as real processes on a namespace of its own (topics, groups, databases, free ports),
on the suite's stack; member flows (sign-up to revocation, OCSP asked along the way) start at a steady
rate while the seeded scheduler kills, stops and pauses every process kind and stops / starts Kafka,
FerretDB and the SMTP relay; every third member also orders a certificate by ACME (the ACME service is one
of the processes). Then the counts the run prints itself must all be right. The long run
(30 minutes and more) is `python -m benchmarks.chaos`; its last table is in the README.

CACERT_CHAOS_MINUTES / _RATE / _FAULT_EVERY / _SEED change the size (defaults: 2 minutes of load at
0.4 flows/s, a fault every 7 s on average, seed 23): about 50 flows and 4-8 faults, at least one of each
action (the load goes on past two minutes until then, on a slow machine).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from benchmarks.chaos import Options, run, table

MINUTES = float(os.environ.get("CACERT_CHAOS_MINUTES", "2"))
RATE = float(os.environ.get("CACERT_CHAOS_RATE", "0.4"))
FAULT_EVERY = float(os.environ.get("CACERT_CHAOS_FAULT_EVERY", "7"))
SEED = int(os.environ.get("CACERT_CHAOS_SEED", "23"))
MIN_FAULTS = 4  # one of each action (kill -9, SIGTERM, SIGSTOP, a stack component): the load goes on until done

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(int(MINUTES * 60) + 1500)]


async def test_chaos_run_counts_are_exact(stack_env: dict[str, str], tmp_path: Path) -> None:
    report = await run(Options(seed=SEED, minutes=MINUTES, rate=RATE, fault_every=FAULT_EVERY, work=tmp_path,
                               min_faults=MIN_FAULTS),
                       say=lambda line: print(line, file=sys.stderr, flush=True))
    print("\nCHAOS " + json.dumps({k: report[k] for k in ("seed", "counts", "faults", "cold_restart")},
                                  default=str), file=sys.stderr)
    print(table(report), file=sys.stderr)
    counts = report["counts"]
    assert report["problems"] == [], (report["problems"], json.dumps(counts, indent=1, default=str))
    # the counts the issue names, each asserted on its own so a failure says which
    assert counts["flows"]["completed"] == counts["flows"]["started"] > 0
    assert counts["certificates"]["approved_requests_without_exactly_one"] == 0
    assert counts["certificates"]["members_with_certs_not_equal_approved"] == 0
    assert counts["certificates"]["issued"] == counts["requests"]["approved"]
    assert counts["mail"]["sent_notices_missing_in_mailbox"] == 0
    assert counts["mail"]["by_state"].get("sent") == counts["mail"]["notices"]
    assert counts["ocsp"]["wrong"] == 0 and counts["ocsp"]["answers"] > 0
    assert counts["http"]["retried_never_ok"] == 0
    assert counts["dead_letters"] == {}
    assert counts["outbox_unflushed"] == {}
    assert counts["stuck"] == {"requests": 0, "mails": 0, "domain_claims_pending": 0, "acme_orders_processing": 0,
                               "flows_unfinished": 0}
    # every third member also ordered by ACME: each order it finalized ended valid, downloaded and revoked
    acme = counts["acme"]
    ordered = sum(1 for index in range(counts["flows"]["started"]) if index % acme["every_nth_flow"] == 0)
    assert acme["certificates_downloaded"] == acme["revoked"] == ordered > 0, acme
    assert acme["orders_by_status"].get("valid") == ordered and "processing" not in acme["orders_by_status"], acme
    assert all(v["exit"] == 0 for v in report["audit"].values()), report["audit"]
    assert all(v["exit"] == 0 for v in report["audit_after_restart"].values()), report["audit_after_restart"]
    assert report["cold_restart"]["same_crl_entries"] and report["cold_restart"]["same_ocsp_answers"]
    kinds = {k.split(":")[0] for k in report["faults"]["by_kind"]}
    assert {"kill9", "sigterm", "pause", "stack"} <= kinds, report["faults"]["by_kind"]
