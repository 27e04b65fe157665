"""Certificate requests: the member submits a CSR, the RA decides and announces the decision.

Every submission that is a well-formed request body gets a request id and a
record, approved or not, so the member can list what they asked for and
why it was refused; the decision event (`csr.approved` / `csr.rejected`)
is written with the record in one insert (store.py's outbox rule). The signer's outcome
(`cert.issued` / `cert.rejected`) later updates the record's status.
The one exception: a CSR over the subjectAltName cap (csr.MAX_SUBJECT_ALT_NAMES)
is refused before anything is stored or announced, so oversized requests
cost no records, events or audit entries.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from services.registration.assurance import Assurances
from services.registration.context import Context, Document
from services.registration.csr import CsrProblem, TooManySubjectAltNames, parse_csr
from services.registration.domains import DomainClaims
from services.registration.issuance_policy import Decision, IssuancePolicy, MemberStanding
from services.registration.members import Member
from shared.events import CloudEvent, deterministic_event_id, isoformat
from shared.http import ApiError


def public_view(doc: Document) -> Document:
    out = {k: v for k, v in doc.items() if k not in ("_id", "_outbox", "csr_pem", "member_id")}
    out["id"] = doc["_id"]
    for key in ("created_at", "updated_at"):
        if key in out and hasattr(out[key], "isoformat"):
            out[key] = isoformat(out[key])
    return out


def _refused(reasons: Sequence[str], request_id: str | None = None) -> ApiError:
    """The 422 every CSR refusal answers; `request_id` only when the refusal was stored."""
    details: dict[str, Any] = {"reasons": list(reasons)}
    if request_id is not None:
        details = {"request_id": request_id, **details}
    return ApiError(422, "csr_rejected", "the certificate request was refused: " + "; ".join(reasons), details)


class CertificateRequests:
    def __init__(self, context: Context, assurances: Assurances, domains: DomainClaims) -> None:
        self._ctx = context
        self._store = context.store
        self._assurances = assurances
        self._domains = domains
        settings = context.settings
        self.policy = IssuancePolicy(
            settings.server_validity_days, settings.client_validity_days, settings.codesign_validity_days
        )

    async def standing(self, member: Member) -> MemberStanding:
        return MemberStanding(
            member_id=member.id,
            real_name=member.name,
            points=await self._assurances.points_of(member.id),
            is_assurer=member.is_assurer,
            codesign_enabled=member.codesign_enabled,
            verified_emails=member.verified_emails,
            verified_domains=await self._domains.verified_domains(member.id),
        )

    async def submit(self, member: Member, csr_pem: str, profile: str, *, cert_class: int | None = None) -> Document:
        """Decide; store the request with its event queued; 422 with every reason when refused.

        `cert_class` is the root the member asked for (1 or 3); None means the highest they may have.

        A CSR over the subjectAltName cap gets the same 422 (without a request id) and is not stored.
        """
        request_id = uuid.uuid4().hex
        now = self._ctx.clock()
        try:
            csr = parse_csr(csr_pem)
        except TooManySubjectAltNames as exc:
            raise _refused(exc.reasons) from None
        except CsrProblem as exc:
            decision = Decision(profile, tuple(exc.reasons))
            pem = None
        else:
            decision = self.policy.decide(profile, csr, await self.standing(member), cert_class)
            pem = csr.pem
        doc: Document = {
            "_id": request_id,
            "member_id": member.id,
            "profile": profile,
            "created_at": now,
            "updated_at": now,
        }
        event: CloudEvent
        if decision.approved and pem is not None:
            doc.update(
                status="approved",
                cert_class=decision.cert_class,
                subject=decision.subject,
                dns_names=list(decision.dns_names),
                emails=list(decision.emails),
                validity_days=decision.validity_days,
                csr_pem=pem,
            )
            event = self._ctx.event(
                "csr.approved",
                {
                    "request_id": request_id,
                    "member_id": member.id,
                    "cert_class": decision.cert_class,
                    "profile": profile,
                    "csr_pem": pem,
                    "subject": decision.subject,
                    "dns_names": list(decision.dns_names),
                    "ip_addresses": [],
                    "emails": list(decision.emails),
                    "validity_days": decision.validity_days,
                    "approved_at": isoformat(now),
                },
                event_id=deterministic_event_id("csr.approved", request_id),
            )
        else:
            doc.update(status="rejected", reasons=list(decision.reasons))
            event = self._ctx.event(
                "csr.rejected",
                {
                    "request_id": request_id,
                    "member_id": member.id,
                    "profile": profile,
                    "reasons": list(decision.reasons),
                    "rejected_at": isoformat(now),
                },
                event_id=deterministic_event_id("csr.rejected", request_id),
            )
        await self._store.insert_request_with_event(doc, event)
        await self._ctx.audit(member.id, f"csr.{doc['status']}", request_id, profile=profile,
                              **({"dns_names": list(decision.dns_names), "emails": list(decision.emails),
                                  "cert_class": decision.cert_class} if decision.approved
                                 else {"reasons": list(decision.reasons)}))
        if not decision.approved:
            raise _refused(decision.reasons, request_id)
        return public_view(doc)

    async def get(self, member: Member, request_id: str) -> Document:
        doc = await self._store.request(request_id, member.id)
        if doc is None:
            raise ApiError(404, "not_found", "no such certificate request on your account")
        return public_view(doc)

    async def listing(self, member: Member) -> list[Document]:
        docs = await self._store.requests_of(member.id)
        return [public_view(d) for d in sorted(docs, key=lambda d: d["created_at"], reverse=True)]

    async def on_issued(self, data: dict[str, Any]) -> None:
        await self._store.record_issued(data["request_id"], data["serial"], self._ctx.clock())

    async def on_signer_rejected(self, data: dict[str, Any]) -> None:
        await self._store.record_signer_rejected(
            data["request_id"], [data["reason"], *data.get("details", [])], self._ctx.clock()
        )
