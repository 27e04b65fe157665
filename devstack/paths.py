"""Where the local stack keeps downloads and runtime state.

Two roots, both outside the repository so a `git clean` never costs a re-download and a fresh
clone reuses what an earlier clone fetched:

* the cache (`CACERT_STACK_CACHE`, default `~/.cache/cacert-stack`): Kafka jars and the FerretDB
  binary. Safe to delete; the next `up` rebuilds it.
* the state (`CACERT_STACK_STATE`, default `~/.local/state/cacert-stack`): pid files, logs, and the
  data of Kafka, FerretDB, the mailbox and the DNS servers. `down --wipe` deletes it.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
"""devstack/ itself: the pom and the log4j2 config ship next to the code."""


def _env_dir(var: str, default: Path) -> Path:
    value = os.environ.get(var, "").strip()
    return Path(value).expanduser().resolve() if value else default


def cache_dir() -> Path:
    """Root of downloaded and built artefacts (read at call time so tests can point it elsewhere)."""
    return _env_dir("CACERT_STACK_CACHE", Path.home() / ".cache" / "cacert-stack")


def state_dir() -> Path:
    """Root of pid files, logs and component data."""
    return _env_dir("CACERT_STACK_STATE", Path.home() / ".local" / "state" / "cacert-stack")


def run_dir() -> Path:
    """Pid files and the stack lock."""
    return state_dir() / "run"


def logs_dir() -> Path:
    """One log file per component (its stdout and stderr)."""
    return state_dir() / "logs"


def log_file(name: str) -> Path:
    return logs_dir() / f"{name}.log"


def pid_file(name: str) -> Path:
    return run_dir() / f"{name}.pid"


def dns_dir() -> Path:
    """The local DNS servers' files: Knot's config, zones and keys, Unbound's config, the TSIG secret."""
    return state_dir() / "dns"


def dns_tsig_secret_file() -> Path:
    """The TSIG secret (base64) that signs dynamic updates: generated once per state dir, mode 0600."""
    return dns_dir() / "tsig.secret"


def dns_control_config() -> Path:
    """A config file for `unbound-control -c` (remote control of the local validating resolver)."""
    return dns_dir() / "unbound" / "control.conf"
