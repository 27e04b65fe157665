"""Security and operability policy over the rendered overlays: what an admission policy engine
(Kyverno, Gatekeeper) plus a reviewer would check before letting these objects into a cluster."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import (
    CA_KEY_FILES,
    CA_KEY_SECRET,
    MONGODB_WORKLOADS,
    PERSPECTIVE_WORKLOADS,
    PUBLIC_WORKLOADS,
    ROOT_KEY_FILES,
    SERVICE_WORKLOADS,
    Obj,
    containers,
    named,
    of_kind,
    pod_templates,
    policies_for,
    referenced_secrets,
    selector_matches,
)


def test_every_container_is_unprivileged_read_only_probed_and_limited(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    problems = []
    for owner, template in pod_templates(objects):
        where = f"{owner['kind']}/{owner['metadata']['name']}"
        pod_sc = template["spec"].get("securityContext", {})
        if pod_sc.get("runAsNonRoot") is not True:
            problems.append(f"{where}: pod securityContext.runAsNonRoot is not true")
        if pod_sc.get("runAsUser") == 0:
            problems.append(f"{where}: pod runs as uid 0")
        if (
            template["spec"].get("hostNetwork")
            or template["spec"].get("hostPID")
            or template["spec"].get("hostIPC")
        ):
            problems.append(f"{where}: shares a host namespace")
        mounts_tmp = False
        for c in containers(template):
            at = f"{where} container {c['name']}"
            sc = c.get("securityContext", {})
            if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
                problems.append(f"{at}: runAsNonRoot is not true")
            if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
                problems.append(f"{at}: runs as uid 0")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: root filesystem is writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                problems.append(f"{at}: privileged")
            if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
                problems.append(f"{at}: capabilities are not exactly drop [ALL]")
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
            if seccomp != "RuntimeDefault":
                problems.append(f"{at}: seccompProfile is {seccomp!r}, not RuntimeDefault")
            resources = c.get("resources", {})
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(section, {}):
                        problems.append(f"{at}: no {section}.{resource}")
            # Probes watch what keeps running: the containers of long-lived pods and native sidecars.
            # A Job's container runs to completion, and Kubernetes forbids probes on a plain init container.
            initial = c in template["spec"].get("initContainers", []) and c.get("restartPolicy") != "Always"
            if owner["kind"] not in ("Job", "CronJob") and not initial:
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe not in c:
                        problems.append(f"{at}: no {probe}")
            if ":" not in c["image"].rsplit("/", 1)[-1] or c["image"].endswith(":latest"):
                problems.append(f"{at}: image {c['image']} has no pinned tag")
            mounts_tmp |= any(m["mountPath"] == "/tmp" for m in c.get("volumeMounts", []))
        if not mounts_tmp:
            problems.append(f"{where}: no writable /tmp (emptyDir) for a read-only root filesystem")
    assert not problems, f"overlays/{name}:\n" + "\n".join(problems)


def test_services_probe_their_health_endpoints(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    for workload in SERVICE_WORKLOADS:
        deployment = named(objects, "Deployment", workload)
        spec = deployment["spec"]
        assert spec["strategy"]["type"] == "RollingUpdate"
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, "a rollout must not drop capacity"
        (c,) = spec["template"]["spec"]["containers"]
        (port,) = c["ports"]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
        env = {v["name"]: v.get("value") for v in c["env"]}
        assert env["CACERT_HTTP_PORT"] == str(port["containerPort"]), f"{workload} listens elsewhere"
        assert spec["template"]["spec"]["automountServiceAccountToken"] is False, "no service needs the API"


def test_replicas_are_set_or_owned_by_an_autoscaler(overlay: tuple[str, list[Obj]]) -> None:
    name, objects = overlay
    scaled = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(objects, "HorizontalPodAutoscaler")}
    signer_hpa = scaled["signer-issuing"]
    assert [m["resource"]["name"] for m in signer_hpa["spec"]["metrics"]] == ["cpu"]
    assert "replicas" not in named(objects, "Deployment", "signer-issuing")["spec"], (
        "the HPA owns signer-issuing's replicas; a replicas field would be reset on every apply"
    )
    for deployment in of_kind(objects, "Deployment"):
        if deployment["metadata"]["name"] not in scaled:
            assert deployment["spec"].get("replicas", 0) >= 1
    if name == "prod":
        for workload in SERVICE_WORKLOADS:
            replicas = (
                scaled[workload]["spec"]["minReplicas"]
                if workload in scaled
                else named(objects, "Deployment", workload)["spec"]["replicas"]
            )
            assert replicas >= 2, f"prod {workload} must survive the loss of one pod"


def test_only_the_notifier_mounts_the_mail_sealing_key(overlay: tuple[str, list[Obj]]) -> None:
    """The private key that opens mailed links is the notifier's alone; the producers get the public key."""
    _, objects = overlay
    def holders(secret: str) -> list[str]:
        return sorted(owner["metadata"]["name"] for owner, template in pod_templates(objects)
                      if secret in referenced_secrets(template))

    assert holders("notifier-sealing-key") == ["notifier"]
    assert holders("mail-sealing-public-key") == ["domain-verify", "registration"]


