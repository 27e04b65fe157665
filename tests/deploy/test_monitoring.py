"""The opt-in monitoring component (deploy/k8s/components/monitoring) on top of both overlays: what it adds and
changes validates (Kubernetes schemas; the Prometheus operator's own CRD schemas, fetched from its Go module on
the Go module proxy), Prometheus may scrape every pod it targets, every alert has its runbook in
docs/operations.md, the rules and the dashboard use only metrics the code defines (or Strimzi's Kafka Exporter
exports) with labels they have, and `promtool test rules` proves each alert fires on its failure and not in
normal operation (promtool built from Prometheus' Go module by deploy/k8s/tools.sh)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.manifests import (
    K8S,
    OVERLAYS,
    REPO,
    SERVICE_WORKLOADS,
    Obj,
    build,
    containers,
    named,
    of_kind,
    pod_templates,
    policies_for,
    selector_matches,
    strict_schema,
    tool,
)
from tests.deploy.test_render import KUBERNETES_VERSIONS

COMPONENT = K8S / "components" / "monitoring"
DASHBOARD = COMPONENT / "dashboard.json"
OPERATIONS = REPO / "docs" / "operations.md"
RULES_TEST = Path(__file__).with_name("monitoring") / "rules.test.yaml"
OPERATOR_GROUP = "monitoring.coreos.com/"
# What the component adds to an overlay, and the only objects it changes (Prometheus may reach the issuing
# signer: components/signer-issuing-metrics, which it includes).
ADDED = {
    ("PodMonitor", "cacert-services"),
    ("PodMonitor", "cacert-kafka-exporter"),
    ("PrometheusRule", "cacert-alerts"),
    ("ConfigMap", "cacert-grafana-dashboard"),
}
CHANGED = {("Deployment", "signer-issuing"), ("NetworkPolicy", "signer-issuing")}
# Strimzi's Kafka Exporter pods (made by the Cluster Operator, so not in the rendered objects): their labels,
# their metrics port, and the series the rules read, with their labels (Kafka Exporter's documentation).
KAFKA_EXPORTER_POD = {
    "strimzi.io/cluster": "cacert-kafka",
    "strimzi.io/kind": "Kafka",
    "strimzi.io/name": "cacert-kafka-kafka-exporter",
    "app.kubernetes.io/name": "kafka-exporter",
}
KAFKA_EXPORTER_PORTS = {"tcp-prometheus": 9404}
KAFKA_EXPORTER_METRICS = {
    "kafka_consumergroup_lag": {"consumergroup", "topic", "partition"},
    "kafka_topic_partition_current_offset": {"topic", "partition"},
}
# Where Prometheus runs (deploy/k8s/README.md, Prerequisites).
PROMETHEUS_NAMESPACE = {"kubernetes.io/metadata.name": "monitoring"}
PROMETHEUS_PODS = {"app.kubernetes.io/name": "prometheus"}
# Labels Prometheus adds to every scraped series (and `up`), and the one our PodMonitor adds.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "endpoint", "perspective"}
# Every module whose import registers a service's metrics.
METRIC_MODULES = (
    "services.registration.service",
    "services.domain_verify.service",
    "services.signer.service",
    "services.notifier.service",
    "shared.http",
    "shared.outbox",
)


@pytest.fixture(scope="module")
def with_monitoring(kustomize: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    """overlay -> its objects with `components: [../../components/monitoring]` added, as deploy/k8s/README says."""
    k8s = tmp_path_factory.mktemp("monitoring") / "k8s"
    shutil.copytree(K8S, k8s)
    out: dict[str, list[Obj]] = {}
    for overlay in OVERLAYS:
        kustomization = k8s / "overlays" / overlay / "kustomization.yaml"
        assert "components" not in yaml.safe_load(kustomization.read_text())
        kustomization.write_text(kustomization.read_text() + "\ncomponents:\n  - ../../components/monitoring\n")
        out[overlay] = build(kustomize, kustomization.parent)
    return out


def _key(o: Obj) -> tuple[str, str]:
    return o["kind"], o["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_component_adds_its_objects_changes_only_the_issuing_signers_and_validates(
    overlay: str, with_monitoring: dict[str, list[Obj]], rendered: dict[str, list[Obj]]
) -> None:
    """Everything else is byte-for-byte the overlay that test_render validates (Kubernetes and Strimzi schemas);
    what is new or changed is validated here."""
    before = {_key(o): o for o in rendered[overlay]}
    after = {_key(o): o for o in with_monitoring[overlay]}
    assert set(before) <= set(after)
    assert set(after) - set(before) == ADDED
    assert {k for k in before if before[k] != after[k]} == CHANGED
    (namespace,) = [name for kind, name in after if kind == "Namespace"]
    errors = []
    for key in sorted(ADDED | CHANGED):
        o = after[key]
        assert o["metadata"]["namespace"] == namespace, key
        if o["apiVersion"].startswith(OPERATOR_GROUP):
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(o, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{key} on {version}: {exc.message} at {'/'.join(map(str, exc.path))}")
    assert not errors, "\n".join(errors)


def _crd_validator(crds: dict[tuple[str, str], dict[str, Any]], key: tuple[str, str]) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(strict_schema(crds[key]))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_operator_objects_validate_against_its_crds(
    overlay: str, with_monitoring: dict[str, list[Obj]],
    prometheus_operator_crds: dict[tuple[str, str], dict[str, Any]],
) -> None:
    objects = [o for o in with_monitoring[overlay] if o["apiVersion"].startswith(OPERATOR_GROUP)]
    assert {o["kind"] for o in objects} == {"PodMonitor", "PrometheusRule"}
    errors = []
    for o in objects:
        body = copy.deepcopy(o)
        body.pop("metadata")  # ObjectMeta is the API server's, not the CRD schema's
        validator = _crd_validator(prometheus_operator_crds, (o["apiVersion"], o["kind"]))
        for error in validator.iter_errors(body):
            errors.append(f"{_key(o)}: {error.message} at {'/'.join(map(str, error.absolute_path))}")
    assert not errors, "\n".join(errors)


def test_strict_prometheus_operator_validation_rejects_a_typo(
    prometheus_operator_crds: dict[tuple[str, str], dict[str, Any]],
) -> None:
    monitor = _crd_validator(prometheus_operator_crds, ("monitoring.coreos.com/v1", "PodMonitor"))
    good = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
            "spec": {"selector": {}, "podMetricsEndpoints": [{"port": "http"}]}}
    assert not list(monitor.iter_errors(good))
    assert list(monitor.iter_errors({**good, "spec": {"selector": {}, "podMetricEndpoints": [{"port": "http"}]}}))
    rule = _crd_validator(prometheus_operator_crds, ("monitoring.coreos.com/v1", "PrometheusRule"))
    assert list(rule.iter_errors({"spec": {"groups": [{"name": "g", "rules": [{"alert": "A"}]}]}}))  # no expr


def _pods(objects: list[Obj]) -> list[tuple[dict[str, str], dict[str, int]]]:
    """(labels, named container ports) of every pod the overlay runs, and of Strimzi's Kafka Exporter."""
    pods = [({**KAFKA_EXPORTER_POD}, dict(KAFKA_EXPORTER_PORTS))]
    for _, template in pod_templates(objects):
        ports = {p["name"]: p["containerPort"] for c in containers(template) for p in c.get("ports", []) if "name" in p}
        pods.append((template["metadata"]["labels"], ports))
    return pods


