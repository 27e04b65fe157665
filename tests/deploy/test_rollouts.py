"""Rollouts and scale (issue 20 item 4): no request dropped on a rolling update, a zone lost survives,
autoscaling for the public services, KEDA for the issuing signer as an option, the signer preferred.

The dropping itself is tested against real processes in tests/faults/test_rolling_restart.py; here the
manifests are held to what makes it work in a cluster.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shared.config import HttpSettings
from shared.events import Topics
from shared.events.access import SERVICES
from tests.deploy.manifests import K8S, SERVICE_WORKLOADS, Obj, build, named, of_kind, strict_schema, tool
from tests.deploy.test_render import KUBERNETES_VERSIONS

PUBLIC_HTTP = ("registration", "domain-verify", "signer-status", "acme")


def _common_settings(objects: list[Obj]) -> dict[str, str]:
    (common,) = [c for c in of_kind(objects, "ConfigMap") if c["metadata"]["name"].startswith("cacert-common")]
    return dict(common["data"])


def test_public_services_wait_for_endpoint_removal_then_drain(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    drain = float(_common_settings(objects)["CACERT_SHUTDOWN_DRAIN_SECONDS"])
    assert drain >= 2, "long enough for readiness to take the replica out"
    for workload in PUBLIC_HTTP:
        spec = named(objects, "Deployment", workload)["spec"]["template"]["spec"]
        container = spec["containers"][0]
        pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep", workload
        waits = float(pre_stop[1]) + drain + 5  # + the HTTP site's shutdown timeout for requests in flight
        assert spec["terminationGracePeriodSeconds"] >= waits + 10, f"{workload} would be killed mid-drain"


def test_the_drain_setting_is_one_the_services_read() -> None:
    names = {f.metadata.get("env") for f in dataclasses.fields(HttpSettings)}
    assert "CACERT_SHUTDOWN_DRAIN_SECONDS" in names


def test_prod_spreads_every_service_over_zones(rendered: dict[str, list[Obj]]) -> None:
    for workload in SERVICE_WORKLOADS:
        if workload.startswith("domain-verify-perspective-"):
            continue  # each perspective is pinned to its own region instead
        spec = named(rendered["prod"], "Deployment", workload)["spec"]["template"]["spec"]
        zones = [c for c in spec["topologySpreadConstraints"] if c["topologyKey"] == "topology.kubernetes.io/zone"]
        assert zones and zones[0]["whenUnsatisfiable"] == "DoNotSchedule", workload
        assert "app.kubernetes.io/name" in zones[0]["matchLabelKeys"], f"{workload}: spread per service"


def test_registration_the_status_signer_and_acme_autoscale(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    for workload in ("registration", "signer-status", "acme"):
        hpa = named(objects, "HorizontalPodAutoscaler", workload)
        assert hpa["spec"]["scaleTargetRef"]["name"] == workload
        assert "replicas" not in named(objects, "Deployment", workload)["spec"], "the HPA owns the replicas"
        if name == "prod":
            assert hpa["spec"]["minReplicas"] >= 2


def test_the_signer_pods_have_priority(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    (priority,) = of_kind(objects, "PriorityClass")
    for workload in ("signer-issuing", "signer-status"):
        spec = named(objects, "Deployment", workload)["spec"]["template"]["spec"]
        assert spec["priorityClassName"] == priority["metadata"]["name"]
    assert priority["value"] > 0 and priority["globalDefault"] is False


@pytest.fixture(scope="module")
def keda_crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> schema, from the pinned KEDA module on the Go module proxy (tools.sh)."""
    schemas = {}
    for path in Path(tool("keda-crds")).glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def test_opt_in_keda_component_scales_the_issuing_signer_on_its_lag(
        kustomize: str, tmp_path: Path, keda_crds: dict[tuple[str, str], dict[str, Any]]) -> None:
    import jsonschema

    shutil.copytree(K8S, tmp_path / "k8s")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [../k8s/overlays/prod]\ncomponents: [../k8s/components/signer-issuing-keda]\n")
    objects = build(kustomize, overlay)
    assert "signer-issuing" not in {h["metadata"]["name"] for h in of_kind(objects, "HorizontalPodAutoscaler")}, \
        "KEDA's HPA replaces the CPU one"
    keda = [o for o in objects if o["apiVersion"].startswith("keda.sh/")]
    assert {o["kind"] for o in keda} == {"ScaledObject", "TriggerAuthentication"}
    for o in keda:
        body = copy.deepcopy(o)
        body.pop("metadata")
        schema = strict_schema(keda_crds[(o["apiVersion"], o["kind"])])
        errors = list(jsonschema.Draft7Validator(schema).iter_errors(body))
        assert not errors, [e.message for e in errors]
    scaled = named(objects, "ScaledObject", "signer-issuing")
    (trigger,) = scaled["spec"]["triggers"]
    topics = Topics("cacert.")
    assert trigger["metadata"]["consumerGroup"] == SERVICES["signer"].consumer_group
    assert trigger["metadata"]["topic"] in {topics.of(t) for t in SERVICES["signer"].reads}
    partitions = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind(objects, "KafkaTopic")}
    assert scaled["spec"]["maxReplicaCount"] <= partitions[trigger["metadata"]["topic"]]
    deployment = named(objects, "Deployment", "signer-issuing")
    containers = {c["name"] for c in deployment["spec"]["template"]["spec"]["containers"]}
    auth = named(objects, "TriggerAuthentication", "signer-kafka")
    assert {e["containerName"] for e in auth["spec"]["env"]} <= containers
    for o in objects:
        if o["kind"] in ("Deployment", "NetworkPolicy"):
            kubernetes_validate.validate(o, KUBERNETES_VERSIONS[0], strict=True)
