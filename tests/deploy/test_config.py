"""The configuration the manifests hand each container is complete and valid for that service's
settings class (shared/config.py), and its public URLs agree with the Ingress hosts."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from services.domain_verify.settings import settings_environment
from services.registration.web.settings import WebSettings
from shared.config import ConfigError, describe, load
from tests.acme_keys import ACME_SEALING_PRIVATE_PEM, ACME_SEALING_PUBLIC_PEM
from tests.approval_keys import RA_PRIVATE_PEM, RA_PUBLIC_PEM
from tests.deploy.manifests import (
    K8S,
    MONGODB_WORKLOADS,
    PERSPECTIVE_WORKLOADS,
    SERVICE_WORKLOADS,
    Obj,
    container_environment,
    named,
    of_kind,
    secret_mounts,
)
from tests.mail_keys import NOTIFIER_PRIVATE_PEM, SEALING_PUBLIC_PEM

DUMMY_SECRETS = {
    "url": "mongodb://user:not-a-secret@mongodb:27017/?authSource=test",
    "password": "not-a-secret",
    "passphrase": "not-a-secret",
    "username": "not-a-secret",
    # the RA key pair must parse: a throw-away pair generated for the test run (tests/approval_keys.py)
    "ra-signing-key.pem": RA_PRIVATE_PEM,
    "ra-public-keys.pem": RA_PUBLIC_PEM,
    # and so must the notifier's sealing key pair (tests/mail_keys.py)
    "notifier-sealing-key.pem": NOTIFIER_PRIVATE_PEM,
    "mail-sealing-public-key.pem": SEALING_PUBLIC_PEM,
    # and the ACME service's binding sealing key pair (tests/acme_keys.py), once the manifests mount it
    "acme-sealing-key.pem": ACME_SEALING_PRIVATE_PEM,
    "acme-sealing-public-key.pem": ACME_SEALING_PUBLIC_PEM,
    "csrf-secret": "not-a-secret",
}


def _settings_class(workload: str) -> type:
    module, name = SERVICE_WORKLOADS[workload][1].split(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        pytest.skip(f"{module} is not there yet ({exc})")


def _environment_with_secret_files(objects: list[Obj], workload: str, tmp_path: Path) -> dict[str, str]:
    """The container's environment, with every mounted Secret file replaced by a dummy local file."""
    template = named(objects, "Deployment", workload)["spec"]["template"]
    (container,) = template["spec"]["containers"]
    environ = container_environment(objects, container, template["metadata"]["labels"])
    mounts = secret_mounts(template, container)
    for variable, value in list(environ.items()):
        if not variable.endswith("_FILE") and variable != "CACERT_CA_DIR":
            continue
        directory = value if variable == "CACERT_CA_DIR" else value.rsplit("/", 1)[0]
        assert directory in mounts, f"{workload}: {variable}={value} is not on a mounted Secret"
        _, files = mounts[directory]
        local = tmp_path / directory.strip("/").replace("/", "_")
        local.mkdir(exist_ok=True)
        for file in files:
            (local / file).write_text(DUMMY_SECRETS.get(file, "not-a-secret"))
        environ[variable] = (
            str(local) if variable == "CACERT_CA_DIR" else str(local / value.rsplit("/", 1)[1])
        )
    return environ


@pytest.mark.parametrize("workload", sorted(SERVICE_WORKLOADS))
def test_manifest_configuration_loads(overlay: tuple[str, list[Obj]], workload: str, tmp_path: Path) -> None:
    name, objects = overlay
    settings_class = _settings_class(workload)
    environ = _environment_with_secret_files(objects, workload, tmp_path)
    # what the entry point does (a perspective has no database); the manifests' own environment is checked below
    loaded = settings_environment(environ) if workload in PERSPECTIVE_WORKLOADS else environ
    try:
        settings: Any = load(settings_class, loaded)
    except ConfigError as exc:
        pytest.fail(f"overlays/{name} {workload}: {exc}")
    assert settings.common.http.host == "0.0.0.0"  # noqa: S104 (pods listen on their pod IP)
    assert settings.common.create_topics is False
    if workload == "registration":
        assert settings.approval_signer().public_pem() == RA_PUBLIC_PEM, "serves with the mounted RA key"
        web = load(WebSettings, environ)
        web.check_shared_secrets(settings.public_url)  # every replica shares one CSRF key
        assert web.csrf_secret and urlsplit(web.ca_certs_url).hostname == "signer-status"
    if workload == "signer-issuing":
        assert settings.approval_verifier().key_ids, "trusts the mounted RA public keys"
    if workload == "acme":
        settings.validate()
        assert settings.binding_opener().public_pem() == ACME_SEALING_PUBLIC_PEM, "opens with the mounted key"
    if workload in PERSPECTIVE_WORKLOADS:
        assert settings.mode == "perspective"
        assert settings.perspective_name == PERSPECTIVE_WORKLOADS[workload]
    # secrets arrive as files only, never as literal environment values
    for variable, _, secret in describe(settings_class):
        if secret:
            assert variable not in environ, f"{workload}: secret {variable} given as a plain value"


