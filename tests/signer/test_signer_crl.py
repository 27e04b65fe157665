"""CRLs: signed by the issuing CA, with CRL number, AKI, thisUpdate/nextUpdate and reason codes;
openssl verifies them and rejects a revoked leaf with them; pkilint's BR CRL profile is happy."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from services.signer.ca import crl, revocation
from services.signer.ca.revocation import RevokedCertificate
from services.signer.settings import SignerSettings
from shared.config import ConfigError, load

NOW = dt.datetime(2026, 11, 27, 12, 0, 0, tzinfo=dt.UTC)


def test_crl_contents(pki) -> None:
    ca = pki.issuing_ca(3)
    der = crl.build_crl(
        ca,
        [
            (0x1234, NOW - dt.timedelta(hours=2), "key_compromise"),
            (0x0ABC, NOW - dt.timedelta(hours=1), "unspecified"),
            RevokedCertificate(0x5678, NOW - dt.timedelta(minutes=5), x509.ReasonFlags.superseded),
            (0x1234, NOW, "superseded"),  # a duplicate row does not duplicate the entry
        ],
        crl_number=42,
        now=NOW,
    )
    parsed = x509.load_der_x509_crl(der)
    assert parsed.is_signature_valid(ca.certificate.public_key())
    assert not parsed.is_signature_valid(pki.root.public_key())
    assert parsed.issuer == ca.certificate.subject
    assert parsed.last_update_utc == NOW
    assert parsed.next_update_utc == NOW + dt.timedelta(hours=24)
    assert parsed.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 42
    aki = parsed.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca.subject_key_identifier.digest
    assert getattr(parsed.signature_hash_algorithm, "name", None) == "sha256"

    entries = {r.serial_number: r for r in parsed}
    assert sorted(entries) == [0x0ABC, 0x1234, 0x5678]
    compromised = entries[0x1234]
    assert compromised.revocation_date_utc == NOW - dt.timedelta(hours=2)
    assert compromised.extensions.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.key_compromise
    )
    assert entries[0x5678].extensions.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.superseded
    )
    with pytest.raises(x509.ExtensionNotFound):  # unspecified: no reasonCode at all (RFC 5280 5.3.1)
        entries[0x0ABC].extensions.get_extension_for_class(x509.CRLReason)


def test_openssl_verifies_the_crl_and_rejects_the_revoked_leaf(pki, issue, ca_pems, tool, h) -> None:
    good = issue(3, "server", dns_names=["good.example.org"]).certificate
    bad = issue(3, "server", dns_names=["bad.example.org"]).certificate
    der = crl.build_crl(
        pki.issuing_ca(3),
        [(bad.serial_number, dt.datetime.now(dt.UTC), "key_compromise")],
        crl_number=1,
        now=dt.datetime.now(dt.UTC),
    )
    crl_der = tool.write("class3.crl", der)
    crl_pem = tool.write("class3.crl.pem", x509.load_der_x509_crl(der).public_bytes(Encoding.PEM))
    bundle = tool.write("bundle.pem", h.pem(pki.issuing_ca(3).certificate) + h.pem(pki.root))
    out = tool.openssl(
        "crl", "-inform", "DER", "-in", crl_der, "-CAfile", bundle, "-noout", "-verify", "-text"
    )
    assert out.returncode == 0 and "verify OK" in out.stderr + out.stdout
    serial_hex = format(bad.serial_number, "X")
    assert f"Serial Number: {serial_hex.zfill(len(serial_hex) + len(serial_hex) % 2)}" in out.stdout
    assert "Key Compromise" in out.stdout

    # A root-only CRL for Class 1 so that -crl_check_all can look at the whole chain.
    root_crl = tool.write(
        "class1.crl.pem",
        x509.load_der_x509_crl(
            crl.build_crl(pki.issuing_ca(1), [], crl_number=1, now=dt.datetime.now(dt.UTC))
        ).public_bytes(Encoding.PEM),
    )
    chain = tool.write("chain.pem", pki.chain_pem(3))
    for leaf_cert, expect_ok in ((good, True), (bad, False)):
        leaf = tool.write("leaf.pem", h.pem(leaf_cert))
        out = tool.openssl(
            "verify",
            "-crl_check_all",
            "-CAfile",
            ca_pems["class1"],
            "-untrusted",
            chain,
            "-CRLfile",
            crl_pem,
            "-CRLfile",
            root_crl,
            leaf,
        )
        assert (out.returncode == 0) is expect_ok, out.stdout + out.stderr
        if not expect_ok:
            assert "certificate revoked" in out.stdout + out.stderr


def test_crl_passes_pkilint_br_profile(pki, tool, h) -> None:
    der = crl.build_crl(
        pki.issuing_ca(3),
        [(7, NOW - dt.timedelta(days=1), "cessation_of_operation"), (9, NOW, None)],
        crl_number=3,
        now=NOW,
    )
    path = tool.write("class3.crl", der)
    out = tool.run(*h.pkilint("lint_crl"), "lint", "-t", "CRL", "-p", "BR", "-s", "WARNING", path)
    assert out.returncode == 0, out.stdout
    arl = tool.write(
        "class1.crl",
        crl.build_crl(
            pki.issuing_ca(1),
            [(11, NOW, "ca_compromise")],
            crl_number=3,
            now=NOW,
            next_update_in=dt.timedelta(days=7),
        ),
    )
    out = tool.run(*h.pkilint("lint_crl"), "lint", "-t", "ARL", "-p", "BR", "-s", "WARNING", arl)
    assert out.returncode == 0, out.stdout


def test_a_shard_crl_passes_pkilint_and_names_its_distribution_point(pki, tool, h) -> None:
    """TLS BR 7.2.2.1: a partitioned CRL carries a critical Issuing Distribution Point whose fullName is the
    URL of the certificates' CRL Distribution Points, byte for byte."""
    url = h.urls_for(3).crl_shard_url(5)
    assert url == f"{h.pki_base}/class3/5.crl"
    der = crl.build_crl(pki.issuing_ca(3), [(7, NOW, "key_compromise"), (9, NOW, None)], crl_number=4, now=NOW,
                        distribution_point=url)
    idp = x509.load_der_x509_crl(der).extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical
    assert idp.value == x509.IssuingDistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)], relative_name=None, only_contains_user_certs=False,
        only_contains_ca_certs=False, only_some_reasons=None, indirect_crl=False, only_contains_attribute_certs=False)
    out = tool.run(*h.pkilint("lint_crl"), "lint", "-t", "CRL", "-p", "BR", "-s", "WARNING", tool.write("s.crl", der))
    assert out.returncode == 0, out.stdout


