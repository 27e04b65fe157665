"""axe-core is pinned exactly, with the tarball's sha512, and installs into the cache, not the repo."""

from __future__ import annotations

import json
import re

from devstack import axe, paths


def test_axe_core_is_pinned_to_one_version_with_its_integrity() -> None:
    lock = json.loads((axe.MANIFEST_DIR / "package-lock.json").read_text())
    assert re.fullmatch(r"\d+\.\d+\.\d+", axe.version()), "an exact version, no range"
    locked = lock["packages"]["node_modules/axe-core"]
    assert locked["version"] == axe.version()
    assert locked["integrity"].startswith("sha512-")
    assert set(lock["packages"]) == {"", "node_modules/axe-core"}, "axe-core has no dependencies to trust"


def test_axe_core_installs_into_the_stack_cache_outside_the_repository() -> None:
    assert axe.install_dir() == paths.cache_dir() / "npm" / f"axe-core-{axe.version()}"
    assert paths.PACKAGE_DIR.parent not in axe.script().parents
