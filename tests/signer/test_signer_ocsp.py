"""OCSP: requests made by ``openssl ocsp`` are answered by the CA's delegated signer, and openssl
verifies the answers (good / revoked with reason / unknown), for one or several certificates;
bad requests get the RFC 6960 error statuses; pkilint's OCSP linter finds nothing to report."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as x509_ocsp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.signer.ca import ceremony, ocsp, revocation

Status = x509_ocsp.OCSPResponseStatus


def lookup_from(
    table: dict[int, revocation.CertificateStatus],
) -> Callable[[int], revocation.CertificateStatus]:
    return lambda serial: table.get(serial, revocation.UNKNOWN)


@pytest.fixture(scope="module")
def leaves(issue):
    return {
        "good": issue(3, "server", dns_names=["good.example.org"]).certificate,
        "revoked": issue(3, "client", emails=["gone@example.org"]).certificate,
        "stranger": issue(3, "server", dns_names=["stranger.example.org"]).certificate,
        "class1": issue(1, "server", dns_names=["one.example.org"]).certificate,
    }


@pytest.fixture(scope="module")
def revoked_at() -> dt.datetime:
    return dt.datetime(2026, 11, 20, 8, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def class3_responder(pki, leaves, revoked_at) -> ocsp.OCSPResponder:
    table: dict[int, revocation.CertificateStatus] = {
        leaves["good"].serial_number: revocation.GOOD,
        leaves["revoked"].serial_number: revocation.Revoked(revoked_at, x509.ReasonFlags.key_compromise),
    }
    return ocsp.OCSPResponder(pki.issuing_ca(3), lookup_from(table))


def openssl_request(
    tool, h, pairs: list[tuple[x509.Certificate, x509.Certificate]], nonce: bool = True
) -> bytes:
    """``openssl ocsp -issuer I -cert C ... -reqout``: a request exactly as a relying party makes it."""
    args: list[str] = []
    for n, (issuer, cert) in enumerate(pairs):
        args += [
            "-issuer",
            str(tool.write(f"issuer{n}.pem", h.pem(issuer))),
            "-cert",
            str(tool.write(f"cert{n}.pem", h.pem(cert))),
        ]
    tool.openssl("ocsp", *args, *([] if nonce else ["-no_nonce"]), "-reqout", "req.der", check=True)
    return (tool.workdir / "req.der").read_bytes()


def openssl_check(
    tool,
    h,
    pki,
    response: bytes,
    issuer: x509.Certificate,
    certs: list[x509.Certificate],
    request: bytes | None = None,
):
    """``openssl ocsp -respin``: verifies the signature and the delegated signer up to Class 1 and
    prints each certificate's status. With ``request``, first ``-reqin`` checks the nonce echo
    (openssl cannot combine that with ``-cert``, which builds a new request with a new nonce)."""
    resp = tool.write("resp.der", response)
    trust = [
        "-CAfile",
        tool.write("root.pem", h.pem(pki.root)),
        "-verify_other",
        tool.write("class3.pem", h.pem(pki.issuing_ca(3).certificate)),
    ]
    if request is not None:
        nonce_check = tool.openssl("ocsp", "-reqin", tool.write("req.der", request), "-respin", resp, *trust)
        assert nonce_check.returncode == 0, nonce_check.stderr
        assert "Response verify OK" in nonce_check.stderr
    args: list[str] = []
    for n, cert in enumerate(certs):
        args += ["-cert", str(tool.write(f"check{n}.pem", h.pem(cert)))]
    return tool.openssl(
        "ocsp",
        "-respin",
        resp,
        "-no_nonce",
        "-issuer",
        tool.write("issuer.pem", h.pem(issuer)),
        *args,
        *trust,
    )


def test_good_and_revoked_verify_with_openssl(class3_responder, leaves, pki, tool, h, revoked_at) -> None:
    class3 = pki.issuing_ca(3).certificate
    for name, expected in (("good", "good"), ("revoked", "revoked")):
        request = openssl_request(tool, h, [(class3, leaves[name])])
        response = class3_responder.respond(request)
        out = openssl_check(tool, h, pki, response, class3, [leaves[name]], request)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Response verify OK" in out.stderr
        assert f"check0.pem: {expected}" in out.stdout
        if expected == "revoked":
            assert "Reason: keyCompromise" in out.stdout
            assert "Revocation Time: Nov 20 08:30:00 2026 GMT" in out.stdout

        parsed = x509_ocsp.load_der_ocsp_response(response)
        assert parsed.response_status is Status.SUCCESSFUL
        assert (
            parsed.responder_key_hash
            == x509.SubjectKeyIdentifier.from_public_key(
                pki.issuing_ca(3).ocsp_signer.certificate.public_key()
            ).digest
        )
        assert parsed.certificates == [pki.issuing_ca(3).ocsp_signer.certificate]
        assert parsed.next_update_utc is not None
        assert parsed.next_update_utc - parsed.this_update_utc == dt.timedelta(hours=24)
        assert parsed.serial_number == leaves[name].serial_number
        # openssl sent a nonce; we echoed it.
        request_nonce = x509_ocsp.load_der_ocsp_request(request).extensions.get_extension_for_class(
            x509.OCSPNonce
        )
        assert parsed.extensions.get_extension_for_class(x509.OCSPNonce).value == request_nonce.value


def test_unknown_serial_is_unknown_never_good(class3_responder, leaves, pki, tool, h) -> None:
    class3 = pki.issuing_ca(3).certificate
    response = class3_responder.respond(openssl_request(tool, h, [(class3, leaves["stranger"])]))
    out = openssl_check(tool, h, pki, response, class3, [leaves["stranger"]])
    assert out.returncode == 0 and "check0.pem: unknown" in out.stdout


def test_several_certificates_in_one_request(class3_responder, leaves, pki, tool, h) -> None:
    class3 = pki.issuing_ca(3).certificate
    request = openssl_request(
        tool,
        h,
        [
            (class3, leaves["good"]),
            (class3, leaves["revoked"]),
            (class3, leaves["stranger"]),
        ],
    )
    response = class3_responder.respond(request)
    parsed = x509_ocsp.load_der_ocsp_response(response)
    statuses = [(r.serial_number, r.certificate_status) for r in parsed.responses]
    assert statuses == [
        (leaves["good"].serial_number, x509_ocsp.OCSPCertStatus.GOOD),
        (leaves["revoked"].serial_number, x509_ocsp.OCSPCertStatus.REVOKED),
        (leaves["stranger"].serial_number, x509_ocsp.OCSPCertStatus.UNKNOWN),
    ]
    out = openssl_check(
        tool, h, pki, response, class3, [leaves["good"], leaves["revoked"], leaves["stranger"]], request
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "check0.pem: good" in out.stdout
    assert "check1.pem: revoked" in out.stdout
    assert "check2.pem: unknown" in out.stdout


def test_a_request_mixing_issuers_is_unauthorized(class3_responder, leaves, pki, tool, h) -> None:
    """Our delegate cannot vouch for Class 1's certificate, and openssl rejects a response whose
    SingleResponses name issuers other than the delegate's."""
    request = openssl_request(
        tool, h, [(pki.issuing_ca(3).certificate, leaves["good"]), (pki.root, leaves["class1"])]
    )
    assert (
        x509_ocsp.load_der_ocsp_response(class3_responder.respond(request)).response_status
        is Status.UNAUTHORIZED
    )


