"""Root rollover (issue 18 item 4): a G2 generation of roots next to G1 (`new-generation`), the signer issuing
under the G2 issuing CAs while offering a chain to each anchor (the G1 roots through the cross-certificates by
default, the G2 roots as alternates), OCSP and CRLs still answering for G1 certificates, and what the loader
refuses."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.signer.__main__ import main as signer_main
from services.signer.ca import ceremony, lint
from services.signer.ca.crl import build_crl
from services.signer.ca.hierarchy import Hierarchy, HierarchyError, load_hierarchy
from services.signer.ca.revocation import GOOD
from services.signer.ca.urls import CAUrls
from services.signer.signing import Signatory
from services.signer.status import ca_certificate_statuses
from shared.events.catalog import validate

PASSPHRASE = b"rollover test passphrase"
BASE = "http://pki.example.net"
PROFILES: dict[str, tuple[int, dict[str, Any], str | None]] = {
    "server": (1, {"dns_names": ["www.example.org"]}, "sslserver"),
    "client": (3, {"emails": ["ada@example.org"]}, "smimesign"),
    "codesign": (3, {"subject": {"CN": "Ada Lovelace"}}, None),
}


@pytest.fixture(scope="module")
def rolled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Hierarchy, Hierarchy]:
    """A hierarchy as `init-ca` makes it, a G1 leaf of each class signed, then G2 added as `new-generation`
    does: (CA directory, root directory, G1 as it was, both generations as the signer loads them)."""
    base = tmp_path_factory.mktemp("rollover")
    g1 = ceremony.create_hierarchy(base / "ca", base / "roots", PASSPHRASE, "p256", public_base_url=BASE)
    both, refused = ceremony.create_generation(base / "ca", base / "roots", PASSPHRASE, public_base_url=BASE)
    assert refused == {}
    return base / "ca", base / "roots", g1, both


def _payload(cert_class: int, profile: str, extra: dict[str, Any]) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    return {"request_id": f"req-{profile}-{cert_class}", "member_id": "member-1", "cert_class": cert_class,
            "profile": profile, "csr_pem": csr, "validity_days": 30, **extra}


def _issued(hierarchy: Hierarchy, cert_class: int, profile: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The `cert.issued` data the signer publishes for one request."""
    signatory = Signatory(hierarchy, public_base_url=BASE, lint_profiles=[profile], linter=lint.PreIssuanceLinter())
    outcome = signatory.decide("event-1", _payload(cert_class, profile, extra), dt.datetime.now(dt.UTC))
    assert outcome["kind"] == "issued", outcome
    data = json.loads(outcome["event"]["payload"])  # the Kafka value: the event's data
    validate(outcome["event"]["type"], data)  # the contract, with its new `chains`
    return dict(data)


def _verify(tmp: Path, leaf_pem: str, anchor_pem: str, chain_pem: str, purpose: str | None) -> bool:
    (tmp / "leaf.pem").write_text(leaf_pem)
    (tmp / "anchor.pem").write_text(anchor_pem)
    args = ["openssl", "verify", "-x509_strict", "-CAfile", str(tmp / "anchor.pem")]
    if chain_pem:
        (tmp / "chain.pem").write_text(chain_pem)
        args += ["-untrusted", str(tmp / "chain.pem")]
    if purpose:
        args += ["-purpose", purpose]
    result = subprocess.run([*args, str(tmp / "leaf.pem")], capture_output=True, text=True, check=False, timeout=30)
    return result.returncode == 0


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_a_g2_leaf_verifies_under_the_g1_root_through_the_cross_certificate_and_under_the_g2_root(
    rolled: tuple[Path, Path, Hierarchy, Hierarchy], tmp_path: Path, profile: str
) -> None:
    _, _, g1, both = rolled
    cert_class, extra, purpose = PROFILES[profile]
    data = _issued(both, cert_class, profile, extra)
    assert data["issuer"] == f"class{cert_class}-issuing-g2"
    leaf = x509.load_pem_x509_certificate(data["certificate_pem"].encode())
    assert leaf.issuer == both.issuing_ca(cert_class).certificate.subject
    expected = ["class1", "class3", "class1-g2", "class3-g2"] if cert_class == 3 else ["class1", "class1-g2"]
    assert data["trust_anchors"] == expected
    assert [c["anchor"] for c in data["chains"]] == expected  # the default first: the G1 Class 1 root
    assert data["chains"][0]["chain_pem"] == data["chain_pem"]
    cross = both.cross_certificates[f"class{cert_class}-issuing-g2"]
    assert data["chain_pem"].startswith(_pem(cross))  # leads to G1 through the cross-certificate
    for chain in data["chains"]:
        assert _verify(tmp_path, data["certificate_pem"], chain["anchor_pem"], chain["chain_pem"], purpose), chain
    # The G1 roots' own certificates, as relying parties have them, are the anchors of the default chains.
    assert data["chains"][0]["anchor_pem"] == _pem(g1.root)
    g2_root = both.class_ca(1, 2).certificate
    assert data["chains"][expected.index("class1-g2")]["anchor_pem"] == _pem(g2_root)
    # Without the cross-certificate the G2 leaf does not reach the G1 root: the link is that certificate.
    g2_chain = data["chains"][expected.index("class1-g2")]["chain_pem"]
    assert not _verify(tmp_path, data["certificate_pem"], _pem(g1.root), g2_chain + _pem(g2_root), purpose)


