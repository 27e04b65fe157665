"""The opt-in dead-letter component (deploy/k8s/components/dlq-operator) on top of each overlay: it renders
and validates, its pod meets the services' pod rules and reaches the brokers only, and its Kafka user may do
exactly what `python -m shared.dlq` does: read every dead-letter topic, write the originals (a replay),
read and write the decision log, and nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from shared.dlq import DECISIONS
from shared.events import TOPICS, Topics
from tests.deploy import test_policy, test_render
from tests.deploy.manifests import OVERLAYS, Obj, build_with_component, named, policies_for

# What the operator's own kustomization adds (the overlay's image and namespace settings do not reach a
# component added on top): the namespace, and the notifier image the pod runs, as the overlay pins it.
EXTRA = {
    "dev": "namespace: cacert-dev\nimages:\n  - {name: cacert/notifier, newTag: dev}\n",
    "prod": "namespace: cacert\nimages:\n  - {name: cacert/notifier, newName: registry.cacert.example/cacert/notifier, "
            'newTag: "0.1.0", digest: "sha256:' + "0" * 64 + '"}\n',
}


@pytest.fixture(scope="module")
def with_dlq_operator(kustomize: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    workdir = tmp_path_factory.mktemp("with-dlq-operator")
    return {overlay: build_with_component(kustomize, workdir, overlay, "dlq-operator", EXTRA[overlay])
            for overlay in OVERLAYS}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_component_renders_validates_and_keeps_the_pod_rules(
        overlay: str, with_dlq_operator: dict[str, list[Obj]],
        strimzi_crds: dict[tuple[str, str], dict[str, Any]]) -> None:
    rendered = (f"{overlay}+dlq-operator", with_dlq_operator[overlay])
    test_render.test_every_overlay_renders_objects(rendered)
    for version in test_render.KUBERNETES_VERSIONS:
        test_render.test_core_objects_validate_against_kubernetes_schemas(rendered, version)
    test_render.test_strimzi_objects_validate_against_crds(rendered, strimzi_crds)
    test_policy.test_every_container_is_unprivileged_read_only_probed_and_limited(rendered)
    test_policy.test_only_the_issuing_signer_mounts_the_ca_keys(rendered)
    assert named(with_dlq_operator[overlay], "Deployment", "dlq-operator")["spec"]["replicas"] == 0


def test_its_kafka_user_may_do_what_the_tool_does_and_no_more(with_dlq_operator: dict[str, list[Obj]]) -> None:
    objects = with_dlq_operator["prod"]
    topics = Topics("cacert.")
    user = named(objects, "KafkaUser", "dlq-operator")
    granted = {(a["resource"]["type"], a["resource"]["name"], a["resource"]["patternType"], op)
               for a in user["spec"]["authorization"]["acls"] for op in a["operations"]}
    wanted = set()
    for topic in TOPICS:
        wanted |= {("topic", topics.dlq(topic), "literal", op) for op in ("Read", "Describe")}
        wanted |= {("topic", topics.of(topic), "literal", op) for op in ("Write", "Describe")}
    decisions = f"cacert.{DECISIONS}"
    wanted |= {("topic", decisions, "literal", op) for op in ("Read", "Write", "Describe")}
    assert granted == wanted
    decision_log = named(objects, "KafkaTopic", decisions)
    assert decision_log["spec"]["config"]["cleanup.policy"] == "compact"


def test_its_pod_reaches_the_brokers_only_and_the_listener_admits_it(with_dlq_operator: dict[str, list[Obj]]) -> None:
    objects = with_dlq_operator["prod"]
    labels = named(objects, "Deployment", "dlq-operator")["spec"]["template"]["metadata"]["labels"]
    egress = [rule for policy in policies_for(objects, labels) for rule in policy["spec"].get("egress", [])]
    ports = {p["port"] for rule in egress if rule.get("to") for p in rule.get("ports", [])}
    assert ports <= {9093, 53}, ports
    kafka = named(objects, "Kafka", "cacert-kafka")
    peers = kafka["spec"]["kafka"]["listeners"][0]["networkPolicyPeers"][0]["podSelector"]["matchExpressions"][0]
    assert "dlq-operator" in peers["values"]
