"""ACME External Account Bindings (RFC 8555 7.3.4): how a member's ACME client acts for the member.

A member creates a binding and is shown its key id and HMAC key once; their ACME client (certbot
`--eab-kid` / `--eab-hmac-key`, cert-manager's `externalAccountBinding`) signs its newAccount request
with the key, and the ACME service then treats that account as the member. Registration never stores
the HMAC key: the binding's record holds the key id, member, class, label and times, and the key
itself leaves only twice, in the 201 answer to the member and sealed to the ACME service's X25519 key
in `acme.binding_created` (shared/acme_binding.py), written with the record in one outbox write on the
`acme.bindings` topic that only the ACME service reads. Revoking queues `acme.binding_revoked`, which
deactivates the binding's ACME accounts.

Class 3 bindings only for members Assured (>= 50 points) when they create them; every certificate the
binding's accounts order is decided again by the RA (`CertificateRequests`, which re-checks the class),
and `refusals` says what makes a binding unusable for an order.
"""

from __future__ import annotations

from typing import Any

from services.registration.assurance import Assurances
from services.registration.context import Context, Document
from services.registration.issuance_policy import ASSURED_POINTS, CLASSES
from services.registration.members import Member
from shared import acme_binding
from shared.events import deterministic_event_id, isoformat
from shared.http import ApiError
from shared.logging import get_logger

log = get_logger("registration.acme_bindings")
MAX_LABEL = 100


def public_view(doc: Document) -> Document:
    """A binding as its member sees it (never a key: none is stored)."""
    revoked_at = doc.get("revoked_at")
    return {
        "key_id": doc["_id"],
        "cert_class": doc["cert_class"],
        "label": doc.get("label", ""),
        "status": "revoked" if revoked_at is not None else "active",
        "created_at": isoformat(doc["created_at"]),
        "revoked_at": isoformat(revoked_at) if revoked_at is not None else None,
    }


def clean_label(label: Any) -> str:
    """The member's label on one line: control characters become spaces, runs of blanks one space."""
    text = "".join(" " if not ch.isprintable() else ch for ch in str(label or ""))
    text = " ".join(text.split())
    if len(text) > MAX_LABEL:
        raise ApiError(422, "validation_failed", f"the label has at most {MAX_LABEL} characters",
                       [{"field": "label", "problem": f"longer than {MAX_LABEL} characters"}])
    return text


class AcmeBindings:
    def __init__(self, context: Context, assurances: Assurances) -> None:
        self._ctx = context
        self._store = context.store
        self._assurances = assurances

    @property
    def directory_url(self) -> str:
        return self._ctx.settings.acme_directory_url

    async def create(self, member: Member, *, label: str = "", cert_class: int | None = None) -> Document:
        """A new binding: its view plus `hmac_key` (base64url) and `directory_url`, the only time the key is shown.

        422 `not_assured` for Class 3 when the member is not Assured now; 409 `too_many_bindings` at the cap.
        """
        sealer = self._ctx.acme_sealer
        if sealer is None:
            raise RuntimeError("ACME binding keys must be sealed to the ACME service, and this context has no key")
        chosen = 1 if cert_class is None else cert_class
        if chosen not in CLASSES:
            raise ApiError(422, "validation_failed", "cert_class must be 1 or 3",
                           [{"field": "cert_class", "problem": f"{cert_class!r} is not 1 or 3"}])
        label = clean_label(label)
        if chosen == 3:
            points = await self._assurances.points_of(member.id)
            if points < ASSURED_POINTS:
                raise ApiError(422, "not_assured",
                               f"Class 3 bindings are only for Assured members ({ASSURED_POINTS} assurance points or "
                               f"more; you have {points}): create a Class 1 binding, or collect assurance points first",
                               {"points": points, "needed": ASSURED_POINTS})
        cap = self._ctx.settings.acme_bindings_per_member
        active = [d for d in await self._store.acme_bindings_of(member.id) if d.get("revoked_at") is None]
        if len(active) >= cap:
            raise ApiError(409, "too_many_bindings",
                           f"you have {len(active)} active ACME bindings, the most one account may hold: revoke one "
                           "you no longer use, then create the new one", {"active": len(active), "limit": cap})
        now = self._ctx.clock()
        key_id = acme_binding.new_key_id()
        hmac_key = acme_binding.new_hmac_key()
        data: dict[str, Any] = {
            "key_id": key_id,
            "member_id": member.id,
            "cert_class": chosen,
            "label": label,
            "hmac_key": sealer.seal(key_id, member.id, hmac_key),
            "created_at": isoformat(now),
        }
        event = self._ctx.event("acme.binding_created", data,
                                event_id=deterministic_event_id("acme.binding_created", key_id))
        doc: Document = {"_id": key_id, "member_id": member.id, "cert_class": chosen, "label": label,
                         "created_at": now, "revoked_at": None}
        await self._store.insert_acme_binding_with_event(doc, event)
        await self._ctx.audit(member.id, "acme_binding.created", key_id, cert_class=chosen, label=label)
        log.info("ACME binding created", key_id=key_id, member_id=member.id, cert_class=chosen)
        return {**public_view(doc), "hmac_key": acme_binding.encode_hmac_key(hmac_key),
                "directory_url": self.directory_url}

    async def listing(self, member: Member) -> list[Document]:
        docs = await self._store.acme_bindings_of(member.id)
        return [public_view(d) for d in sorted(docs, key=lambda d: d["created_at"], reverse=True)]

    async def revoke(self, member: Member, key_id: str) -> Document:
        """Revoke one of the member's bindings (idempotent); 404 for any other key id."""
        doc = await self._store.acme_binding(key_id, member.id)
        if doc is None:
            raise ApiError(404, "not_found", "no such ACME binding on your account")
        if doc.get("revoked_at") is None:
            now = self._ctx.clock()
            event = self._ctx.event(
                "acme.binding_revoked",
                {"key_id": key_id, "member_id": member.id, "revoked_at": isoformat(now), "revoked_by": member.id},
                event_id=deterministic_event_id("acme.binding_revoked", key_id),
            )
            if await self._store.revoke_acme_binding_with_event(key_id, member.id,
                                                                {"revoked_at": now, "revoked_by": member.id}, event):
                await self._ctx.audit(member.id, "acme_binding.revoked", key_id)
                log.info("ACME binding revoked", key_id=key_id, member_id=member.id)
            doc = await self._store.acme_binding(key_id, member.id) or doc
        return public_view(doc)

    async def refusals(self, key_id: str, member_id: str, cert_class: int) -> list[str]:
        """Why an ACME order under binding `key_id` may not be decided for `member_id` (empty: it may)."""
        doc = await self._store.acme_binding(key_id, None)
        if doc is None or doc["member_id"] != member_id:
            return [f"the ACME account's binding {key_id} is not one of this member's bindings: create a binding in "
                    "the portal and register the ACME account with it"]
        if doc.get("revoked_at") is not None:
            return [f"the ACME account's binding {key_id} was revoked on {isoformat(doc['revoked_at'])[:10]}: create "
                    "a new binding and register a new ACME account with it"]
        if doc["cert_class"] != cert_class:
            return [f"the ACME account's binding {key_id} is for Class {doc['cert_class']} certificates, and this "
                    f"order asks for Class {cert_class}"]
        return []
