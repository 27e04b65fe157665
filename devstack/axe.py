"""axe-core (the accessibility rules engine) for the portal's browser walk, installed into the stack cache.

The version and the tarball's sha512 are pinned by `devstack/axe/package.json` and its committed
`package-lock.json`; `npm ci` installs exactly that and refuses a tarball whose integrity differs.
It lands in `<cache>/npm/axe-core-<version>/` (outside the repository, like the Kafka jars), and
`./dev test` runs `python -m devstack axe-core` so a fresh clone has it before the tests start.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from devstack import paths
from devstack.errors import StackError

MANIFEST_DIR = paths.PACKAGE_DIR / "axe"
NPM_TIMEOUT_SECONDS = 300


def version() -> str:
    """The pinned axe-core version (exact, from devstack/axe/package.json)."""
    manifest = json.loads((MANIFEST_DIR / "package.json").read_text())
    return str(manifest["dependencies"]["axe-core"])


def install_dir() -> Path:
    return paths.cache_dir() / "npm" / f"axe-core-{version()}"


def script() -> Path:
    """Where axe.min.js is once installed (it may not exist yet: see `ensure`)."""
    return install_dir() / "node_modules" / "axe-core" / "axe.min.js"


def installed() -> bool:
    package = install_dir() / "node_modules" / "axe-core" / "package.json"
    try:
        return script().is_file() and json.loads(package.read_text()).get("version") == version()
    except (OSError, ValueError):
        return False


def ensure(say: Callable[[str], None] | None = None) -> Path:
    """Install the pinned axe-core into the cache unless it is there; return the path of axe.min.js."""
    if installed():
        return script()
    npm = shutil.which("npm")
    if npm is None:
        raise StackError("`npm` not found: the browser walk's accessibility check installs axe-core with it"
                         " (e.g. `apt-get install npm`)")
    target = install_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    if say is not None:
        say(f"installing axe-core {version()} from the npm registry into {target} ...")
    with tempfile.TemporaryDirectory(prefix=".install.", dir=target.parent, ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(MANIFEST_DIR / name, work / name)
        # `npm ci` installs exactly the lockfile and checks each tarball against its sha512 integrity.
        result = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", str(work)],
            capture_output=True, text=True, timeout=NPM_TIMEOUT_SECONDS, check=False, cwd=work,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(f"npm ci for axe-core {version()} failed:\n{result.stderr[-2000:]}")
        if not (work / "node_modules" / "axe-core" / "axe.min.js").is_file():
            raise StackError(f"npm ci for axe-core {version()} left no axe.min.js")
        work.chmod(0o755)
        if target.exists() and not installed():  # a broken earlier install: replace it whole
            shutil.rmtree(target)
        try:
            work.rename(target)  # atomic within the cache: a reader sees a whole install or none
        except OSError:
            if not installed():  # not another run that finished first
                raise
    if not installed():
        raise StackError(f"axe-core {version()} is not where it was installed: {target}")
    return script()
