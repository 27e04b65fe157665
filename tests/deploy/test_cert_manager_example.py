"""The cert-manager example (deploy/k8s/examples/cert-manager): a ClusterIssuer for this CA's ACME server with
External Account Binding, its Secrets, a Certificate and an annotated Ingress. Every cert-manager object is
validated against the CRDs of the pinned cert-manager release (taken from its Go module by deploy/k8s/tools.sh,
strict: an unknown or misspelt field fails), the others against the Kubernetes schemas, and the example agrees
with the deployment: its server is the directory registration shows members."""

from __future__ import annotations

import base64
import binascii
import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.manifests import K8S, Obj, container_environment, named, of_kind, strict_schema
from tests.deploy.test_render import KUBERNETES_VERSIONS

EXAMPLE = K8S / "examples" / "cert-manager"
CERT_MANAGER = "cert-manager.io/"


def _objects() -> list[Obj]:
    objects = []
    for path in sorted(EXAMPLE.glob("*.yaml")):
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def _format_checker() -> jsonschema.FormatChecker:
    """The one format the API server checks in these CRDs: `byte` (base64, as caBundle)."""
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("byte", raises=(binascii.Error, ValueError))
    def _byte(value: object) -> bool:
        if not isinstance(value, str):
            return True
        base64.b64decode(value, validate=True)
        return True

    return checker


def _errors(crds: dict[tuple[str, str], dict[str, Any]], o: Obj) -> list[str]:
    key = (o["apiVersion"], o["kind"])
    if key not in crds:
        return [f"{o['kind']}/{o['metadata']['name']}: {o['apiVersion']} is not served by the pinned CRDs"]
    body = copy.deepcopy(o)
    body.pop("metadata")  # ObjectMeta is the API server's, not the CRD schema's
    validator = jsonschema.Draft7Validator(strict_schema(crds[key]), format_checker=_format_checker())
    return [f"{o['kind']}/{o['metadata']['name']}: {e.message} at {'/'.join(map(str, e.absolute_path))}"
            for e in validator.iter_errors(body)]


def test_the_example_holds_an_issuer_its_secrets_a_certificate_and_an_ingress() -> None:
    kinds = sorted(o["kind"] for o in _objects())
    assert kinds == ["Certificate", "ClusterIssuer", "Ingress", "Secret", "Secret"]


def test_cert_manager_objects_validate_against_its_crds(cert_manager_crds: dict[tuple[str, str], dict[str, Any]]
                                                         ) -> None:
    objects = [o for o in _objects() if o["apiVersion"].startswith(CERT_MANAGER)]
    assert {o["kind"] for o in objects} == {"ClusterIssuer", "Certificate"}
    errors = [error for o in objects for error in _errors(cert_manager_crds, o)]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_other_objects_validate_against_kubernetes_schemas(version: str) -> None:
    for o in _objects():
        if not o["apiVersion"].startswith(CERT_MANAGER):
            kubernetes_validate.validate(o, version, strict=True)