def test_mongodb_users_match_the_init_script(rendered: dict[str, list[Obj]]) -> None:
    """Each service's connection string (dev Secrets) names a user the init script creates in that
    service's database, and its CACERT_MONGO_DATABASE is that database."""
    import base64
    import re

    script = (K8S / "base" / "mongodb-init" / "create-users.js").read_text()
    created = {
        user: (database, role)
        for user, database, role in re.findall(r'\["(\w+)", "(\w+)", "(\w+)", "\w+"\]', script)
    }
    objects = rendered["dev"]
    secrets = {s["metadata"]["name"]: s for s in of_kind(objects, "Secret")}
    for workload in PERSPECTIVE_WORKLOADS:
        template = named(objects, "Deployment", workload)["spec"]["template"]
        (container,) = template["spec"]["containers"]
        assert "/var/run/secrets/cacert/mongodb" not in secret_mounts(template, container), (
            f"{workload} stores nothing and gets no MongoDB credentials"
        )
    for workload in sorted(MONGODB_WORKLOADS):
        template = named(objects, "Deployment", workload)["spec"]["template"]
        (container,) = template["spec"]["containers"]
        environ = container_environment(objects, container)
        secret_name, _ = secret_mounts(template, container)["/var/run/secrets/cacert/mongodb"]
        url = urlsplit(base64.b64decode(secrets[secret_name]["data"]["url"]).decode())
        database, role = created[url.username]
        query = dict(parse_qsl(url.query))
        assert query == {"authSource": database, "replicaSet": "rs0", "tls": "true", "w": "majority",
                         "tlsCAFile": "/var/run/secrets/cacert/mongodb-ca/ca.crt"}, (workload, query)
        assert "/var/run/secrets/cacert/mongodb-ca" in secret_mounts(template, container), workload
        assert environ["CACERT_MONGO_DATABASE"] == database
        assert role == ("read" if workload == "signer-status" else "readWrite")
    mongod = named(objects, "StatefulSet", "mongodb")["spec"]["template"]["spec"]["containers"][0]
    passwords = {v["name"] for v in mongod["env"] if "valueFrom" in v}
    assert passwords == set(re.findall(r'"(\w+_PASSWORD)"', script))


def test_public_urls_match_the_ingress_hosts(overlay: tuple[str, list[Obj]]) -> None:
    _, objects = overlay
    hosts = {i["metadata"]["name"]: i["spec"]["rules"][0]["host"] for i in of_kind(objects, "Ingress")}
    expectations = {
        "registration": "CACERT_PUBLIC_URL",
        "domain-verify": "CACERT_DOMAIN_VERIFY_PUBLIC_URL",
        "signer-status": "CACERT_SIGNER_PUBLIC_URL",
        "signer-issuing": "CACERT_SIGNER_PUBLIC_URL",
        "acme": "CACERT_ACME_PUBLIC_URL",
    }
    for workload, variable in expectations.items():
        (container,) = named(objects, "Deployment", workload)["spec"]["template"]["spec"]["containers"]
        url = urlsplit(container_environment(objects, container)[variable])
        ingress = "signer-status" if workload.startswith("signer") else workload
        assert url.hostname == hosts[ingress], f"{workload}: {variable} points at {url.hostname}"
        tls = "tls" in named(objects, "Ingress", ingress)["spec"]
        assert url.scheme == ("https" if tls else "http")


def _environment(objects: list[Obj], workload: str) -> dict[str, str]:
    (container,) = named(objects, "Deployment", workload)["spec"]["template"]["spec"]["containers"]
    return container_environment(objects, container)


def test_the_acme_api_is_routed_where_its_public_url_says(overlay: tuple[str, list[Obj]]) -> None:
    """The ACME service builds every URL it hands out from CACERT_ACME_PUBLIC_URL; the Ingress must route
    that host and path (unchanged, no rewrite) to it, and registration must show members that directory."""
    from tests.deploy.test_policy import _routed

    _, objects = overlay
    public = urlsplit(_environment(objects, "acme")["CACERT_ACME_PUBLIC_URL"])
    ingress = named(objects, "Ingress", "acme")
    assert "nginx.ingress.kubernetes.io/rewrite-target" not in ingress["metadata"].get("annotations", {})
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == public.hostname
    base = public.path.rstrip("/")
    assert base, "the ACME API lives under a path of its own (/acme)"
    # RFC 8555 7.1 resources (and RFC 9773 renewalInfo) under the base path, and one resource below them
    for resource in ("/directory", "/new-nonce", "/new-account", "/new-order", "/revoke-cert", "/key-change",
                     "/renewal-info", "/renewal-info/x.y"):
        assert _routed(ingress, base + resource), f"{base + resource} is not routed"
    assert {p["backend"]["service"]["name"] for p in rule["http"]["paths"]} == {"acme"}
    assert not _routed(ingress, "/metrics") and not _routed(ingress, base + "x/directory")
    directory = _environment(objects, "registration")["CACERT_ACME_DIRECTORY_URL"]
    assert directory == public.geturl().rstrip("/") + "/directory", "registration shows members another directory"


def test_acme_announces_the_caa_identities_the_validation_authority_checks(overlay: tuple[str, list[Obj]]) -> None:
    """meta.caaIdentities tells members what to put in CAA; domain_verify's CAA check must accept the same."""
    _, objects = overlay
    announced = _environment(objects, "acme")["CACERT_ACME_CAA_IDENTITIES"]
    checked = _environment(objects, "domain-verify")["CACERT_DOMAIN_VERIFY_CAA_IDENTITIES"]
    assert sorted(announced.split(",")) == sorted(checked.split(","))
