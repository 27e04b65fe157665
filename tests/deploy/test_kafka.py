"""Kafka on Strimzi: topics and per-service ACLs are derived from the code's own tables
(shared/events/catalog.py and shared/events/access.py), never restated here."""

from __future__ import annotations

from shared.config import KafkaSettings
from shared.events.access import SERVICES, perspective_group
from shared.events.catalog import DLQ_SUFFIX, TOPICS, Topics
from tests.deploy.manifests import (
    PERSPECTIVES,
    SERVICE_WORKLOADS,
    Obj,
    container_environment,
    named,
    of_kind,
    secret_mounts,
)

PREFIX = next(f.default for f in KafkaSettings.__dataclass_fields__.values() if f.name == "topic_prefix")
TOPIC_NAMES = Topics(prefix=str(PREFIX))


def _kafka_user_name(service: str) -> str:
    return service.replace("_", "-")  # Kubernetes names allow no underscores


def _expected_acls(service: str) -> set[tuple[str, str, str]]:
    """(resource type, name, operation) that `service` needs according to shared/events/access.py."""
    access = SERVICES[service]
    acls: set[tuple[str, str, str]] = set()
    for logical in access.reads:
        acls |= {("topic", TOPIC_NAMES.of(logical), op) for op in ("Read", "Describe")}
    for logical in access.writes:
        acls |= {("topic", TOPIC_NAMES.of(logical), op) for op in ("Write", "Describe")}
    for logical in access.reads:  # a reader parks what it cannot process on the dead-letter twin
        acls |= {("topic", TOPIC_NAMES.dlq(logical), op) for op in ("Write", "Describe")}
    # each remote perspective joins a group of its own, so that every one of them sees every check
    groups = (
        [perspective_group(name) for name in PERSPECTIVES]
        if service == "domain_verify_perspective"
        else [access.consumer_group]
    )
    acls |= {("group", group, op) for group in groups for op in ("Read", "Describe")}
    return acls


def _granted_acls(user: Obj) -> set[tuple[str, str, str]]:
    granted = set()
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        assert resource.get("patternType", "literal") == "literal", f"{resource}: prefixes grant too much"
        assert acl.get("type", "allow") == "allow"
        assert acl.get("host", "*") == "*"
        granted |= {(resource["type"], resource["name"], op) for op in acl["operations"]}
    return granted


