"""The CA's one key policy: which subject public keys it certifies.

Registration (the RA), the signer (defence in depth) and the ACME front end all ask
`check_public_key()`; none of them keeps a rule of its own, so what the RA approves is exactly
what the signer will sign (Boulder keeps one `goodkey` for the same reason).

The rules, and where they come from:

* RSA: modulus of 2048..8192 bits and a multiple of 8 (Baseline Requirements 6.1.5: at least 2048
  bits and divisible by 8), public exponent 65537 (BR 6.1.6 allows any odd exponent from 65537;
  this CA takes the one every library generates, so a bad exponent is a sign of a broken tool).
* ECDSA: the NIST curves P-256 and P-384 (BR 6.1.5). P-521 is refused: BR 7.1.3.1.2 names no
  signature algorithm for it and several relying parties reject it.
* Everything else (EdDSA, DSA, unknown types) is refused: the BRs allow none of them for TLS.
* RSA keys with a known weakness are refused (`known_weak_key`), found by `badkeys`: ROCA
  (CVE-2017-15361), primes close enough for Fermat's method, a prime shared with keys in badkeys' data,
  small prime factors, a small private exponent (Wiener), factorable zero-byte patterns, invalid values.
  BR 6.1.1.3 asks the CA to refuse keys it knows to be weak. badkeys' *blocklists* (Debian's
  CVE-2008-0166 keys among them) are data it downloads (`badkeys --update-bl`); they are not part of
  the package and are not checked here.
* A CSR's self-signature must use SHA-256, SHA-384 or SHA-512 (`csr_signature_problem`): a SHA-1 or
  MD5 self-signature proves little (chosen-prefix collisions), and the CA's library will not verify
  them, so they are refused for that reason and not as "signature invalid". The BRs allow no SHA-1
  in what the CA itself signs (7.1.3.2); this CA asks the same of what it is asked to sign.

The answer is a machine-readable `code` (what the signer publishes in `cert.rejected` details and
the RA in its refusal) with a sentence for the person who made the key.
"""

from __future__ import annotations

import dataclasses
from typing import Final, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

MIN_RSA_BITS: Final = 2048
MAX_RSA_BITS: Final = 8192
RSA_EXPONENT: Final = 65537
ALLOWED_CURVES: Final = {"secp256r1": "P-256", "secp384r1": "P-384"}
_WHAT_TO_USE: Final = f"use RSA ({MIN_RSA_BITS}..{MAX_RSA_BITS} bits, a multiple of 8) or EC P-256/P-384"
CSR_SIGNATURE_HASHES: Final = (hashes.SHA256, hashes.SHA384, hashes.SHA512)

ProblemCode = Literal[
    "rsa_too_small",
    "rsa_too_large",
    "rsa_size_not_multiple_of_8",
    "rsa_exponent",
    "ec_curve",
    "key_type",
    "known_weak_key",
]


@dataclasses.dataclass(frozen=True)
class KeyProblem:
    """One reason a key is refused: `code` for machines, `message` for people."""

    code: ProblemCode
    message: str


@dataclasses.dataclass(frozen=True)
class KeyVerdict:
    """The policy's answer for one key: what it is (e.g. "RSA-2048", "EC P-256") and every problem."""

    description: str
    problems: tuple[KeyProblem, ...]

    @property
    def acceptable(self) -> bool:
        return not self.problems

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(p.code for p in self.problems)

    @property
    def messages(self) -> tuple[str, ...]:
        return tuple(p.message for p in self.problems)


