"""The RA key pair the tests run with: one per test process, generated at import, never written to disk
by this module. Registration harnesses sign with it; signer harnesses trust its public key; a test that
plays the RA itself signs with `sign`."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.approvals import ApprovalSigner
from shared.events import CloudEvent

_KEY = Ed25519PrivateKey.generate()
RA_PRIVATE_PEM = _KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
RA = ApprovalSigner(_KEY)
RA_PUBLIC_PEM = RA.public_pem()


def sign(event: CloudEvent) -> CloudEvent:
    """`event` as the RA would send it (csr.approved and cert.revoke_requested get its signature)."""
    return RA.sign(event)
