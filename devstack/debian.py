"""Debian packages the local stack needs (knot and unbound for DNS, postgresql for FerretDB's
PostgreSQL backend), installed with apt-get when missing.

Installing a Debian package normally also enables and starts its system service; here that would be
a second server (the package's own, on its default port) next to ours. So the install runs with a
`policy-rc.d` that forbids starting services (written only if the machine has none, removed again
afterwards), and on a machine managed by systemd the packages' units are then disabled, so they do
not start at the next boot either. We never touch a server the machine had before: ours run from
their own configs on the stack's ports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from devstack import paths
from devstack.component import Say
from devstack.errors import StackError

POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
_install_lock = threading.Lock()


def install(packages: Sequence[str], *, purpose: str, units: Sequence[str], say: Say) -> None:
    """apt-get install `packages` (all missing ones at once) for `purpose`, with their services kept
    stopped and `units` disabled. Raises StackError saying what to do when that cannot be done here."""
    with _install_lock:
        hint = f"install them yourself (`sudo apt-get install {' '.join(packages)}`) and run again"
        apt_get = shutil.which("apt-get")
        if apt_get is None:
            raise StackError(f"{purpose} needs Debian's {' and '.join(packages)} and there is no apt-get: {hint}")
        if os.geteuid() != 0:
            raise StackError(f"{purpose} needs Debian's {' and '.join(packages)}, and installing needs root: {hint}")
        say(f"installing Debian's {' '.join(packages)} with apt-get (first run only)")
        _apt_install(apt_get, list(packages))
        _disable_system_services(units)


def _apt_install(apt_get: str, packages: list[str]) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = paths.logs_dir() / "apt-install.log"
    log.parent.mkdir(parents=True, exist_ok=True)

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=900,
                                    stdin=subprocess.DEVNULL)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise StackError(f"`{' '.join(argv)}` took more than 15 minutes; see {log}") from None
        with log.open("a") as handle:
            handle.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}\n")
        return result

    # A fresh VM often runs unattended-upgrades at boot: wait for its dpkg lock instead of failing.
    install = [apt_get, "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q", "--no-install-recommends", *packages]
    guard = _forbid_service_starts()
    try:
        result = run(install)
        if result.returncode != 0 and _lacks_lists(result.stdout + result.stderr):
            update = run([apt_get, "-o", "DPkg::Lock::Timeout=300", "update", "-q"])
            if update.returncode != 0:
                raise StackError(f"apt-get update failed; see {log}:\n{_tail(update)}")
            result = run(install)
        if result.returncode != 0:
            raise StackError(f"apt-get install {' '.join(packages)} failed; see {log}:\n{_tail(result)}")
    finally:
        if guard:
            POLICY_RC_D.unlink(missing_ok=True)


def _lacks_lists(output: str) -> bool:
    """apt-get's words for 'the package lists are empty or stale'."""
    return any(words in output for words in ("Unable to locate package", "has no installation candidate",
                                             "Unable to fetch some archives", "404  Not Found"))  # fmt: skip


def _forbid_service_starts() -> bool:
    """Write a policy-rc.d that refuses every service start (exit 101); True if we wrote it."""
    if POLICY_RC_D.exists():
        return False
    POLICY_RC_D.write_text("#!/bin/sh\n# written by devstack while it installs Debian packages\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    return True


def _disable_system_services(units: Sequence[str]) -> None:
    """Keep the packages' own daemons from running now or after a reboot (systemd machines only)."""
    systemctl = shutil.which("systemctl")
    if systemctl is None or not Path("/run/systemd/system").is_dir():
        return  # no systemd: with the policy-rc.d above, nothing was started
    for unit in units:
        subprocess.run([systemctl, "disable", "--now", unit], capture_output=True, check=False, timeout=60,
                       stdin=subprocess.DEVNULL)  # fmt: skip


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-15:])
