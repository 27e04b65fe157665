"""The RA key pair the tests run with: one per test process, generated at import, never written to disk
by this module. Registration harnesses sign with it; signer harnesses trust its public key; a test that
plays the RA itself signs with `sign`."""

from __future__ import annotations

from shared.approvals import ApprovalSigner
from shared.events import CloudEvent

RA = ApprovalSigner.generate()
RA_PRIVATE_PEM = RA.private_pem()
RA_PUBLIC_PEM = RA.public_pem()


def sign(event: CloudEvent) -> CloudEvent:
    """`event` as the RA would send it (csr.approved and cert.revoke_requested get its signature)."""
    return RA.sign(event)
