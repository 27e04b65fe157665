"""The member's view of their certificates, fed by the signer's events, and their downloads.

`cert.issued` stores the leaf and its chain (keyed by serial, so
redelivery overwrites nothing); `cert.revoked` marks it revoked. Members
download the leaf as PEM (leaf then chain) or DER, and the leaf with its
chain as a PKCS#7 bundle; they may ask to revoke their own certificates
(admins: any), which queues `cert.revoke_requested` for the signer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from services.registration.context import Context, Document
from services.registration.members import Member
from shared.events import deterministic_event_id, isoformat
from shared.http import ApiError

FORMATS = {
    "pem": ("application/x-pem-file", "pem"),
    "der": ("application/pkix-cert", "cer"),
    "p7b": ("application/pkcs7-mime", "p7b"),
}
ISSUED_FIELDS = ("member_id", "request_id", "issuer", "cert_class", "profile", "subject", "dns_names", "emails",
                 "fingerprint_sha256", "certificate_pem", "chain_pem", "trust_anchors")
"""The fields of `cert.issued` kept as they are (with its times parsed, and `status`)."""
REVOCATION_REASONS = (
    "unspecified",
    "key_compromise",
    "affiliation_changed",
    "superseded",
    "cessation_of_operation",
)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def public_view(doc: Document) -> Document:
    keys = (
        "request_id",
        "profile",
        "cert_class",
        "issuer",
        "subject",
        "dns_names",
        "emails",
        "status",
        "fingerprint_sha256",
        "revocation_reason",
        "trust_anchors",
    )
    out: Document = {"serial": doc["_id"], **{k: doc.get(k) for k in keys}}
    for key in ("not_before", "not_after", "issued_at", "revoked_at", "revoke_requested_at"):
        value = doc.get(key)
        out[key] = isoformat(value) if isinstance(value, datetime) else value
    return out


def encode(doc: Document, fmt: str) -> bytes:
    """The certificate in one download format; ValueError if the stored PEM is unusable."""
    leaf = x509.load_pem_x509_certificate(doc["certificate_pem"].encode())
    chain_pem = (doc.get("chain_pem") or "").strip()
    chain = x509.load_pem_x509_certificates(chain_pem.encode()) if chain_pem else []
    if fmt == "der":
        return leaf.public_bytes(Encoding.DER)
    if fmt == "p7b":
        return pkcs7.serialize_certificates([leaf, *chain], Encoding.DER)
    return b"".join(c.public_bytes(Encoding.PEM) for c in [leaf, *chain])


class Certificates:
    def __init__(self, context: Context) -> None:
        self._ctx = context
        self._store = context.store

    async def on_issued(self, issued: Sequence[dict[str, Any]]) -> None:
        """Record the certificates of `cert.issued` events (a batch of them: one write)."""
        await self._store.record_certificates([(data["serial"], _certificate_fields(data)) for data in issued])

    async def on_revoked(self, data: dict[str, Any]) -> None:
        await self._store.record_revoked(data["serial"], _parse_time(data["revoked_at"]), data["reason"])

    async def _find(self, member: Member, serial: str, *, any_member: bool = False) -> Document:
        owner = None if any_member and member.is_admin else member.id
        doc = await self._store.certificate(serial.lower(), owner)
        if doc is None:
            raise ApiError(404, "not_found", "no such certificate on your account")
        return doc

    async def listing(self, member: Member) -> list[Document]:
        docs = await self._store.certificates_of(member.id)
        return [public_view(d) for d in sorted(docs, key=lambda d: d["issued_at"], reverse=True)]

    async def get(self, member: Member, serial: str) -> Document:
        doc = await self._find(member, serial, any_member=True)
        view = public_view(doc)
        view["certificate_pem"] = doc.get("certificate_pem")
        view["chain_pem"] = doc.get("chain_pem")
        return view

    async def download(self, member: Member, serial: str, fmt: str) -> tuple[bytes, str, str]:
        """(body, content type, file name) of one certificate in `fmt`."""
        if fmt not in FORMATS:
            raise ApiError(422, "invalid_format", f"format must be one of {', '.join(FORMATS)}")
        doc = await self._find(member, serial, any_member=True)
        try:
            body = encode(doc, fmt)
        except ValueError as exc:
            raise ApiError(
                409, "certificate_unreadable", f"the stored certificate cannot be encoded: {exc}"
            ) from None
        content_type, extension = FORMATS[fmt]
        return body, content_type, f"{doc['_id']}.{extension}"

    async def request_revocation(self, member: Member, serial: str, reason: str) -> Document:
        """Queue `cert.revoke_requested` for the owner's (or, for an admin, any) certificate."""
        doc = await self._find(member, serial, any_member=True)
        if doc.get("status") == "revoked":
            raise ApiError(409, "already_revoked", "this certificate is already revoked")
        now = self._ctx.clock()
        await self.queue_revocation(doc, reason, requested_by=member.id, fact=isoformat(now))
        await self._ctx.audit(member.id, "revocation.requested", doc["_id"], reason=reason,
                              owner=doc["member_id"], by_admin=member.id != doc["member_id"])
        return public_view(await self._find(member, serial, any_member=True))

    async def queue_revocation(self, doc: Document, reason: str, *, requested_by: str, fact: str,
                               fields: Document | None = None) -> None:
        """Mark the stored certificate `doc` revocation_requested and queue the signed `cert.revoke_requested`
        (one write), unless it is revoked already. `fact` tells this request from others of the same
        certificate (its `ce_id`): the moment for a member's click, the ACME request id for the ACME service's."""
        now = self._ctx.clock()
        event = self._ctx.event(
            "cert.revoke_requested",
            {
                "serial": doc["_id"],
                "member_id": doc["member_id"],
                "reason": reason,
                "requested_by": requested_by,
                "requested_at": isoformat(now),
            },
            event_id=deterministic_event_id("cert.revoke_requested", doc["_id"], fact),
        )
        await self._store.record_revocation_request(
            doc["_id"],
            {"status": "revocation_requested", "revoke_requested_at": now, "revocation_reason": reason,
             **(fields or {})},
            event,
        )


def _certificate_fields(data: dict[str, Any]) -> Document:
    """What registration keeps of a `cert.issued` event."""
    fields: Document = {k: data.get(k) for k in ISSUED_FIELDS}
    fields.update(
        not_before=_parse_time(data["not_before"]),
        not_after=_parse_time(data["not_after"]),
        issued_at=_parse_time(data["issued_at"]),
        status="valid",
    )
    return fields