def test_a_topic_for_every_catalogued_topic_and_dead_letter_topic(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    topics = {t["spec"]["topicName"]: t for t in of_kind(objects, "KafkaTopic")}
    assert set(topics) == set(TOPIC_NAMES.all())
    brokers = _broker_count(objects)
    for name, topic in topics.items():
        spec = topic["spec"]
        spec_config = spec["config"]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "cacert-kafka"
        assert spec["partitions"] >= 1 and int(spec_config["retention.ms"]) > 0
        assert spec_config["cleanup.policy"] == "delete", "an event log must not be compacted away"
        assert spec["replicas"] <= brokers, f"{name}: more replicas than brokers"
        min_isr = int(spec_config["min.insync.replicas"])
        # acks=all producers keep writing with one replica down, and a write is on >= 2 replicas
        assert min_isr == 1 if spec["replicas"] == 1 else 2 <= min_isr < spec["replicas"]
        if name.endswith(DLQ_SUFFIX):
            assert spec["partitions"] == 1


def _broker_count(objects: list[Obj]) -> int:
    return sum(
        p["spec"]["replicas"] for p in of_kind(objects, "KafkaNodePool") if "broker" in p["spec"]["roles"]
    )


def test_signer_autoscaling_stops_at_the_partition_count(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    topics = {t["spec"]["topicName"]: t["spec"]["partitions"] for t in of_kind(objects, "KafkaTopic")}
    hpa = named(objects, "HorizontalPodAutoscaler", "signer-issuing")
    needed = min(topics[TOPIC_NAMES.of(t)] for t in SERVICES["signer"].reads)
    assert hpa["spec"]["maxReplicas"] <= needed, "replicas beyond the partition count would idle"


def test_each_service_has_a_kafka_user_with_exactly_its_acls(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    users = {u["metadata"]["name"]: u for u in of_kind(objects, "KafkaUser")}
    assert set(users) == {_kafka_user_name(s) for s in SERVICES}
    for service in SERVICES:
        user = users[_kafka_user_name(service)]
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == "cacert-kafka"
        assert user["spec"]["authentication"]["type"] in ("scram-sha-512", "tls")
        assert user["spec"]["authorization"]["type"] == "simple"
        granted, expected = _granted_acls(user), _expected_acls(service)
        assert granted == expected, (
            f"{service}: extra {sorted(granted - expected)}, missing {sorted(expected - granted)}"
        )


def test_mail_commands_are_readable_by_the_notifier_only(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    readers = {
        u["metadata"]["name"]
        for u in of_kind(objects, "KafkaUser")
        if ("topic", TOPIC_NAMES.of("mail.commands"), "Read") in _granted_acls(u)
    }
    assert readers == {"notifier"}


def test_every_topic_the_code_uses_is_covered(overlay: tuple[str, list[Obj]]) -> None:
    """Each logical topic some service reads has a writer and vice versa (no orphan ACLs)."""
    read = set().union(*(a.reads for a in SERVICES.values()))
    written = set().union(*(a.writes for a in SERVICES.values()))
    assert read <= written and (read | written) <= set(TOPICS)


def test_each_kafka_client_authenticates_as_its_user(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    clients = set()
    for workload, (package, _) in SERVICE_WORKLOADS.items():
        template = named(objects, "Deployment", workload)["spec"]["template"]
        (container,) = template["spec"]["containers"]
        environ = container_environment(objects, container)
        mounts = secret_mounts(template, container)
        if workload == "signer-status":
            assert "CACERT_KAFKA_PASSWORD_FILE" not in environ, (
                "the status responder gets no Kafka credentials"
            )
            assert not any(secret == "signer" for secret, _ in mounts.values())
            continue
        clients.add(template["metadata"]["labels"]["app.kubernetes.io/name"])
        user = _kafka_user_name(package)
        assert environ["CACERT_KAFKA_USERNAME"] == user
        assert environ["CACERT_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert environ["CACERT_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert environ["CACERT_KAFKA_CREATE_TOPICS"] == "false", "Strimzi owns the topics"
        password_dir, password_file = environ["CACERT_KAFKA_PASSWORD_FILE"].rsplit("/", 1)
        assert mounts[password_dir] == (user, [password_file]), "mounts the User Operator's Secret"
        ca_dir, ca_file = environ["CACERT_KAFKA_CA_FILE"].rsplit("/", 1)
        assert mounts[ca_dir] == ("cacert-kafka-cluster-ca-cert", [ca_file])
        host, port = environ["CACERT_KAFKA_BOOTSTRAP"].split(":")
        assert host == "cacert-kafka-kafka-bootstrap"
        _assert_listener(objects, int(port), clients)
    (kafka,) = of_kind(objects, "Kafka")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    (peer,) = listener["networkPolicyPeers"]
    (expr,) = peer["podSelector"]["matchExpressions"]
    assert expr["key"] == "app.kubernetes.io/name" and set(expr["values"]) == clients


def _assert_listener(objects: list[Obj], port: int, clients: set[str]) -> None:
    (kafka,) = of_kind(objects, "Kafka")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["port"] == port and listener["tls"] is True
    assert listener["authentication"]["type"] == "scram-sha-512"
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False


def test_kafka_runs_kraft_with_node_pools(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    (kafka,) = of_kind(objects, "Kafka")
    pools = of_kind(objects, "KafkaNodePool")
    roles = {r for p in pools for r in p["spec"]["roles"]}
    assert roles == {"controller", "broker"}
    for pool in pools:
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert "zookeeper" not in kafka["spec"]
    assert {"topicOperator", "userOperator"} <= set(kafka["spec"]["entityOperator"])
    assert "kafkaExporter" in kafka["spec"], "consumer lag metrics (README)"
