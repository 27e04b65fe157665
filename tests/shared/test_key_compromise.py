"""The one rule for naming keys and for what proves possession of a compromised one."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.key_compromise import ProofRefused, csr_spki_sha256, proven_key, spki_sha256
from tests.registration.csrs import build_csr, compromise_proof, self_signed


def test_a_key_has_the_same_name_in_a_csr_a_certificate_and_a_proof() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = spki_sha256(key.public_key())
    assert len(name) == 64 and name == name.lower()
    assert csr_spki_sha256(build_csr(dns=["www.example.org"], key=key)) == name
    assert proven_key(compromise_proof(key)) == name
    assert spki_sha256(ec.generate_private_key(ec.SECP256R1()).public_key()) != name


def test_an_rsa_proof_names_its_key_and_the_statement_ignores_case() -> None:
    key = rsa.generate_private_key(65537, 2048)
    proof = build_csr(subject=[("CN", "Key Compromise")], key=key)
    assert proven_key(proof) == spki_sha256(key.public_key())


def test_a_proof_with_an_altered_signature_is_refused() -> None:
    pem = compromise_proof(ec.generate_private_key(ec.SECP256R1()))
    body = "".join(pem.strip().splitlines()[1:-1])
    der = bytearray(base64.b64decode(body))
    der[-3] ^= 0x01  # inside the signature
    altered = ("-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(bytes(der)).decode()
               + "-----END CERTIFICATE REQUEST-----\n")
    with pytest.raises(ProofRefused, match=r"signature is invalid|cannot be read"):
        proven_key(altered)


@pytest.mark.parametrize("text", ["", "key compromise", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                                                         "-----END CERTIFICATE REQUEST-----\n"])
def test_what_is_not_a_csr_is_refused_as_such(text: str) -> None:
    with pytest.raises(ProofRefused, match="not a PEM certificate request"):
        proven_key(text)


def test_a_certificate_is_not_a_proof() -> None:
    pem, _ = self_signed("www.example.org", serial=7)
    with pytest.raises(ProofRefused):
        proven_key(pem)


def test_an_oversized_proof_is_refused_before_parsing() -> None:
    with pytest.raises(ProofRefused, match="larger than"):
        proven_key("A" * 70000)


def test_a_certificate_and_its_key_have_the_same_name() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    _, certificate = self_signed("www.example.org", serial=8, key=key)
    assert spki_sha256(certificate.public_key()) == spki_sha256(key.public_key())
