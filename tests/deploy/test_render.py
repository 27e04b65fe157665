"""Every overlay renders, and every rendered object is one a Kubernetes 1.33+ API server with the pinned
Strimzi CRDs would admit (schemas only: CEL rules and webhooks need a cluster)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.manifests import K8S, Obj, build, of_kind, strict_schema

# The oldest Kubernetes minor these manifests support and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.33", kubernetes_validate.latest_version())
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "StorageClass",
    "IngressClass",
}


def test_every_overlay_renders_objects(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    kinds = {o["kind"] for o in objects}
    for kind in (
        "Namespace",
        "Deployment",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
        "Ingress",
        "StatefulSet",
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "KafkaUser",
    ):
        assert kind in kinds, f"overlays/{name} renders no {kind}"
    (namespace,) = of_kind(objects, "Namespace")
    for o in objects:
        if o["kind"] not in CLUSTER_SCOPED:
            assert o["metadata"].get("namespace") == namespace["metadata"]["name"], (
                f"{o['kind']}/{o['metadata']['name']} is not in namespace {namespace['metadata']['name']}"
            )
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), "duplicate objects"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_objects_validate_against_kubernetes_schemas(
    overlay: tuple[str, list[Obj]], version: str
) -> None:
    name, objects = overlay
    errors = []
    for o in objects:
        if o["apiVersion"].startswith("kafka.strimzi.io/"):
            continue
        try:
            kubernetes_validate.validate(o, version, strict=True)  # strict: unknown fields are errors
        except kubernetes_validate.ValidationError as exc:
            errors.append(
                f"{o['kind']}/{o['metadata']['name']}: {exc.message} at {'/'.join(map(str, exc.path))}"
            )
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(
                f"{o['kind']}/{o['metadata']['name']}: {o['apiVersion']} is not served by "
                f"Kubernetes {version}"
            )
    assert not errors, f"overlays/{name} against Kubernetes {version}:\n" + "\n".join(errors)


_VALIDATORS: dict[tuple[str, str], jsonschema.Draft7Validator] = {}


def _validator(
    crds: dict[tuple[str, str], dict[str, Any]], key: tuple[str, str]
) -> jsonschema.Draft7Validator:
    if key not in _VALIDATORS:
        _VALIDATORS[key] = jsonschema.Draft7Validator(strict_schema(crds[key]))
    return _VALIDATORS[key]


def test_strimzi_objects_validate_against_crds(
    overlay: tuple[str, list[Obj]], strimzi_crds: dict[tuple[str, str], dict[str, Any]]
) -> None:
    name, objects = overlay
    strimzi = [o for o in objects if o["apiVersion"].startswith("kafka.strimzi.io/")]
    assert strimzi
    errors = []
    for o in strimzi:
        key = (o["apiVersion"], o["kind"])
        if key not in strimzi_crds:
            errors.append(
                f"{o['kind']}/{o['metadata']['name']}: {o['apiVersion']} is not served by the "
                f"pinned Strimzi CRDs ({sorted(strimzi_crds)})"
            )
            continue
        body = copy.deepcopy(o)
        body.pop("metadata")  # ObjectMeta is validated by the API server, not the CRD schema
        validator = _validator(strimzi_crds, key)
        for error in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
            errors.append(
                f"{o['kind']}/{o['metadata']['name']}: {error.message} at "
                f"{'/'.join(map(str, error.absolute_path))}"
            )
    assert not errors, f"overlays/{name}:\n" + "\n".join(errors)


def test_strict_crd_validation_rejects_a_typo(strimzi_crds: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The Strimzi check is not vacuous: an unknown field or a wrong enum value fails it."""
    validator = _validator(strimzi_crds, ("kafka.strimzi.io/v1", "KafkaUser"))
    good = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaUser",
        "spec": {"authentication": {"type": "scram-sha-512"}},
    }
    assert not list(validator.iter_errors(good))
    assert list(
        validator.iter_errors(
            {**good, "spec": {"authentication": {"type": "scram-sha-512"}, "authorisation": {}}}
        )
    )
    assert list(validator.iter_errors({**good, "spec": {"authentication": {"type": "plain"}}}))


def test_opt_in_metrics_component_renders_and_validates(kustomize: str, tmp_path: Path) -> None:
    """components/signer-issuing-metrics (not enabled by default) still renders on top of prod."""
    overlay = tmp_path / "overlay"
    shutil.copytree(K8S, tmp_path / "k8s")
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [../k8s/overlays/prod]\ncomponents: [../k8s/components/signer-issuing-metrics]\n"
    )
    objects = build(kustomize, overlay)
    policy = next(
        o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "signer-issuing"
    )
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8084}]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    for o in objects:
        if o["kind"] in ("Deployment", "NetworkPolicy"):
            kubernetes_validate.validate(o, KUBERNETES_VERSIONS[0], strict=True)