def test_the_crd_check_rejects_wrong_fields(cert_manager_crds: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The schema check is not vacuous: each of these mistakes fails it."""
    (issuer,) = [o for o in _objects() if o["kind"] == "ClusterIssuer"]
    assert not _errors(cert_manager_crds, issuer)

    def broken(change: Any) -> Obj:
        o = copy.deepcopy(issuer)
        change(o["spec"]["acme"])
        return o

    def rename(mapping: dict[str, Any], old: str, new: str) -> None:
        mapping[new] = mapping.pop(old)

    mistakes = {
        "keyId instead of keyID": lambda a: rename(a["externalAccountBinding"], "keyID", "keyId"),
        "keySecretRef without a name": lambda a: a["externalAccountBinding"]["keySecretRef"].pop("name"),
        "an unknown keyAlgorithm": lambda a: a["externalAccountBinding"].update(keyAlgorithm="HS999"),
        "caBundle that is not base64": lambda a: a.update(caBundle="-----BEGIN CERTIFICATE-----"),
        "no privateKeySecretRef": lambda a: a.pop("privateKeySecretRef"),
        "http-01 instead of http01": lambda a: rename(a["solvers"][0], "http01", "http-01"),
        "rfc2136 without a nameserver": lambda a: a["solvers"][1]["dns01"]["rfc2136"].pop("nameserver"),
        "tsigSecretRef instead of tsigSecretSecretRef": lambda a: rename(
            a["solvers"][1]["dns01"]["rfc2136"], "tsigSecretSecretRef", "tsigSecretRef"),
        "an unknown acme field": lambda a: a.update(directory=a["server"]),
    }
    for what, change in mistakes.items():
        assert _errors(cert_manager_crds, broken(change)), f"not caught: {what}"
    (certificate,) = [o for o in _objects() if o["kind"] == "Certificate"]
    typo = copy.deepcopy(certificate)
    typo["spec"]["dnsName"] = typo["spec"].pop("dnsNames")
    assert _errors(cert_manager_crds, typo)


def test_the_issuer_points_at_the_deployed_directory_with_a_binding(rendered: dict[str, list[Obj]]) -> None:
    objects = _objects()
    (issuer,) = [o for o in objects if o["kind"] == "ClusterIssuer"]
    acme = issuer["spec"]["acme"]
    (registration,) = named(rendered["prod"], "Deployment", "registration")["spec"]["template"]["spec"]["containers"]
    assert acme["server"] == container_environment(rendered["prod"], registration)["CACERT_ACME_DIRECTORY_URL"], (
        "the example's server is not the directory the portal shows members"
    )
    assert not acme.get("skipTLSVerify")
    pem = base64.b64decode(acme["caBundle"], validate=True).decode()
    assert re.fullmatch(r"(-----BEGIN CERTIFICATE-----\n.+?\n-----END CERTIFICATE-----\n)+", pem, re.S), (
        "caBundle is base64 of a PEM certificate bundle"
    )
    binding = acme["externalAccountBinding"]
    assert set(binding) == {"keyID", "keySecretRef"}, "keyAlgorithm is deprecated (cert-manager uses HS256)"
    # every Secret the issuer names is in the example, in cert-manager's namespace, with the key it reads;
    # the account key's Secret is cert-manager's to create
    secrets = {s["metadata"]["name"]: s for s in of_kind(objects, "Secret")}
    refs = [binding["keySecretRef"]] + [
        solver["dns01"]["rfc2136"]["tsigSecretSecretRef"] for solver in acme["solvers"] if "dns01" in solver]
    assert {ref["name"] for ref in refs} == set(secrets)
    for ref in refs:
        secret = secrets[ref["name"]]
        assert secret["metadata"]["namespace"] == "cert-manager", "a ClusterIssuer reads cert-manager's namespace"
        assert ref["key"] in secret["stringData"]
    assert acme["privateKeySecretRef"]["name"] not in secrets
    solvers = {next(k for k in solver if k != "selector") for solver in acme["solvers"]}
    assert solvers == {"http01", "dns01"}
    (dns01,) = [s for s in acme["solvers"] if "dns01" in s]
    assert dns01["selector"], "dns01 for the zones it can update; http01 (no selector) for the rest"


def test_the_certificate_and_the_ingress_use_the_issuer() -> None:
    objects = _objects()
    (issuer,) = [o for o in objects if o["kind"] == "ClusterIssuer"]
    (certificate,) = [o for o in objects if o["kind"] == "Certificate"]
    reference = certificate["spec"]["issuerRef"]
    assert reference == {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": issuer["metadata"]["name"]}
    (ingress,) = [o for o in objects if o["kind"] == "Ingress"]
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == issuer["metadata"]["name"]
    shim_secrets = {tls["secretName"] for tls in ingress["spec"]["tls"]}
    assert certificate["spec"]["secretName"] not in shim_secrets, "two Certificates would fight over one Secret"


def test_the_example_is_documented() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "acme-operators.md").read_text()
    for path in EXAMPLE.glob("*.yaml"):
        assert f"examples/cert-manager/{path.name}" in docs, f"docs/acme-operators.md does not mention {path.name}"