def test_an_issuer_we_do_not_serve_is_unauthorized(class3_responder, leaves, pki, tool, h) -> None:
    request = openssl_request(tool, h, [(pki.root, leaves["class1"])])
    parsed = x509_ocsp.load_der_ocsp_response(class3_responder.respond(request))
    assert parsed.response_status is Status.UNAUTHORIZED


def test_dispatch_across_both_cas(pki, leaves, tool, h) -> None:
    responders = [
        ocsp.OCSPResponder(pki.issuing_ca(1), lookup_from({leaves["class1"].serial_number: revocation.GOOD})),
        ocsp.OCSPResponder(pki.issuing_ca(3), lookup_from({leaves["good"].serial_number: revocation.GOOD})),
    ]
    response = ocsp.respond(responders, openssl_request(tool, h, [(pki.root, leaves["class1"])]))
    out = tool.openssl(
        "ocsp",
        "-respin",
        tool.write("r.der", response),
        "-no_nonce",
        "-issuer",
        tool.write("i.pem", h.pem(pki.root)),
        "-cert",
        tool.write("c.pem", h.pem(leaves["class1"])),
        "-CAfile",
        tool.write("a.pem", h.pem(pki.root)),
    )
    assert out.returncode == 0 and "c.pem: good" in out.stdout and "Response verify OK" in out.stderr
    response = ocsp.respond(
        responders, openssl_request(tool, h, [(pki.issuing_ca(3).certificate, leaves["good"])])
    )
    assert x509_ocsp.load_der_ocsp_response(response).certificate_status is x509_ocsp.OCSPCertStatus.GOOD
    foreign = ceremony.bootstrap(tool.workdir / "foreign", h.passphrase, "p256", class1_urls=h.urls_for(1))
    response = ocsp.respond(responders, openssl_request(tool, h, [(foreign.root, leaves["class1"])]))
    assert x509_ocsp.load_der_ocsp_response(response).response_status is Status.UNAUTHORIZED


