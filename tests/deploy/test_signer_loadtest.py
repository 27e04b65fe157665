"""The opt-in load-test component (deploy/k8s/components/signer-loadtest) on top of each overlay: it renders,
every object validates (Kubernetes strict, Strimzi CRDs), the Job meets the same pod rules as the services,
reaches only Kafka and MongoDB, authenticates as a Kafka user confined to its throw-away prefix, and its
entry point starts from the image's Dockerfile and stops cleanly on a missing Secret."""

from __future__ import annotations

import re
import shlex
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy import test_policy, test_render
from tests.deploy.manifests import (
    DOCKER,
    OVERLAYS,
    Obj,
    container_environment,
    named,
    of_kind,
    policies_for,
    secret_mounts,
    selector_matches,
)
from tests.deploy.test_images import _exec_form, _run, parse_dockerfile

PREFIX = "cacert-load."


@pytest.fixture(params=OVERLAYS)
def loadtest_overlay(request: pytest.FixtureRequest, with_loadtest: dict[str, list[Obj]]) -> tuple[str, list[Obj]]:
    return f"{request.param}+signer-loadtest", with_loadtest[request.param]


def _job(objects: list[Obj]) -> tuple[Obj, Obj]:
    job = named(objects, "Job", "signer-loadtest")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return job, container


def test_the_component_adds_its_objects_and_validates(loadtest_overlay: tuple[str, list[Obj]],
                                                       strimzi_crds: dict[tuple[str, str], dict[str, Any]]) -> None:
    test_render.test_every_overlay_renders_objects(loadtest_overlay)
    for version in test_render.KUBERNETES_VERSIONS:
        test_render.test_core_objects_validate_against_kubernetes_schemas(loadtest_overlay, version)
    test_render.test_strimzi_objects_validate_against_crds(loadtest_overlay, strimzi_crds)
    _, objects = loadtest_overlay
    named(objects, "KafkaUser", "signer-loadtest")
    named(objects, "NetworkPolicy", "signer-loadtest")
    job, _ = _job(objects)
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_job_is_unprivileged_and_touches_no_ca_key(loadtest_overlay: tuple[str, list[Obj]]) -> None:
    test_policy.test_every_container_is_unprivileged_read_only_probed_and_limited(loadtest_overlay)
    test_policy.test_only_the_issuing_signer_mounts_the_ca_keys(loadtest_overlay)
    _, objects = loadtest_overlay
    job, container = _job(objects)
    secrets = {secret for secret, _ in secret_mounts(job["spec"]["template"], container).values()}
    assert secrets == {"signer-loadtest", "signer-loadtest-mongodb", "mongodb-ca", "cacert-kafka-cluster-ca-cert"}


def test_the_job_reaches_only_kafka_and_mongodb_and_nothing_reaches_it(loadtest_overlay: tuple[str, list[Obj]]) -> None:
    _, objects = loadtest_overlay
    job, _ = _job(objects)
    labels = job["spec"]["template"]["metadata"]["labels"]
    destinations = {
        test_policy._classify_egress(rule)
        for policy in policies_for(objects, labels)
        if "Egress" in policy["spec"]["policyTypes"]
        for rule in policy["spec"].get("egress", [])
    }
    assert destinations == {"dns", "kafka", "mongodb"}
    assert test_policy._ingress_peers(objects, labels) == set()
    # the other side admits it: MongoDB's ingress and the brokers' listener
    mongodb = named(objects, "StatefulSet", "mongodb")["spec"]["template"]["metadata"]["labels"]
    assert any(selector_matches(peer["podSelector"], labels)
               for policy in policies_for(objects, mongodb) for rule in policy["spec"].get("ingress", [])
               for peer in rule["from"])
    (kafka,) = of_kind(objects, "Kafka")
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert any(selector_matches(peer["podSelector"], labels) for peer in listener["networkPolicyPeers"])
    # and the services' own policies are unchanged by the component
    test_policy.test_each_service_reaches_only_kafka_its_mongodb_smtp_and_validation_targets(loadtest_overlay)