def _admits_prometheus(objects: list[Obj], labels: dict[str, str], port: int) -> bool:
    for policy in policies_for(objects, labels):
        for rule in policy["spec"].get("ingress", []):
            if {"protocol": "TCP", "port": port} not in rule.get("ports", []):
                continue
            for peer in rule.get("from", []):
                namespace = peer.get("namespaceSelector", {}).get("matchLabels")
                pods = peer.get("podSelector", {}).get("matchLabels")
                if namespace == PROMETHEUS_NAMESPACE and pods == PROMETHEUS_PODS:
                    return True
    return False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_and_the_kafka_exporter_are_scraped_through_the_network_policies(
    overlay: str, with_monitoring: dict[str, list[Obj]],
) -> None:
    objects = with_monitoring[overlay]
    assert named(objects, "Kafka", "cacert-kafka")["spec"].get("kafkaExporter") is not None
    scraped: set[str] = set()
    problems = []
    for monitor in of_kind(objects, "PodMonitor"):
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["path"] == "/metrics"
        targets = [(labels, ports) for labels, ports in _pods(objects)
                   if selector_matches(monitor["spec"]["selector"], labels)]
        assert targets, f"PodMonitor/{monitor['metadata']['name']} selects no pod"
        for labels, ports in targets:
            workload = labels.get("app.kubernetes.io/name", "?")
            scraped.add(labels[monitor["spec"]["jobLabel"]])
            if endpoint["port"] not in ports:
                problems.append(f"{workload}: no container port named {endpoint['port']}")
            elif not _admits_prometheus(objects, labels, ports[endpoint["port"]]):
                problems.append(f"{workload}: no NetworkPolicy admits Prometheus on {ports[endpoint['port']]}")
    assert not problems, "\n".join(problems)
    workloads = {named(objects, "Deployment", w)["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
                 for w in SERVICE_WORKLOADS}
    assert scraped == workloads | {"cacert-kafka-kafka-exporter"}


def _rules(objects: list[Obj]) -> list[dict[str, Any]]:
    return [rule for group in named(objects, "PrometheusRule", "cacert-alerts")["spec"]["groups"]
            for rule in group["rules"]]


def _runbook_sections() -> dict[str, str]:
    """`### Name` heading -> its text, under `## Alerts and runbooks` in docs/operations.md."""
    text = OPERATIONS.read_text()
    part = text.split("\n## Alerts and runbooks\n", 1)
    assert len(part) == 2, "docs/operations.md has no '## Alerts and runbooks' section"
    body = re.split(r"\n## ", part[1], maxsplit=1)[0]
    sections = re.split(r"^### ", body, flags=re.MULTILINE)[1:]
    return {s.split("\n", 1)[0].strip(): s.split("\n", 1)[1] for s in sections}


def test_every_alert_has_severity_summary_description_and_a_runbook_section(
    with_monitoring: dict[str, list[Obj]],
) -> None:
    sections = _runbook_sections()
    rules = _rules(with_monitoring["prod"])
    alerts = [r["alert"] for r in rules]
    assert len(alerts) == len(set(alerts))
    assert set(sections) == set(alerts), "one runbook section per alert, and none for an alert that is gone"
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert "{{" not in annotations["description"], f"{name}: keep the description static (the summary varies)"
        url, _, anchor = annotations["runbook_url"].partition("#")
        assert url.endswith("/docs/operations.md") and anchor == name.lower(), name  # GitHub-style heading anchor
        for part in ("**Means**", "**Check**", "**Act**"):
            assert part in sections[name], f"docs/operations.md {name}: no {part}"


def _expressions(objects: list[Obj]) -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [r["expr"] for r in _rules(objects)]
    exprs += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    return exprs


def _code_metrics() -> dict[str, set[str]]:
    """Series name -> label names, for every metric the services' code registers with prometheus_client."""
    import importlib

    from prometheus_client import REGISTRY

    for module in METRIC_MODULES:
        importlib.import_module(module)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",),
                "summary": ("_sum", "_count")}
    metrics: dict[str, set[str]] = {}
    # private, but the only place that knows the label names of metrics no sample has been recorded for yet
    for collector in list(REGISTRY._collector_to_names):
        for family in getattr(collector, "describe", collector.collect)():
            labels = set(getattr(collector, "_labelnames", ()))
            for suffix in suffixes.get(family.type, ("",)):
                metrics[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return metrics


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_NAME = re.compile(r"\b(cacert_[a-z0-9_]+|kafka_[a-z0-9_]+|up)\b")
_GROUPING = re.compile(r"\bby\s*\(([^)]*)\)")


def test_rules_and_dashboard_use_only_metrics_and_labels_that_exist(with_monitoring: dict[str, list[Obj]]) -> None:
    known = {**_code_metrics(), **KAFKA_EXPORTER_METRICS, "up": set()}
    configmap = named(with_monitoring["prod"], "ConfigMap", "cacert-grafana-dashboard")
    assert json.loads(configmap["data"]["cacert.json"]) == json.loads(DASHBOARD.read_text())
    problems = []
    for expr in _expressions(with_monitoring["prod"]):
        bare = _STRING.sub('""', expr)
        names = set(_NAME.findall(bare))
        assert names, f"no metric in {expr}"
        available = set(TARGET_LABELS)
        for name in names:
            if name not in known:
                problems.append(f"{name} is defined nowhere: {expr}")
            available |= known.get(name, set())
        for name, matchers in _SELECTOR.findall(bare):
            for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers):
                if label not in known.get(name, set()) | TARGET_LABELS:
                    problems.append(f"{name} has no label {label}: {expr}")
        for grouping in _GROUPING.findall(bare):
            for label in (g.strip() for g in grouping.split(",")):
                if label not in available:
                    problems.append(f"no metric of the expression has a label {label}: {expr}")
    assert not problems, "\n".join(problems)