def test_only_the_acme_service_mounts_the_acme_sealing_key(overlay: tuple[str, list[Obj]]) -> None:
    """The private key that opens External Account Binding HMAC keys is the ACME service's alone; registration,
    which seals them, gets the public key."""
    _, objects = overlay

    def holders(secret: str) -> list[str]:
        return sorted(owner["metadata"]["name"] for owner, template in pod_templates(objects)
                      if secret in referenced_secrets(template))

    assert holders("acme-sealing-key") == ["acme"]
    assert holders("acme-sealing-public-key") == ["registration"]


def test_each_service_has_a_disruption_budget(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    budgets = of_kind(objects, "PodDisruptionBudget")
    for workload in SERVICE_WORKLOADS:
        labels = named(objects, "Deployment", workload)["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if selector_matches(b["spec"]["selector"], labels)]
        assert len(matching) == 1, f"{workload}: {len(matching)} PodDisruptionBudgets"
        assert matching[0]["spec"].get("maxUnavailable") == 1, "maxUnavailable 1 lets drains proceed"


def test_only_the_issuing_signer_mounts_the_ca_keys(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    holders = sorted(
        owner["metadata"]["name"]
        for owner, template in pod_templates(objects)
        if CA_KEY_SECRET in referenced_secrets(template)
    )
    assert holders == ["signer-issuing"]
    issuing = named(objects, "Deployment", "signer-issuing")["spec"]["template"]
    status = named(objects, "Deployment", "signer-status")["spec"]["template"]
    ca = {v["name"]: v for v in issuing["spec"]["volumes"]}["ca"]["secret"]
    assert ca["secretName"] == CA_KEY_SECRET
    assert CA_KEY_FILES <= {i["key"] for i in ca["items"]}
    status_ca = {v["name"]: v for v in status["spec"]["volumes"]}["ca"]["secret"]
    assert status_ca["secretName"] != CA_KEY_SECRET
    assert {i["key"] for i in status_ca["items"]} == {
        "class1.crt.pem", "class3.crt.pem", "class3-root.crt.pem", "class1-issuing.crt.pem", "class3-issuing.crt.pem",
        "arl-class1.der", "arl-class3.der",
        *(f"ocsp-{ca}.{kind}.pem" for ca in ("class1", "class3", "class1-issuing", "class3-issuing")
          for kind in ("crt", "key")),
    }, "status mode gets certificates, ARLs and OCSP keys only"
    # Secrets never ship with CA material: the CA Secrets are created from init-ca's output (README).
    for secret in of_kind(objects, "Secret"):
        keys = set(secret.get("data", {})) | set(secret.get("stringData", {}))
        assert not keys & (CA_KEY_FILES | ROOT_KEY_FILES | {"class1.crt.pem"}), (
            f"Secret {secret['metadata']['name']} holds CA files"
        )


def test_no_pod_mounts_a_root_key(overlay: tuple[str, list[Obj]]) -> None:
    """The roots sign only CA certificates, their ARLs and their OCSP signers, at a ceremony (BR 6.1.7): their
    keys are in no Secret item and no projected file of any workload, the issuing signer's included."""
    _, objects = overlay
    for owner, template in pod_templates(objects):
        for volume in template["spec"].get("volumes", []):
            sources = [volume.get("secret") or {}, *(volume.get("projected") or {}).get("sources", [])]
            for source in sources:
                secret = source.get("secret", source)
                mounted = {name for i in secret.get("items", []) for name in (i.get("key"), i.get("path"))}
                assert not mounted & ROOT_KEY_FILES, (owner["metadata"]["name"], volume["name"])
            whole = volume.get("secret")
            if whole and "items" not in whole:  # a whole Secret: never one of the CA ones
                assert whole["secretName"] not in {CA_KEY_SECRET, "signer-status-ca"}, owner["metadata"]["name"]


def test_committed_secrets_are_only_obviously_fake(overlay: tuple[str, list[Obj]]) -> None:
    import base64

    name, objects = overlay
    secrets = of_kind(objects, "Secret")
    if name == "prod":
        assert not secrets, "prod references Secrets by name only; they are created with kubectl (README)"
        return
    for secret in secrets:
        for key, value in secret.get("data", {}).items():
            text = base64.b64decode(value).decode()
            if any(word in key for word in ("password", "passphrase", "url", "secret")) and text:
                assert "FAKE-dev-only" in text, f"{secret['metadata']['name']}/{key} does not look fake"


def test_no_service_or_ingress_reaches_the_issuing_signer(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    labels = named(objects, "Deployment", "signer-issuing")["spec"]["template"]["metadata"]["labels"]
    exposing = [
        s["metadata"]["name"]
        for s in of_kind(objects, "Service")
        if selector_matches({"matchLabels": s["spec"].get("selector", {})}, labels)
    ]
    assert not exposing, f"Services select signer-issuing: {exposing}"
    for ingress in of_kind(objects, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] in PUBLIC_WORKLOADS


def test_ingress_routes_public_paths_only(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    routed = set()
    for ingress in of_kind(objects, "Ingress"):
        assert ingress["spec"]["ingressClassName"] == "nginx"
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                routed.add(path["backend"]["service"]["name"])
                assert path["path"] != "/" or path["pathType"] == "Exact", "/ as a prefix routes everything"
                assert not path["path"].startswith(("/metrics", "/healthz", "/readyz"))
    assert routed == PUBLIC_WORKLOADS
    status = named(objects, "Ingress", "signer-status")
    assert "tls" not in status["spec"], "CRL/OCSP are served over plain http (BR 7.1.2.7.7)"
    assert status["metadata"]["annotations"]["nginx.ingress.kubernetes.io/ssl-redirect"] == "false"
    status_paths = {p["path"] for rule in status["spec"]["rules"] for p in rule["http"]["paths"]}
    # the CA certificates, the self-signed Class 3 root (the anchor for assured-only trust) among them
    assert {"/class1.crt", "/class3.crt", "/class3-root.crt"} <= status_paths


def test_no_host_and_path_is_routed_to_two_services(overlay: tuple[str, list[Obj]]) -> None:
    """/acme is the ACME API on the ACME host and the portal's binding page on ra.: never on one host."""
    _, objects = overlay
    routes: dict[tuple[str, str], set[str]] = {}
    for ingress in of_kind(objects, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                routes.setdefault((rule["host"], path["path"]), set()).add(path["backend"]["service"]["name"])
    assert not {route: services for route, services in routes.items() if len(services) > 1}
    acme_hosts = {host for (host, path), services in routes.items() if services == {"acme"}}
    assert len(acme_hosts) == 1 and not any(host in acme_hosts and services != {"acme"}
                                            for (host, _), services in routes.items())


# --- NetworkPolicies -------------------------------------------------------------------------------


def test_namespace_denies_all_traffic_by_default(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    deny = [
        p
        for p in of_kind(objects, "NetworkPolicy")
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert len(deny) == 1, "one default-deny policy selecting every pod, both directions, no rules"
    # and the only namespace-wide allowance is DNS to the cluster resolver
    for policy in of_kind(objects, "NetworkPolicy"):
        if policy["spec"]["podSelector"] == {} and policy is not deny[0]:
            assert policy["spec"]["policyTypes"] == ["Egress"] and "ingress" not in policy["spec"]
            for rule in policy["spec"]["egress"]:
                assert {p["port"] for p in rule["ports"]} == {53}
                (peer,) = rule["to"]
                assert peer["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}


# What validation egress must leave out: private, shared, link-local and loopback space.
NOT_PUBLIC = {
    "0.0.0.0/0": {"10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
                  "192.168.0.0/16"},
    "::/0": {"::1/128", "fc00::/7", "fe80::/10"},
}


def _public_only(peers: list[dict]) -> bool:
    """Every peer is the whole Internet of one address family minus (at least) the non-public ranges."""
    return bool(peers) and all(
        set(peer) == {"ipBlock"}
        and peer["ipBlock"]["cidr"] in NOT_PUBLIC
        and NOT_PUBLIC[peer["ipBlock"]["cidr"]] <= set(peer["ipBlock"].get("except", []))
        for peer in peers
    )


def _classify_egress(rule: dict) -> str:
    ports = {p["port"] for p in rule.get("ports", [])}
    if ports == {53} and _public_only(rule["to"]):
        return "public-dns"
    if ports == {80, 443} and _public_only(rule["to"]):
        return "public-web"
    (peer,) = rule["to"]
    pod = (peer.get("podSelector") or {}).get("matchLabels", {})
    if ports == {53} and pod == {"k8s-app": "kube-dns"}:
        return "dns"
    if ports == {9093} and pod.get("strimzi.io/broker-role") == "true" and "namespaceSelector" not in peer:
        return "kafka"
    if ports == {27017} and pod == {"app.kubernetes.io/name": "mongodb"} and "namespaceSelector" not in peer:
        return "mongodb"
    if ports == {8083} and pod == {"app.kubernetes.io/name": "signer-status"} and "namespaceSelector" not in peer:
        return "signer-status"
    if ports <= {25, 465, 587, 1025} and ("ipBlock" in peer or pod == {"app.kubernetes.io/name": "mailpit"}):
        if "ipBlock" in peer:
            assert peer["ipBlock"]["cidr"] != "0.0.0.0/0", "SMTP egress must name the relay"
        return "smtp"
    return f"unexpected: {rule}"


def test_each_service_reaches_only_kafka_its_mongodb_smtp_and_validation_targets(
    overlay: tuple[str, list[Obj]],
) -> None:
    from shared.events.access import SERVICES

    _, objects = overlay
    for workload, (package, _) in SERVICE_WORKLOADS.items():
        labels = named(objects, "Deployment", workload)["spec"]["template"]["metadata"]["labels"]
        destinations = {
            _classify_egress(rule)
            for policy in policies_for(objects, labels)
            if "Egress" in policy["spec"]["policyTypes"]
            for rule in policy["spec"].get("egress", [])
        }
        expected = {"dns"}
        if workload in MONGODB_WORKLOADS:
            expected.add("mongodb")
        if workload != "signer-status" and package in SERVICES:  # the status responder never uses Kafka
            expected.add("kafka")
        if workload == "notifier":
            expected.add("smtp")
        if workload in ("registration", "acme"):  # the roots page's and ACME chains' CA certificates
            expected.add("signer-status")
        if package in ("domain_verify", "domain_verify_perspective"):  # only the VA makes validation lookups
            expected |= {"public-dns", "public-web"}
        assert destinations == expected, f"{workload} may reach {destinations}"


def _ingress_peers(objects: list[Obj], labels: dict) -> set[str]:
    peers = set()
    for policy in policies_for(objects, labels):
        if "Ingress" not in policy["spec"]["policyTypes"]:
            continue
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", [{"everywhere": True}]):
                namespace = (peer.get("namespaceSelector") or {}).get("matchLabels", {})
                pods = (peer.get("podSelector") or {}).get("matchLabels", {})
                if namespace == {"kubernetes.io/metadata.name": "ingress-nginx"} and pods == {
                    "app.kubernetes.io/name": "ingress-nginx"
                }:
                    peers.add("ingress-controller")
                elif namespace == {"kubernetes.io/metadata.name": "monitoring"} and pods == {
                    "app.kubernetes.io/name": "prometheus"
                }:
                    peers.add("prometheus")
                elif not namespace and pods in ({"app.kubernetes.io/name": "registration"},
                                                {"app.kubernetes.io/name": "acme"}):
                    peers.add(pods["app.kubernetes.io/name"])
                else:
                    peers.add(f"other: {peer}")
    return peers


@pytest.mark.parametrize("workload", sorted(SERVICE_WORKLOADS))
def test_ingress_comes_only_from_the_controller_and_prometheus(
    overlay: tuple[str, list[Obj]], workload: str
) -> None:
    _, objects = overlay
    labels = named(objects, "Deployment", workload)["spec"]["template"]["metadata"]["labels"]
    peers = _ingress_peers(objects, labels)
    if workload == "signer-issuing":
        assert peers == set(), "the issuing signer accepts no ingress at all"
        return
    expected = {"prometheus"} | ({"ingress-controller"} if workload in PUBLIC_WORKLOADS else set())
    if workload == "signer-status":
        expected |= {"registration", "acme"}  # the portal's roots page and ACME's chains, nothing else
    assert peers == expected
    annotations = named(objects, "Deployment", workload)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_mongodb_admits_only_the_services(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    labels = named(objects, "StatefulSet", "mongodb")["spec"]["template"]["metadata"]["labels"]
    admitted = set()
    for policy in policies_for(objects, labels):
        for rule in policy["spec"].get("ingress", []):
            assert [p["port"] for p in rule["ports"]] == [27017]
            for peer in rule["from"]:
                assert "namespaceSelector" not in peer and "ipBlock" not in peer
                admitted |= {
                    w
                    for w in SERVICE_WORKLOADS
                    if selector_matches(peer["podSelector"], {"app.kubernetes.io/name": w})
                }
                assert not selector_matches(peer["podSelector"], {"app.kubernetes.io/name": "mailpit"})
    assert admitted == MONGODB_WORKLOADS
    assert not admitted & set(PERSPECTIVE_WORKLOADS)


def test_every_referenced_secret_is_documented(rendered: dict[str, list[Obj]]) -> None:
    """An operator can create every Secret prod needs from the README (or Strimzi/cert-manager makes it)."""
    from tests.deploy.manifests import K8S

    readme = (K8S / "README.md").read_text()
    section = readme[readme.index("## Secrets") : readme.index("## Apply")]
    objects = rendered["prod"]
    referenced = set().union(*(referenced_secrets(t) for _, t in pod_templates(objects)))
    referenced |= {tls["secretName"] for i in of_kind(objects, "Ingress") for tls in i["spec"].get("tls", [])}
    undocumented = sorted(name for name in referenced if f"`{name}`" not in section)
    assert not undocumented, f"Secrets referenced but not described in deploy/k8s/README.md: {undocumented}"


def _routed(ingress: Obj, path: str) -> bool:
    """Kubernetes Ingress matching: Exact, or Prefix by whole path segments."""
    for rule in ingress["spec"]["rules"]:
        for route in rule["http"]["paths"]:
            prefix = route["path"].rstrip("/") or "/"
            if route["pathType"] == "Exact" and path == route["path"]:
                return True
            if route["pathType"] == "Prefix" and (path == prefix or path.startswith(prefix.rstrip("/") + "/")):
                return True
    return False


def _registration_paths() -> set[str]:
    """Every path registration serves (portal routes, its static files, the API's OpenAPI paths) and every
    path its templates link to or post to, with `{...}` placeholders filled in."""
    import json
    import re

    from tests.deploy.manifests import REPO

    package = REPO / "services" / "registration"
    source = "\n".join(p.read_text() for p in (package / "web").glob("*.py"))
    paths = set(re.findall(r'\("(?:GET|POST)", "(/[^"]*)"', source))
    paths |= set(re.findall(r'add_get\("(/[^"]*)"', source))
    paths |= set(json.loads((package / "openapi.json").read_text())["paths"])
    for template in (package / "web" / "templates").glob("*.html"):
        paths |= set(re.findall(r'(?:href|action)="(/[^"#?{]*)', template.read_text()))
    filled = {re.sub(r"\{[^}]*\}", "x", p).replace("x-certs", "server-certs") for p in paths}
    return {p for p in filled if not p.startswith(("/healthz", "/readyz", "/metrics"))}


def test_every_path_of_the_portal_and_the_member_api_is_routed(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    ingress = named(objects, "Ingress", "registration")
    paths = _registration_paths()
    assert {"/", "/login", "/signup", "/account", "/static/portal.css", "/v1/sessions"} <= paths
    unrouted = sorted(p for p in paths if not _routed(ingress, p))
    assert not unrouted, f"the registration Ingress does not route: {unrouted}"
