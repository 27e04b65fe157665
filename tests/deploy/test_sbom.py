"""Each Python image has a CycloneDX SBOM naming every package it installs, at the locked version and
with the locked hashes (issue 20 item 5): `python -m devstack.sbom`, with CycloneDX's own tool."""

from __future__ import annotations

import json
import re
from pathlib import Path

from devstack import sbom
from tests.deploy.test_images import IMAGES, _locked


def test_every_python_image_gets_an_sbom_of_exactly_its_locked_packages(tmp_path: Path) -> None:
    assert sbom.main(["--out", str(tmp_path), "--version", "1.2.3"]) == 0
    locked = _locked("requirements-runtime.lock")
    assert set(sbom.PYTHON_IMAGES) == {i for i in IMAGES if i != "resolver"}
    for image in sbom.PYTHON_IMAGES:
        document = json.loads((tmp_path / f"{image}.cdx.json").read_text())
        assert document["bomFormat"] == "CycloneDX" and document["specVersion"] == "1.6"
        subject = document["metadata"]["component"]
        assert (subject["name"], subject["version"], subject["type"]) == (f"cacert/{image}", "1.2.3", "container")
        listed = {}
        for component in document["components"]:
            name = re.sub(r"[-_.]+", "-", component["name"]).lower()
            hashes = {h["content"] for ref in component.get("externalReferences", []) for h in ref.get("hashes", [])}
            listed[name] = (component["version"], hashes)
            assert component["purl"].startswith("pkg:pypi/") and component["purl"].endswith(f"@{component['version']}")
        assert listed.keys() == locked.keys(), "the SBOM lists exactly what the image installs"
        for name, (version, files) in locked.items():
            assert listed[name] == (version, set(files)), name
