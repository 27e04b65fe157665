"""What the ACME service hears from the rest of the CA, and what it does with it.

* `acme.binding_created` / `acme.binding_revoked` (registration, topic `acme.bindings`): the External
  Account Bindings newAccount checks; a revoked binding deactivates its accounts.
* `domain.verified` / `domain.verification_failed` (domain_verify): every verification feeds the member's
  verified domains (so later identifiers are authorized at once); those of our challenges move the
  challenge, its authorization and its orders.
* `csr.rejected` (the RA), `cert.issued` / `cert.rejected` / `cert.revoked` (the signer): move a
  processing order to `valid` or `invalid`, and keep the revocation state ARI reports.

Each handler is idempotent (state moves only from the state it expects), so redelivery changes nothing;
events about requests that are not ACME orders are ignored after one lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from cryptography import x509

from services.acme import renewal
from services.acme.orders import OrderBook
from services.acme.store import AcmeStore
from services.acme.wfe.problems import problem_document
from shared.acme_binding import BindingOpener, UnopenableBinding
from shared.events import BY_NAME, CloudEvent
from shared.kafka import PermanentError, Subscription
from shared.logging import get_logger

log = get_logger("acme.answers")

# domain_verify's failure reasons that say the resource was reached but was wrong (RFC 8555 8.3/8.4).
_INCORRECT = ("mismatch", "not_found", "wrong", "content", "record")
# The signer's refusal reasons that are not final: the RA re-checks CAA, or the approval was not the RA's.
_NOT_FINAL = ("caa_stale", "unauthenticated_approval")


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _type(name: str) -> str:
    return BY_NAME[name].type


class Answers:
    def __init__(self, store: AcmeStore, book: OrderBook, opener: BindingOpener,
                 clock: Callable[[], datetime]) -> None:
        self.store = store
        self.book = book
        self.opener = opener
        self.clock = clock

    def subscriptions(self) -> list[Subscription]:
        return [
            Subscription("acme.bindings", {_type("acme.binding_created"): self.binding_created,
                                           _type("acme.binding_revoked"): self.binding_revoked}),
            Subscription("domain", {_type("domain.verified"): self.domain_verified,
                                    _type("domain.verification_failed"): self.verification_failed}),
            Subscription("csr", {_type("csr.rejected"): self.csr_rejected}),
            Subscription("cert", {_type("cert.issued"): self.cert_issued,
                                  _type("cert.rejected"): self.cert_rejected,
                                  _type("cert.revoked"): self.cert_revoked}),
        ]

    async def binding_created(self, event: CloudEvent) -> None:
        data = event.data
        try:  # refuse a key we could never open now, in the dead-letter topic, not at the member's newAccount
            self.opener.open(data["key_id"], data["member_id"], data["hmac_key"])
        except UnopenableBinding as exc:
            raise PermanentError(f"binding {data['key_id']}: {exc}") from None
        await self.store.put_binding({
            "_id": data["key_id"], "member_id": data["member_id"], "cert_class": data["cert_class"],
            "hmac_key": data["hmac_key"], "label": data.get("label"), "created_at": _when(data["created_at"])})
        log.info("acme binding recorded", key_id=data["key_id"], member_id=data["member_id"])

    async def binding_revoked(self, event: CloudEvent) -> None:
        data = event.data
        await self.store.revoke_binding(data["key_id"], data["member_id"], _when(data["revoked_at"]))
        log.info("acme binding revoked; its accounts are deactivated", key_id=data["key_id"])

    async def domain_verified(self, event: CloudEvent) -> None:
        data = event.data
        valid_until = _when(data["valid_until"])
        await self.store.record_verified_domain(data["member_id"], data["domain"], valid_until, data["method"])
        await self.book.challenge_verified(data["request_id"], _when(data["verified_at"]), valid_until)

    async def verification_failed(self, event: CloudEvent) -> None:
        data = event.data
        reason = str(data["reason"])
        found = data.get("found") or []
        detail = reason + (f" (found: {'; '.join(str(f) for f in found[:5])})" if found else "")
        kind = "incorrectResponse" if any(w in reason for w in _INCORRECT) else (
            "dns" if "dns" in reason or "lookup" in reason else "connection")
        problem = problem_document(kind, detail, subproblems=None)
        await self.book.challenge_failed(data["request_id"], problem)

    async def csr_rejected(self, event: CloudEvent) -> None:
        data = event.data
        reasons = [str(r) for r in data["reasons"]]
        if data.get("code") == "caa":
            refused = (data.get("caa") or {}).get("names") or []
            subs = [{"type": "urn:ietf:params:acme:error:caa", "detail": str(n.get("reason", "CAA forbids")),
                     "identifier": {"type": "dns", "value": str(n.get("name"))}} for n in refused]
            problem = problem_document("caa", "CAA records forbid this CA to issue: " + "; ".join(reasons),
                                       subproblems=subs)
        elif any("verified" in r or "domain" in r for r in reasons):
            problem = problem_document("rejectedIdentifier", "the RA refused the request: " + "; ".join(reasons))
        else:
            problem = problem_document("badCSR", "the RA refused the request: " + "; ".join(reasons))
        await self.book.order_refused(data["request_id"], problem)

    async def cert_issued(self, event: CloudEvent) -> None:
        data = event.data
        if await self.store.order(data["request_id"]) is None:
            return
        leaf = x509.load_pem_x509_certificate(data["certificate_pem"].encode())
        await self.book.order_issued(data["request_id"], {
            "_id": data["serial"], "certificate_pem": data["certificate_pem"], "chain_pem": data["chain_pem"],
            "cert_class": data["cert_class"], "not_before": _when(data["not_before"]),
            "not_after": _when(data["not_after"]), "status": "valid", "ari_id": renewal.certificate_id(leaf),
            "spki_sha256": _spki(leaf), "issued_at": _when(data["issued_at"]),
            **({"chains": data["chains"]} if "chains" in data else {})})

    async def cert_rejected(self, event: CloudEvent) -> None:
        data = event.data
        if data["reason"] in _NOT_FINAL:
            return
        kind = {"weak_key": "badPublicKey", "compromised_key": "badPublicKey", "csr_invalid": "badCSR",
                "policy": "rejectedIdentifier"}.get(data["reason"], "serverInternal")
        details = "; ".join(str(d) for d in data.get("details", []))
        await self.book.order_refused(data["request_id"], problem_document(
            kind, f"the CA refused to sign ({data['reason']})" + (f": {details}" if details else "")))

    async def cert_revoked(self, event: CloudEvent) -> None:
        data: dict[str, Any] = event.data
        if await self.store.certificate(data["serial"]) is None:
            return
        revoked_at = _when(data["revoked_at"])
        await self.store.update_certificate(data["serial"], {"status": {"$ne": "revoked"}},
                                            {"status": "revoked", "revoked_at": revoked_at,
                                             "revocation_reason": data.get("reason")})


def _spki(certificate: x509.Certificate) -> str:
    from shared.key_compromise import spki_sha256
    return spki_sha256(certificate.public_key())