def test_openssl_checks_a_certificate_against_the_crl_of_its_shard_only(pki, issue, ca_pems, tool, h) -> None:
    """A relying party matches the CRL's Issuing Distribution Point with the certificate's CRL Distribution
    Points: shard 5's CRL settles a shard-5 certificate either way and says nothing about a shard-6 one."""
    good, bad, elsewhere = (issue(1, "server", dns_names=[f"{name}.example.org"], crl_shard=shard)
                            for name, shard in (("good", 5), ("bad", 5), ("elsewhere", 6)))
    for issued in (good, bad, elsewhere):
        assert not issued.lint_result.errors  # a shard URL in the CDP passes the pre-issuance lint
    cdp = good.certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [[n.value for n in dp.full_name or []] for dp in cdp] == [[f"{h.pki_base}/class1/5.crl"]]
    now = dt.datetime.now(dt.UTC)
    der = crl.build_crl(pki.issuing_ca(1), [(bad.certificate.serial_number, now, "key_compromise")], crl_number=1,
                        now=now, distribution_point=h.urls_for(1).crl_shard_url(5))
    shard_crl = tool.write("class1-5.crl.pem", x509.load_der_x509_crl(der).public_bytes(Encoding.PEM))
    chain = pki.chain_pem(1)  # the certificates between the leaf and the Class 1 root, if any
    untrusted = ["-untrusted", tool.write("chain1.pem", chain)] if chain.strip() else []

    def verify(issued) -> str:
        out = tool.openssl("verify", "-crl_check", "-CAfile", ca_pems["class1"], *untrusted,
                           "-CRLfile", shard_crl, tool.write("leaf.pem", h.pem(issued.certificate)))
        return ("OK " if out.returncode == 0 else "FAILED ") + out.stdout + out.stderr

    assert verify(good).startswith("OK")
    assert "certificate revoked" in verify(bad)
    assert "different CRL scope" in verify(elsewhere)  # OpenSSL: the IDP does not name its CDP


