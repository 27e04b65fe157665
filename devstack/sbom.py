"""A CycloneDX SBOM for each Python image: `python -m devstack.sbom --out DIR [--version V]`.

Each service image installs exactly `requirements-runtime.lock` (`pip install --require-hashes`) and
then the project, so its software bill of materials is that lock: every package with its version, its
PackageURL and the sha256 of every file pip may install for it. `cyclonedx-py` (CycloneDX's own tool,
from PyPI) reads the lock and the project's `pyproject.toml`, validates the document against the
CycloneDX 1.6 schema, and this module names the image as the SBOM's subject. The release process
writes them beside the images it pushes (deploy/k8s/README.md, "Images"). The resolver image holds no
Python; its bill of materials is Debian's package list, taken from the built image at release.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON_IMAGES = ("registration", "domain-verify", "signer", "notifier", "acme")
LOCK = ROOT / "requirements-runtime.lock"


def _cyclonedx() -> dict[str, Any]:
    tool = Path(sys.executable).with_name("cyclonedx-py")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bom.json"
        result = subprocess.run(
            [str(tool), "requirements", str(LOCK), "--pyproject", str(ROOT / "pyproject.toml"),
             "--spec-version", "1.6", "--output-reproducible", "--validate", "-o", str(out)],
            capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "0")},
        )
        if result.returncode != 0:
            raise RuntimeError(f"cyclonedx-py failed:\n{result.stderr}")
        document: dict[str, Any] = json.loads(out.read_text())
    return document


def image_sboms(version: str) -> dict[str, dict[str, Any]]:
    """image name -> its CycloneDX document (the lock read once: every Python image installs the same)."""
    base = _cyclonedx()
    sboms = {}
    for image in PYTHON_IMAGES:
        document = json.loads(json.dumps(base))
        subject = document["metadata"]["component"]
        subject.update(name=f"cacert/{image}", version=version, type="container",
                       description=f"{subject.get('description', '').rstrip('.')}: the {image} image")
        document["metadata"]["properties"] = [
            *document["metadata"].get("properties", []),
            {"name": "cacert:installed-from", "value": "requirements-runtime.lock (pip --require-hashes)"}]
        sboms[image] = document
    return sboms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.sbom", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for <image>.cdx.json")
    parser.add_argument("--version", default="0.1.0", help="the release the images are tagged with")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for image, document in image_sboms(args.version).items():
        path = args.out / f"{image}.cdx.json"
        path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
        print(f"{path}: {len(document['components'])} components")
    return 0


if __name__ == "__main__":
    sys.exit(main())
