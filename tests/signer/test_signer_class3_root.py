"""The self-signed Class 3 root (issue 18): a twin of the Class-1-signed Class 3 certificate (same
subject, key and SKI) so that relying parties can anchor on Class 3 in software that wants a
self-signed anchor; what openssl verify makes of each anchor; pkilint; and adding it to a directory
made before it existed (``self_sign_class3``)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pkilint import loader
from pkilint.cabf import serverauth

from services.signer.ca import ceremony, hierarchy, keys
from services.signer.ca.ceremony import HierarchyNames
from services.signer.ca.hierarchy import HierarchyError
from services.signer.ca.profiles import LinterKind

PASSPHRASE = b"correct horse battery staple"  # the session hierarchy's, see conftest


def ext(cert: x509.Certificate, kind: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(kind)


def test_the_self_signed_class3_root_is_a_twin_of_class3(pki, ca_dir: Path) -> None:
    class3 = pki.issuing_ca(3).certificate
    twin = pki.class3_root
    assert twin is not None
    assert twin == x509.load_pem_x509_certificate((ca_dir / "class3-root.crt.pem").read_bytes())
    twin.verify_directly_issued_by(twin)
    assert twin.subject == twin.issuer == class3.subject
    assert keys.public_keys_equal(twin.public_key(), class3.public_key())
    assert twin.serial_number != class3.serial_number
    assert ext(twin, x509.SubjectKeyIdentifier).value == ext(class3, x509.SubjectKeyIdentifier).value
    assert ext(twin, x509.AuthorityKeyIdentifier).value.key_identifier == (
        ext(twin, x509.SubjectKeyIdentifier).value.digest
    )
    bc = ext(twin, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext(twin, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    present = {e.oid for e in twin.extensions}
    assert present == {
        x509.BasicConstraints.oid, x509.KeyUsage.oid, x509.SubjectKeyIdentifier.oid, x509.AuthorityKeyIdentifier.oid,
    }, "a root: no CRL DP, AIA, policies or EKU"
    # Bootstrap: the same moment and end as the Class-1-signed Class 3 certificate.
    assert twin.not_valid_before_utc == class3.not_valid_before_utc
    assert twin.not_valid_after_utc == class3.not_valid_after_utc
    assert twin.signature_hash_algorithm is not None and class3.signature_hash_algorithm is not None
    assert twin.signature_hash_algorithm.name == class3.signature_hash_algorithm.name


def test_it_is_an_anchor_only_never_in_a_chain(pki) -> None:
    assert pki.class3_root not in pki.chain_for(3, include_anchor=True)
    assert pki.chain_for(3) == (pki.issuing_ca(3).certificate,)


def test_openssl_verify_with_each_anchor(pki, issue, tool, h) -> None:
    """A Class 3 leaf verifies with the self-signed Class 3 root as the only anchor, and with Class 1
    as the anchor and the Class-1-signed Class 3 as untrusted intermediate; a Class 1 leaf does not
    verify under Class 3. The Class-1-signed Class 3 alone is no anchor for OpenSSL (it looks for its
    issuer): the reason the twin exists."""
    class3_leaf = tool.write("class3-leaf.pem", h.pem(issue(3, "client", emails=["a@example.org"]).certificate))
    server3 = tool.write("server3.pem", h.pem(issue(3, "server", dns_names=["www.example.org"]).certificate))
    class1_leaf = tool.write("class1-leaf.pem", h.pem(issue(1, "client", emails=["b@example.org"]).certificate))
    assert pki.class3_root is not None
    twin = tool.write("class3-root.pem", h.pem(pki.class3_root))
    class3 = tool.write("class3.pem", h.pem(pki.issuing_ca(3).certificate))
    class1 = tool.write("class1.pem", h.pem(pki.root))

    for leaf in (class3_leaf, server3):
        tool.openssl("verify", "-x509_strict", "-CAfile", twin, leaf, check=True)
        tool.openssl("verify", "-x509_strict", "-CAfile", class1, "-untrusted", class3, leaf, check=True)
        # A client that sends the Class-1-signed Class 3 along still verifies under the twin.
        tool.openssl("verify", "-x509_strict", "-CAfile", twin, "-untrusted", class3, leaf, check=True)
    tool.openssl("verify", "-x509_strict", "-CAfile", class1, class3_leaf, check=False)
    refused = tool.openssl("verify", "-CAfile", twin, class1_leaf)
    assert refused.returncode != 0 and "unable to get local issuer certificate" in refused.stdout + refused.stderr
    refused = tool.openssl("verify", "-CAfile", twin, "-untrusted", class1, class1_leaf)
    assert refused.returncode != 0
    only_intermediate = tool.openssl("verify", "-CAfile", class3, class3_leaf)
    assert only_intermediate.returncode != 0
    assert "unable to get issuer certificate" in only_intermediate.stdout + only_intermediate.stderr
    without_intermediate = tool.openssl("verify", "-CAfile", class1, class3_leaf)
    assert without_intermediate.returncode != 0


def test_pkilint_lints_it_as_a_root(pki, linter, ca_dir: Path, tool, h) -> None:
    """The lint wrapper recognises a root CA certificate; the findings are the Class 1 root's: no
    error, and the one warning that a root carries a pathLenConstraint (both keep theirs)."""
    assert pki.class3_root is not None
    result = linter.lint_certificate(pki.class3_root, LinterKind.CABF_SERVERAUTH)
    assert result.errors == [], result.errors
    assert result.warnings == ["cabf.serverauth.root_basic_constraints_pathlenconstraint_present"]
    assert linter.lint_certificate(pki.root, LinterKind.CABF_SERVERAUTH).warnings == result.warnings
    assert linter.lint_certificate(pki.class3_root, LinterKind.RFC5280).ok
    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(
        pki.class3_root.public_bytes(serialization.Encoding.DER), "class3-root"
    )
    assert serverauth.determine_certificate_type(doc).name == "ROOT_CA"
    out = tool.run(*h.pkilint("lint_cabf_serverauth_cert"), "lint", "-d", "-s", "ERROR", ca_dir / "class3-root.crt.pem")
    assert out.returncode == 0, out.stdout
    out = tool.run(*h.pkilint("lint_pkix_cert"), "lint", "-s", "WARNING", ca_dir / "class3-root.crt.pem")
    assert out.returncode == 0, out.stdout


def _old_layout(ca_dir: Path, target: Path) -> Path:
    """A copy of the session hierarchy as ``init-ca`` wrote it before the twin existed."""
    shutil.copytree(ca_dir, target)
    (target / "class3-root.crt.pem").unlink()
    return target


def test_a_directory_without_it_still_loads(ca_dir: Path, tmp_path: Path) -> None:
    old = _old_layout(ca_dir, tmp_path / "old")
    loaded = hierarchy.load_hierarchy(old, PASSPHRASE)
    assert loaded.class3_root is None
    assert hierarchy.load_hierarchy(old, PASSPHRASE, ca_keys=False).class3_root is None


def test_self_sign_class3_adds_it_to_an_old_directory(pki, ca_dir: Path, tmp_path: Path, issue, tool, h) -> None:
    old = _old_layout(ca_dir, tmp_path / "old")
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    leaf = tool.write("leaf.pem", h.pem(issue(3, "server", dns_names=["old.example.org"]).certificate))
    later = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=1)

    twin = ceremony.self_sign_class3(old, PASSPHRASE, now=later)

    assert {p.name: p.read_bytes() for p in old.iterdir() if p.name in before} == before, "nothing else changed"
    assert sorted(set(p.name for p in old.iterdir()) - set(before)) == ["class3-root.crt.pem"]
    class3 = pki.issuing_ca(3).certificate
    assert twin.not_valid_before_utc == later, "not backdated to the Class 3 certificate's start"
    assert twin.not_valid_after_utc == class3.not_valid_after_utc
    assert hierarchy.load_hierarchy(old, PASSPHRASE).class3_root == twin
    # A certificate issued before the twin existed verifies under it.
    anchor = tool.write("twin.pem", h.pem(twin))
    tool.openssl("verify", "-attime", str(int(later.timestamp()) + 60), "-CAfile", anchor, leaf, check=True)

    with pytest.raises(HierarchyError, match="refusing to overwrite"):
        ceremony.self_sign_class3(old, PASSPHRASE)
    assert x509.load_pem_x509_certificate((old / "class3-root.crt.pem").read_bytes()) == twin


def test_self_sign_class3_needs_the_passphrase_and_a_consistent_directory(ca_dir: Path, tmp_path: Path) -> None:
    old = _old_layout(ca_dir, tmp_path / "old")
    with pytest.raises(keys.KeyDecryptionFailed):
        ceremony.self_sign_class3(old, b"not the passphrase")
    assert not (old / "class3-root.crt.pem").exists()


def test_load_refuses_a_twin_of_another_key(ca_dir: Path, tmp_path: Path, h) -> None:
    other = tmp_path / "other"
    ceremony.bootstrap(other, PASSPHRASE, "p256", class1_urls=h.urls_for(1), names=HierarchyNames(country="AU"))
    mixed = _old_layout(ca_dir, tmp_path / "mixed")
    shutil.copy2(other / "class3-root.crt.pem", mixed / "class3-root.crt.pem")
    with pytest.raises(HierarchyError, match="does not have the key of class3"):
        hierarchy.load_hierarchy(mixed, PASSPHRASE)


def test_load_refuses_a_twin_that_is_not_self_signed(ca_dir: Path, tmp_path: Path) -> None:
    mixed = _old_layout(ca_dir, tmp_path / "mixed")
    shutil.copy2(ca_dir / "class3.crt.pem", mixed / "class3-root.crt.pem")
    with pytest.raises(HierarchyError, match="must be self-signed"):
        hierarchy.load_hierarchy(mixed, PASSPHRASE)


def test_bootstrap_refuses_when_only_the_twin_exists(tmp_path: Path, h) -> None:
    (tmp_path / "class3-root.crt.pem").write_text("not mine to replace")
    with pytest.raises(HierarchyError, match=r"class3-root\.crt\.pem"):
        ceremony.bootstrap(tmp_path, PASSPHRASE, "p256", class1_urls=h.urls_for(1))
    assert [p.name for p in tmp_path.iterdir()] == ["class3-root.crt.pem"]