def test_its_kafka_user_may_act_on_its_throw_away_prefix_only(loadtest_overlay: tuple[str, list[Obj]]) -> None:
    _, objects = loadtest_overlay
    user = named(objects, "KafkaUser", "signer-loadtest")
    assert user["metadata"]["labels"]["strimzi.io/cluster"] == "cacert-kafka"
    assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    assert user["spec"]["authorization"]["type"] == "simple"
    granted = set()
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        assert resource["patternType"] == "prefix" and resource["name"] == PREFIX, resource
        assert acl.get("type", "allow") == "allow" and acl.get("host", "*") == "*"
        granted |= {(resource["type"], op) for op in acl["operations"]}
    assert granted == {("topic", op) for op in ("Create", "Delete", "Describe", "Read", "Write")} | {
        ("group", "Read"), ("group", "Describe")}
    assert not PREFIX.startswith("cacert."), "the CA's own topics are not under the load test's prefix"
    # the service users stay exactly as shared/events/access.py says
    from tests.deploy import test_kafka

    users = [u for u in of_kind(objects, "KafkaUser") if u["metadata"]["name"] != "signer-loadtest"]
    test_kafka.test_each_service_has_a_kafka_user_with_exactly_its_acls(("with-component", users))


def test_the_job_authenticates_as_its_user_with_a_throw_away_prefix_and_database(
        loadtest_overlay: tuple[str, list[Obj]]) -> None:
    _, objects = loadtest_overlay
    job, container = _job(objects)
    environ = container_environment(objects, container)
    mounts = secret_mounts(job["spec"]["template"], container)
    assert environ["CACERT_KAFKA_USERNAME"] == "signer-loadtest"
    assert environ["CACERT_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert environ["CACERT_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    password_dir, password_file = environ["CACERT_KAFKA_PASSWORD_FILE"].rsplit("/", 1)
    assert mounts[password_dir] == ("signer-loadtest", [password_file])
    ca_dir, ca_file = environ["CACERT_KAFKA_CA_FILE"].rsplit("/", 1)
    assert mounts[ca_dir] == ("cacert-kafka-cluster-ca-cert", [ca_file])
    url_dir, url_file = environ["CACERT_MONGO_URL_FILE"].rsplit("/", 1)
    assert mounts[url_dir] == ("signer-loadtest-mongodb", [url_file])
    args = container["args"]
    assert "--from-env" in args and f"--topic-prefix={PREFIX}" in args and "--database=signer_loadtest" in args


def test_the_prod_job_pulls_its_image_by_digest(with_loadtest: dict[str, list[Obj]]) -> None:
    _, container = _job(with_loadtest["prod"])
    assert re.search(r"@sha256:[0-9a-f]{64}$", container["image"]), container["image"]


def test_the_load_test_image_is_built_like_the_services_and_runs_the_load_test() -> None:
    _, stages = parse_dockerfile(DOCKER / "signer-loadtest.Dockerfile")
    build, final = stages[:-1], stages[-1]
    installs = " ".join(run for stage in build for run in stage.all("RUN"))
    assert re.search(r"pip install --require-hashes -r requirements-runtime\.lock .*pip install --no-deps \.", installs)
    copied = " ".join(arg for stage in build for arg in stage.all("COPY"))
    assert "benchmarks" in copied and "shared" in copied and "services" in copied
    for run in final.all("RUN"):
        assert not re.search(r"apt-get install|pip install|gcc|build-essential", run), run
    (user,) = final.all("USER")
    assert int(user.split(":")[0]) != 0
    (entrypoint,) = final.all("ENTRYPOINT")
    assert _exec_form(entrypoint) == ["python", "-m", "benchmarks.signer_loadtest"]


def test_the_jobs_entry_point_stops_cleanly_without_its_secrets(with_loadtest: dict[str, list[Obj]]) -> None:
    """What the pod runs (ENTRYPOINT + the Job's args) with the Job's ConfigMap environment and no Secret
    files: one line naming the unreadable file, exit 2, as a service does."""
    objects = with_loadtest["prod"]
    _, container = _job(objects)
    _, stages = parse_dockerfile(DOCKER / "signer-loadtest.Dockerfile")
    argv = _exec_form(stages[-1].all("ENTRYPOINT")[0]) + container["args"]
    result = _run(argv, container_environment(objects, container))
    assert result.returncode == 2, f"{shlex.join(argv)} exited {result.returncode}:\n{result.stderr}"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(r"configuration error: CACERT_\w+_FILE points at /var/run/secrets/cacert/",
                                        lines[0]), result.stderr


def test_only_the_job_uses_the_load_test_image(with_loadtest: dict[str, list[Obj]]) -> None:
    for objects in with_loadtest.values():
        for kind in ("Deployment", "StatefulSet", "CronJob"):
            for o in of_kind(objects, kind):
                assert "signer-loadtest" not in str(o), f"{kind}/{o['metadata']['name']}"
        kubernetes_validate.validate(named(objects, "Job", "signer-loadtest"), test_render.KUBERNETES_VERSIONS[0],
                                     strict=True)
