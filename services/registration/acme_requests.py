"""What the ACME service asks of the RA (topic `acme`): certificates for finalized orders, and revocations.

The ACME service is a second front door to the same RA (docs/decisions.md): it never approves anything.

`acme.csr_submitted`: the CSR is decided by `CertificateRequests.decide`, the code path of the member API
and the portal (issuance limits, key policy and blocked keys, the member's verified domains, class, CAA via
`domain.caa_check_requested`, then `csr.approved` or `csr.rejected`), for profile `server` and the
event's `cert_class`, under the event's `request_id`, so the ACME service matches `csr.approved`,
`csr.rejected`, `cert.issued` and `cert.rejected` by it. This door adds its own refusals: the binding must
exist, be the member's and not be revoked, its class must be the order's (Class 3 is re-checked by the
policy: Assured now), and the CSR must name exactly the order's identifiers (RFC 8555 7.4). Every refusal
is a stored request with `csr.rejected` listing every reason (never an exception: nobody waits for an
HTTP answer). The request is stored with `source: "acme"` and the binding, account and order ids. A
redelivered event finds its request stored and changes nothing.

`acme.revocation_requested`: proof `account` (the ACME account of `member_id` signed it) revokes only
that member's certificates; proof `certificate_key` (signed by the certificate's own key, checked by
the ACME service) any certificate with the serial, and with reason `key_compromise` the key is also
blocked as by a proof of possession (compromised_keys.py). Then the usual signed
`cert.revoke_requested` (certificates.py), `requested_by` `acme:<account id>`, its `ce_id` from the ACME
request id, so a redelivery queues nothing new. A refusal is logged and audited, nothing is published.
A revocation of a serial not recorded here yet (its `cert.issued`, on another topic, is still on the way) is
kept (`acme_revocations_waiting`) and handled when the certificate is recorded (`on_certificates_recorded`,
while this process knows that some may wait), or by the sweep (`retry_waiting`): refused once it has waited
CERTIFICATE_RECORD_WAIT. It never holds up the consumer: retrying it in place held up every topic
registration reads, `cert` included, so the certificate it waited for could not arrive (the chaos long
run, issue 23).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from services.registration.acme_bindings import AcmeBindings
from services.registration.certificate_requests import CertificateRequests, FrontDoor
from services.registration.certificates import REVOCATION_REASONS, Certificates
from services.registration.compromised_keys import CompromisedKeys
from services.registration.context import Context, Document
from services.registration.csr import SubmittedCsr
from services.registration.members import Members
from shared import dns_names
from shared.kafka import PermanentError
from shared.logging import get_logger

log = get_logger("registration.acme_requests")
SOURCE = "acme"
PROFILE = "server"
CERTIFICATE_RECORD_WAIT = timedelta(minutes=10)
"""How long an ACME revocation of a serial not recorded here waits for its `cert.issued` before it is refused."""


def _names(raw: Sequence[str]) -> set[str]:
    found = set()
    for name in raw:
        try:
            found.add(dns_names.normalise_dns_name(name))
        except ValueError:
            found.add(name.strip().lower())  # the policy words what is wrong with it; here it only must match
    return found


def order_names_check(order: Sequence[str]) -> Callable[[SubmittedCsr], list[str]]:
    """RFC 8555 7.4: the CSR (CN and DNS subjectAltNames) must name exactly the order's identifiers."""
    wanted = _names(order)

    def check(csr: SubmittedCsr) -> list[str]:
        named = _names((*csr.common_names, *csr.dns_names))
        if named == wanted:
            return []
        return [f"the CSR names {', '.join(sorted(named)) or 'no DNS name'} but the order is for "
                f"{', '.join(sorted(wanted))}: the CSR must name exactly the order's identifiers (RFC 8555 7.4)"]

    return check


def requested_by(data: dict[str, Any]) -> str:
    return f"acme:{data.get('account_id') or 'key-holder'}"[:64]


