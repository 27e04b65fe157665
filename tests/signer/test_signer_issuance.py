"""Issuance: every profile in every class yields a certificate that openssl chains to the right
anchors, pkilint (our pre-issuance linter and its own CLI) finds free of errors, and that says
exactly what was approved, nothing taken from the CSR but the key."""

from __future__ import annotations

import datetime as dt
import typing
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from services.signer.ca import issuance, profiles
from services.signer.ca.issuance import ApprovedRequest, CSRRejected, RequestRejected
from shared.key_policy import ProblemCode
from tests.registration.csrs import weak_hash_csr

CASES: dict[tuple[str, int], dict[str, Any]] = {
    ("server", 1): {"subject": {"CN": "www.example.org"}, "dns_names": ["www.example.org", "example.org"]},
    ("server", 3): {
        "subject": {"CN": "shop.example.org"},
        "dns_names": ["shop.example.org", "*.shop.example.org"],
        "ip_addresses": ["8.8.8.8", "2606:4700:4700::1111"],
    },
    ("client", 1): {"emails": ["alice@example.org", "alice.work@example.org"]},
    ("client", 3): {
        "subject": {"CN": "Alice Example", "GN": "Alice", "SN": "Example"},
        "emails": ["alice@example.org"],
    },
    ("codesign", 1): {"subject": {"CN": "Alice Example"}},
    ("codesign", 3): {"subject": {"CN": "Alice Example"}, "emails": ["alice@example.org"]},
}
PKILINT_CLI = {
    "server": ("lint_cabf_serverauth_cert", ["-d", "-o"], "DV-FINAL-CERTIFICATE"),
    "client": ("lint_cabf_smime_cert", ["-d", "-o"], None),
    "codesign": ("lint_pkix_cert", [], None),
}
SMIME_TYPE = {1: "MAILBOX-MULTIPURPOSE", 3: "INDIVIDUAL-MULTIPURPOSE"}
PURPOSES = {"server": ["sslserver"], "client": ["smimesign", "sslclient"], "codesign": []}
EKUS = {
    "server": [ExtendedKeyUsageOID.SERVER_AUTH],
    "client": [ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.CLIENT_AUTH],
    "codesign": [ExtendedKeyUsageOID.CODE_SIGNING],
}
POLICIES = {
    ("server", 1): "2.23.140.1.2.1",
    ("server", 3): "2.23.140.1.2.1",
    ("client", 1): "2.23.140.1.5.1.2",
    ("client", 3): "2.23.140.1.5.4.2",
    ("codesign", 1): "2.23.140.1.4.1",
    ("codesign", 3): "2.23.140.1.4.1",
}


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ext(cert: x509.Certificate, kind: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(kind)


def expected_key_usage(profile: str, key_kind: str) -> set[str]:
    if profile == "codesign":
        return {"digital_signature"}
    if key_kind == "rsa":
        return {"digital_signature", "key_encipherment"}
    return {"digital_signature", "key_agreement"} if profile == "client" else {"digital_signature"}


def asserted_key_usages(ku: x509.KeyUsage) -> set[str]:
    names = {
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
    }
    return {n for n in names if getattr(ku, n)}


@pytest.mark.parametrize("key_kind", ["ec", "rsa"])
@pytest.mark.parametrize(("profile", "cert_class"), list(CASES))
def test_profile_by_class(
    profile: str, cert_class: int, key_kind: str, issue, pki, ca_pems, tool, h, ec_key, rsa_key
) -> None:
    now = dt.datetime.now(dt.UTC)
    issued = issue(
        cert_class,
        profile,
        key=ec_key if key_kind == "ec" else rsa_key,
        now=now,
        **CASES[profile, cert_class],
    )
    cert, req = issued.certificate, issued.request
    ca = pki.issuing_ca(cert_class)

    # Pre-issuance lint of the throw-away copy: nothing at ERROR or above.
    assert issued.lint_result.errors == [], issued.lint_result.errors

    # Exactly the approved subject and names.
    assert cert.subject == x509.Name(
        [
            x509.NameAttribute(oid, req.subject[k])
            for k, oid in profiles.SUBJECT_ATTRIBUTE_OIDS.items()
            if k in req.subject
        ]
    )
    assert issuance.certificate_problems_against_request(cert, req) == []
    if req.dns_names or req.ip_addresses or req.emails:
        san = ext(cert, x509.SubjectAlternativeName)
        assert san.critical == (len(cert.subject) == 0)
        assert san.value.get_values_for_type(x509.DNSName) == req.dns_names
        assert [str(a) for a in san.value.get_values_for_type(x509.IPAddress)] == req.ip_addresses
        assert san.value.get_values_for_type(x509.RFC822Name) == req.emails
    else:
        with pytest.raises(x509.ExtensionNotFound):
            ext(cert, x509.SubjectAlternativeName)

    # Extensions per profile.
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and asserted_key_usages(ku.value) == expected_key_usage(profile, key_kind)
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == EKUS[profile]
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ca.subject_key_identifier.digest
    if profile == "server":
        with pytest.raises(x509.ExtensionNotFound):  # BR 7.1.2.7.6: NOT RECOMMENDED for TLS leaves
            ext(cert, x509.SubjectKeyIdentifier)
    else:
        assert ext(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(
            cert.public_key()
        )
    label = ca.label
    dp = ext(cert, x509.CRLDistributionPoints).value
    assert [n.value for n in dp[0].full_name] == [f"{h.pki_base}/{label}.crl"]
    aia = {d.access_method: d.access_location.value for d in ext(cert, x509.AuthorityInformationAccess).value}
    assert aia == {
        AuthorityInformationAccessOID.OCSP: f"{h.pki_base}/ocsp/{label}",
        AuthorityInformationAccessOID.CA_ISSUERS: f"{h.pki_base}/{label}.crt",
    }
    assert [p.policy_identifier.dotted_string for p in ext(cert, x509.CertificatePolicies).value] == [
        POLICIES[profile, cert_class]
    ]

    # Serial, lifetime, signature.
    assert cert.serial_number > 0 and cert.serial_number.bit_length() > 64
    assert cert.version is x509.Version.v3
    assert getattr(cert.signature_hash_algorithm, "name", None) == "sha256"
    assert cert.not_valid_before_utc == now.replace(microsecond=0) - dt.timedelta(minutes=1)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=30, seconds=-1)
    cert.verify_directly_issued_by(ca.certificate)

    # openssl: Class 3 leaves chain to Class 1 through Class 3, and to Class 3 alone as anchor;
    # Class 1 leaves chain to Class 1 and not to Class 3.
    leaf = tool.write("leaf.pem", h.pem(cert))
    purposes = [p for purpose in PURPOSES[profile] for p in ("-purpose", purpose)]
    purpose_runs = [purposes[i : i + 2] for i in range(0, len(purposes), 2)] or [[]]
    for purpose in purpose_runs:
        if cert_class == 3:
            chain = tool.write("chain.pem", pki.chain_pem(3))
            tool.openssl(
                "verify",
                "-x509_strict",
                *purpose,
                "-CAfile",
                ca_pems["class1"],
                "-untrusted",
                chain,
                leaf,
                check=True,
            )
            tool.openssl(
                "verify",
                "-x509_strict",
                *purpose,
                "-partial_chain",
                "-CAfile",
                ca_pems["class3"],
                leaf,
                check=True,
            )
            assert tool.openssl("verify", "-CAfile", ca_pems["class1"], leaf).returncode != 0
        else:
            assert pki.chain_pem(1) == ""
            tool.openssl("verify", "-x509_strict", *purpose, "-CAfile", ca_pems["class1"], leaf, check=True)
            assert (
                tool.openssl("verify", "-partial_chain", "-CAfile", ca_pems["class3"], leaf).returncode != 0
            )

    # pkilint's own command line on the real certificate agrees: no ERROR or FATAL findings.
    script, flags, detected = PKILINT_CLI[profile]
    out = tool.run(*h.pkilint(script), "lint", *flags, "-s", "ERROR", leaf)
    assert out.returncode == 0, out.stdout
    if profile == "client":
        detected = SMIME_TYPE[cert_class]
    if detected:
        assert out.stderr.strip() == detected


def test_subject_is_the_approved_one_whatever_the_csr_says(issue, h, ec_key) -> None:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "XX"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil Corp"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Ops"),
                    x509.NameAttribute(NameOID.LOCALITY_NAME, "Nowhere"),
                    x509.NameAttribute(NameOID.EMAIL_ADDRESS, "boss@evil.example"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "bank.example"),
                ]
            )
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("bank.example")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ec_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
    issued = issue(3, "server", csr=csr, subject={"CN": "www.example.org"}, dns_names=["www.example.org"])
    cert = issued.certificate
    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.org")])
    assert ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [
        "www.example.org"
    ]
    assert not ext(cert, x509.BasicConstraints).value.ca
    assert issued.lint_result.errors == []

    client = issue(1, "client", csr=csr, emails=["alice@example.org"]).certificate
    assert len(client.subject) == 0
    assert ext(client, x509.SubjectAlternativeName).critical


