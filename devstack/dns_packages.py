"""Debian's `knot` and `unbound` packages for the local DNS servers, installed with apt-get when missing.

Installing a Debian package normally also enables and starts its system service; here that would be
a second Unbound (the package's own, on port 53) next to ours. So the install runs with a
`policy-rc.d` that forbids starting services (written only if the machine has none, removed again
afterwards), and on a machine managed by systemd the two units are then disabled, so they do not
start at the next boot either. We never touch a Knot or Unbound the machine had before: they run
from their own configs on their own ports, and ours from ours on the stack's ports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

from devstack import paths
from devstack.component import Say
from devstack.errors import StackError

PACKAGES = ("knot", "unbound")
PROGRAMS = {
    "knotd": "knot", "knotc": "knot", "keymgr": "knot",
    "unbound": "unbound", "unbound-control": "unbound", "unbound-checkconf": "unbound",
}  # fmt: skip
"""Every program the DNS components run, and the package that ships it."""
SYSTEM_UNITS = ("knot.service", "unbound.service", "unbound-resolvconf.service")
"""The packages' systemd units, disabled after we installed the packages."""
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
APPARMOR_PROFILES = Path("/sys/kernel/security/apparmor/profiles")
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_install_lock = threading.Lock()


def program(name: str) -> str | None:
    """Absolute path of `name`, looked up on PATH and in the sbin directories a user's PATH may lack."""
    found = shutil.which(name)
    if found:
        return found
    for directory in _SBIN:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def require(name: str) -> str:
    """Absolute path of one of PROGRAMS, or a StackError saying which package to install."""
    found = program(name)
    if found is None:
        raise StackError(f"`{name}` not found: install Debian's `{PROGRAMS[name]}` package "
                         f"(`apt-get install {' '.join(PACKAGES)}`)")  # fmt: skip
    return found


def missing_packages() -> list[str]:
    return sorted({package for name, package in PROGRAMS.items() if program(name) is None})


def ensure_installed(say: Say) -> None:
    """Install knot and unbound with apt-get unless every program is there already. Idempotent."""
    with _install_lock:
        missing = missing_packages()
        if not missing:
            return
        hint = f"install them yourself (`sudo apt-get install {' '.join(PACKAGES)}`) and run again"
        apt_get = shutil.which("apt-get")
        if apt_get is None:
            raise StackError(f"the local DNS needs Debian's {' and '.join(missing)} and there is no apt-get: {hint}")
        if os.geteuid() != 0:
            raise StackError(f"the local DNS needs Debian's {' and '.join(missing)}, and installing needs root: {hint}")
        say(f"installing Debian's {' '.join(missing)} with apt-get (first run only)")
        _apt_install(apt_get, missing)
        _disable_system_services()
        still = missing_packages()
        if still:
            raise StackError(f"apt-get installed {' '.join(missing)} but {', '.join(still)} still lack programs")


def _apt_install(apt_get: str, packages: list[str]) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = paths.logs_dir() / "dns-install.log"
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
    POLICY_RC_D.write_text("#!/bin/sh\n# written by devstack while it installs knot and unbound\nexit 101\n")
    POLICY_RC_D.chmod(0o755)
    return True


def _disable_system_services() -> None:
    """Keep the packages' own daemons from running now or after a reboot (systemd machines only)."""
    systemctl = shutil.which("systemctl")
    if systemctl is None or not Path("/run/systemd/system").is_dir():
        return  # no systemd: with the policy-rc.d above, nothing was started
    for unit in SYSTEM_UNITS:
        subprocess.run([systemctl, "disable", "--now", unit], capture_output=True, check=False, timeout=60,
                       stdin=subprocess.DEVNULL)  # fmt: skip


def _tail(result: subprocess.CompletedProcess[str]) -> str:
    return "\n".join((result.stdout + result.stderr).splitlines()[-15:])


def runnable(name: str) -> str:
    """Path to run `name` from: the installed program, or a copy of it if AppArmor confines the original.

    Debian's unbound package ships an AppArmor profile attached to /usr/sbin/unbound that lets the
    daemon read /etc/unbound and /var/lib/unbound only, so with AppArmor enforcing it could not read
    our config in the state dir. Profiles attach by path, so a copy in the cache dir runs unconfined,
    like any other program the stack runs there (the FerretDB binary).
    """
    installed = require(name)
    if not _confined(installed):
        return installed
    copy = paths.cache_dir() / "bin" / name
    source = os.stat(installed)
    try:
        current = os.stat(copy)
        fresh = (current.st_size, int(current.st_mtime)) == (source.st_size, int(source.st_mtime))
    except FileNotFoundError:
        fresh = False
    if not fresh:
        copy.parent.mkdir(parents=True, exist_ok=True)
        partial = copy.with_name(copy.name + ".partial")
        shutil.copy2(installed, partial)
        partial.replace(copy)
    return str(copy)


def _confined(binary: str) -> bool:
    """True if an AppArmor profile in enforce mode is loaded for `binary` (by name or by path)."""
    try:
        profiles = APPARMOR_PROFILES.read_text().splitlines()
    except OSError:
        return False  # no AppArmor, or we may not read its list (then we are not root: nothing to copy)
    names = {binary, os.path.basename(binary), os.path.realpath(binary)}
    for line in profiles:
        profile, _, mode = line.rpartition(" ")
        if mode == "(enforce)" and profile in names:
            return True
    return False
