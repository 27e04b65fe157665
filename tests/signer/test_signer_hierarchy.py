"""The two-root hierarchy on disk: shape of each CA certificate, chains, refusal to overwrite,
passphrase protection, consistency checks on load, OCSP signer renewal, and RSA bootstraps."""

from __future__ import annotations

import datetime as dt
import shutil
import stat
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from services.signer.ca import ceremony, hierarchy, keys
from services.signer.ca.hierarchy import CertClass, HierarchyError

PASSPHRASE = b"correct horse battery staple"  # the session hierarchy's, see conftest

FILES = [
    "class1.crt.pem",
    "class1.key.pem",
    "class3.crt.pem",
    "class3.key.pem",
    "class3-root.crt.pem",
    "ocsp-class1.crt.pem",
    "ocsp-class1.key.pem",
    "ocsp-class3.crt.pem",
    "ocsp-class3.key.pem",
]


def hash_name(signed: x509.Certificate | x509.CertificateRevocationList) -> str | None:
    return getattr(signed.signature_hash_algorithm, "name", None)


def ext(cert: x509.Certificate, kind: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(kind)


def test_bootstrap_writes_the_nine_files_keys_private(ca_dir: Path) -> None:
    assert sorted(p.name for p in ca_dir.iterdir()) == sorted(FILES)
    for name in FILES:
        if name.endswith(".key.pem"):
            assert stat.S_IMODE((ca_dir / name).stat().st_mode) == 0o600, name
            assert (ca_dir / name).read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")


def test_class1_root_is_self_signed_ca_with_path_length_one(pki) -> None:
    root = pki.root
    assert root.subject == root.issuer
    assert (
        root.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CAcert Community Class 1 Root"
    )
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "CAcert Community CA"
    root.verify_directly_issued_by(root)
    bc = ext(root, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 1
    ku = ext(root, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    ski = ext(root, x509.SubjectKeyIdentifier).value
    assert ext(root, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    years = (root.not_valid_after_utc - root.not_valid_before_utc).days / 365.25
    assert 19.9 < years < 20.1


def test_class3_is_an_intermediate_under_class1(pki, h) -> None:
    root, class3 = pki.root, pki.issuing_ca(3).certificate
    class3.verify_directly_issued_by(root)
    assert (
        class3.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CAcert Community Class 3 Root"
    )
    bc = ext(class3, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext(class3, x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    assert ext(class3, x509.AuthorityKeyIdentifier).value.key_identifier == (
        ext(root, x509.SubjectKeyIdentifier).value.digest
    )
    assert ext(class3, x509.SubjectKeyIdentifier).value.digest
    dp = ext(class3, x509.CRLDistributionPoints).value
    assert [n.value for n in dp[0].full_name] == [f"{h.pki_base}/class1.crl"]
    aia = {
        d.access_method: d.access_location.value for d in ext(class3, x509.AuthorityInformationAccess).value
    }
    assert aia == {
        AuthorityInformationAccessOID.OCSP: f"{h.pki_base}/ocsp/class1",
        AuthorityInformationAccessOID.CA_ISSUERS: f"{h.pki_base}/class1.crt",
    }
    assert class3.not_valid_after_utc <= root.not_valid_after_utc


@pytest.mark.parametrize("cert_class", [1, 3])
def test_ocsp_signers_are_delegated_responders(pki, cert_class: int) -> None:
    ca = pki.issuing_ca(cert_class)
    signer = ca.ocsp_signer.certificate
    signer.verify_directly_issued_by(ca.certificate)
    assert ext(signer, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.OCSP_SIGNING]
    )
    assert ext(signer, x509.OCSPNoCheck)
    ku = ext(signer, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert not ext(signer, x509.BasicConstraints).value.ca
    assert (signer.not_valid_after_utc - signer.not_valid_before_utc) <= dt.timedelta(days=90)
    assert keys.public_keys_equal(signer.public_key(), ca.ocsp_signer.private_key.public_key())


def test_chains_and_anchors(pki, h) -> None:
    class1, class3 = pki.root, pki.issuing_ca(3).certificate
    assert pki.chain_for(3) == (class3,)
    assert pki.chain_for(3, CertClass.CLASS1, include_anchor=True) == (class3, class1)
    assert pki.chain_for(3, anchor=3) == ()
    assert pki.chain_for(3, anchor=3, include_anchor=True) == (class3,)
    assert pki.chain_for(1) == ()
    assert pki.chain_for(1, include_anchor=True) == (class1,)
    with pytest.raises(ValueError, match="does not chain to class3"):
        pki.chain_for(1, anchor=3)
    assert pki.trust_anchors_for(3) == ("class1", "class3")
    assert pki.trust_anchors_for(1) == ("class1",)
    assert pki.chain_pem(3) == h.pem(class3).decode()
    assert pki.chain_pem(1) == ""


def test_openssl_accepts_the_hierarchy(ca_pems, tool) -> None:
    tool.openssl("verify", "-x509_strict", "-CAfile", ca_pems["class1"], ca_pems["class3"], check=True)
    tool.openssl("verify", "-x509_strict", "-CAfile", ca_pems["class1"], ca_pems["ocsp-class1"], check=True)
    tool.openssl(
        "verify",
        "-x509_strict",
        "-CAfile",
        ca_pems["class1"],
        "-untrusted",
        ca_pems["class3"],
        ca_pems["ocsp-class3"],
        check=True,
    )


def test_ca_certificates_pass_pkilint(ca_pems, tool, h) -> None:
    """RFC 5280 clean throughout; against the TLS BRs the root and the OCSP signers are clean and
    Class 3 misses only the EKU that BR 7.1.2.10.6 wants (it is multi-purpose by design)."""
    for name, path in ca_pems.items():
        out = tool.run(*h.pkilint("lint_pkix_cert"), "lint", "-s", "WARNING", path)
        assert out.returncode == 0, f"{name}: {out.stdout}"
    root = tool.run(*h.pkilint("lint_cabf_serverauth_cert"), "lint", "-d", "-s", "ERROR", ca_pems["class1"])
    assert root.returncode == 0, root.stdout
    for signer in ("ocsp-class1", "ocsp-class3"):
        out = tool.run(
            *h.pkilint("lint_cabf_serverauth_cert"),
            "lint",
            "-t",
            "OCSP-RESPONDER",
            "-s",
            "ERROR",
            ca_pems[signer],
        )
        assert out.returncode == 0, out.stdout
    class3 = tool.run(*h.pkilint("lint_cabf_serverauth_cert"), "lint", "-d", "-s", "ERROR", ca_pems["class3"])
    assert "extended_key_usage_extension_absent (ERROR)" in class3.stdout
    assert class3.stdout.count("(ERROR)") == 1, class3.stdout


def test_bootstrap_refuses_to_overwrite(ca_dir: Path, h) -> None:
    before = {name: (ca_dir / name).read_bytes() for name in FILES}
    with pytest.raises(HierarchyError, match="refusing to overwrite"):
        ceremony.bootstrap(ca_dir, PASSPHRASE, "p256", class1_urls=h.urls_for(1))
    assert {name: (ca_dir / name).read_bytes() for name in FILES} == before


def test_bootstrap_refuses_if_any_single_file_exists(tmp_path: Path, h) -> None:
    (tmp_path / "class3.key.pem").write_text("not mine to replace")
    with pytest.raises(HierarchyError, match=r"class3\.key\.pem"):
        ceremony.bootstrap(tmp_path, PASSPHRASE, "p256", class1_urls=h.urls_for(1))
    assert [p.name for p in tmp_path.iterdir()] == ["class3.key.pem"]
    assert (tmp_path / "class3.key.pem").read_text() == "not mine to replace"


def test_hierarchy_cannot_be_loaded_without_the_passphrase(ca_dir: Path) -> None:
    with pytest.raises(keys.KeyDecryptionFailed, match="wrong passphrase"):
        hierarchy.load_hierarchy(ca_dir, b"not the passphrase")


def test_load_detects_a_key_that_does_not_belong_to_its_certificate(ca_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "mixed"
    shutil.copytree(ca_dir, copy)
    (copy / "class1.key.pem").unlink()
    shutil.copy2(copy / "class3.key.pem", copy / "class1.key.pem")
    with pytest.raises(HierarchyError, match="key file of class1 does not belong"):
        hierarchy.load_hierarchy(copy, PASSPHRASE)


def test_load_detects_a_foreign_ca_certificate(ca_dir: Path, tmp_path: Path, h) -> None:
    other = tmp_path / "other"
    ceremony.bootstrap(other, PASSPHRASE, "p256", class1_urls=h.urls_for(1))
    mixed = tmp_path / "mixed"
    shutil.copytree(ca_dir, mixed)
    for name in ("class3.crt.pem", "class3.key.pem", "ocsp-class3.crt.pem", "ocsp-class3.key.pem"):
        (mixed / name).unlink()
        shutil.copy2(other / name, mixed / name)
    with pytest.raises(HierarchyError, match=r"class3 (has an invalid signature|is not issued)"):
        hierarchy.load_hierarchy(mixed, PASSPHRASE)


def test_renew_ocsp_signer_replaces_key_and_certificate(tmp_path: Path, h) -> None:
    directory = tmp_path / "ca"
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    first = ceremony.bootstrap(directory, PASSPHRASE, "p256", class1_urls=h.urls_for(1), now=start)
    old = first.issuing_ca(3).ocsp_signer
    assert not old.expires_soon(start + dt.timedelta(days=30))
    assert old.expires_soon(start + dt.timedelta(days=61))

    later = start + dt.timedelta(days=70)
    new = ceremony.renew_ocsp_signer(directory, PASSPHRASE, 3, now=later)
    assert new.certificate.serial_number != old.certificate.serial_number
    assert not keys.public_keys_equal(new.certificate.public_key(), old.certificate.public_key())
    assert new.certificate.not_valid_before_utc == later
    reloaded = hierarchy.load_hierarchy(directory, PASSPHRASE)
    assert reloaded.issuing_ca(3).ocsp_signer.certificate == new.certificate
    assert reloaded.issuing_ca(1).ocsp_signer.certificate == first.issuing_ca(1).ocsp_signer.certificate
    assert stat.S_IMODE((directory / "ocsp-class3.key.pem").stat().st_mode) == 0o600
    assert sorted(p.name for p in directory.iterdir()) == sorted(FILES)


@pytest.mark.parametrize("algorithm", ["rsa2048", "rsa4096"])
def test_rsa_bootstrap(tmp_path: Path, algorithm: str, tool, h) -> None:
    started = time.perf_counter()
    pki = ceremony.bootstrap(tmp_path / "ca", PASSPHRASE, algorithm, class1_urls=h.urls_for(1))
    elapsed = time.perf_counter() - started
    bits = int(algorithm.removeprefix("rsa"))
    for cert_class in (1, 3):
        ca = pki.issuing_ca(cert_class)
        assert ca.key_algorithm == algorithm
        assert keys.algorithm_of(ca.certificate.public_key()) == f"rsa{bits}"
        assert hash_name(ca.certificate) == "sha256"
        assert keys.algorithm_of(ca.ocsp_signer.certificate.public_key()) == f"rsa{bits}"
    tool.openssl(
        "verify",
        "-x509_strict",
        "-CAfile",
        tmp_path / "ca" / "class1.crt.pem",
        tmp_path / "ca" / "class3.crt.pem",
        check=True,
    )
    print(f"{algorithm} bootstrap: {elapsed:.2f}s")


def test_p384_hierarchy_signs_with_sha384(tmp_path: Path, h) -> None:
    pki = ceremony.bootstrap(tmp_path / "ca", PASSPHRASE, "p384", class1_urls=h.urls_for(1))
    for cert_class in (1, 3):
        assert hash_name(pki.issuing_ca(cert_class).certificate) == "sha384"
