"""Keys reported compromised: blocked at the RA, and every certificate of theirs revoked.

Anyone who proves they hold a private key (a proof CSR, shared/key_compromise.py) reports it
compromised without an account; an admin may block a key by its `spki_sha256` (a key published in a
leak, say). Either way the key is stored in `blocked_keys` here, so no CSR with it is approved again
(`CertificateRequests.submit` looks it up), and one signed `cert.key_compromised` goes to the
signer in the same write (outbox): the signer blocks the key too and revokes every unexpired
certificate carrying it with reason keyCompromise (BR 4.9.1.1 item 3: within 24 hours of evidence of
key compromise), announcing each in `cert.revoked`, which brings the owners their usual mail.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509

from services.registration.context import Context, Document
from shared.events import deterministic_event_id, isoformat
from shared.http import ApiError
from shared.key_compromise import SPKI_SHA256, ProofRefused, proven_key
from shared.key_compromise import spki_sha256 as spki_of
from shared.logging import get_logger

log = get_logger("registration.compromised_keys")
KEY_HOLDER = "key-holder"
"""`requested_by` of a report proven by possession of the key (no account involved)."""


class CompromisedKeys:
    def __init__(self, context: Context) -> None:
        self._ctx = context
        self._store = context.store

    async def report(self, proof_pem: str) -> Document:
        """A proof of possession: block its key and have every certificate of it revoked."""
        try:
            spki = proven_key(proof_pem)
        except ProofRefused as refused:
            raise ApiError(422, "proof_refused", f"not a proof of possession: {refused}") from None
        return await self._block(spki, requested_by=KEY_HOLDER, evidence="proof_of_possession")

    async def report_certificate_key(self, certificate_pem: str) -> Document:
        """The key of this certificate, whose holder proved possession elsewhere (an ACME revocation signed
        with the certificate's own key, RFC 8555 7.6, checked by the ACME service): block it like a report."""
        key = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
        return await self._block(spki_of(key), requested_by=KEY_HOLDER, evidence="proof_of_possession")

    async def block(self, spki_sha256: str, *, admin_id: str) -> Document:
        """An admin blocks a key known compromised by other means (its SPKI hash, from a published leak)."""
        if not SPKI_SHA256.fullmatch(spki_sha256):
            raise ApiError(422, "invalid_key_hash", "spki_sha256 must be 64 lower-case hex digits (SHA-256 of "
                                                    "the DER SubjectPublicKeyInfo)")
        return await self._block(spki_sha256, requested_by=admin_id, evidence="staff")

    async def _block(self, spki: str, *, requested_by: str, evidence: str) -> Document:
        now = self._ctx.clock()
        data: dict[str, Any] = {"spki_sha256": spki, "evidence": evidence, "requested_by": requested_by,
                                "reported_at": isoformat(now)}
        event = self._ctx.event("cert.key_compromised", data,
                                event_id=deterministic_event_id("cert.key_compromised", spki))
        doc: Document = {"_id": spki, "blocked_at": now, "evidence": evidence, "requested_by": requested_by}
        if await self._store.block_key_with_event(doc, event):
            log.warning("key reported compromised; blocked, and its certificates to be revoked",
                        spki_sha256=spki, evidence=evidence)
            await self._ctx.audit(requested_by, "key.blocked", spki, evidence=evidence)
        stored = await self._store.blocked_key(spki) or doc
        return {"spki_sha256": spki, "status": "blocked", "blocked_at": isoformat(stored["blocked_at"]),
                "message": "this key is blocked: no certificate will be issued for it, and every unexpired "
                           "certificate with it is being revoked (reason keyCompromise)"}