def test_the_shard_of_a_certificate_comes_from_its_serial() -> None:
    assert crl.crl_shard_of(0x1234, 16) == 4
    assert crl.crl_shard_of(0x1234, 0) is None  # sharding off: the unsharded CRL
    shards = [crl.crl_shard_of(serial, 8) for serial in range(1000, 1800)]
    assert {shard: shards.count(shard) for shard in set(shards)} == dict.fromkeys(range(8), 100)
    with pytest.raises(ValueError, match="shards"):
        crl.crl_shard_of(1, crl.MAX_SHARDS + 1)
    assert crl.CRLScope("class3", 5).name == "class3/5" and crl.CRLScope("class3").name == "class3"


def test_crl_parameters_are_checked(pki) -> None:
    ca = pki.issuing_ca(1)
    with pytest.raises(ValueError, match="crl_number"):
        crl.build_crl(ca, [], crl_number=-1, now=NOW)
    with pytest.raises(ValueError, match="next_update_in"):
        crl.build_crl(ca, [], crl_number=1, now=NOW, next_update_in=dt.timedelta(days=11))
    with pytest.raises(ValueError, match="timezone-aware"):
        crl.build_crl(ca, [], crl_number=1, now=NOW.replace(tzinfo=None))
    empty = x509.load_der_x509_crl(crl.build_crl(ca, [], crl_number=0, now=NOW))
    assert len(empty) == 0 and empty.is_signature_valid(ca.certificate.public_key())


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("key_compromise", x509.ReasonFlags.key_compromise),
        ("keyCompromise", x509.ReasonFlags.key_compromise),
        (x509.ReasonFlags.privilege_withdrawn, x509.ReasonFlags.privilege_withdrawn),
        ("unspecified", None),
        (None, None),
    ],
)
def test_reason_parsing(given, expected) -> None:
    assert revocation.parse_reason(given) is expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("certificate_hold", "certificate_hold is not used"),
        ("remove_from_crl", "remove_from_crl is not used"),
        ("ca_compromise", "ca_compromise is not used"),
        ("because", "unknown revocation reason"),
    ],
)
def test_reasons_this_ca_never_publishes_are_refused(given: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        revocation.parse_reason(given)
    assert revocation.parse_reason("ca_compromise", ca_certificate=True) is x509.ReasonFlags.ca_compromise


@pytest.mark.parametrize(("value", "problem"), [("-1", "between 0 and 1024"), ("1025", "between 0 and 1024"),
                                                 ("many", "CACERT_CRL_SHARDS")])
def test_the_shard_count_setting_is_checked_at_start_up(value: str, problem: str, tmp_path) -> None:
    environ = {"CACERT_CA_DIR": str(tmp_path), "CACERT_CA_PASSPHRASE": "x", "CACERT_KAFKA_BOOTSTRAP": "127.0.0.1:9",
               "CACERT_MONGO_URL": "mongodb://127.0.0.1:9", "CACERT_MONGO_DATABASE": "signer"}
    with pytest.raises(ConfigError, match=problem) as raised:
        load(SignerSettings, dict(environ, CACERT_CRL_SHARDS=value))
    assert "\n" not in str(raised.value) and "CACERT_CRL_SHARDS" in str(raised.value)
    assert load(SignerSettings, dict(environ, CACERT_CRL_SHARDS="0")).crl_shards == 0
    assert load(SignerSettings, environ).crl_shards == crl.DEFAULT_SHARDS
