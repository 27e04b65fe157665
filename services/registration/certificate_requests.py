"""Certificate requests: the member submits a CSR, the RA decides and announces the decision.

Every submission that is a well-formed request body gets a request id and a
record, approved or not, so the member can list what they asked for and
why it was refused; the decision event (`csr.approved` / `csr.rejected`)
is written with the record in one insert (store.py's outbox rule). The signer's outcome
(`cert.issued` / `cert.rejected`) later updates the record's status.
The one exception: a CSR over the subjectAltName cap (csr.MAX_SUBJECT_ALT_NAMES)
is refused before anything is stored or announced, so oversized requests
cost no records, events or audit entries.

Server certificates pass one more gate before `csr.approved`: CAA (BR
3.2.2.8). A server request the policy approves is stored as `caa_pending`
with a `domain.caa_check_requested` for every DNS name; domain_verify (the
only service that makes validation lookups) answers `domain.caa_checked`.
Allowed: the request becomes `approved` and `csr.approved` carries
`caa_checked_at`. Refused: `csr.rejected` with code `caa` and the record
that forbade each name. The signer refuses an approval whose CAA result is
more than 8 hours old at signing time (`cert.rejected` reason `caa_stale`);
the request then goes back to `caa_pending` with a fresh check, and is
approved again under the same request id, so it still yields one
certificate at most.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from services.registration.assurance import Assurances
from services.registration.context import Context, Document
from services.registration.csr import CsrProblem, SubmittedCsr, TooManySubjectAltNames, parse_csr
from services.registration.domains import DomainClaims
from services.registration.issuance_policy import Decision, IssuancePolicy, MemberStanding
from services.registration.members import Member
from services.registration.ratelimit import RateLimited, RateLimiter
from services.registration.store import RequestChange
from shared import dns_names
from shared.approvals import UNAUTHENTICATED
from shared.concurrency import at_once
from shared.events import CloudEvent, deterministic_event_id, isoformat
from shared.http import ApiError
from shared.logging import get_logger

log = get_logger("registration.certificate_requests")

BLOCKED_KEY = ("this key was reported compromised and is blocked (BR 4.9.1.1): no certificate is issued for "
               "it; make a new key and a new CSR")
CAA_PENDING = "caa_pending"
CAA_STALE = "caa_stale"
AWAITING_CAA_KEPT = 4096
"""How many requests waiting for their CAA verdict a process keeps as it stored them (`_awaiting_caa`)."""


def registered_domains(csr: SubmittedCsr) -> list[str]:
    """The registered domains (one below the public suffix) a CSR names, for the per-domain limit."""
    found: set[str] = set()
    for raw in (*csr.dns_names, *csr.common_names):
        try:
            name = dns_names.normalise_domain(raw.removeprefix("*."))
        except ValueError:
            continue  # not a domain name (a person's name, an address): nothing to count
        base = dns_names.registrable_domain(name)
        if base is not None:
            found.add(base)
    return sorted(found)


def public_view(doc: Document) -> Document:
    out = {k: v for k, v in doc.items()
           if k not in ("_id", "_outbox", "csr_pem", "member_id", "caa_check_id", "caa_attempt")}
    out["id"] = doc["_id"]
    for key in ("created_at", "updated_at"):
        if key in out and hasattr(out[key], "isoformat"):
            out[key] = isoformat(out[key])
    if isinstance(out.get("caa"), dict) and hasattr(out["caa"].get("checked_at"), "isoformat"):
        out["caa"] = {**out["caa"], "checked_at": isoformat(out["caa"]["checked_at"])}
    return out


@dataclasses.dataclass(frozen=True)
class FrontDoor:
    """The way a request came in, and what that door adds to the one decision (`CertificateRequests.decide`).

    The member API and the portal use the defaults; the ACME service's door (acme_requests.py) names its
    own request id, stores its ids, adds its refusals (the binding, the order's names) and wants every
    refusal, limits and oversized CSRs included, as a stored `csr.rejected` rather than an HTTP error.
    """

    request_id: str
    fields: Document = dataclasses.field(default_factory=dict)
    """Stored on the request beside the decision (ACME: `source` and the binding, account and order ids)."""
    refusals: tuple[str, ...] = ()
    """Reasons found before the policy runs (ACME: the binding is revoked, not the member's)."""
    check: Callable[[SubmittedCsr], list[str]] | None = None
    """More refusals from the parsed CSR (ACME: it must name exactly the order's identifiers)."""
    limits_refuse: bool = False
    """Over an issuance limit: a refusal reason (True) instead of RateLimited, the API's 429 (False)."""
    store_oversized: bool = False
    """A CSR over the subjectAltName cap: stored and announced as refused (True) instead of a bare 422."""
    audit: Document = dataclasses.field(default_factory=dict)
    """Added to the decision's audit entry."""


def _refused(reasons: Sequence[str], request_id: str | None = None) -> ApiError:
    """The 422 every CSR refusal answers; `request_id` only when the refusal was stored."""
    details: dict[str, Any] = {"reasons": list(reasons)}
    if request_id is not None:
        details = {"request_id": request_id, **details}
    return ApiError(422, "csr_rejected", "the certificate request was refused: " + "; ".join(reasons), details)


class CertificateRequests:
    def __init__(self, context: Context, assurances: Assurances, domains: DomainClaims) -> None:
        """`domains` answers which domains a member verified (and by which method, for CAA)."""
        self._ctx = context
        self._store = context.store
        self._assurances = assurances
        self._domains = domains
        self._limits = RateLimiter(context)
        # The server requests this process stored as caa_pending, as it wrote them, until their verdict
        # (oldest dropped first past AWAITING_CAA_KEPT): the verdict is decided without reading the request
        # back, one database command less per server certificate (issue 21). Only what was written at insert
        # and never changes is taken from here (the CSR, names, class, member); the state the verdict relies
        # on, caa_pending under the same check id, is the condition of the verdict's write, which changes
        # nothing if another writer (another replica, an earlier delivery) has moved the request on.
        self._awaiting_caa: dict[str, Document] = {}
        settings = context.settings
        self.policy = IssuancePolicy(
            settings.server_validity_days, settings.client_validity_days, settings.codesign_validity_days
        )

    async def standing(self, member: Member) -> MemberStanding:
        """What the policy needs of `member` (its verified domains and its points are read at once)."""
        methods, points = await at_once(self._domains.verification_methods(member.id),
                                        self._assurances.points_of(member.id))
        cutoff = self._ctx.clock() - timedelta(days=self._ctx.settings.email_reuse_days)
        fresh = member.emails_confirmed_since(cutoff)
        return MemberStanding(
            member_id=member.id,
            real_name=member.name,
            points=points,
            is_assurer=member.is_assurer,
            codesign_enabled=member.codesign_enabled,
            verified_emails=fresh,
            verified_domains=dict(methods),
            stale_emails=member.verified_emails - fresh,
        )

    async def submit(self, member: Member, csr_pem: str, profile: str, *, cert_class: int | None = None) -> Document:
        """Decide; store the request with its event queued; 422 with every reason when refused.

        `cert_class` is the root the member asked for (1 or 3); None means the highest they may have.

        A CSR over the subjectAltName cap gets the same 422 (without a request id) and is not stored.
        """
        doc = await self.decide(FrontDoor(uuid.uuid4().hex), member.id, member, csr_pem, profile, cert_class)
        if doc["status"] == "rejected":
            raise _refused(doc["reasons"], doc["_id"])
        return public_view(doc)

    async def decide(self, door: FrontDoor, member_id: str, member: Member | None, csr_pem: str, profile: str,
                     cert_class: int | None) -> Document:
        """The RA decision, the one path of every front door: decide, store the request with its event queued
        (`domain.caa_check_requested` for DNS names, else `csr.approved`, or `csr.rejected` with every reason),
        audit; the stored request. `member` None: no such member (refused, with `door.refusals`)."""
        request_id = door.request_id
        now = self._ctx.clock()
        reasons = list(door.refusals)
        if member is None:
            reasons.append("there is no member with this id")
        # Issuance limits (issue 19), here so that every front door (API, portal, ACME) counts alike.
        reasons += await self._hit(door, "requests:member", member_id,
                                   "too many certificate requests from this account today")
        methods: Mapping[str, str] | None = None
        csr: SubmittedCsr | None = None
        try:
            csr = parse_csr(csr_pem)
        except TooManySubjectAltNames as exc:
            if not door.store_oversized:
                raise _refused(exc.reasons) from None
            reasons += exc.reasons
        except CsrProblem as exc:
            reasons += exc.reasons
        standing: MemberStanding | None = None
        blocked: Document | None = None
        if csr is not None and member is not None:
            # Independent of each other: one round trip's wait instead of four (issue 21).
            refusals, standing, blocked = await at_once(self._domain_limits(door, csr), self.standing(member),
                                                        self._store.blocked_key(csr.spki_sha256))
            reasons += refusals
        elif csr is not None:
            reasons += await self._domain_limits(door, csr)
        if csr is not None and door.check is not None:
            reasons += door.check(csr)
        if csr is not None and standing is not None:
            methods = standing.verified_domains  # read once: policy and CAA check
            decision = self.policy.decide(profile, csr, standing, cert_class, now)
            decision = dataclasses.replace(decision, reasons=(*reasons, *decision.reasons))
            if blocked is not None:
                decision = dataclasses.replace(decision, reasons=(*decision.reasons, BLOCKED_KEY))
        else:
            decision = Decision(profile, tuple(reasons))
        decision = dataclasses.replace(decision, reasons=tuple(dict.fromkeys(decision.reasons)))
        doc: Document = {
            "_id": request_id,
            "member_id": member_id,
            "profile": profile,
            "created_at": now,
            "updated_at": now,
            **door.fields,
        }
        event: CloudEvent
        if decision.approved and csr is not None:
            doc.update(
                status="approved",
                cert_class=decision.cert_class,
                subject=decision.subject,
                dns_names=list(decision.dns_names),
                emails=list(decision.emails),
                validity_days=decision.validity_days,
                csr_pem=csr.pem,
                spki_sha256=csr.spki_sha256,
            )
            if decision.dns_names:
                doc.update(status=CAA_PENDING, caa_check_id=request_id, caa_attempt=1)
                event = await self._caa_request(doc, request_id, now, methods)
            else:
                event = self._approval(doc, now)
        else:
            doc.update(status="rejected", reasons=list(decision.reasons))
            event = self._rejection(request_id, member_id, profile, list(decision.reasons), now)
        await self._store.insert_request_with_event(doc, event)
        if doc["status"] == CAA_PENDING:
            self._awaiting_caa[request_id] = doc
            if len(self._awaiting_caa) > AWAITING_CAA_KEPT:
                del self._awaiting_caa[next(iter(self._awaiting_caa))]
        await self._ctx.audit(member_id, "csr.approved" if decision.approved else "csr.rejected", request_id,
                              profile=profile, **door.audit,
                              **({"dns_names": list(decision.dns_names), "emails": list(decision.emails),
                                  "cert_class": decision.cert_class} if decision.approved
                                 else {"reasons": list(decision.reasons)}))
        return doc

    async def _domain_limits(self, door: FrontDoor, csr: SubmittedCsr) -> list[str]:
        """Count the request against the weekly limit of every registered domain it names."""
        reasons: list[str] = []
        for base in registered_domains(csr):
            reasons += await self._hit(door, "requests:domain", base,
                                       f"too many certificate requests for {base} this week")
        return reasons

    async def _hit(self, door: FrontDoor, limit: str, key: str, message: str) -> list[str]:
        """Count one request against an issuance limit: over it, RateLimited (HTTP 429) at the member's front
        doors, a refusal reason where no one waits for an HTTP answer (`door.limits_refuse`)."""
        try:
            await self._limits.hit(limit, key, message=message)
        except RateLimited as exc:
            if not door.limits_refuse:
                raise
            return [f"{exc.human} (the limit resets in {exc.retry_after} s)"]
        return []

    def _approval(self, doc: Document, now: datetime, caa_checked_at: datetime | None = None,
                  check_id: str | None = None) -> CloudEvent:
        """`csr.approved` for a stored request; one id per CAA check, so a re-approval after a stale
        CAA result is a new event for the same request (the signer still issues once per request)."""
        data: dict[str, Any] = {
            "request_id": doc["_id"],
            "member_id": doc["member_id"],
            "cert_class": doc["cert_class"],
            "profile": doc["profile"],
            "csr_pem": doc["csr_pem"],
            "subject": doc["subject"],
            "dns_names": list(doc["dns_names"]),
            "ip_addresses": [],
            "emails": list(doc["emails"]),
            "validity_days": doc["validity_days"],
            "approved_at": isoformat(now),
        }
        if caa_checked_at is not None:
            data["caa_checked_at"] = isoformat(caa_checked_at)
        if doc.get("spki_sha256"):  # requests stored before keys were named lack it; the signer reads the CSR
            data["spki_sha256"] = doc["spki_sha256"]
        key = ["csr.approved", doc["_id"]]
        if check_id not in (None, doc["_id"]):
            key.append(str(check_id))
        return self._ctx.event("csr.approved", data, event_id=deterministic_event_id(*key))

    def _rejection(self, request_id: str, member_id: str, profile: str, reasons: list[str], now: datetime,
                   **extra: Any) -> CloudEvent:
        return self._ctx.event(
            "csr.rejected",
            {"request_id": request_id, "member_id": member_id, "profile": profile, "reasons": reasons,
             "rejected_at": isoformat(now), **extra},
            event_id=deterministic_event_id("csr.rejected", request_id),
        )

    async def _caa_request(self, doc: Document, check_id: str, now: datetime,
                           methods: Mapping[str, str] | None = None) -> CloudEvent:
        if methods is None:
            methods = await self._domains.verification_methods(doc["member_id"])
        by_name: dict[str, str] = {}
        for name in doc["dns_names"]:
            base = name[2:] if name.startswith("*.") else name
            covering = [d for d in methods if base == d or base.endswith("." + d)]
            if covering:
                by_name[name] = methods[max(covering, key=len)]
        data: dict[str, Any] = {"check_id": check_id, "request_id": doc["_id"], "member_id": doc["member_id"],
                                "names": list(doc["dns_names"]), "requested_at": isoformat(now)}
        if by_name:
            data["validation_methods"] = [{"name": n, "method": m} for n, m in by_name.items()]
        return self._ctx.event("domain.caa_check_requested", data,
                               event_id=deterministic_event_id("domain.caa_check_requested", check_id))

    async def on_caa_checked(self, data: dict[str, Any]) -> None:
        """domain_verify's CAA verdict: approve (to the signer) or reject with the forbidding records."""
        await self.on_caa_verdicts([data])

    async def on_caa_verdicts(self, verdicts: Sequence[dict[str, Any]]) -> None:
        """CAA verdicts for several requests (a batch of `domain.caa_checked`): at most one read, one write and
        one publish for all of them (issue 21); no read for the requests this process stored (`_awaiting_caa`)."""
        docs = await self._answered_requests(verdicts)
        now = self._ctx.clock()
        changes: dict[str, tuple[RequestChange, dict[str, Any]]] = {}
        for data in verdicts:
            request_id, check_id = data["request_id"], data["check_id"]
            doc = docs.get(request_id)
            if doc is None or doc.get("status") != CAA_PENDING or doc.get("caa_check_id") != check_id:
                log.info("CAA verdict for a request not waiting for it; ignored", request_id=request_id,
                         check_id=check_id)
                continue
            changes[request_id] = (self._verdict(doc, data, now), data)
        changed = await self._store.update_requests_with_events([change for change, _ in changes.values()])
        await at_once(*(
            self._ctx.audit("registration", f"csr.caa_{data['verdict']}", request_id,
                            member_id=docs[request_id]["member_id"], check_id=data["check_id"],
                            reason=data.get("reason"))
            for request_id, (_, data) in changes.items() if request_id in changed
        ))

    async def _answered_requests(self, verdicts: Sequence[dict[str, Any]]) -> dict[str, Document]:
        """The requests the verdicts answer, by id: as this process stored them when it did and the verdict is
        for the check it asked for, else read."""
        docs: dict[str, Document] = {}
        for data in verdicts:
            request_id = data["request_id"]
            kept = self._awaiting_caa.get(request_id)
            if kept is not None and kept["caa_check_id"] == data["check_id"]:
                docs[request_id] = self._awaiting_caa.pop(request_id)
        unknown = [data["request_id"] for data in verdicts if data["request_id"] not in docs]
        if unknown:
            docs.update(await self._store.requests_by_ids(unknown))
        return docs

    def _verdict(self, doc: Document, data: dict[str, Any], now: datetime) -> RequestChange:
        """The change a CAA verdict makes to the request waiting for it, with `csr.approved` or `csr.rejected`."""
        request_id, check_id = doc["_id"], data["check_id"]
        checked_at = datetime.fromisoformat(data["checked_at"].replace("Z", "+00:00"))
        caa = {"verdict": data["verdict"], "checked_at": checked_at, "names": data["names"],
               "reason": data.get("reason")}
        expect = {"status": CAA_PENDING, "caa_check_id": check_id}
        if data["verdict"] == "allowed":
            event = self._approval(doc, now, checked_at, check_id)
            fields: Document = {"status": "approved", "caa": caa, "updated_at": now}
        else:
            refused = [n for n in data["names"] if not n.get("allowed")]
            reasons = [f"caa: {n['name']}: {n.get('reason')}"
                       + (f" (record at {n['relevant_name']}: {'; '.join(n['records'])})" if n.get("records") else "")
                       for n in refused] or [f"caa: {data.get('reason')}"]
            event = self._rejection(request_id, doc["member_id"], doc["profile"], reasons, now, code="caa",
                                    caa={"reason": data.get("reason"), "names": refused})
            fields = {"status": "rejected", "reasons": reasons, "caa": caa, "updated_at": now}
        return RequestChange(request_id, expect, fields, event)

    async def get(self, member: Member, request_id: str) -> Document:
        doc = await self._store.request(request_id, member.id)
        if doc is None:
            raise ApiError(404, "not_found", "no such certificate request on your account")
        return public_view(doc)

    async def listing(self, member: Member) -> list[Document]:
        docs = await self._store.requests_of(member.id)
        return [public_view(d) for d in sorted(docs, key=lambda d: d["created_at"], reverse=True)]

    async def on_issued(self, issued: Sequence[dict[str, Any]]) -> None:
        """The requests of `cert.issued` events are issued (a batch of them: one write)."""
        await self._store.record_issued([(data["request_id"], data["serial"]) for data in issued], self._ctx.clock())

    async def on_signer_rejected(self, data: dict[str, Any]) -> None:
        if data["reason"] == CAA_STALE:
            await self._recheck_caa(data["request_id"])
            return
        if data["reason"] == UNAUTHENTICATED:
            # The signer saw an approval it could not attribute to this RA: a forgery (the request id may
            # be a real one, which must not be failed by it), or this RA's key missing from the signer's
            # configuration. Either way the request keeps its state; the event waits in the DLQ.
            log.error("the signer refused an approval as not signed by this RA", alert=True,
                      request_id=data["request_id"], details=data.get("details", []))
            return
        await self._store.record_signer_rejected(
            data["request_id"], [data["reason"], *data.get("details", [])], self._ctx.clock()
        )

    async def _recheck_caa(self, request_id: str) -> None:
        """The signer found the CAA result over 8 hours old (BR 3.2.2.8): check again, then re-approve."""
        doc = await self._store.request_by_id(request_id)
        if doc is None or doc.get("status") != "approved":
            return
        attempt = int(doc.get("caa_attempt", 1)) + 1
        check_id = f"{request_id}-{attempt}"
        now = self._ctx.clock()
        event = await self._caa_request(doc, check_id, now)
        if await self._store.update_requests_with_events([RequestChange(
                request_id, {"status": "approved", "caa_check_id": doc.get("caa_check_id")},
                {"status": CAA_PENDING, "caa_check_id": check_id, "caa_attempt": attempt, "updated_at": now},
                event)]):
            log.info("CAA result went stale before signing; checking again", request_id=request_id,
                     check_id=check_id)
