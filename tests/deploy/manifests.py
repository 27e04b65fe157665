"""Helpers for the deploy/k8s tests: render overlays, walk pod templates, match label selectors.

Everything here works on `kustomize build` output only, the objects a cluster would receive.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
DOCKER = REPO / "deploy" / "docker"
TOOLS = K8S / "tools.sh"
OVERLAYS = ("dev", "prod")

Obj = dict[str, Any]

# Workload (Deployment name) -> the Python package whose entry point it runs and its settings class.
SERVICE_WORKLOADS: dict[str, tuple[str, str]] = {
    "registration": ("registration", "services.registration.settings:RegistrationSettings"),
    "domain-verify": ("domain_verify", "services.domain_verify.settings:DomainVerifySettings"),
    "signer-issuing": ("signer", "services.signer.settings:SignerSettings"),
    "signer-status": ("signer", "services.signer.settings:SignerSettings"),
    "notifier": ("notifier", "services.notifier.settings:NotifierSettings"),
    "acme": ("acme", "services.acme.settings:AcmeSettings"),
}
# The remote network perspectives (BR 3.2.2.9): deploy/k8s/base/perspectives/<region>, each a Deployment
# `domain-verify-perspective-<region>` running domain_verify in perspective mode.
PERSPECTIVES = ("us-east", "us-west", "eu-central", "ap-southeast", "sa-east")
PERSPECTIVE_WORKLOADS = {f"domain-verify-perspective-{region}": region for region in PERSPECTIVES}
SERVICE_WORKLOADS.update(
    {
        workload: ("domain_verify_perspective", "services.domain_verify.settings:DomainVerifySettings")
        for workload in PERSPECTIVE_WORKLOADS
    }
)
# Workloads with a MongoDB database of their own (a perspective stores nothing).
MONGODB_WORKLOADS = set(SERVICE_WORKLOADS) - set(PERSPECTIVE_WORKLOADS)
# Workloads that must be reachable from the ingress controller (public HTTP).
PUBLIC_WORKLOADS = {"registration", "domain-verify", "signer-status", "acme"}
CA_KEY_FILES = {"class1-issuing.key.pem", "class3-issuing.key.pem"}
"""The issuing CAs' keys: in the issuing signer only."""
ROOT_KEY_FILES = {"class1.key.pem", "class3.key.pem", "class1-g2.key.pem", "class3-g2.key.pem"}
"""The roots' keys, of both generations (a root rollover's too): offline, in no Secret and no pod (issue 18, BR
6.1.7)."""
CA_KEY_SECRET = "signer-issuing-ca"


def tool(name: str) -> str:
    """Path of a pinned tool (installed into the cache on first use by deploy/k8s/tools.sh)."""
    started = time.monotonic()
    result = subprocess.run([str(TOOLS), name], capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"deploy/k8s/tools.sh {name} failed:\n{result.stderr}")
    elapsed = time.monotonic() - started
    if elapsed > 2:
        print(f"\ndeploy/k8s/tools.sh {name}: installed in {elapsed:.1f}s")
    return result.stdout.strip().splitlines()[-1]


def build(kustomize: str, directory: Path, *extra: str) -> list[Obj]:
    result = subprocess.run(
        [kustomize, "build", *extra, str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "KUSTOMIZE_PLUGIN_HOME": "/nonexistent"},
    )
    if result.returncode != 0:
        raise AssertionError(f"kustomize build {directory} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def build_with_component(kustomize: str, workdir: Path, overlay: str, component: str, extra: str = "") -> list[Obj]:
    """`overlays/<overlay>` with the opt-in `components/<component>` added, as an operator would do it (a
    kustomization of their own naming both), plus `extra` lines (e.g. an `images:` entry)."""
    import shutil

    k8s = workdir / "k8s"
    if not k8s.exists():
        shutil.copytree(K8S, k8s)
    directory = workdir / f"{overlay}-{component}"
    directory.mkdir(exist_ok=True)
    (directory / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [../k8s/overlays/{overlay}]\ncomponents: [../k8s/components/{component}]\n{extra}"
    )
    return build(kustomize, directory)


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[Obj], kind: str, name: str) -> Obj:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_templates(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(owner object, pod template) for every object that runs pods."""
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            yield o, o["spec"]["template"]
        elif o["kind"] == "CronJob":
            yield o, o["spec"]["jobTemplate"]["spec"]["template"]
        elif o["kind"] == "Pod":
            yield o, o


def containers(template: Obj) -> list[Obj]:
    spec = template["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (an empty selector matches everything)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def policies_for(objects: list[Obj], labels: Mapping[str, str]) -> list[Obj]:
    return [
        p for p in of_kind(objects, "NetworkPolicy") if selector_matches(p["spec"]["podSelector"], labels)
    ]


def config_maps(objects: list[Obj]) -> dict[str, dict[str, str]]:
    return {o["metadata"]["name"]: o.get("data", {}) for o in of_kind(objects, "ConfigMap")}


def container_environment(objects: list[Obj], container: Obj, pod_labels: Mapping[str, str] | None = None
                          ) -> dict[str, str]:
    """The environment a container starts with: envFrom ConfigMaps, then literal env values, then (given
    the pod's labels) values the downward API takes from a label."""
    maps = config_maps(objects)
    environ: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref is not None, f"{container['name']}: only ConfigMaps may feed envFrom (secrets go in files)"
        environ.update(maps[ref["name"]])
    for var in container.get("env", []):
        if "value" in var:
            environ[var["name"]] = var["value"]
        field = var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "")
        label = re.fullmatch(r"metadata\.labels\['([^']+)'\]", field)
        if label and pod_labels is not None:
            assert label.group(1) in pod_labels, f"{var['name']} reads label {label.group(1)}, which is not set"
            environ[var["name"]] = pod_labels[label.group(1)]
    return environ


def secret_mounts(template: Obj, container: Obj) -> dict[str, tuple[str, list[str]]]:
    """mountPath -> (Secret name, files) for each Secret volume the container mounts."""
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    mounts: dict[str, tuple[str, list[str]]] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "secret" in volume:
            items = [i["path"] for i in volume["secret"].get("items", [])]
            mounts[mount["mountPath"]] = (volume["secret"]["secretName"], items)
    return mounts


def referenced_secrets(template: Obj) -> set[str]:
    """Every Secret a pod template refers to, by any route (volumes, projections, env, envFrom)."""
    names: set[str] = set()
    for volume in template["spec"].get("volumes", []):
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    for c in containers(template):
        for var in c.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
        for source in c.get("envFrom", []):
            if "secretRef" in source:
                names.add(source["secretRef"]["name"])
    for ref in template["spec"].get("imagePullSecrets", []):
        names.add(ref["name"])
    return names


def strip_hash(name: str, generated: set[str]) -> str:
    """`mongodb-credentials-4f9t7` -> `mongodb-credentials` for names kustomize generated."""
    for base in generated:
        if name.startswith(base + "-") and len(name) == len(base) + 11:
            return base
    return name


def strict_schema(schema: Any) -> Any:
    """A CRD structural schema as the API server applies it with strict field validation: fields that
    the schema does not declare are rejected (instead of silently pruned), unless the schema says
    x-kubernetes-preserve-unknown-fields. Kubernetes-only keywords are dropped for jsonschema."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: strict_schema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-") and k != "description"
    }
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out