def test_openssl_rejects_a_signer_of_the_wrong_ca(pki, leaves, tool, h) -> None:
    """Guards the test itself: openssl really checks that the delegate belongs to the issuer."""
    wrong = dataclasses.replace(pki.issuing_ca(3), ocsp_signer=pki.issuing_ca(1).ocsp_signer)
    responder = ocsp.OCSPResponder(wrong, lookup_from({leaves["good"].serial_number: revocation.GOOD}))
    class3 = pki.issuing_ca(3).certificate
    response = responder.respond(openssl_request(tool, h, [(class3, leaves["good"])]))
    out = openssl_check(tool, h, pki, response, class3, [leaves["good"]])
    assert "Response Verify Failure" in out.stderr


@pytest.mark.parametrize(
    ("request_der", "status"),
    [
        (b"", Status.MALFORMED_REQUEST),
        (b"garbage", Status.MALFORMED_REQUEST),
        (b"\x30\x00", Status.MALFORMED_REQUEST),
        (b"\x30\x03\x30\x01\x00", Status.MALFORMED_REQUEST),
        (b"\x30" * 70000, Status.MALFORMED_REQUEST),
    ],
)
def test_malformed_requests(class3_responder, request_der: bytes, status) -> None:
    assert x509_ocsp.load_der_ocsp_response(class3_responder.respond(request_der)).response_status is status


def _request(cert: x509.Certificate, issuer: x509.Certificate, nonce: bytes | None = None) -> bytes:
    builder = x509_ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def test_trailing_bytes_empty_list_and_bad_nonces_are_malformed(class3_responder, leaves, pki) -> None:
    class3 = pki.issuing_ca(3).certificate
    good = _request(leaves["good"], class3)
    for bad in (
        good + b"\x00",
        _request(leaves["good"], class3, nonce=b"x" * 33),
        _request(leaves["good"], class3, b""),
    ):
        assert x509_ocsp.load_der_ocsp_response(class3_responder.respond(bad)).response_status is (
            Status.MALFORMED_REQUEST
        )
    # SHA-256 CertIDs work as well as openssl's SHA-1 ones.
    parsed = x509_ocsp.load_der_ocsp_response(class3_responder.respond(good))
    assert parsed.certificate_status is x509_ocsp.OCSPCertStatus.GOOD
    assert parsed.hash_algorithm.name == "sha256"


def test_a_failing_lookup_is_an_internal_error(pki, leaves) -> None:
    def broken(serial: int) -> revocation.CertificateStatus:
        raise RuntimeError("database down")

    responder = ocsp.OCSPResponder(pki.issuing_ca(3), broken)
    response = responder.respond(_request(leaves["good"], pki.issuing_ca(3).certificate))
    assert x509_ocsp.load_der_ocsp_response(response).response_status is Status.INTERNAL_ERROR


def test_validity_is_bounded_by_the_brs(pki) -> None:
    with pytest.raises(ValueError, match="between 8 hours and 10 days"):
        ocsp.OCSPResponder(pki.issuing_ca(3), lookup_from({}), validity=dt.timedelta(days=11))