# --------------------------------------------------------------------------- CSR checks


def _tampered(csr_pem: str) -> str:
    der = bytearray(x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the signature BIT STRING
    return x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()


def test_check_csr_accepts_good_keys(h, ec_key, rsa_key) -> None:
    for key in (ec_key, rsa_key, ec.generate_private_key(ec.SECP384R1())):
        csr = issuance.check_csr(h.csr(key))
        assert csr.is_signature_valid


KEY_POLICY_CODES = set(typing.get_args(ProblemCode))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda h: h.csr(rsa.generate_private_key(65537, 1024)),
         "rsa_too_small: RSA key of 1024 bits is too weak: at least 2048 bits are required"),
        (lambda h: h.csr(rsa.generate_private_key(3, 2048)),
         "rsa_exponent: RSA public exponent 3 is not allowed: it must be 65537"),
        (lambda h: _tampered(h.csr(rsa.generate_private_key(65537, 2048))), "csr signature invalid"),
        (lambda h: _tampered(h.csr(ec.generate_private_key(ec.SECP256R1()))), "csr signature invalid"),
        (lambda h: h.csr(ec.generate_private_key(ec.SECP521R1())),
         "ec_curve: elliptic curve secp521r1 is not allowed: use P-256 or P-384"),
        (lambda h: h.csr(ed25519.Ed25519PrivateKey.generate()),
         "key_type: EdDSA keys are not supported: use RSA (2048..8192 bits, a multiple of 8) or EC P-256/P-384"),
        (
            lambda h: (
                "-----BEGIN CERTIFICATE REQUEST-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE REQUEST-----\n"
            ),
            "csr is not a PEM certificate request",
        ),
        (lambda h: "this is not PEM at all", "csr is not a PEM certificate request"),
        (lambda h: "", "csr is not a PEM certificate request"),
        (lambda h: "A" * 70000, "csr too large: 70000 bytes (limit 65536)"),
        (lambda h: weak_hash_csr("sha1", dns=["www.example.org"]),
         "the CSR is signed with SHA-1, which this CA does not accept: sign it with SHA-256 or stronger "
         "(e.g. openssl req -sha256)"),
        (lambda h: weak_hash_csr("md5", dns=["www.example.org"]),
         "the CSR is signed with MD5, which this CA does not accept: sign it with SHA-256 or stronger "
         "(e.g. openssl req -sha256)"),
    ],
    ids=[
        "rsa1024",
        "exponent3",
        "tampered-rsa",
        "tampered-ec",
        "p521",
        "ed25519",
        "garbage-pem",
        "not-pem",
        "empty",
        "oversized",
        "sha1-self-signature",
        "md5-self-signature",
    ],
)
def test_check_csr_rejects_with_a_precise_reason(make, reason: str, h) -> None:
    with pytest.raises(CSRRejected) as caught:
        issuance.check_csr(make(h))
    assert caught.value.reason == reason
    assert str(caught.value) == reason
    # the cert.rejected reason comes from the key policy's verdict, not from words in the text
    assert caught.value.code == ("weak_key" if reason.split(":")[0] in KEY_POLICY_CODES else "csr_invalid")