def test_a_g2_class1_leaf_does_not_verify_under_either_class3_root(
    rolled: tuple[Path, Path, Hierarchy, Hierarchy], tmp_path: Path
) -> None:
    _, _, _, both = rolled
    data = _issued(both, 1, "server", {"dns_names": ["www.example.org"]})
    everything = "".join(_pem(ca.certificate) for ca in both.cas.values()) + "".join(
        _pem(c) for c in both.cross_certificates.values())
    for twin in both.class3_roots.values():
        assert not _verify(tmp_path, data["certificate_pem"], _pem(twin), everything, "sslserver")
    with pytest.raises(ValueError, match="does not chain to class3-g2"):
        both.chain_for(1, "class3-g2")


def test_g1_certificates_keep_their_crl_and_ocsp_after_the_rollover(
    rolled: tuple[Path, Path, Hierarchy, Hierarchy],
) -> None:
    ca_dir, _, g1, both = rolled
    loaded = load_hierarchy(ca_dir, PASSPHRASE)  # what the issuing mode loads after the rollover
    # The G1 issuing CAs keep their keys (they sign their leaves' CRLs and OCSP signers) and their shards.
    assert [loaded.issuing_ca(c).label for c in (1, 3)] == ["class1-issuing-g2", "class3-issuing-g2"]
    assert loaded.leaf_issuers == ("class1-issuing", "class3-issuing", "class1-issuing-g2", "class3-issuing-g2")
    g1_issuing = loaded.cas["class1-issuing"]
    assert g1_issuing.private_key is not None
    crl = x509.load_der_x509_crl(build_crl(g1_issuing, [(12345, dt.datetime.now(dt.UTC), None)], crl_number=7,
                                           now=dt.datetime.now(dt.UTC), next_update_in=dt.timedelta(days=1)))
    assert crl.is_signature_valid(g1.cas["class1-issuing"].certificate.public_key())  # type: ignore[arg-type]
    # No root key of either generation is online; the G2 roots publish the ARLs their ceremony signed.
    assert loaded.online_root_keys == () and set(loaded.arls) == {"class1", "class3", "class1-g2", "class3-g2"}
    # The roots' responders answer for every CA certificate they signed, the cross-certificates included.
    statuses = ca_certificate_statuses(loaded)
    for label, cross in both.cross_certificates.items():
        signer = "class1" if label.startswith("class1") else "class3"
        assert statuses[signer][cross.serial_number] == GOOD
    assert statuses["class1-g2"][loaded.cas["class3-g2"].certificate.serial_number] == GOOD
    # The status mode loads the same CAs without any CA key.
    public = load_hierarchy(ca_dir, None, ca_keys=False, ocsp_passphrase=PASSPHRASE)
    assert set(public.cas) == set(loaded.cas) and all(ca.private_key is None for ca in public.cas.values())


def test_the_new_generation_keeps_its_root_keys_offline_and_passes_pkilint(
    rolled: tuple[Path, Path, Hierarchy, Hierarchy],
) -> None:
    ca_dir, root_dir, _, both = rolled
    assert not list(ca_dir.glob("class[13]-g2.key.pem"))
    assert sorted(p.name for p in root_dir.glob("*-g2.key.pem")) == ["class1-g2.key.pem", "class3-g2.key.pem"]
    linter = lint.PreIssuanceLinter()
    made = [ca.certificate for ca in both.cas.values() if ca.generation == 2]
    for certificate in [*made, *both.cross_certificates.values(), both.class3_roots["class3-g2"]]:
        assert not linter.lint_certificate(certificate, lint.LinterKind.RFC5280).errors, certificate.subject
    assert all(c.subject.rfc4514_string().endswith(" G2") or "G2," in c.subject.rfc4514_string() for c in made)