def test_the_checker_finds_an_unknown_metric_and_label() -> None:
    """The check above is not vacuous."""
    known = _code_metrics()
    assert "cacert_signer_certificates_total" in known and known["cacert_signer_certificates_total"] == {
        "outcome", "reason"}
    assert "cacert_signer_certificate_total" not in known
    assert "cacert_outbox_oldest_pending_seconds" in known and "collection" in known[
        "cacert_outbox_oldest_pending_seconds"]


@pytest.fixture(scope="session")
def promtool() -> str:
    return tool("promtool")


def test_alert_rules_pass_promtool_unit_tests(
    with_monitoring: dict[str, list[Obj]], promtool: str, tmp_path: Path
) -> None:
    rule = named(with_monitoring["prod"], "PrometheusRule", "cacert-alerts")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    static = {r["alert"]: {k: r["annotations"][k] for k in ("description", "runbook_url")} for r in _rules(
        with_monitoring["prod"])}
    cases = yaml.safe_load(RULES_TEST.read_text())
    tested = set()
    for case in cases["tests"]:
        for check in case["alert_rule_test"]:
            tested.add(check["alertname"])
            for alert in check.get("exp_alerts") or []:
                alert["exp_annotations"] = {**static[check["alertname"]], **alert.get("exp_annotations", {})}
    assert tested == set(static), f"alerts without a promtool case: {sorted(set(static) - tested)}"
    (tmp_path / "rules.test.yaml").write_text(yaml.safe_dump(cases, sort_keys=False))
    for args in (["check", "rules", "rules.yaml"], ["test", "rules", "rules.test.yaml"]):
        result = subprocess.run([promtool, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                                check=False)
        assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"