def test_a_certificate_is_not_a_csr(ca_pems) -> None:
    with pytest.raises(CSRRejected, match="not a PEM certificate request"):
        issuance.check_csr(Path(ca_pems["class1"]).read_text())


def test_issuance_rechecks_the_csr(issue, h) -> None:
    weak = h.csr(rsa.generate_private_key(65537, 1024))
    with pytest.raises(CSRRejected, match="rsa_too_small: RSA key of 1024 bits"):
        issue(3, "server", csr=weak, dns_names=["www.example.org"])


# ----------------------------------------------------------------------- request checks


@pytest.mark.parametrize(
    ("cert_class", "profile", "fields", "reason"),
    [
        (
            1,
            "client",
            {"subject": {"CN": "Alice Example"}, "emails": ["a@example.org"]},
            "subject attribute(s) CN not allowed for client in class 1",
        ),
        (
            3,
            "client",
            {"subject": {"CN": "Alice Example"}, "emails": ["a@example.org"]},
            "a personal name in CN needs GN (givenName) or SN (surname) beside it",
        ),
        (
            3,
            "client",
            {"subject": {"O": "Evil"}, "emails": ["a@example.org"]},
            "subject attribute(s) O not allowed for client in class 3",
        ),
        (3, "client", {}, "a client certificate needs at least one of emails"),
        (
            3,
            "server",
            {"subject": {"CN": "other.example.org"}, "dns_names": ["www.example.org"]},
            "CN must be one of the approved dns_names or ip_addresses",
        ),
        (
            3,
            "server",
            {"dns_names": ["www.example.org"], "emails": ["a@example.org"]},
            "emails not allowed in a server certificate",
        ),
        (3, "server", {}, "a server certificate needs at least one of dns_names or ip_addresses"),
        (
            3,
            "server",
            {"dns_names": ["WWW.Example.org"]},
            "dns name is not a lower-case A-label host name: 'WWW.Example.org'",
        ),
        (
            3,
            "server",
            {"dns_names": ["localhost"]},
            "dns name is not a lower-case A-label host name: 'localhost'",
        ),
        (3, "server", {"ip_addresses": ["300.1.1.1"]}, "not an IP address: '300.1.1.1'"),
        (
            3,
            "server",
            {"dns_names": [f"h{i}.example.org" for i in range(100)], "ip_addresses": ["192.0.2.1"]},
            "101 subjectAltNames approved; at most 100 are issued",
        ),
        (
            3,
            "server",
            {"dns_names": ["x" * 64 + ".org"]},
            "dns name is not a lower-case A-label host name: '" + "x" * 64 + ".org'",
        ),
        (3, "codesign", {}, "subject attribute(s) CN required for codesign"),
        (3, "codesign", {"subject": {"CN": "x" * 65}}, "CN longer than 64 characters"),
        (3, "codesign", {"subject": {"CN": "  "}}, "subject attribute(s) CN empty"),
        (
            3,
            "client",
            {"emails": ["jörg@example.org"]},
            "email is not an ASCII mailbox with a lower-case domain: 'jörg@example.org'",
        ),
        (3, "client", {"emails": ["a@example.org"], "validity_days": 0}, "validity_days must be at least 1"),
    ],
)
def test_request_rejected_with_a_precise_reason(
    cert_class: int, profile: str, fields: dict[str, Any], reason: str, issue
) -> None:
    with pytest.raises(RequestRejected) as caught:
        issue(cert_class, profile, **fields)
    assert caught.value.reason == reason


