"""The e2e report's CPU per certificate counts the signer's signing workers (they lint and sign), and a
process that ends between two readings still counts, once (its parent's cutime)."""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.e2e_system import cpu_snapshot

# A stand-in signer: one worker process that burns 0.3 s of CPU, then ends when told, and is reaped.
SIGNER = """
import subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", "import time\\nt0 = time.process_time()\\n"
                           "while time.process_time() - t0 < 0.3: pass\\nprint('burnt', flush=True)\\ninput()"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
print(worker.stdout.readline().strip(), flush=True)
input()
worker.stdin.close()
worker.wait()
print("reaped", flush=True)
input()
"""


def test_a_signing_workers_cpu_counts_and_stays_counted_after_it_ends() -> None:
    signer = subprocess.Popen([sys.executable, "-c", SIGNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert signer.stdin is not None and signer.stdout is not None
    try:
        assert signer.stdout.readline().strip() == "burnt"
        working = cpu_snapshot([signer.pid], os.getpid())
        assert working["signing_workers"] >= 0.25
        signer.stdin.write("\n")
        signer.stdin.flush()
        assert signer.stdout.readline().strip() == "reaped"
        ended = cpu_snapshot([signer.pid], os.getpid())
        assert ended["signing_workers"] == 0  # no worker now
        assert ended["signer"] >= working["signer"] + working["signing_workers"]  # its CPU moved, not lost
    finally:
        signer.kill()
        signer.wait()