def test_responses_pass_pkilint(class3_responder, leaves, pki, tool, h) -> None:
    class3 = pki.issuing_ca(3).certificate
    request = openssl_request(tool, h, [(class3, leaves["good"]), (class3, leaves["revoked"])])
    path = tool.write("resp.der", class3_responder.respond(request))
    out = tool.run(*h.pkilint("lint_ocsp_response"), "lint", "-s", "WARNING", path)
    assert out.returncode == 0, out.stdout


def test_rsa_hierarchy_end_to_end(tmp_path, tool, h) -> None:
    """The RSA paths: sha256WithRSAEncryption on leaf, CRL and OCSP response, verified by openssl."""
    import datetime as _dt

    from cryptography.hazmat.primitives.asymmetric import rsa

    from services.signer.ca import crl, issuance, lint, profiles

    pki = ceremony.bootstrap(tmp_path / "ca", h.passphrase, "rsa2048", class1_urls=h.urls_for(1))
    ca = pki.issuing_ca(1)
    key = rsa.generate_private_key(65537, 2048)
    req = issuance.ApprovedRequest("r", "m", 1, "server", h.csr(key), {}, ["www.example.org"], [], [], 90)
    prof = profiles.get_profile("server")
    tbs = issuance.prepare_certificate(req, ca, prof, h.urls_for(1), _dt.datetime.now(_dt.UTC), 4242)
    assert lint.PreIssuanceLinter().lint_tbs(tbs, prof, ca.key_algorithm).errors == []
    leaf = issuance.sign_certificate(tbs, ca)
    root = tool.write("root.pem", h.pem(pki.root))
    leaf_path = tool.write("leaf.pem", h.pem(leaf))
    tool.openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", root, leaf_path, check=True)

    crl_der = crl.build_crl(
        ca, [(4242, _dt.datetime.now(_dt.UTC), "superseded")], crl_number=1, now=_dt.datetime.now(_dt.UTC)
    )
    out = tool.openssl(
        "crl", "-inform", "DER", "-in", tool.write("c.crl", crl_der), "-CAfile", root, "-noout", "-verify"
    )
    assert out.returncode == 0 and "verify OK" in out.stderr + out.stdout

    responder = ocsp.OCSPResponder(
        ca, lookup_from({4242: revocation.Revoked(_dt.datetime.now(_dt.UTC), None)})
    )
    request = openssl_request(tool, h, [(pki.root, leaf)])
    response = responder.respond(request)
    out = tool.openssl(
        "ocsp",
        "-respin",
        tool.write("r.der", response),
        "-no_nonce",
        "-issuer",
        root,
        "-cert",
        leaf_path,
        "-CAfile",
        root,
    )
    assert out.returncode == 0 and "Response verify OK" in out.stderr and "leaf.pem: revoked" in out.stdout
    assert "Reason" not in out.stdout  # unspecified: no reason given
    parsed = x509_ocsp.load_der_ocsp_response(response)
    assert parsed.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.11"


@settings(
    max_examples=300,
    derandomize=True,  # the same 300 cases in CI every time (20,000 random ones passed when written)
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_bytes_get_an_ocsp_response_never_an_exception(class3_responder, leaves, pki, data) -> None:
    """Arbitrary bytes, and valid requests with bytes flipped or cut, always get a well-formed answer."""
    valid = _request(leaves["good"], pki.issuing_ca(3).certificate, nonce=b"n" * 16)
    choice = data.draw(st.sampled_from(["random", "flip", "truncate"]))
    if choice == "random":
        blob = data.draw(st.binary(max_size=600))
    elif choice == "flip":
        index = data.draw(st.integers(0, len(valid) - 1))
        blob = valid[:index] + bytes([valid[index] ^ data.draw(st.integers(1, 255))]) + valid[index + 1 :]
    else:
        blob = valid[: data.draw(st.integers(0, len(valid) - 1))]
    parsed = x509_ocsp.load_der_ocsp_response(class3_responder.respond(blob))
    assert parsed.response_status in {Status.SUCCESSFUL, Status.MALFORMED_REQUEST, Status.UNAUTHORIZED}