def test_request_must_match_the_ca_and_profile(pki, h, ec_key) -> None:
    req = ApprovedRequest("r", "m", 3, "server", h.csr(ec_key), {}, ["www.example.org"], [], [], 90)
    now = dt.datetime.now(dt.UTC)
    with pytest.raises(RequestRejected, match="request is for class 3, the CA is class1"):
        issuance.prepare_certificate(
            req, pki.issuing_ca(1), profiles.get_profile("server"), h.urls_for(1), now, 7
        )
    with pytest.raises(RequestRejected, match="request is for profile 'server', not 'client'"):
        issuance.prepare_certificate(
            req, pki.issuing_ca(3), profiles.get_profile("client"), h.urls_for(3), now, 7
        )
    with pytest.raises(ValueError, match="unknown certificate profile 'timestamp'"):
        profiles.get_profile("timestamp")
    for bad_serial in (0, -5, 2**159):
        with pytest.raises(ValueError, match="serial"):
            issuance.prepare_certificate(
                req, pki.issuing_ca(3), profiles.get_profile("server"), h.urls_for(3), now, bad_serial
            )


def test_from_payload_reads_a_csr_approved_event(h, ec_key) -> None:
    payload = {
        "request_id": "r-9",
        "member_id": "m-9",
        "cert_class": 3,
        "profile": "server",
        "csr_pem": h.csr(ec_key),
        "subject": {"CN": "www.example.org"},
        "dns_names": ["www.example.org"],
        "ip_addresses": [],
        "emails": [],
        "validity_days": 90,
        "approved_at": "2026-11-27T00:00:00Z",
    }
    req = ApprovedRequest.from_payload(payload)
    assert req.cert_class == 3 and req.subject == {"CN": "www.example.org"} and req.validity_days == 90


# ---------------------------------------------------------------------- serials, validity


def test_serials_are_positive_random_and_at_least_64_bits() -> None:
    serials = [issuance.new_serial_number() for _ in range(5000)]
    assert len(set(serials)) == len(serials)
    assert all(0 < s < 2**127 for s in serials)
    assert all(s.bit_length() > 64 for s in serials)
    assert max(s.bit_length() for s in serials) == 127  # top bit cleared, the rest random
    from services.signer.ca.serials import parse_serial_hex, serial_hex

    for s in serials[:50]:
        assert parse_serial_hex(serial_hex(s)) == s
    for bad in ("", "00", "XYZ", "-1", "DEAD"):
        with pytest.raises(ValueError):
            parse_serial_hex(bad)


