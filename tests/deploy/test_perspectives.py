"""The validation authority as deployed: the primary asks exactly the remote perspectives that are
deployed, production spreads them over as many regions as BR 3.2.2.9 requires, and every validating pod
asks a validating resolver of its own whose configuration (from the manifests) really starts Unbound."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.domain_verify.va.quorum import required_remote_perspectives
from tests.deploy.manifests import (
    DOCKER,
    PERSPECTIVE_WORKLOADS,
    PERSPECTIVES,
    SERVICE_WORKLOADS,
    Obj,
    config_maps,
    container_environment,
    named,
    of_kind,
)
from tests.deploy.test_images import parse_dockerfile

VALIDATING = ["domain-verify", *PERSPECTIVE_WORKLOADS]
CONFIG_MOUNT = "/etc/unbound/cacert"
IANA_ROOT_KEY_TAGS = {"20326", "38696"}  # KSK-2017 and KSK-2024


def _template(objects: list[Obj], workload: str) -> Obj:
    return named(objects, "Deployment", workload)["spec"]["template"]


def _environment(objects: list[Obj], workload: str) -> dict[str, str]:
    template = _template(objects, workload)
    (container,) = template["spec"]["containers"]
    return container_environment(objects, container, template["metadata"]["labels"])


def _resolver_config(objects: list[Obj]) -> dict[str, str]:
    (name,) = [n for n in config_maps(objects) if n.startswith("validating-resolver-")]
    return config_maps(objects)[name]


def test_the_primary_asks_exactly_the_deployed_perspectives(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    deployed = {
        d["spec"]["template"]["metadata"]["labels"]["cacert/perspective"]
        for d in of_kind(objects, "Deployment")
        if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/name") == "domain-verify-perspective"
    }
    asked = _environment(objects, "domain-verify")["CACERT_DOMAIN_VERIFY_PERSPECTIVES"].split(",")
    assert len(asked) == len(set(asked))
    assert set(asked) == deployed == set(PERSPECTIVES)
    for workload, region in PERSPECTIVE_WORKLOADS.items():
        environ = _environment(objects, workload)
        assert environ["CACERT_DOMAIN_VERIFY_MODE"] == "perspective"
        assert environ["CACERT_DOMAIN_VERIFY_PERSPECTIVE_NAME"] == region
        # the primary and the perspectives must judge by the same rules to corroborate each other
        for shared in ("CACERT_DOMAIN_VERIFY_CAA_IDENTITIES", "CACERT_DOMAIN_VERIFY_HTTP_PORT"):
            assert environ[shared] == _environment(objects, "domain-verify")[shared], shared


def test_prod_pins_each_perspective_to_its_own_region_and_deploys_as_many_as_the_br_require(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = rendered["prod"]
    regions = [
        _template(objects, workload)["spec"]["nodeSelector"]["topology.kubernetes.io/region"]
        for workload in PERSPECTIVE_WORKLOADS
    ]
    assert len(set(regions)) == len(regions), f"two perspectives share a region: {regions}"
    primary = _template(objects, "domain-verify")["spec"]
    assert "topology.kubernetes.io/region" not in primary.get("nodeSelector", {})
    assert len(PERSPECTIVE_WORKLOADS) >= required_remote_perspectives(datetime.now(UTC).date())
    assert len(PERSPECTIVE_WORKLOADS) >= required_remote_perspectives(datetime.max.date())
    # dev runs on one node: the perspectives must be schedulable there
    for workload in PERSPECTIVE_WORKLOADS:
        assert "nodeSelector" not in _template(rendered["dev"], workload)["spec"]


def test_every_validating_pod_asks_a_validating_resolver_of_its_own(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    config = _resolver_config(objects)["unbound.conf"]
    interface = re.search(r"^\s*interface:\s*(\S+)", config, re.M)
    port = re.search(r"^\s*port:\s*(\d+)", config, re.M)
    assert interface and port
    listening = f"{interface.group(1)}:{port.group(1)}"
    assert interface.group(1) == "127.0.0.1", "the resolver answers its own pod only"
    for workload in SERVICE_WORKLOADS:
        template = _template(objects, workload)
        sidecars = [c for c in template["spec"].get("initContainers", []) if c["name"] == "resolver"]
        if workload not in VALIDATING:
            assert not sidecars, f"{workload} makes no validation lookups and runs no resolver"
            assert "CACERT_DNS_RESOLVER" not in _environment(objects, workload)
            continue
        (sidecar,) = sidecars
        assert sidecar["restartPolicy"] == "Always", "a native sidecar: up before domain_verify, kept running"
        assert sidecar["image"].rsplit("/", 1)[-1].startswith("resolver:")
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        (mount,) = [m for m in sidecar["volumeMounts"] if m["mountPath"] == CONFIG_MOUNT]
        assert volumes[mount["name"]]["configMap"]["name"].startswith("validating-resolver-")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert f"{CONFIG_MOUNT}/unbound.conf" in sidecar[probe]["exec"]["command"]
        assert _environment(objects, workload)["CACERT_DNS_RESOLVER"] == listening


def test_the_trust_anchor_is_the_iana_root(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    data = _resolver_config(objects)
    assert re.search(rf'^\s*trust-anchor-file:\s*"{CONFIG_MOUNT}/root.key"', data["unbound.conf"], re.M)
    records = [line.split() for line in data["root.key"].splitlines() if line and not line.startswith(";")]
    assert {r[3] for r in records} == IANA_ROOT_KEY_TAGS
    for record in records:
        assert record[:3] == [".", "IN", "DS"] and record[4:6] == ["8", "2"] and len(record[6]) == 64


def test_the_resolver_image_runs_unprivileged_with_the_mounted_configuration() -> None:
    _, stages = parse_dockerfile(DOCKER / "resolver.Dockerfile")
    (final,) = stages
    assert re.fullmatch(r"debian:[\w.]+-slim(@sha256:[0-9a-f]{64})?", final.base), final.base
    assert any("apt-get install" in run and "unbound" in run for run in final.all("RUN"))
    (user,) = final.all("USER")
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0
    (entrypoint,) = final.all("ENTRYPOINT")
    assert f"{CONFIG_MOUNT}/unbound.conf" in entrypoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_deployed_resolver_configuration_starts_unbound(rendered: dict[str, list[Obj]], tmp_path: Path) -> None:
    """The ConfigMap a pod would mount, run by the real Unbound (Debian's, as in the image): only the
    directory and the two ports are moved to this machine's."""
    unbound, checkconf, control = (shutil.which(t) or shutil.which(t, path="/usr/sbin") for t in
                                   ("unbound", "unbound-checkconf", "unbound-control"))
    if not (unbound and checkconf and control):
        pytest.skip("Debian's unbound is not installed (devstack installs it with the local DNS)")
    data = _resolver_config(rendered["prod"])
    dns_port, control_port = _free_port(), _free_port()
    text = data["unbound.conf"].replace(CONFIG_MOUNT, str(tmp_path))
    text = re.sub(r"^(\s*)port: 5353$", rf"\g<1>port: {dns_port}", text, flags=re.M)
    text = re.sub(r"^(\s*)control-port: \d+$", rf"\g<1>control-port: {control_port}", text, flags=re.M)
    (tmp_path / "root.key").write_text(data["root.key"])
    conf = tmp_path / "unbound.conf"
    conf.write_text(text)
    checked = subprocess.run([checkconf, str(conf)], capture_output=True, text=True, timeout=30, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    process = subprocess.Popen([unbound, "-d", "-p", "-c", str(conf)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            status = subprocess.run([control, "-c", str(conf), "status"], capture_output=True, text=True,
                                    timeout=10, check=False)
            if status.returncode == 0:
                break
            time.sleep(0.2)
        assert process.poll() is None, f"unbound exited {process.returncode}"
        assert status is not None and status.returncode == 0 and "is running" in status.stdout
        anchors = subprocess.run([control, "-c", str(conf), "list_forwards"], capture_output=True, text=True,
                                 timeout=10, check=False)
        assert anchors.returncode == 0 and not anchors.stdout.strip(), "it recurses itself, no forwarder"
        option = subprocess.run([control, "-c", str(conf), "get_option", "trust-anchor-file"],
                                capture_output=True, text=True, timeout=10, check=False)
        assert option.stdout.strip() == str(tmp_path / "root.key")
    finally:
        process.terminate()
        try:
            output, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert "error" not in output.lower(), output
