"""Debian's `knot` and `unbound` packages for the local DNS servers, installed with apt-get when missing
(devstack/debian.py: their own services stay stopped and disabled; ours run from their own configs on
the stack's ports).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from devstack import debian, paths
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
APPARMOR_PROFILES = Path("/sys/kernel/security/apparmor/profiles")
_SBIN = ("/usr/sbin", "/sbin", "/usr/local/sbin")


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
    missing = missing_packages()
    if not missing:
        return
    debian.install(missing, purpose="the local DNS", units=SYSTEM_UNITS, say=say)
    still = missing_packages()
    if still:
        raise StackError(f"apt-get installed {' '.join(missing)} but {', '.join(still)} still lack programs")


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
