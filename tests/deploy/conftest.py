"""Session fixtures for the deploy/k8s tests: pinned tools and the rendered overlays (built once)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import K8S, OVERLAYS, Obj, build, build_with_component, tool


@pytest.fixture(scope="session")
def kustomize() -> str:
    return tool("kustomize")


@pytest.fixture(scope="session")
def rendered(kustomize: str) -> dict[str, list[Obj]]:
    """overlay name -> every object `kustomize build deploy/k8s/overlays/<name>` emits."""
    out: dict[str, list[Obj]] = {}
    for overlay in OVERLAYS:
        started = time.monotonic()
        out[overlay] = build(kustomize, K8S / "overlays" / overlay)
        print(
            f"\nkustomize build overlays/{overlay}: {len(out[overlay])} objects "
            f"in {time.monotonic() - started:.2f}s"
        )
    return out


@pytest.fixture(scope="session", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, list[Obj]]) -> tuple[str, list[Obj]]:
    return request.param, rendered[request.param]


@pytest.fixture(scope="session")
def strimzi_crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of the pinned Strimzi release's CRDs (generated into the
    cache from Maven Central by deploy/k8s/tools.sh, never copied into the repository)."""
    return _crd_schemas(Path(tool("strimzi-crds")))


@pytest.fixture(scope="session")
def prometheus_operator_crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of the pinned Prometheus operator's PodMonitor, ServiceMonitor and
    PrometheusRule CRDs (from its Go module on the Go module proxy, into the cache by deploy/k8s/tools.sh)."""
    return _crd_schemas(Path(tool("prometheus-operator-crds")))


@pytest.fixture(scope="session")
def cert_manager_crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of the pinned cert-manager release's ClusterIssuer, Issuer and
    Certificate CRDs (from its Go module on the Go module proxy, pinned by hash, into the cache by
    deploy/k8s/tools.sh)."""
    return _crd_schemas(Path(tool("cert-manager-crds")))


def _crd_schemas(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    assert schemas, f"no CRDs in {directory}"
    return schemas


# What an operator's kustomization adds beside the component: the namespace (a component's own objects
# get it only from the kustomization that includes it) and the image (prod: by digest, like every image).
LOADTEST_EXTRA = {
    "dev": "namespace: cacert-dev\nimages:\n  - {name: cacert/signer-loadtest, newTag: dev}\n",
    "prod": "namespace: cacert\nimages:\n  - {name: cacert/signer-loadtest, "
            "newName: registry.cacert.example/cacert/signer-loadtest, "
            'newTag: "0.1.0", digest: "sha256:' + "0" * 64 + '"}\n',
}


@pytest.fixture(scope="session")
def with_loadtest(kustomize: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    """overlay name -> its objects with the opt-in components/signer-loadtest added."""
    workdir = tmp_path_factory.mktemp("with-loadtest")
    return {overlay: build_with_component(kustomize, workdir, overlay, "signer-loadtest", LOADTEST_EXTRA[overlay])
            for overlay in OVERLAYS}