@pytest.mark.parametrize(
    ("now", "days"),
    [
        (dt.datetime(2026, 1, 10, tzinfo=dt.UTC), 397),
        (dt.datetime(2026, 11, 27, tzinfo=dt.UTC), 199),
        (dt.datetime(2027, 6, 1, tzinfo=dt.UTC), 99),
        (dt.datetime(2029, 6, 1, tzinfo=dt.UTC), 46),
    ],
)
def test_server_validity_follows_the_br_schedule_and_lints_clean(now: dt.datetime, days: int, issue) -> None:
    """SC-081 shortens TLS lifetimes; asking for 397 days gets the most the BRs allow at notBefore."""
    issued = issue(3, "server", dns_names=["www.example.org"], validity_days=397, now=now)
    cert = issued.certificate
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=days, seconds=-1)
    assert issued.lint_result.errors == [] and issued.lint_result.warnings == []


def test_tls_schedule_boundaries() -> None:
    f = profiles.tls_max_validity_days
    assert f(dt.datetime(2026, 3, 14, 23, 59, 59, tzinfo=dt.UTC)) == 397
    assert f(dt.datetime(2026, 3, 15, tzinfo=dt.UTC)) == 199
    assert f(dt.datetime(2027, 3, 15, tzinfo=dt.UTC)) == 99
    assert f(dt.datetime(2029, 3, 15, tzinfo=dt.UTC)) == 46


def test_client_and_codesign_validity_is_clamped_to_the_configured_maximum(issue) -> None:
    cert = issue(3, "client", emails=["a@example.org"], validity_days=800).certificate
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=365, seconds=-1)
    configured = profiles.build_profiles(client_max_validity_days=30, codesign_max_validity_days=100)
    assert configured["client"].max_validity_days == 30 and configured["codesign"].max_validity_days == 100
    with pytest.raises(ValueError, match="client validity"):
        profiles.build_profiles(client_max_validity_days=825)
    with pytest.raises(ValueError, match="codesign validity"):
        profiles.build_profiles(codesign_max_validity_days=0)


def test_a_leaf_never_outlives_its_ca(tmp_path: Path, h, ec_key) -> None:
    from services.signer.ca import ceremony

    pki = ceremony.bootstrap(
        tmp_path,
        h.passphrase,
        "p256",
        class1_urls=h.urls_for(1),
        lifetimes=ceremony.Lifetimes(class3_days=30),
    )
    ca = pki.issuing_ca(3)
    req = ApprovedRequest("r", "m", 3, "client", h.csr(ec_key), {}, [], [], ["a@example.org"], 365)
    cert = issuance.build_certificate(
        req,
        ca,
        profiles.get_profile("client"),
        h.urls_for(3),
        dt.datetime.now(dt.UTC),
        issuance.new_serial_number(),
    )
    assert cert.not_valid_after_utc == ca.certificate.not_valid_after_utc
    late = ca.certificate.not_valid_after_utc + dt.timedelta(days=1)
    with pytest.raises(RequestRejected, match="expires too soon"):
        issuance.build_certificate(req, ca, profiles.get_profile("client"), h.urls_for(3), late, 5)


def test_p384_ca_signs_leaves_with_sha384(tmp_path: Path, h, ec_key) -> None:
    from services.signer.ca import ceremony, lint

    pki = ceremony.bootstrap(tmp_path, h.passphrase, "p384", class1_urls=h.urls_for(1))
    ca = pki.issuing_ca(3)
    req = ApprovedRequest("r", "m", 3, "server", h.csr(ec_key), {}, ["www.example.org"], [], [], 90)
    prof = profiles.get_profile("server")
    tbs = issuance.prepare_certificate(
        req, ca, prof, h.urls_for(3), dt.datetime.now(dt.UTC), 12345678901234567890
    )
    result = lint.PreIssuanceLinter().lint_tbs(tbs, prof, ca.key_algorithm)
    assert result.errors == []
    assert getattr(issuance.sign_certificate(tbs, ca).signature_hash_algorithm, "name", None) == "sha384"


def test_a_hundred_subject_alt_names_are_issued(issue) -> None:
    names = [f"h{i}.example.org" for i in range(100)]
    issued = issue(3, "server", dns_names=names, subject={"CN": names[0]})
    san = issued.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == names
    assert not issued.lint_result.errors
