"""Issuing CAs under offline roots (issue 18 item 1): the layout `init-ca` makes, every profile of each class
chaining leaf -> issuing CA -> root under the anchors the two-root model promises, the roots' ARLs and OCSP for
CA certificates, and the migration of a directory made before issuing CAs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.signer.ca import ceremony, issuance, keys, lint, profiles
from services.signer.ca.hierarchy import CertClass, Hierarchy, HierarchyError, load_hierarchy
from services.signer.ca.revocation import GOOD, Revoked
from services.signer.ca.urls import CAUrls
from services.signer.settings import ISSUING, STATUS, SignerSettings
from services.signer.status import ca_certificate_statuses

PASSPHRASE = b"issuing-cas test passphrase"
BASE = "http://pki.example.net"
REQUESTS: dict[str, dict[str, Any]] = {
    "server": {"dns_names": ["www.example.org"]},
    "client": {"emails": ["ada@example.org"]},
    "codesign": {"subject": {"CN": "Ada Lovelace"}},
}
PURPOSE = {"server": "sslserver", "client": "smimesign", "codesign": None}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Hierarchy]:
    base = tmp_path_factory.mktemp("issuing")
    hierarchy = ceremony.create_hierarchy(base / "ca", base / "roots", PASSPHRASE, "p256", public_base_url=BASE)
    return base / "ca", base / "roots", hierarchy


def _issue(hierarchy: Hierarchy, cert_class: int, profile: str, linter: lint.PreIssuanceLinter) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    extra = REQUESTS[profile]
    request = issuance.ApprovedRequest(
        request_id="req-1", member_id="member-1", cert_class=cert_class, profile=profile, csr_pem=csr,
        subject=dict(extra.get("subject", {})), dns_names=list(extra.get("dns_names", [])),
        emails=list(extra.get("emails", [])), validity_days=30,
    )
    ca = hierarchy.issuing_ca(cert_class)
    prof = profiles.get_profile(profile)
    tbs = issuance.prepare_certificate(request, ca, prof, CAUrls.under(BASE, ca.label), dt.datetime.now(dt.UTC),
                                       issuance.new_serial_number())
    result = linter.lint_tbs(tbs, prof, ca.key_algorithm)
    assert result.ok, result.errors
    return issuance.sign_certificate(tbs, ca)


def _pem_file(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def _verify(tmp: Path, leaf: x509.Certificate, anchor: x509.Certificate, chain: tuple[x509.Certificate, ...],
            purpose: str | None) -> subprocess.CompletedProcess[str]:
    args = ["openssl", "verify", "-x509_strict", "-CAfile", str(_pem_file(tmp / "anchor.pem", anchor))]
    if chain:
        args += ["-untrusted", str(_pem_file(tmp / "chain.pem", *chain))]
    if purpose:
        args += ["-purpose", purpose]
    return subprocess.run([*args, str(_pem_file(tmp / "leaf.pem", leaf))], capture_output=True, text=True,
                          check=False, timeout=30)


def test_init_ca_keeps_the_roots_keys_out_of_the_ca_directory(made: tuple[Path, Path, Hierarchy]) -> None:
    ca_dir, root_dir, hierarchy = made
    assert sorted(p.name for p in root_dir.iterdir() if p.name.endswith(".key.pem")) == [
        "class1.key.pem", "class3.key.pem"]
    assert not (ca_dir / "class1.key.pem").exists() and not (ca_dir / "class3.key.pem").exists()
    loaded = load_hierarchy(ca_dir, PASSPHRASE)  # what the issuing mode loads
    assert loaded.class_ca(1).private_key is None and loaded.class_ca(3).private_key is None
    assert [loaded.issuing_ca(c).label for c in CertClass] == ["class1-issuing", "class3-issuing"]
    assert loaded.online_root_keys == ()
    assert set(loaded.arls) == {"class1", "class3"}
    # pathLens: the Class 1 root above two CAs, the Class 3 root (both certificates) above one, issuing CAs 0.
    lengths = {label: ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
               for label, ca in hierarchy.cas.items()}
    assert lengths == {"class1": 2, "class3": 1, "class1-issuing": 0, "class3-issuing": 0}
    assert hierarchy.class3_root is not None
    assert hierarchy.class3_root.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1


def test_the_ca_directory_must_not_be_the_root_directory(tmp_path: Path) -> None:
    with pytest.raises(HierarchyError, match="offline"):
        ceremony.create_hierarchy(tmp_path / "ca", tmp_path / "ca", PASSPHRASE, "p256", public_base_url=BASE)


@pytest.mark.parametrize("profile", ["server", "client", "codesign"])
@pytest.mark.parametrize("cert_class", [1, 3])
def test_every_profile_chains_leaf_issuing_root(made: tuple[Path, Path, Hierarchy], tmp_path: Path,
                                                cert_class: int, profile: str) -> None:
    _, _, hierarchy = made
    leaf = _issue(hierarchy, cert_class, profile, lint.PreIssuanceLinter())
    issuing = hierarchy.issuing_ca(cert_class).certificate
    assert leaf.issuer == issuing.subject  # never a root (BR 6.1.7)
    chain = hierarchy.chain_for(cert_class)
    assert chain[0] == issuing
    result = _verify(tmp_path, leaf, hierarchy.root, chain, PURPOSE[profile])
    assert result.returncode == 0, result.stdout + result.stderr
    if cert_class == 3:  # under the self-signed Class 3 root too, with only the issuing CA between
        anchor = hierarchy.class3_root
        assert anchor is not None
        assert hierarchy.chain_for(3, 3) == (issuing,)
        result = _verify(tmp_path, leaf, anchor, (issuing,), PURPOSE[profile])
        assert result.returncode == 0, result.stdout + result.stderr
    else:  # a Class 1 leaf never verifies under Class 3, whatever it is given
        anchor = hierarchy.class3_root
        assert anchor is not None
        result = _verify(tmp_path, leaf, anchor, (*chain, hierarchy.class_ca(3).certificate), PURPOSE[profile])
        assert result.returncode != 0
        with pytest.raises(ValueError):
            hierarchy.chain_for(1, 3)


def test_ca_certificates_pass_pkilint(made: tuple[Path, Path, Hierarchy]) -> None:
    _, _, hierarchy = made
    linter = lint.PreIssuanceLinter()
    for ca in hierarchy.cas.values():
        errors = linter.lint_certificate(ca.certificate, lint.LinterKind.RFC5280).errors
        assert not errors, (ca.label, errors)


def test_the_roots_answer_ocsp_for_the_ca_certificates_they_signed(made: tuple[Path, Path, Hierarchy]) -> None:
    _, _, hierarchy = made
    statuses = ca_certificate_statuses(hierarchy)
    assert statuses["class1"] == {hierarchy.class_ca(3).certificate.serial_number: GOOD,
                                  hierarchy.issuing_ca(1).certificate.serial_number: GOOD}
    assert statuses["class3"] == {hierarchy.issuing_ca(3).certificate.serial_number: GOOD}
    assert statuses["class1-issuing"] == {} and statuses["class3-issuing"] == {}


def test_an_arl_revokes_an_issuing_ca_and_keeps_earlier_entries(tmp_path: Path) -> None:
    ca_dir, root_dir = tmp_path / "ca", tmp_path / "roots"
    start = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
    hierarchy = ceremony.create_hierarchy(ca_dir, root_dir, PASSPHRASE, "p256", public_base_url=BASE, now=start)
    first = x509.load_der_x509_crl(hierarchy.arls["class3"])
    assert len(list(first)) == 0 and first.next_update_utc == start + dt.timedelta(days=365)
    issuing3 = hierarchy.issuing_ca(3).certificate.serial_number
    arl = ceremony.issue_arl(ca_dir, root_dir, PASSPHRASE, 3, [(issuing3, start, "key_compromise")],
                             now=start + dt.timedelta(hours=1))
    again = ceremony.issue_arl(ca_dir, root_dir, PASSPHRASE, 3, [(12345, start, None)],
                               now=start + dt.timedelta(hours=2))

    def number(crl: x509.CertificateRevocationList) -> int:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    assert number(first) < number(arl) < number(again)
    assert {e.serial_number for e in again} == {issuing3, 12345}
    reloaded = load_hierarchy(ca_dir, PASSPHRASE, ca_keys=False)
    status = ca_certificate_statuses(reloaded)["class3"][issuing3]
    assert isinstance(status, Revoked) and status.reason == x509.ReasonFlags.key_compromise
    # An ARL the root did not sign is refused at load.
    (ca_dir / "arl-class1.der").write_bytes(hierarchy.arls["class3"])
    with pytest.raises(HierarchyError, match=r"arl-class1\.der is not signed by"):
        load_hierarchy(ca_dir, PASSPHRASE, ca_keys=False)


def test_a_directory_made_before_issuing_cas_keeps_working_and_gets_a_class1_issuing_ca(
        tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    legacy = ceremony.bootstrap(directory, PASSPHRASE, "p256", class1_urls=CAUrls.under(BASE, "class1"))
    linter = lint.PreIssuanceLinter()
    old_leaf = _issue(legacy, 1, "server", linter)
    assert old_leaf.issuer == legacy.root.subject  # the root signed leaves then
    assert [legacy.issuing_ca(c).label for c in CertClass] == ["class1", "class3"]

    refused = ceremony.add_issuing_cas(directory, directory, PASSPHRASE, public_base_url=BASE)
    # The Class 3 certificates (pathLen 0) and the Class 1 root (pathLen 1) allow no CA below Class 3.
    assert list(refused) == [CertClass.CLASS3] and "pathLen" in refused[CertClass.CLASS3]
    migrated = load_hierarchy(directory, PASSPHRASE)
    assert [migrated.issuing_ca(c).label for c in CertClass] == ["class1-issuing", "class3"]
    assert migrated.online_root_keys == ("class1",)  # still online: the signer warns until it moves offline
    new_leaf = _issue(migrated, 1, "server", linter)
    assert new_leaf.issuer == migrated.issuing_ca(1).certificate.subject
    for leaf, chain in ((old_leaf, ()), (new_leaf, migrated.chain_for(1))):
        result = _verify(tmp_path, leaf, migrated.root, chain, "sslserver")
        assert result.returncode == 0, result.stdout + result.stderr
    # Once the root key is moved offline, the issuing mode still loads (the root's key is optional now).
    (directory / "class1.key.pem").rename(tmp_path / "class1.key.pem")
    assert load_hierarchy(directory, PASSPHRASE).online_root_keys == ()


def test_the_status_mode_opens_the_ocsp_signers_with_their_own_passphrase_only(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    ceremony.create_hierarchy(ca_dir, tmp_path / "roots", PASSPHRASE, "p256", public_base_url=BASE,
                              ocsp_passphrase=b"the OCSP signers' own")
    status = load_hierarchy(ca_dir, None, ca_keys=False, ocsp_passphrase=b"the OCSP signers' own")
    assert all(ca.private_key is None for ca in status.cas.values())
    issuing = load_hierarchy(ca_dir, PASSPHRASE, ocsp_passphrase=b"the OCSP signers' own")
    assert issuing.issuing_ca(3).private_key is not None
    with pytest.raises(keys.KeyFileError):  # the CA passphrase does not open them
        load_hierarchy(ca_dir, PASSPHRASE, ca_keys=False)
    # A directory made before keeps its OCSP signers under the CA passphrase: where that is given, it opens them.
    legacy = tmp_path / "legacy"
    ceremony.bootstrap(legacy, PASSPHRASE, "p256", class1_urls=CAUrls.under(BASE, "class1"))
    load_hierarchy(legacy, PASSPHRASE, ocsp_passphrase=b"the OCSP signers' own")
    with pytest.raises(HierarchyError, match="needs the CA passphrase"):
        load_hierarchy(ca_dir, None, ocsp_passphrase=b"the OCSP signers' own")


def test_each_signer_mode_asks_for_the_passphrase_it_needs() -> None:
    from shared.config import ConfigError, HttpSettings, KafkaSettings, MongoSettings
    from shared.settings import CommonSettings

    common = CommonSettings(kafka=KafkaSettings(bootstrap="127.0.0.1:9"), mongo=MongoSettings(url="mongodb://127.0.0.1:9"),
                            http=HttpSettings())
    status_only = SignerSettings(common=common, ca_dir=Path("/nonexistent"), ocsp_signer_passphrase=b"ocsp")
    status_only.check_passphrases(STATUS)
    with pytest.raises(ConfigError, match="CACERT_CA_PASSPHRASE is required in issuing mode"):
        status_only.check_passphrases(ISSUING)
    # With the CA keys on a token the issuing mode may go without it (a key file left is refused at load).
    dataclasses.replace(status_only, ca_hsm_keys="class1-issuing=pkcs11:token=ca;object=class1-issuing",
                        pkcs11_pin=b"1234").check_passphrases(ISSUING)
    with pytest.raises(ConfigError, match="CACERT_OCSP_SIGNER_PASSPHRASE"):
        SignerSettings(common=common, ca_dir=Path("/nonexistent")).check_passphrases(STATUS)
