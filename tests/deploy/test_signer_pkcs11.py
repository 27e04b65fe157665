"""The opt-in PKCS#11 component (deploy/k8s/components/signer-pkcs11) on top of each overlay: it renders and
validates, changes the issuing signer and nothing else, hands it the token's settings from a ConfigMap and the PIN
from a mounted Secret file only, mounts no CA key file, no root key and no CA passphrase, and what the issuing pod
then mounts is enough for the signer to load its hierarchy with the CA keys on a (SoftHSM2) token. The example
overlay of deploy/k8s/README.md builds as written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from services.signer.ca import hierarchy, hsm, keys
from services.signer.ca.ceremony import create_hierarchy
from services.signer.settings import ISSUING, STATUS, SignerSettings
from shared.config import describe, load
from tests.deploy import test_policy, test_render
from tests.deploy.manifests import (
    CA_KEY_FILES,
    CA_KEY_SECRET,
    K8S,
    OVERLAYS,
    ROOT_KEY_FILES,
    Obj,
    build,
    build_with_component,
    config_maps,
    container_environment,
    containers,
    named,
    pod_templates,
    policies_for,
    referenced_secrets,
    secret_mounts,
)
from tests.deploy.test_config import DUMMY_SECRETS, _environment_with_secret_files

COMPONENT = "signer-pkcs11"
PIN_SECRET = "signer-pkcs11-pin"
HSM_SETTINGS = ("CACERT_CA_HSM_KEYS", "CACERT_PKCS11_MODULE", "CACERT_PKCS11_PIN", "CACERT_PKCS11_PIN_FILE")
# What the operator's kustomization adds beside the component (as for the load test, conftest.LOADTEST_EXTRA):
# the namespace of the component's own objects, and the module image (prod: by digest, like every image).
PKCS11_EXTRA = {
    "dev": "namespace: cacert-dev\nimages:\n  - {name: pkcs11-module, newTag: dev}\n",
    "prod": "namespace: cacert\nimages:\n  - {name: pkcs11-module, newName: registry.cacert.example/pkcs11-module, "
            'newTag: "1.0.0", digest: "sha256:' + "0" * 64 + '"}\n',
}
ADDED = {("ConfigMap", "signer-pkcs11"), ("NetworkPolicy", "signer-issuing-hsm")}
"""The objects the component adds; besides them it changes the Deployment signer-issuing only."""


@pytest.fixture(scope="module")
def with_pkcs11(kustomize: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    """overlay name -> its objects with components/signer-pkcs11 added."""
    workdir = tmp_path_factory.mktemp("with-pkcs11")
    return {overlay: build_with_component(kustomize, workdir, overlay, COMPONENT, PKCS11_EXTRA[overlay])
            for overlay in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def pkcs11_overlay(request: pytest.FixtureRequest, with_pkcs11: dict[str, list[Obj]]) -> tuple[str, list[Obj]]:
    return f"{request.param}+{COMPONENT}", with_pkcs11[request.param]


def _is(name: str, base: str) -> bool:
    """Whether `name` is `base`, or `base` with the hash kustomize gives a generated object (dev's Secrets, the
    component's ConfigMap): `signer-pkcs11-b229696c5m`."""
    return name == base or re.fullmatch(re.escape(base) + r"-[a-z0-9]{10}", name) is not None


def _key(o: Obj) -> tuple[str, str]:
    name = o["metadata"]["name"]
    return o["kind"], "signer-pkcs11" if o["kind"] == "ConfigMap" and _is(name, "signer-pkcs11") else name


def _issuing(objects: list[Obj]) -> tuple[Obj, Obj]:
    template = named(objects, "Deployment", "signer-issuing")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    return template, container


def _env_sources(container: Obj) -> dict[str, Obj]:
    return {var["name"]: var for var in container.get("env", [])}


def test_the_component_renders_and_validates(pkcs11_overlay: tuple[str, list[Obj]]) -> None:
    test_render.test_every_overlay_renders_objects(pkcs11_overlay)
    for version in test_render.KUBERNETES_VERSIONS:
        test_render.test_core_objects_validate_against_kubernetes_schemas(pkcs11_overlay, version)
    _, objects = pkcs11_overlay
    assert ADDED <= {_key(o) for o in objects}


def test_only_the_issuing_signer_changes(pkcs11_overlay: tuple[str, list[Obj]],
                                         rendered: dict[str, list[Obj]]) -> None:
    """Every object of the overlay but the issuing Deployment renders exactly as without the component: the status
    signer (and every other workload, policy and ConfigMap) is untouched."""
    name, objects = pkcs11_overlay
    before = {_key(o): o for o in rendered[name.split("+")[0]]}
    after = {_key(o): o for o in objects}
    assert set(after) - set(before) == ADDED
    assert set(before) <= set(after)
    changed = sorted(key for key in before if before[key] != after[key])
    assert changed == [("Deployment", "signer-issuing")], changed
    assert after[("Deployment", "signer-status")] == before[("Deployment", "signer-status")]


def test_the_issuing_pod_gets_the_token_settings_and_the_pin_only_from_a_secret_file(
        pkcs11_overlay: tuple[str, list[Obj]], tmp_path: Path) -> None:
    _, objects = pkcs11_overlay
    template, container = _issuing(objects)
    environ = container_environment(objects, container)
    # CA_HSM_KEYS and the module from the component's ConfigMap, which only the issuing container reads
    (source,) = [s for s in container["envFrom"] if _is(s["configMapRef"]["name"], "signer-pkcs11")]
    pkcs11_map = config_maps(objects)[source["configMapRef"]["name"]]
    assert set(pkcs11_map) == {"CACERT_CA_HSM_KEYS", "CACERT_PKCS11_MODULE"}
    entries = dict(entry.split("=", 1) for entry in environ["CACERT_CA_HSM_KEYS"].split())
    assert set(entries) == {"class1-issuing", "class3-issuing"}
    assert all(uri.startswith("pkcs11:token=") for uri in entries.values()), entries
    # the PIN: a file of the Secret signer-pkcs11-pin, never a value in the environment or a ConfigMap
    assert "CACERT_PKCS11_PIN" not in environ
    for data in config_maps(objects).values():
        assert "CACERT_PKCS11_PIN" not in data and not any("pin-value" in value for value in data.values())
    for var in container["env"]:
        assert "value" in var and "valueFrom" not in var, f"{var['name']} is not a plain path or value"
    assert not any("secretRef" in s for s in container["envFrom"])
    pin_dir, pin_file = environ["CACERT_PKCS11_PIN_FILE"].rsplit("/", 1)
    assert secret_mounts(template, container)[pin_dir] == (PIN_SECRET, [pin_file])
    # the settings class reads them so: the PIN from the mounted file, the keys on the token, no CA passphrase
    settings = load(SignerSettings, _environment_with_secret_files(objects, "signer-issuing", tmp_path))
    assert settings.pkcs11_pin == DUMMY_SECRETS.get(pin_file, "not-a-secret").encode()
    assert settings.ca_passphrase == b"" and "CACERT_CA_PASSPHRASE_FILE" not in environ
    settings.check_passphrases(ISSUING)  # starts without the CA passphrase: every CA key it signs with is on a token
    references = settings.ca_key_source().hsm
    assert set(references) == {"class1-issuing", "class3-issuing"}
    assert {reference.module for reference in references.values()} == {Path(environ["CACERT_PKCS11_MODULE"])}
    for variable, _, secret in describe(SignerSettings):
        if secret:
            assert variable not in environ, f"secret {variable} given as a plain value"


def test_the_module_comes_from_the_init_containers_image_into_a_read_only_mount(
        pkcs11_overlay: tuple[str, list[Obj]]) -> None:
    name, objects = pkcs11_overlay
    template, container = _issuing(objects)
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    module = Path(container_environment(objects, container)["CACERT_PKCS11_MODULE"])
    (mount,) = [m for m in container["volumeMounts"] if module.is_relative_to(m["mountPath"])]
    assert mount["readOnly"] is True and "emptyDir" in volumes[mount["name"]]
    (init,) = template["spec"]["initContainers"]
    (filled,) = init["volumeMounts"]
    assert (filled["name"], filled["mountPath"], filled.get("readOnly", False)) == (mount["name"],
                                                                                    mount["mountPath"], False)
    assert init["command"] == ["cp", "-R", "/pkcs11/.", f"{mount['mountPath']}/"]
    assert not init.get("env") and not init.get("envFrom"), "the init container gets no setting and no PIN"
    if name.startswith("prod"):
        assert re.search(r"@sha256:[0-9a-f]{64}$", init["image"]), init["image"]
    test_policy.test_every_container_is_unprivileged_read_only_probed_and_limited(pkcs11_overlay)


def test_the_issuing_pod_mounts_no_ca_key_file_no_root_key_and_no_ca_passphrase(
        pkcs11_overlay: tuple[str, list[Obj]], rendered: dict[str, list[Obj]]) -> None:
    name, objects = pkcs11_overlay
    test_policy.test_no_pod_mounts_a_root_key(pkcs11_overlay)
    template, container = _issuing(objects)
    base_template, _ = _issuing(rendered[name.split("+")[0]])

    def ca_items(t: Obj) -> list[str]:
        (ca,) = [v["secret"] for v in t["spec"]["volumes"] if v.get("secret", {}).get("secretName") == CA_KEY_SECRET]
        return [item["key"] for item in ca["items"]]

    before = ca_items(base_template)
    assert CA_KEY_FILES <= set(before), "the check below means something"
    assert ca_items(template) == [key for key in before if key not in CA_KEY_FILES]
    assert not set(ca_items(template)) & (CA_KEY_FILES | ROOT_KEY_FILES)
    assert {f"ocsp-{ca}.key.pem" for ca in ("class1", "class3", "class1-issuing", "class3-issuing")} <= set(
        ca_items(template)), "the OCSP signers' keys stay files"
    secrets = referenced_secrets(template)
    assert not any(_is(s, "signer-ca-passphrase") for s in secrets)
    assert any(_is(s, "signer-ocsp-passphrase") for s in secrets) and PIN_SECRET in secrets
    assert not any("PASSPHRASE" in v["name"] and "OCSP" not in v["name"] for v in container["env"])
    # no other pod gets the PIN, and no other pod gets the component's settings
    for owner, other in pod_templates(objects):
        if owner["metadata"]["name"] == "signer-issuing":
            continue
        assert PIN_SECRET not in referenced_secrets(other), owner["metadata"]["name"]
        for c in containers(other):
            assert not set(HSM_SETTINGS) & set(_env_sources(c)), owner["metadata"]["name"]
            assert not any(_is(s.get("configMapRef", {}).get("name", ""), "signer-pkcs11")
                           for s in c.get("envFrom", [])), owner["metadata"]["name"]


def test_the_status_pod_has_no_pkcs11_setting_module_or_pin(pkcs11_overlay: tuple[str, list[Obj]],
                                                           tmp_path: Path) -> None:
    _, objects = pkcs11_overlay
    template = named(objects, "Deployment", "signer-status")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    environ = container_environment(objects, container)
    assert not set(HSM_SETTINGS) & set(environ)
    assert PIN_SECRET not in referenced_secrets(template)
    assert not template["spec"].get("initContainers")
    assert not any("pkcs11" in v["name"] for v in template["spec"]["volumes"])
    settings = load(SignerSettings, _environment_with_secret_files(objects, "signer-status", tmp_path))
    assert settings.ca_hsm_keys == "" and settings.pkcs11_pin == b""
    settings.check_passphrases(STATUS)


def test_the_issuing_pod_may_reach_the_hsm_and_nothing_more(pkcs11_overlay: tuple[str, list[Obj]]) -> None:
    _, objects = pkcs11_overlay
    labels = named(objects, "Deployment", "signer-issuing")["spec"]["template"]["metadata"]["labels"]
    hsm_policy = named(objects, "NetworkPolicy", "signer-issuing-hsm")
    assert hsm_policy["spec"]["policyTypes"] == ["Egress"]
    (rule,) = hsm_policy["spec"]["egress"]
    assert all("ipBlock" in peer and peer["ipBlock"]["cidr"] != "0.0.0.0/0" for peer in rule["to"])
    assert all(port["protocol"] == "TCP" for port in rule["ports"])
    destinations = {
        "hsm" if policy is hsm_policy else test_policy._classify_egress(r)
        for policy in policies_for(objects, labels)
        if "Egress" in policy["spec"]["policyTypes"]
        for r in policy["spec"].get("egress", [])
    }
    assert destinations == {"dns", "kafka", "mongodb", "hsm"}
    assert test_policy._ingress_peers(objects, labels) == set(), "still nothing reaches the issuing signer"


def test_the_readmes_example_overlay_builds_with_the_operators_values(kustomize: str, tmp_path: Path) -> None:
    """The `overlays/prod-hsm` of deploy/k8s/README.md, as written: its values reach the issuing pod (patches in
    the kustomization that lists the component apply after it) and every object it changes still validates."""
    readme = (K8S / "README.md").read_text()
    section = readme[readme.index("## CA keys in an HSM (PKCS#11)"):readme.index("## Network")]
    example = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert example, "the README's example overlay"
    k8s = tmp_path / "k8s"
    shutil.copytree(K8S, k8s)
    (k8s / "overlays" / "prod-hsm").mkdir()
    (k8s / "overlays" / "prod-hsm" / "kustomization.yaml").write_text(example.group(1))
    objects = build(kustomize, k8s / "overlays" / "prod-hsm")
    template, container = _issuing(objects)
    environ = container_environment(objects, container)
    assert environ["CACERT_PKCS11_MODULE"] == "/opt/pkcs11/lib/libCryptoki2_64.so"
    assert environ["ChrystokiConfigurationPath"] == "/opt/pkcs11/etc"
    assert "token=cacert-ca;object=class3-issuing" in environ["CACERT_CA_HSM_KEYS"]
    (rule,) = named(objects, "NetworkPolicy", "signer-issuing-hsm")["spec"]["egress"]
    assert [peer["ipBlock"]["cidr"] for peer in rule["to"]] == ["10.20.0.10/32", "10.20.0.11/32"]
    (init,) = template["spec"]["initContainers"]
    assert init["image"].startswith("registry.cacert.example/pkcs11-module:1.0.0@sha256:")
    # every Secret it has a pod read, the PIN's included, is one the README's Secrets table tells how to make
    documented = readme[readme.index("## Secrets"):readme.index("## Apply")]
    referenced = set().union(*(referenced_secrets(t) for _, t in pod_templates(objects)))
    assert not sorted(s for s in referenced if f"`{s}`" not in documented)
    for kind, name in (("Deployment", "signer-issuing"), *ADDED):
        (o,) = [o for o in objects if _key(o) == (kind, name)]
        assert o["metadata"]["namespace"] == "cacert"
        kubernetes_validate.validate(o, test_render.KUBERNETES_VERSIONS[0], strict=True)


def test_what_the_issuing_pod_mounts_loads_the_hierarchy_with_the_keys_on_a_token(
        with_pkcs11: dict[str, list[Obj]], tmp_path: Path, softhsm: Any, unique: str) -> None:
    """A real CA made by init-ca, of which the pod's CA directory holds exactly the files the component leaves in
    the `signer-issuing-ca` volume; the issuing CAs' keys moved onto a SoftHSM2 token as an operator moves them into
    an HSM; the settings as the manifests hand them (the token's URIs and module swapped for the test's token). The
    hierarchy loads without the CA passphrase, every issuing CA signing on the token, and a CA left out of
    CACERT_CA_HSM_KEYS is refused by name."""
    objects = with_pkcs11["prod"]
    (tmp_path / "pod").mkdir()
    environ = _environment_with_secret_files(objects, "signer-issuing", tmp_path / "pod")
    ca_dir = Path(environ["CACERT_CA_DIR"])
    ocsp_passphrase = Path(environ["CACERT_OCSP_SIGNER_PASSPHRASE_FILE"]).read_bytes()
    ca_passphrase = b"the CA passphrase, which the pod never sees"
    made = tmp_path / "ca"
    create_hierarchy(made, tmp_path / "ca-roots", ca_passphrase, "p256", public_base_url="http://pki.cacert.example",
                     ocsp_passphrase=ocsp_passphrase)
    mounted = sorted(path.name for path in ca_dir.iterdir())
    assert CA_KEY_FILES <= {path.name for path in made.iterdir()} and not CA_KEY_FILES & set(mounted)
    for file in mounted:
        shutil.copy2(made / file, ca_dir / file)  # fails when the pod mounts a file init-ca does not make
    # the issuing CAs' keys onto the token, under labels of this test's own
    uris = dict(entry.split("=", 1) for entry in environ["CACERT_CA_HSM_KEYS"].split())
    for n, (label, uri) in enumerate(sorted(uris.items()), start=1):
        parsed = hsm.PKCS11URI.parse(uri)
        assert parsed.object == label, "the example names each key by its CA's label"
        reference = softhsm.reference(softhsm.test_token, f"{label}-{unique}")
        hsm.import_private_key(reference, keys.read_private_key(hierarchy.key_path(made, label), ca_passphrase),
                               bytes([0xD0 + n]))
    environ["CACERT_CA_HSM_KEYS"] = " ".join(f"{label}=pkcs11:token={softhsm.test_token};object={label}-{unique}"
                                             for label in uris)
    environ["CACERT_PKCS11_MODULE"] = str(softhsm.module)
    Path(environ["CACERT_PKCS11_PIN_FILE"]).write_bytes(softhsm.pin + b"\n")
    settings = load(SignerSettings, environ)
    settings.check_passphrases(ISSUING)
    source = settings.ca_key_source()
    source.check()
    loaded = hierarchy.load_hierarchy(settings.ca_dir, settings.ca_passphrase or None, ca_keys=True,
                                      ocsp_passphrase=settings.ocsp_key_passphrase, key_source=source)
    for label in uris:
        assert isinstance(loaded.cas[label].signing_key, hsm.HSMECPrivateKey), label
    assert loaded.online_root_keys == ()
    # a CA key not on the token would need the passphrase the pod no longer has: refused, naming the CA
    one = load(SignerSettings, {**environ, "CACERT_CA_HSM_KEYS": environ["CACERT_CA_HSM_KEYS"].split()[0]})
    with pytest.raises(hierarchy.HierarchyError, match="class3-issuing CA key needs the CA passphrase"):
        hierarchy.load_hierarchy(one.ca_dir, None, ocsp_passphrase=one.ocsp_key_passphrase,
                                 key_source=one.ca_key_source())