def check_public_key(key: object) -> KeyVerdict:
    """Judge a `cryptography` public key object against the CA's key policy."""
    if isinstance(key, rsa.RSAPublicKey):
        return _check_rsa(key)
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = key.curve.name
        if curve in ALLOWED_CURVES:
            return KeyVerdict(f"EC {ALLOWED_CURVES[curve]}", ())
        return KeyVerdict(f"EC {curve}", (KeyProblem("ec_curve", f"elliptic curve {curve} is not allowed: "
                                                                 "use P-256 or P-384"),))
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        kind = "EdDSA"
    elif isinstance(key, dsa.DSAPublicKey):
        kind = "DSA"
    else:
        kind = "unknown"
    noun = {"unknown": "unsupported key type", "EdDSA": "EdDSA keys are not supported"}.get(
        kind, f"{kind} keys are not allowed")
    return KeyVerdict(kind, (KeyProblem("key_type", f"{noun}: {_WHAT_TO_USE}"),))


def _check_rsa(key: rsa.RSAPublicKey) -> KeyVerdict:
    bits = key.key_size
    exponent = key.public_numbers().e
    problems: list[KeyProblem] = []
    if bits < MIN_RSA_BITS:
        problems.append(KeyProblem("rsa_too_small", f"RSA key of {bits} bits is too weak: "
                                                    f"at least {MIN_RSA_BITS} bits are required"))
    elif bits > MAX_RSA_BITS:
        problems.append(KeyProblem("rsa_too_large", f"RSA key of {bits} bits is larger than the "
                                                    f"supported {MAX_RSA_BITS} bits"))
    elif bits % 8:
        # BR 6.1.5: "the modulus size, when encoded, is at least 2048 bits, and the modulus size, in
        # bits, is evenly divisible by 8".
        problems.append(KeyProblem("rsa_size_not_multiple_of_8", f"RSA key of {bits} bits is not allowed: "
                                                                 "the size must be a multiple of 8 bits"))
    if exponent != RSA_EXPONENT:
        problems.append(KeyProblem("rsa_exponent", f"RSA public exponent {exponent} is not allowed: "
                                                   f"it must be {RSA_EXPONENT}"))
    if bits <= MAX_RSA_BITS:  # larger keys are refused anyway; the checks' cost grows with the size
        problems += _known_weaknesses(key.public_numbers().n, exponent)
    return KeyVerdict(f"RSA-{bits}", tuple(problems))


# badkeys' checks that need no downloaded data, and what each finding means for the key's owner.
WEAKNESS_CHECKS: Final = {
    "roca": "it was generated by a library with the ROCA flaw (CVE-2017-15361), so it can be factored",
    "fermat": "its two primes are so close that Fermat's method factors it",
    "sharedprimes": "it shares a prime factor with known broken keys",
    "smallfactors": "its modulus has small prime factors (the key is corrupt)",
    "smalld": "its private exponent is small enough for Wiener's attack",
    "rsapoly": "its modulus has a zero-byte pattern that lets it be factored",
    "rsainvalid": "its modulus or exponent is invalid",
}


def _known_weaknesses(n: int, e: int) -> list[KeyProblem]:
    from badkeys.checks import checkrsa  # imported on first use: it loads gmpy2 and its prime tables

    found = checkrsa(n, e=e, checks=list(WEAKNESS_CHECKS))
    return [KeyProblem("known_weak_key", f"this RSA key has a known weakness: {WEAKNESS_CHECKS[name]}; "
                                         "make a new key with an up-to-date tool")
            for name in WEAKNESS_CHECKS if name in found]


def csr_signature_problem(csr: x509.CertificateSigningRequest) -> str | None:
    """Why the CSR's self-signature algorithm is refused, or None when it is one the CA accepts.
    Asked before the signature is verified, so a SHA-1 CSR is refused for what it is."""
    try:
        algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return f"the CSR is signed with an unsupported algorithm ({csr.signature_algorithm_oid.dotted_string})"
    if algorithm is None or isinstance(algorithm, CSR_SIGNATURE_HASHES):
        return None  # None: EdDSA, whose key the key policy refuses with its own message
    shown = {"sha1": "SHA-1", "md5": "MD5", "sha224": "SHA-224"}.get(algorithm.name, algorithm.name.upper())
    return (f"the CSR is signed with {shown}, which this CA does not accept: sign it with SHA-256 or "
            "stronger (e.g. openssl req -sha256)")
