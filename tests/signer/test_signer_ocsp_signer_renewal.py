"""The automatic renewal of the delegated OCSP signers, pure part: when one is due, the new certificate's
profile (same as init-ca's), which signer answers while old and new overlap, and what a stored signer must
be to be used."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.signer.ca import ceremony, hierarchy, keys, ocsp, revocation
from services.signer.ca.ceremony import Lifetimes
from services.signer.ca.hierarchy import HierarchyError, OCSPSigner, current_ocsp_signer

START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory, h) -> hierarchy.Hierarchy:
    """A hierarchy created at START (its OCSP signers end after 90 days)."""
    return ceremony.bootstrap(tmp_path_factory.mktemp("renewal"), h.passphrase, "p256",
                              class1_urls=h.urls_for(1), now=START, names=ceremony.HierarchyNames(country="AU"))


def test_renewal_is_due_once_the_window_begins(fresh) -> None:
    signer = fresh.issuing_ca(3).ocsp_signer
    ends = signer.certificate.not_valid_after_utc
    window = dt.timedelta(days=45)
    assert not signer.expires_soon(ends - dt.timedelta(days=46), window)
    assert signer.expires_soon(ends - dt.timedelta(days=45), window)
    assert signer.expires_soon(ends + dt.timedelta(days=1), window)


@pytest.mark.parametrize("cert_class", [1, 3])
def test_a_reissued_signer_has_the_init_ca_profile_and_a_new_key(fresh, cert_class: int) -> None:
    ca = fresh.issuing_ca(cert_class)
    later = START + dt.timedelta(days=50, seconds=7)
    new = ceremony.reissue_ocsp_signer(ca, now=later)
    old = ca.ocsp_signer.certificate
    cert = new.certificate
    hierarchy.check_ocsp_signer(new, ca.certificate, "renewed")  # issued by the CA, own key, OCSPSigning
    assert not keys.public_keys_equal(cert.public_key(), old.public_key())
    assert keys.algorithm_of(new.private_key) == ca.key_algorithm
    assert cert.serial_number != old.serial_number
    assert cert.subject == old.subject and cert.issuer == ca.certificate.subject
    assert cert.not_valid_before_utc == later.replace(microsecond=0)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=90, seconds=-1)
    assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == "sha256"
    ext = cert.extensions
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ext.get_extension_for_class(x509.BasicConstraints).critical
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert ext.get_extension_for_class(x509.OCSPNoCheck)
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == (
        ca.subject_key_identifier.digest)
    # every extension of init-ca's signer, with the same criticality
    assert sorted((e.oid.dotted_string, e.critical) for e in ext) == sorted(
        (e.oid.dotted_string, e.critical) for e in old.extensions)


def test_a_reissued_signer_never_outlives_its_ca(fresh) -> None:
    ca = fresh.issuing_ca(3)
    near_end = ca.certificate.not_valid_after_utc - dt.timedelta(days=10)
    new = ceremony.reissue_ocsp_signer(ca, now=near_end)
    assert new.certificate.not_valid_after_utc == ca.certificate.not_valid_after_utc


def test_the_status_mode_cannot_reissue(fresh, h, tmp_path: Path) -> None:
    public = dataclasses.replace(fresh.issuing_ca(3), private_key=None)
    with pytest.raises(HierarchyError, match="not loaded"):
        ceremony.reissue_ocsp_signer(public, now=START)


def test_answers_switch_to_the_new_signer_once_it_is_valid(fresh) -> None:
    ca = fresh.issuing_ca(3)
    old = ca.ocsp_signer
    renewed_at = START + dt.timedelta(days=50)
    new = ceremony.reissue_ocsp_signer(ca, now=renewed_at)
    assert current_ocsp_signer([old, new], renewed_at - dt.timedelta(seconds=1)) is old  # not valid yet
    assert current_ocsp_signer([new, old], renewed_at) is new
    assert current_ocsp_signer([old, new], renewed_at + dt.timedelta(days=60)) is new  # old has ended
    ended = START + dt.timedelta(days=365)
    assert current_ocsp_signer([old, new], ended) is new  # none valid: the one ending last
    with pytest.raises(ValueError, match="no OCSP signer"):
        current_ocsp_signer([], START)


def test_the_old_and_the_new_signer_both_verify_until_the_old_one_ends(pki, issue, tool, h) -> None:
    """Answers from the old signer (cached by relying parties) keep verifying: renewal revokes nothing."""
    leaf = issue(3, "server", dns_names=["renewal.example.org"]).certificate
    class3 = pki.issuing_ca(3)
    new = ceremony.reissue_ocsp_signer(class3, now=dt.datetime.now(dt.UTC))
    tool.write("root.pem", h.pem(pki.root))
    tool.write("class3.pem", h.pem(class3.certificate))
    tool.write("leaf.pem", h.pem(leaf))
    tool.openssl("ocsp", "-issuer", "class3.pem", "-cert", "leaf.pem", "-no_nonce", "-reqout", "req.der",
                 check=True)
    request = (tool.workdir / "req.der").read_bytes()
    lookup = {leaf.serial_number: revocation.GOOD}
    for signer in (class3.ocsp_signer, new):
        responder = ocsp.OCSPResponder(dataclasses.replace(class3, ocsp_signer=signer),
                                       lambda serial: lookup.get(serial, revocation.UNKNOWN))
        tool.write("resp.der", responder.respond(request))
        out = tool.openssl("ocsp", "-respin", "resp.der", "-no_nonce", "-CAfile", "root.pem",
                           "-verify_other", "class3.pem", "-issuer", "class3.pem", "-cert", "leaf.pem")
        assert "Response verify OK" in out.stderr, out.stderr
        assert "leaf.pem: good" in out.stdout


def test_a_stored_signer_of_another_ca_or_without_the_ocsp_eku_is_refused(fresh, pki) -> None:
    class3 = fresh.issuing_ca(3)
    foreign = pki.issuing_ca(3).ocsp_signer
    with pytest.raises(HierarchyError, match=r"not issued|invalid signature"):
        hierarchy.check_ocsp_signer(foreign, class3.certificate, "stored")
    mismatched = OCSPSigner(class3.ocsp_signer.certificate, foreign.private_key)
    with pytest.raises(HierarchyError, match="does not belong"):
        hierarchy.check_ocsp_signer(mismatched, class3.certificate, "stored")
    leaf_key = keys.generate_private_key("p256")
    not_a_responder = ceremony.create_root_certificate(leaf_key, ceremony.HierarchyNames(), START, 10)
    with pytest.raises(HierarchyError):
        hierarchy.check_ocsp_signer(OCSPSigner(not_a_responder, leaf_key), class3.certificate, "stored")


def test_short_lived_signers_for_tests(tmp_path: Path, h) -> None:
    """Lifetimes(ocsp_signer_days=...) makes a hierarchy whose signers are due at once (the integration test)."""
    pki = ceremony.bootstrap(tmp_path / "ca", h.passphrase, "p256", class1_urls=h.urls_for(1),
                             lifetimes=Lifetimes(ocsp_signer_days=10))
    assert pki.issuing_ca(1).ocsp_signer.expires_soon(dt.datetime.now(dt.UTC), dt.timedelta(days=45))


def test_a_reissued_signer_passes_pkilint_as_an_ocsp_responder(pki, tool, h) -> None:
    """CA/B TLS BR 7.1.2.8 (pkilint's OCSP-RESPONDER type): no error. The session hierarchy has a country;
    without one (init-ca's default names) pkilint reports country_attribute_absent, for init-ca's signer too."""
    new = ceremony.reissue_ocsp_signer(pki.issuing_ca(3), now=dt.datetime.now(dt.UTC))
    path = tool.write("renewed.pem", h.pem(new.certificate))
    out = tool.run(*h.pkilint("lint_cabf_serverauth_cert"), "lint", "-t", "OCSP-RESPONDER", path)
    assert "(ERROR)" not in out.stdout and "(FATAL)" not in out.stdout, out.stdout
