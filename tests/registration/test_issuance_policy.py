"""The RA decision on CSRs: names must be covered, only CN reaches the subject, weak keys are refused."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.registration.csr import CsrProblem, parse_csr
from services.registration.issuance_policy import IssuancePolicy, MemberStanding
from shared import certificate_validity, dns_names
from tests.registration.csrs import build_csr

POLICY = IssuancePolicy()
VERIFIED = {"example.org": "email", "xn--bcher-kva.example": "dns_change"}
MEMBER = MemberStanding(
    member_id="m1",
    real_name="Ada Lovelace",
    points=0,
    is_assurer=False,
    codesign_enabled=False,
    verified_emails=frozenset({"ada@example.org"}),
    verified_domains=VERIFIED,
)
ASSURED = dataclasses.replace(MEMBER, points=50)

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True).filter(lambda s: "--" not in s)
covered_name = st.builds(
    lambda prefix, base, wild: ("*." if wild else "") + ".".join([*prefix, base]),
    st.lists(label, max_size=2),
    st.sampled_from(sorted(VERIFIED)),
    st.booleans(),
)
foreign_name = st.builds(lambda a, tld: f"{a}.{tld}", label, st.sampled_from(["com", "net", "example.com"]))
junk_text = st.text(
    st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters="\x7f"), min_size=1, max_size=40
)
ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=40)
extra_attributes = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["O", "OU", "L", "ST"]), junk_text),
        st.tuples(st.just("emailAddress"), ascii_text),
        st.tuples(st.just("serialNumber"), st.from_regex(r"[A-Za-z0-9 ]{1,20}", fullmatch=True)),
    ),
    max_size=5,
)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decide(profile: str, pem: str, member: MemberStanding = MEMBER):  # type: ignore[no-untyped-def]
    return POLICY.decide(profile, parse_csr(pem), member)


@FAST
@given(
    st.lists(st.one_of(covered_name, foreign_name), min_size=1, max_size=5),
    extra_attributes,
    st.one_of(st.none(), covered_name, foreign_name),
)
def test_every_approved_server_name_is_covered_and_every_uncovered_name_is_named(
    names: list[str], extras: list[tuple[str, str]], cn: str | None
) -> None:
    subject = ([("CN", cn)] if cn else []) + extras
    decision = decide("server", build_csr(subject=subject, dns=names))
    requested = [*([cn] if cn else []), *names]
    uncovered = [n for n in requested if not dns_names.is_covered(n, VERIFIED)]
    if uncovered:
        assert not decision.approved
        for name in uncovered:
            assert any(name in reason for reason in decision.reasons), (name, decision.reasons)
        return
    assert decision.approved, decision.reasons
    assert all(dns_names.is_covered(n, VERIFIED) for n in decision.dns_names)
    assert set(decision.dns_names) == set(requested)
    assert set(decision.subject) <= {"CN"}
    assert decision.subject.get("CN") == decision.dns_names[0]
    assert decision.emails == () and decision.cert_class == 1


@FAST
@given(extra_attributes, st.booleans())
def test_extra_subject_attributes_never_reach_a_client_subject(
    extras: list[tuple[str, str]], assured: bool
) -> None:
    member = ASSURED if assured else MEMBER
    pem = build_csr(subject=[("CN", "Anything I Like"), *extras], emails=["Ada@Example.org"])
    decision = decide("client", pem, member)
    assert decision.approved, decision.reasons
    assert set(decision.subject) <= {"CN", "GN", "SN"}
    assert decision.emails == ("ada@example.org",)
    if assured:
        assert decision.cert_class == 3
        assert decision.subject == {"CN": "Ada Lovelace", "GN": "Ada", "SN": "Lovelace"}
    else:
        assert decision.cert_class == 1 and decision.subject == {}  # no personal name, address in SAN only


def test_unicode_server_names_are_approved_as_a_labels() -> None:
    decision = decide(
        "server", build_csr(dns=["www.xn--bcher-kva.example"], subject=[("CN", "www.bücher.example")])
    )
    assert decision.approved, decision.reasons
    assert decision.dns_names == ("www.xn--bcher-kva.example",)


def test_wildcard_needs_its_base_domain_verified() -> None:
    member = dataclasses.replace(MEMBER, verified_domains={"www.example.org": "email"})
    decision = decide("server", build_csr(dns=["*.example.org"]), member)
    assert (
        not decision.approved and "*.example.org is not within a domain you have verified" in decision.reasons
    )
    assert decide("server", build_csr(dns=["*.example.org"])).approved


@pytest.mark.parametrize("method", ["website_change", "acme_http_01"])
def test_a_website_validation_authorizes_its_fqdn_alone(method: str) -> None:
    """BR 3.2.2.4.18 / 3.2.2.4.19: no names below the validated FQDN, no wildcard, without their own."""
    member = dataclasses.replace(MEMBER, verified_domains={"www.example.org": method})
    assert decide("server", build_csr(dns=["www.example.org"]), member).approved
    for name in ("shop.www.example.org", "*.www.example.org"):
        decision = decide("server", build_csr(dns=[name]), member)
        assert not decision.approved and f"{name} is not within a domain you have verified" in decision.reasons
    dns01 = dataclasses.replace(MEMBER, verified_domains={"www.example.org": "acme_dns_01"})
    assert decide("server", build_csr(dns=["*.www.example.org", "shop.www.example.org"]), dns01).approved


def test_client_addresses_must_be_verified_and_dns_names_are_refused() -> None:
    decision = decide("client", build_csr(emails=["eve@example.org"], dns=["example.org"]))
    assert not decision.approved
    assert "eve@example.org is not one of your verified email addresses" in decision.reasons
    assert "a client certificate cannot contain DNS names" in decision.reasons


def test_legacy_subject_email_is_used_when_there_is_no_san() -> None:
    decision = decide("client", build_csr(subject=[("emailAddress", "ada@example.org"), ("O", "ACME")]))
    assert decision.approved and decision.emails == ("ada@example.org",)
    assert decision.subject == {}


def test_codesign_only_for_assurers_with_code_signing_activated() -> None:
    pem = build_csr(subject=[("CN", "Ada")])
    assert decide("codesign", pem).reasons == ("code signing certificates are only issued to Assurers",)
    assurer = dataclasses.replace(MEMBER, points=100, is_assurer=True)
    assert decide("codesign", pem, assurer).reasons == (
        "code signing has not been activated for your account by support",
    )
    decision = decide("codesign", pem, dataclasses.replace(assurer, codesign_enabled=True))
    assert decision.approved and decision.subject == {"CN": "Ada Lovelace"} and decision.cert_class == 3


@pytest.mark.parametrize(
    "key, expected",
    [
        (rsa.generate_private_key(65537, 1024), "RSA key of 1024 bits is too weak"),
        (rsa.generate_private_key(3, 2048), "RSA public exponent 3 is not allowed"),
        (ec.generate_private_key(ec.SECP256K1()), "elliptic curve secp256k1 is not allowed"),
        (ec.generate_private_key(ec.SECP521R1()), "elliptic curve secp521r1 is not allowed"),
        (ed25519.Ed25519PrivateKey.generate(), "EdDSA keys are not supported"),
        (dsa.generate_private_key(2048), "DSA keys are not allowed"),
    ],
)
def test_weak_or_unsupported_keys_are_refused_with_the_reason(key, expected: str) -> None:  # type: ignore[no-untyped-def]
    pem = (
        build_csr(dns=["www.example.org"], key=key)
        if not isinstance(key, ed25519.Ed25519PrivateKey)
        else None
    )
    if pem is None:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        pem = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(key, None)
            .public_bytes(serialization.Encoding.PEM)
            .decode()
        )
    decision = decide("server", pem)
    assert not decision.approved
    assert any(expected in reason for reason in decision.reasons), decision.reasons


def test_good_keys_pass() -> None:
    for key in (rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP384R1())):
        assert decide("server", build_csr(dns=["example.org"], key=key)).approved


@pytest.mark.parametrize(
    "pem, fragment",
    [
        ("garbage", "is not PEM"),
        ("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "not a readable"),
        ("x" * 70000, "larger than"),
    ],
)
def test_unreadable_input_names_the_problem(pem: str, fragment: str) -> None:
    with pytest.raises(CsrProblem) as caught:
        parse_csr(pem)
    assert fragment in caught.value.reasons[0]


def test_a_tampered_csr_fails_its_signature_check() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    pem = build_csr(dns=["example.org"])
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # flip a bit of the signature
    import base64

    body = base64.encodebytes(bytes(der)).decode()
    tampered = f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(CsrProblem) as caught:
        parse_csr(tampered)
    assert "signature" in caught.value.reasons[0]


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_in_a_pem_wrapper_never_escape_as_other_exceptions(blob: bytes) -> None:
    import base64

    pem = (
        "-----BEGIN CERTIFICATE REQUEST-----\n"
        + base64.encodebytes(blob).decode()
        + "-----END CERTIFICATE REQUEST-----\n"
    )
    try:
        parse_csr(pem)
    except CsrProblem as exc:
        assert exc.reasons


def test_an_assured_member_may_choose_class_1_and_gets_the_highest_by_default() -> None:
    pem = build_csr(dns=["www.example.org"])
    assert POLICY.decide("server", parse_csr(pem), ASSURED).cert_class == 3
    chosen = POLICY.decide("server", parse_csr(pem), ASSURED, requested_class=1)
    assert chosen.approved and chosen.cert_class == 1
    assert POLICY.decide("server", parse_csr(pem), ASSURED, requested_class=3).cert_class == 3


def test_an_unassured_member_asking_for_class_3_is_refused_not_downgraded() -> None:
    pem = build_csr(dns=["www.example.org"])
    decision = POLICY.decide("server", parse_csr(pem), MEMBER, requested_class=3)
    assert not decision.approved
    assert any("only issued to Assured members" in r for r in decision.reasons)
    assert POLICY.decide("server", parse_csr(pem), MEMBER, requested_class=1).cert_class == 1
    assert not POLICY.decide("server", parse_csr(pem), MEMBER, requested_class=2).approved


def test_an_assured_member_choosing_class_1_for_a_client_certificate_gets_no_name() -> None:
    pem = build_csr(emails=["ada@example.org"])
    decision = POLICY.decide("client", parse_csr(pem), ASSURED, requested_class=1)
    assert decision.approved and decision.cert_class == 1 and decision.subject == {}


@pytest.mark.parametrize(
    ("now", "server_days"),
    [
        (dt.datetime(2026, 1, 10, tzinfo=dt.UTC), 365),  # the BR allowed 397: the RA's 365 stands
        (dt.datetime(2026, 12, 3, tzinfo=dt.UTC), 199),  # SC-081: 200 days from 2026-03-15
        (dt.datetime(2027, 6, 1, tzinfo=dt.UTC), 99),
        (dt.datetime(2029, 6, 1, tzinfo=dt.UTC), 46),
    ],
)
def test_the_decision_names_the_days_the_signer_will_issue_not_the_configured_setting(
    now: dt.datetime, server_days: int
) -> None:
    server = POLICY.decide("server", parse_csr(build_csr(dns=["www.example.org"])), MEMBER, now=now)
    assert server.validity_days == server_days
    assert server_days == min(365, certificate_validity.max_validity_days("server", now))
    client = POLICY.decide("client", parse_csr(build_csr(emails=["ada@example.org"])), MEMBER, now=now)
    assert client.approved, client.reasons
    assert client.validity_days == 365  # the CA's own maximum for client certificates
