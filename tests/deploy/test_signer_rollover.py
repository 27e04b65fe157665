"""The opt-in root rollover component (deploy/k8s/components/signer-rollover-g2) on top of each overlay: it renders
and validates, changes only the two signers' CA file lists, keeps the G2 roots' keys out of every pod and the
issuing keys out of the status pods, and what each pod then mounts of a real rolled-over CA directory is what the
signer needs to load both generations in that mode."""

from __future__ import annotations

import shutil
from pathlib import Path

import kubernetes_validate
import pytest

from services.signer.ca.ceremony import create_generation, create_hierarchy
from services.signer.ca.hierarchy import load_hierarchy
from tests.deploy import test_policy
from tests.deploy.manifests import (
    CA_KEY_FILES,
    OVERLAYS,
    ROOT_KEY_FILES,
    Obj,
    build_with_component,
    named,
    pod_templates,
)

COMPONENT = "signer-rollover-g2"
G2_ISSUING_KEYS = {"class1-issuing-g2.key.pem", "class3-issuing-g2.key.pem"}
PASSPHRASE = b"rollover deploy passphrase"


@pytest.fixture(scope="module")
def with_rollover(kustomize: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    workdir = tmp_path_factory.mktemp("with-rollover")
    return {overlay: build_with_component(kustomize, workdir, overlay, COMPONENT) for overlay in OVERLAYS}


@pytest.fixture(scope="module")
def rolled_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA directory as `init-ca` then `new-generation` leave it (the roots' keys are in another directory)."""
    base = tmp_path_factory.mktemp("rolled")
    create_hierarchy(base / "ca", base / "roots", PASSPHRASE, "p256", public_base_url="http://pki.example.net")
    create_generation(base / "ca", base / "roots", PASSPHRASE, public_base_url="http://pki.example.net")
    return base / "ca"


def _ca_files(objects: list[Obj], deployment: str) -> list[str]:
    """The files of the signer's CA directory: its volume `ca`."""
    template = named(objects, "Deployment", deployment)["spec"]["template"]
    [volume] = [v for v in template["spec"]["volumes"] if v["name"] == "ca"]
    return [item["path"] for item in volume["secret"]["items"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_component_renders_validates_and_changes_only_the_signers_ca_files(
    overlay: str, with_rollover: dict[str, list[Obj]], rendered: dict[str, list[Obj]]
) -> None:
    objects = with_rollover[overlay]
    before = {(o["kind"], o["metadata"]["name"]): o for o in rendered[overlay]}
    after = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    assert set(after) == set(before)
    changed = {key for key in after if after[key] != before[key]}
    assert changed == {("Deployment", "signer-issuing"), ("Deployment", "signer-status")}
    for key in changed:  # the others are as the overlay's own tests validate them
        kubernetes_validate.validate(after[key], "1.33", strict=True)
    for deployment in ("signer-issuing", "signer-status"):
        old, new = _ca_files(rendered[overlay], deployment), _ca_files(objects, deployment)
        assert new[: len(old)] == old and all("-g2" in name for name in new[len(old):])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_pod_mounts_a_root_key_of_either_generation_and_the_issuing_keys_stay_in_the_issuing_pod(
    overlay: str, with_rollover: dict[str, list[Obj]]
) -> None:
    objects = with_rollover[overlay]
    test_policy.test_no_pod_mounts_a_root_key((f"{overlay}+{COMPONENT}", objects))
    for owner, template in pod_templates(objects):
        for volume in template["spec"].get("volumes", []):
            sources = [volume.get("secret") or {}, *(volume.get("projected") or {}).get("sources", [])]
            files = {i["path"] for source in sources for i in source.get("secret", source).get("items", [])}
            assert not files & ROOT_KEY_FILES, owner["metadata"]["name"]
            if owner["metadata"]["name"] != "signer-issuing":
                assert not files & (CA_KEY_FILES | G2_ISSUING_KEYS), owner["metadata"]["name"]
    assert G2_ISSUING_KEYS <= set(_ca_files(objects, "signer-issuing"))


def test_what_each_signer_mounts_of_a_rolled_over_directory_loads_both_generations(
    with_rollover: dict[str, list[Obj]], rolled_ca: Path, tmp_path: Path
) -> None:
    objects = with_rollover["prod"]
    on_disk = {p.name for p in rolled_ca.iterdir()}
    for deployment, keys_needed in (("signer-issuing", True), ("signer-status", False)):
        files = _ca_files(objects, deployment)
        assert set(files) <= on_disk, set(files) - on_disk  # every item exists, or the pod would not start
        mounted = tmp_path / deployment
        mounted.mkdir()
        for name in files:
            shutil.copy(rolled_ca / name, mounted / name)
        hierarchy = load_hierarchy(mounted, PASSPHRASE if keys_needed else None, ca_keys=keys_needed,
                                   ocsp_passphrase=PASSPHRASE)
        assert hierarchy.generations == (1, 2) and set(hierarchy.cross_certificates) == {
            "class1-issuing-g2", "class3-issuing-g2"}
        assert hierarchy.issuing_ca(3).label == "class3-issuing-g2"
        assert set(hierarchy.class3_roots) == {"class3", "class3-g2"}
