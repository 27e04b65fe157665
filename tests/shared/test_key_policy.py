"""One key policy for the RA and the signer: what registration approves the signer signs, and the
signer's `weak_key` comes from the policy's verdict, not from words in a message."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.registration.csr import parse_csr
from services.registration.issuance_policy import IssuancePolicy, MemberStanding
from services.signer.ca.issuance import CSRRejected, check_csr
from services.signer.signing import _rejection_reason
from shared.key_policy import check_public_key
from tests.registration.csrs import build_csr, fermat_key

MEMBER = MemberStanding(
    member_id="m1", real_name="Ada Lovelace", points=0, is_assurer=False, codesign_enabled=False,
    verified_emails=frozenset({"ada@example.org"}), verified_domains={"example.org": "email"},
)


@functools.cache
def rsa_key(bits: int, exponent: int = 65537) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=exponent, key_size=bits)


CURVES: dict[str, ec.EllipticCurve] = {
    "secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1(), "secp521r1": ec.SECP521R1(),
    "secp256k1": ec.SECP256K1(), "secp224r1": ec.SECP224R1(),
}


@functools.cache
def ec_key(curve: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(CURVES[curve])


def test_rsa_size_not_a_multiple_of_8_is_refused_by_both_with_its_code() -> None:
    key = rsa_key(2052)
    assert key.key_size == 2052
    assert check_public_key(key.public_key()).codes == ("rsa_size_not_multiple_of_8",)
    csr = parse_csr(build_csr(dns=["www.example.org"], key=key))
    assert csr.key_problem_codes == ("rsa_size_not_multiple_of_8",)
    assert not IssuancePolicy().decide("server", csr, MEMBER).approved
    with pytest.raises(CSRRejected) as caught:
        check_csr(csr.pem)
    assert caught.value.code == "weak_key"
    assert "rsa_size_not_multiple_of_8" in caught.value.reason


def test_unparsable_key_is_csr_invalid_not_weak_key() -> None:
    """A bad CSR whose error text mentions a key is still csr_invalid: the code, not the words, decides."""
    with pytest.raises(CSRRejected) as caught:
        check_csr("-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEga2V5\n-----END CERTIFICATE REQUEST-----\n")
    assert caught.value.code == "csr_invalid"
    assert _rejection_reason(caught.value) == "csr_invalid"
    assert _rejection_reason(CSRRejected("csr public key cannot be parsed")) == "csr_invalid"


@pytest.mark.parametrize(
    ("key", "codes"),
    [
        (lambda: rsa_key(1024), ("rsa_too_small",)),
        (lambda: rsa_key(2048, 3), ("rsa_exponent",)),
        (lambda: ec_key("secp521r1"), ("ec_curve",)),
        (lambda: ed25519.Ed25519PrivateKey.generate(), ("key_type",)),
        (lambda: dsa.generate_private_key(2048), ("key_type",)),
        (lambda: ec_key("secp256r1"), ()),
        (lambda: ec_key("secp384r1"), ()),
        (lambda: rsa_key(3072), ()),
    ],
)
def test_policy_codes(key, codes) -> None:  # type: ignore[no-untyped-def]
    verdict = check_public_key(key().public_key())
    assert verdict.codes == codes
    assert verdict.acceptable is (codes == ())
    assert len(verdict.messages) == len(codes)


rsa_sizes = st.one_of(st.integers(1024, 4104), st.sampled_from([2040, 2047, 2048, 2049, 2056, 3072, 4096]))
keys = st.one_of(
    st.builds(rsa_key, rsa_sizes, st.sampled_from([3, 65537])),
    st.builds(ec_key, st.sampled_from(sorted(CURVES))),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=keys, profile=st.sampled_from(["server", "client"]))
def test_the_ra_never_approves_what_the_signer_refuses(key, profile) -> None:  # type: ignore[no-untyped-def]
    pem = build_csr(dns=["www.example.org"] if profile == "server" else None,
                    emails=["ada@example.org"] if profile == "client" else None, key=key)
    decision = IssuancePolicy().decide(profile, parse_csr(pem), MEMBER)
    code: str | None = None
    try:
        check_csr(pem)
    except CSRRejected as exc:
        signer_ok, code = False, exc.code
    else:
        signer_ok = True
    assert decision.approved == signer_ok, (decision.reasons, code)
    if not signer_ok:
        assert code == "weak_key"


# -- known-weak keys (badkeys) ------------------------------------------------------------------------

BADKEYS = Path(__file__).resolve().parents[1] / "data" / "badkeys"


def _vector(name: str) -> object:
    text = (BADKEYS / name).read_text()
    block = re.search(r"-----BEGIN (?:RSA )?PUBLIC KEY-----.*?-----END (?:RSA )?PUBLIC KEY-----", text, re.S)
    assert block is not None, name
    return serialization.load_pem_public_key(block.group(0).encode())


@pytest.mark.parametrize(("vector", "words"), [
    ("rsa-roca.key", "ROCA flaw (CVE-2017-15361)"),
    ("rsa-fermat-pkcs8.key", "Fermat's method"),
    ("rsa-sharedprimes.key", "shares a prime factor"),
    ("rsa-smallfactors-corrupt.key", "small prime factors"),
    ("rsa-small-d.key", "Wiener's attack"),
    ("rsapoly32.key", "zero-byte pattern"),
])
def test_the_badkeys_test_vectors_are_refused_as_known_weak_and_say_why(vector: str, words: str) -> None:
    verdict = check_public_key(_vector(vector))
    assert "known_weak_key" in verdict.codes
    assert any(words in message for message in verdict.messages), verdict.messages


def test_a_sound_key_from_the_same_vectors_passes() -> None:
    assert check_public_key(_vector("rsa-ok.key")).acceptable


def test_a_key_with_close_primes_is_refused_by_the_ra_and_the_signer_with_the_same_code() -> None:
    """A real, working key (we hold its private half, so it signs a valid CSR) with Fermat-close primes."""
    pem = build_csr(dns=["www.example.org"], key=fermat_key())
    parsed = parse_csr(pem)  # key problems are part of the parsed request, for the policy to refuse
    assert parsed.key_problem_codes == ("known_weak_key",)
    assert not IssuancePolicy(365, 365, 365).decide("server", parsed, MEMBER).approved
    with pytest.raises(CSRRejected) as refused:
        check_csr(pem)
    assert refused.value.code == "weak_key" and "Fermat's method" in refused.value.reason