class AcmeRequests:
    def __init__(self, context: Context, members: Members, bindings: AcmeBindings, requests: CertificateRequests,
                 certificates: Certificates, compromised_keys: CompromisedKeys) -> None:
        self._ctx = context
        self._store = context.store
        self._members = members
        self._bindings = bindings
        self._requests = requests
        self._certificates = certificates
        self._compromised_keys = compromised_keys
        # Whether a revocation may be waiting for its certificate: until the sweep has looked, after this
        # process kept one, and while the sweep finds any (kept by any replica). Most of the time none is, and
        # a recorded certificate is then not looked for among them: one read less per `cert.issued` batch
        # (issue 21). One kept by another replica while this one's sweep saw none is handled by a sweep.
        self._maybe_waiting = True

    async def on_csr_submitted(self, data: dict[str, Any]) -> None:
        request_id, member_id = data["request_id"], data["member_id"]
        stored = await self._store.request_by_id(request_id)
        if stored is not None:
            if stored.get("source") == SOURCE and stored.get("member_id") == member_id:
                log.info("ACME CSR already decided; redelivery ignored", request_id=request_id,
                         status=stored.get("status"))
                return
            # Not this event again: the id names another request, which this event must not answer for.
            raise PermanentError(f"request id {request_id} already names another certificate request")
        ids = {"binding_key_id": data["binding_key_id"], "account_id": data["account_id"],
               "order_id": data["order_id"]}
        if data.get("replaces"):
            ids["replaces"] = data["replaces"]
        door = FrontDoor(
            request_id,
            fields={"source": SOURCE, "acme": ids},
            refusals=tuple(await self._bindings.refusals(data["binding_key_id"], member_id, data["cert_class"])),
            check=order_names_check(data["dns_names"]),
            limits_refuse=True,
            store_oversized=True,
            audit={"source": SOURCE, **ids},
        )
        member = await self._members.get(member_id)
        doc = await self._requests.decide(door, member_id, member, data["csr_pem"], PROFILE, data["cert_class"])
        log.info("ACME CSR decided", request_id=request_id, member_id=member_id, status=doc["status"],
                 order_id=data["order_id"])

    async def on_revocation_requested(self, data: dict[str, Any]) -> None:
        serial, proof, reason = data["serial"], data["proof"], data["reason"]
        by = requested_by(data)
        owner = data["member_id"] if proof == "account" else None
        # One read: two (the owner's certificate, then anyone's) let a `cert.issued` recorded between them turn a
        # revocation that should wait into "not a certificate of this member" (the chaos long run, three flows).
        recorded = await self._store.certificate(serial, None)
        doc = recorded if recorded is not None and owner in (None, recorded.get("member_id")) else None
        if recorded is None and not self._waited(data):
            # The ACME service sends revocations only for certificates it saw issued, so a serial this service
            # has not recorded yet is its `cert.issued` still on the way (another topic): a client that revokes
            # right after downloading got here first (found by the chaos run). It waits for it, for a while.
            parked = await self._store.park_acme_revocation({"_id": data["request_id"], "serial": serial,
                                                             "data": data, "parked_at": self._ctx.clock()})
            self._maybe_waiting = True  # after the write: a sweep that did not see it cannot clear this
            if parked:
                log.info("ACME revocation waits for its certificate to be recorded", serial=serial,
                         request_id=data["request_id"])
            return
        if doc is None:
            await self._refuse(data, by, "no certificate with this serial" if owner is None
                               else "not a certificate of this member")
            return
        if reason not in REVOCATION_REASONS:
            await self._refuse(data, by, f"revocation reason {reason} is not one a subscriber may give")
            return
        if doc.get("status") == "revoked" or doc.get("acme_revocation_request_id") == data["request_id"]:
            log.info("ACME revocation already done or asked for; nothing to do", serial=serial,
                     request_id=data["request_id"], status=doc.get("status"))
            return
        await self._certificates.queue_revocation(doc, reason, requested_by=by, fact=f"acme:{data['request_id']}",
                                                  fields={"acme_revocation_request_id": data["request_id"]})
        await self._ctx.audit(by, "revocation.requested", serial, reason=reason, owner=doc["member_id"],
                              proof=proof, request_id=data["request_id"])
        if proof == "certificate_key" and reason == "key_compromise" and doc.get("certificate_pem"):
            await self._compromised_keys.report_certificate_key(str(doc["certificate_pem"]))

    async def on_certificates_recorded(self, serials: Sequence[str]) -> None:
        """`cert.issued` recorded these serials: handle the ACME revocations that waited for them (one read, if
        any may be waiting)."""
        if not self._maybe_waiting:
            return
        for waiting in await self._store.waiting_acme_revocations(serials):
            await self._handle_waiting(waiting)

    async def retry_waiting(self) -> int:
        """The sweep: handle the waiting revocations whose certificate is recorded (its `cert.issued` arrived
        between the look and the keeping) or whose wait is over (refused); how many."""
        handled = 0
        self._maybe_waiting = False  # before the read: what is kept after it says so itself
        try:
            every = await self._store.waiting_acme_revocations(None)
            for waiting in every:
                data = waiting["data"]
                if self._waited(data) or await self._store.certificate(data["serial"], None) is not None:
                    await self._handle_waiting(waiting)
                    handled += 1
        except Exception:
            self._maybe_waiting = True
            raise
        if handled < len(every):
            self._maybe_waiting = True
        return handled

    async def _handle_waiting(self, waiting: Document) -> None:
        # Handled first, dropped after: a crash in between handles it again, which changes nothing.
        await self.on_revocation_requested(waiting["data"])
        await self._store.drop_acme_revocation(waiting["_id"])

    def _waited(self, data: Document) -> bool:
        requested_at = datetime.fromisoformat(data["requested_at"].replace("Z", "+00:00"))
        return self._ctx.clock() - requested_at >= CERTIFICATE_RECORD_WAIT

    async def _refuse(self, data: Document, by: str, why: str) -> None:
        log.warning("ACME revocation refused", serial=data["serial"], member_id=data["member_id"],
                    proof=data["proof"], request_id=data["request_id"], refusal=why)
        await self._ctx.audit(by, "revocation.refused", data["serial"], member_id=data["member_id"],
                              proof=data["proof"], reason=data["reason"], request_id=data["request_id"], refusal=why)
