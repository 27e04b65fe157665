"""Add the sha256 of every file pip may install to a lock file (`./dev lock` runs it for both).

    python -m devstack.lockfile requirements.lock            # runtime and dev: what ./dev installs
    python -m devstack.lockfile requirements-runtime.lock    # runtime only: what the images install

The pins (`name==version`, one per line) come from `pip freeze` of a fresh environment; this adds, for
each, the hashes the package index publishes (PEP 691 JSON, the `hashes` of each file) for the files that
can install where the project runs: CPython 3.11 on Linux x86-64 or aarch64 (the machines and the
`python:3.11-slim` images), pure-Python wheels, and the source distribution. Installing with
`pip install --require-hashes -r requirements.lock` then refuses any file whose hash is not listed, so a
compromised or swapped upload cannot slip into a build.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from pathlib import Path

INDEX = "https://pypi.org/simple/{}/"
_REGENERATE = "Regenerate with: ./dev lock"
HEADERS = {
    "requirements.lock": (
        "# Pinned versions of every dependency (runtime and dev), with the sha256 of each file pip may\n"
        "# install. ./dev installs with `pip install --require-hashes -r requirements.lock`, then the project\n"
        f"# with --no-deps. {_REGENERATE}\n"),
    "requirements-runtime.lock": (
        "# The runtime dependencies alone (the same versions as requirements.lock), with their sha256: what\n"
        "# the images install, `pip install --require-hashes -r requirements-runtime.lock`, then the project\n"
        f"# with --no-deps. {_REGENERATE}\n"),
}
WHEEL = re.compile(r"^(?P<name>.+?)-(?P<version>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$")
PLATFORMS = re.compile(r"^(any|(many)?linux[_0-9a-z]*_(x86_64|aarch64))$")


def installable(filename: str) -> bool:
    """A file pip could pick for CPython 3.11 on Linux x86-64/aarch64: an sdist or a matching wheel."""
    if filename.endswith((".tar.gz", ".zip")):
        return True
    match = WHEEL.match(filename)
    if match is None:
        return False
    pythons = set(match["py"].split("."))
    abis = set(match["abi"].split("."))
    platforms = match["plat"].split(".")
    python_ok = bool(pythons & {"cp311", "py3", "py311"}) or (
        "abi3" in abis and any(re.fullmatch(r"cp3(\d+)", p) and int(p[3:]) <= 11 for p in pythons))
    abi_ok = bool(abis & {"none", "abi3", "cp311"})
    return python_ok and abi_ok and any(PLATFORMS.match(p) for p in platforms)


def hashes_of(name: str, version: str) -> list[str]:
    request = urllib.request.Request(INDEX.format(re.sub(r"[-_.]+", "-", name).lower()),  # noqa: S310 (https)
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request, timeout=60) as reply:  # noqa: S310 (the package index, https)
        files = json.load(reply)["files"]
    found = sorted({f["hashes"]["sha256"] for f in files
                    if _version_of(f["filename"], name) == version and installable(f["filename"])
                    and "sha256" in f.get("hashes", {})})
    if not found:
        raise SystemExit(f"no installable file of {name}=={version} with a sha256 on the index")
    return found


def _version_of(filename: str, name: str) -> str | None:
    match = WHEEL.match(filename)
    if match:
        return match["version"]
    stem = re.sub(r"\.(tar\.gz|zip)$", "", filename)
    normal = re.sub(r"[-_.]+", "[-_.]", re.escape(name.lower()).replace("\\", ""))
    sdist = re.fullmatch(rf"(?i){normal}-(.+)", stem)
    return sdist.group(1) if sdist else None


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "requirements.lock")
    pins = [line.split("#")[0].strip().split(" ")[0] for line in path.read_text().splitlines()]
    pins = [p for p in pins if "==" in p]
    out = [HEADERS[path.name].rstrip("\n")]
    for pin in pins:
        name, version = pin.split("==")
        hashes = hashes_of(name, version)
        out.append(f"{pin} \\")
        out += [f"    --hash=sha256:{h}" + (" \\" if i < len(hashes) - 1 else "") for i, h in enumerate(hashes)]
        print(f"{pin}: {len(hashes)} files", file=sys.stderr)
    path.write_text("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