def test_the_loader_refuses_a_cross_certificate_of_another_key(
    rolled: tuple[Path, Path, Hierarchy, Hierarchy], tmp_path: Path
) -> None:
    ca_dir, _, _, _ = rolled
    mixed = tmp_path / "mixed"
    shutil.copytree(ca_dir, mixed)
    # The G1 issuing CA's certificate is not a certificate of the G2 issuing CA's key.
    shutil.copy(mixed / "class1-issuing.crt.pem", mixed / "cross-class1-issuing-g2.crt.pem")
    with pytest.raises(HierarchyError, match="cross-class1-issuing-g2"):
        load_hierarchy(mixed, PASSPHRASE)


def test_new_generation_refuses_a_second_run_and_a_generation_out_of_turn(
    rolled: tuple[Path, Path, Hierarchy, Hierarchy], tmp_path: Path
) -> None:
    ca_dir, root_dir, _, _ = rolled
    with pytest.raises(HierarchyError, match="the next is 3"):
        ceremony.create_generation(ca_dir, root_dir, PASSPHRASE, public_base_url=BASE)
    fresh = tmp_path / "fresh"
    ceremony.create_hierarchy(fresh / "ca", fresh / "roots", PASSPHRASE, "p256", public_base_url=BASE)
    (fresh / "roots" / "class1-g2.key.pem").write_text("left from an earlier attempt")
    with pytest.raises(HierarchyError, match="refusing to overwrite generation 2"):
        ceremony.create_generation(fresh / "ca", fresh / "roots", PASSPHRASE, public_base_url=BASE)


def test_a_directory_from_before_issuing_cas_rolls_over_with_class3_chaining_to_class1(tmp_path: Path) -> None:
    """Before issue 18 the Class 3 root has pathLen 0, so it cannot certify the G2 Class 3 issuing CA: the G1
    Class 1 root does, and G2 Class 3 leaves reach G1 under Class 1 only (and both G2 roots)."""
    ceremony.bootstrap(tmp_path / "ca", PASSPHRASE, "p256", class1_urls=CAUrls.under(BASE, "class1"))
    both, notes = ceremony.create_generation(tmp_path / "ca", tmp_path / "roots", PASSPHRASE, public_base_url=BASE)
    assert list(notes) == ["class3-issuing-g2"] and "signed by G1 class1" in notes["class3-issuing-g2"]
    assert both.cross_certificates["class3-issuing-g2"].issuer == both.root.subject
    assert both.trust_anchors_for(3) == ("class1", "class1-g2", "class3-g2")
    data = _issued(both, 3, "client", {"emails": ["ada@example.org"]})
    for chain in data["chains"]:
        assert _verify(tmp_path, data["certificate_pem"], chain["anchor_pem"], chain["chain_pem"], "smimesign")
    # The G1 roots keep their keys in the CA directory: they signed leaves, whose CRLs they keep signing.
    loaded = load_hierarchy(tmp_path / "ca", PASSPHRASE)
    assert loaded.leaf_issuers[:2] == ("class1", "class3") and loaded.online_root_keys == ()


def test_the_new_generation_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CACERT_CA_DIR", str(tmp_path / "ca"))
    monkeypatch.setenv("CACERT_CA_ROOT_DIR", str(tmp_path / "roots"))
    monkeypatch.setenv("CACERT_CA_PASSPHRASE", PASSPHRASE.decode())
    monkeypatch.setenv("CACERT_SIGNER_PUBLIC_URL", BASE)
    assert signer_main(["init-ca"]) == 0
    assert signer_main(["new-generation"]) == 0
    out = capsys.readouterr().out
    assert "class1-issuing-g2:" in out and "cross-class3-issuing-g2: signed by" in out
    assert PASSPHRASE.decode() not in out
    assert signer_main(["arl", "--ca", "class3-g2"]) == 0
    assert signer_main(["new-generation"]) == 1
    assert "new-generation refused" in capsys.readouterr().err
