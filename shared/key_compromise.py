"""Compromised keys: how a key is named, and what proves that someone holds it.

The RA (registration), the signer and, later, ACME's revokeCert must agree on both, so the rules
live here once.

* A key is named by the SHA-256 of its DER SubjectPublicKeyInfo, in lower-case hex
  (`spki_sha256`): the same value whatever certificate or CSR carries the key. The RA puts it in
  each signed `csr.approved`; the signer checks it against the CSR, refuses blocked ones and
  keeps it with every certificate it issues, so it can find all certificates of a key.
* Proof of possession (BR 4.9.1.1: the CA revokes within 24 hours when "the CA obtains evidence
  that the Subscriber's Private Key ... suffered a Key Compromise"; BR 4.9.3 asks the CA to say how
  to report it): a CSR signed with the compromised key whose subject is exactly
  `CN=key compromise`. Anyone may send one; no account is needed, since whoever has the key can
  make it. The fixed subject keeps a CSR made for another purpose (one a member sent to get a
  certificate, say) from counting as a report. A proof sent twice, or to another CA too, only
  asks again for what its maker asked: that the key be revoked and blocked.

    openssl req -new -key compromised.key -subj "/CN=key compromise" -sha256 -out proof.csr
"""

from __future__ import annotations

import hashlib
import re

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from shared.key_policy import csr_signature_problem

STATEMENT = "key compromise"
"""The subject commonName of a proof CSR (compared without regard to case)."""
MAX_PROOF_PEM_CHARS = 65536
SPKI_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ProofRefused(ValueError):
    """The text is not a proof of possession; the message says why, for the person who sent it."""


def spki_sha256(public_key: object) -> str:
    """The key's name: SHA-256 of its DER SubjectPublicKeyInfo, lower-case hex."""
    der = public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def csr_spki_sha256(csr_pem: str) -> str | None:
    """The key name of a PEM CSR, or None when it cannot be read (the key policy refuses it then)."""
    try:
        return spki_sha256(x509.load_pem_x509_csr(csr_pem.encode("utf-8", "replace")).public_key())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def proven_key(proof_pem: str) -> str:
    """The `spki_sha256` of the key that signed `proof_pem`, a proof CSR; raises ProofRefused."""
    if len(proof_pem) > MAX_PROOF_PEM_CHARS:
        raise ProofRefused(f"the proof is larger than {MAX_PROOF_PEM_CHARS} characters")
    try:
        csr = x509.load_pem_x509_csr(proof_pem.strip().encode("utf-8", "replace"))
    except ValueError:
        raise ProofRefused("the proof is not a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)") \
            from None
    problem = csr_signature_problem(csr)
    if problem is not None:
        raise ProofRefused(problem)
    try:
        signed_by_its_key = csr.is_signature_valid
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ProofRefused(f"the proof's key or signature cannot be read: {exc}") from None
    if not signed_by_its_key:
        raise ProofRefused("the proof's signature is invalid: it must be signed with the compromised key")
    try:
        names = [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    except ValueError:
        names = []
    if len(csr.subject) != 1 or [n.strip().lower() for n in names] != [STATEMENT]:
        raise ProofRefused(f"the proof's subject must be exactly CN={STATEMENT} "
                           f'(openssl req -new -key KEY -subj "/CN={STATEMENT}" -sha256)')
    return spki_sha256(public_key)
