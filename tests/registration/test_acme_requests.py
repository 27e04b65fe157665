"""What the ACME service asks of the RA (acme_requests.py), over the in-memory store: CSRs decided by the
member API's own path under the ACME request id, every refusal a csr.rejected, revocations by account or by
the certificate's key; and every redelivery changes nothing."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from services.registration.acme_bindings import AcmeBindings
from services.registration.acme_requests import CERTIFICATE_RECORD_WAIT, AcmeRequests
from services.registration.assurance import Assurances
from services.registration.certificate_requests import CertificateRequests
from services.registration.certificates import Certificates
from services.registration.compromised_keys import CompromisedKeys
from services.registration.context import Context
from services.registration.domains import DomainClaims
from services.registration.event_handlers import SignerOutcomes
from services.registration.members import Member, Members
from shared.approvals import ApprovalVerifier
from shared.events import BY_NAME, CloudEvent, isoformat, make_event
from shared.http import ApiError
from shared.kafka import PermanentError
from shared.key_compromise import spki_sha256
from tests.acme_keys import ACME_SEALER
from tests.approval_keys import RA, RA_PUBLIC_PEM
from tests.mail_keys import SEALER
from tests.registration.csrs import build_csr, self_signed
from tests.registration.memory_store import NOW, MemoryStore, settings, with_second_factor


class Registration:
    def __init__(self, *, store: MemoryStore | None = None, now: datetime = NOW, **overrides: Any) -> None:
        self.store = store or MemoryStore()
        ctx = Context(self.store, dataclasses.replace(settings(), **overrides), lambda: now, RA, SEALER, ACME_SEALER)
        self.members = Members(ctx)
        self.assurances = Assurances(ctx)
        self.domains = DomainClaims(ctx)
        self.requests = CertificateRequests(ctx, self.assurances, self.domains)
        self.certificates = Certificates(ctx)
        self.compromised_keys = CompromisedKeys(ctx)
        self.bindings = AcmeBindings(ctx, self.assurances)
        self.acme = AcmeRequests(ctx, self.members, self.bindings, self.requests, self.certificates,
                                 self.compromised_keys)
        self.outcomes = SignerOutcomes(self.requests, self.certificates, self.acme)

    async def member(self, address: str, *, name: str = "Ada Lovelace", roles: tuple[str, ...] = ("member",)
                     ) -> Member:
        created = await self.members.create(name=name, date_of_birth=date(1990, 1, 1), address=address,
                                            password="correct horse battery staple", roles=roles, verified=True)
        return with_second_factor(self.store, created) if {"assurer", "admin"} & set(roles) else created

    async def verified(self, member: Member, domain: str) -> None:
        claim = await self.domains.add(member, domain, None, "dns_change")
        view = await self.domains.check_now(member, claim["id"])
        await self.domains.on_verified(make_event("domain.verified", {
            "request_id": view["request_id"], "member_id": member.id, "domain": domain, "method": "dns_change",
            "br_section": "3.2.2.4.7", "verified_at": isoformat(NOW),
            "valid_until": isoformat(NOW + timedelta(days=200))}, source="domain_verify"))

    def data(self, name: str) -> list[dict[str, Any]]:
        return [e.data for e in self.store.events(name)]

    def stored(self, request_id: str) -> dict[str, Any]:
        return dict(self.store.collections["requests"][request_id])


def submitted(member_id: str, binding: str, csr_pem: str, names: list[str], *, cert_class: int = 1,
              request_id: str | None = None) -> dict[str, Any]:
    """An acme.csr_submitted payload, as the ACME service sends it (checked against the schema)."""
    return make_event("acme.csr_submitted", {
        "request_id": request_id or f"acme-{uuid.uuid4().hex}", "member_id": member_id, "binding_key_id": binding,
        "account_id": "acct-1", "order_id": "order-1", "cert_class": cert_class, "csr_pem": csr_pem,
        "dns_names": names, "submitted_at": isoformat(NOW)}, source="acme").data


def revocation(member_id: str, serial: str, *, proof: str = "account", reason: str = "superseded",
               request_id: str = "revoke-1", requested_at: datetime = NOW) -> dict[str, Any]:
    return make_event("acme.revocation_requested", {
        "request_id": request_id, "serial": serial, "member_id": member_id, "proof": proof, "account_id": "acct-1",
        "reason": reason, "requested_at": isoformat(requested_at)}, source="acme").data


@pytest.fixture
async def reg() -> Registration:
    return Registration()


async def ada_with_binding(reg: Registration, domain: str | None = "example.org") -> tuple[Member, str]:
    ada = await reg.member("ada@example.org")
    if domain:
        await reg.verified(ada, domain)
    return ada, (await reg.bindings.create(ada, label="certbot"))["key_id"]


async def test_an_acme_csr_is_decided_by_the_ra_under_the_acme_request_id(reg: Registration) -> None:
    ada, binding = await ada_with_binding(reg)
    data = submitted(ada.id, binding, build_csr(dns=["www.example.org"]), ["www.example.org"])
    await reg.acme.on_csr_submitted(data)

    stored = reg.stored(data["request_id"])
    assert stored["status"] == "caa_pending" and stored["member_id"] == ada.id and stored["profile"] == "server"
    assert stored["source"] == "acme"
    assert stored["acme"] == {"binding_key_id": binding, "account_id": "acct-1", "order_id": "order-1"}
    (check,) = reg.data("domain.caa_check_requested")  # the same CAA gate as every server request
    assert check["request_id"] == data["request_id"] and check["names"] == ["www.example.org"]
    assert reg.data("csr.approved") == [] and reg.data("csr.rejected") == []
    await reg.requests.on_caa_checked({
        "check_id": check["check_id"], "request_id": data["request_id"], "member_id": ada.id, "verdict": "allowed",
        "reason": "no_caa", "names": [{"name": "www.example.org", "allowed": True, "reason": "no_caa"}],
        "checked_at": isoformat(NOW)})
    [approved] = reg.store.events("csr.approved")
    assert approved.data["request_id"] == data["request_id"] and approved.data["dns_names"] == ["www.example.org"]
    assert approved.data["cert_class"] == 1 and approved.data["subject"] == {"CN": "www.example.org"}
    assert ApprovalVerifier.from_pem(RA_PUBLIC_PEM).problem(approved) is None
    # the member sees it among their requests, with where it came from
    view = await reg.requests.get(ada, data["request_id"])
    assert view["source"] == "acme" and view["status"] == "approved" and "csr_pem" not in view
    audit = [a for a in reg.store.audit if a["subject"] == data["request_id"]]
    assert audit[0]["action"] == "csr.approved" and audit[0]["details"]["source"] == "acme"


def _rejection(reg: Registration, request_id: str) -> list[str]:
    [rejected] = reg.store.events("csr.rejected")
    assert rejected.data["request_id"] == request_id and rejected.key == request_id
    assert reg.data("csr.approved") == [] and reg.data("domain.caa_check_requested") == []
    stored = reg.stored(request_id)
    assert stored["status"] == "rejected" and stored["reasons"] == rejected.data["reasons"]
    return list(rejected.data["reasons"])


async def test_a_name_the_member_has_not_verified_is_rejected_with_the_reason(reg: Registration) -> None:
    ada, binding = await ada_with_binding(reg)
    data = submitted(ada.id, binding, build_csr(dns=["www.example.org", "shop.example.net"]),
                     ["www.example.org", "shop.example.net"])
    await reg.acme.on_csr_submitted(data)  # a refusal is an event, never an exception

    reasons = _rejection(reg, data["request_id"])
    assert reasons == ["shop.example.net is not within a domain you have verified"]


async def test_the_csr_must_name_exactly_the_orders_identifiers(reg: Registration) -> None:
    ada, binding = await ada_with_binding(reg)
    data = submitted(ada.id, binding, build_csr(subject=[("CN", "www.example.org")],
                                                dns=["www.example.org", "mail.example.org"]), ["www.example.org"])
    await reg.acme.on_csr_submitted(data)

    [reason] = _rejection(reg, data["request_id"])
    assert reason.startswith("the CSR names mail.example.org, www.example.org but the order is for www.example.org")
    assert "RFC 8555 7.4" in reason


async def test_the_same_names_in_another_order_or_case_match(reg: Registration) -> None:
    ada, binding = await ada_with_binding(reg)
    data = submitted(ada.id, binding, build_csr(subject=[("CN", "WWW.Example.org")],
                                                dns=["mail.example.org", "www.example.org"]),
                     ["www.example.org", "mail.example.org"])
    await reg.acme.on_csr_submitted(data)
    assert reg.stored(data["request_id"])["status"] == "caa_pending"


async def test_a_revoked_binding_or_another_members_binding_decides_nothing_for_this_member(
        reg: Registration) -> None:
    ada, binding = await ada_with_binding(reg)
    bob = await reg.member("bob@example.org", name="Bob Builder")
    bobs = (await reg.bindings.create(bob))["key_id"]
    await reg.bindings.revoke(ada, binding)
    revoked = submitted(ada.id, binding, build_csr(dns=["www.example.org"]), ["www.example.org"])
    foreign = submitted(ada.id, bobs, build_csr(dns=["www.example.org"]), ["www.example.org"])
    await reg.acme.on_csr_submitted(revoked)
    await reg.acme.on_csr_submitted(foreign)

    assert [reg.stored(d["request_id"])["status"] for d in (revoked, foreign)] == ["rejected", "rejected"]
    by_request = {e["request_id"]: e["reasons"] for e in reg.data("csr.rejected")}
    assert by_request[revoked["request_id"]] == [
        f"the ACME account's binding {binding} was revoked on 2026-03-01: create a new binding and register a new "
        "ACME account with it"]
    assert by_request[foreign["request_id"]][0].startswith(
        f"the ACME account's binding {bobs} is not one of this member's bindings")
    assert reg.data("csr.approved") == [] and reg.data("domain.caa_check_requested") == []


async def test_class_3_needs_a_class_3_binding_and_a_member_assured_now(reg: Registration) -> None:
    ada, binding = await ada_with_binding(reg)
    data = submitted(ada.id, binding, build_csr(dns=["www.example.org"]), ["www.example.org"], cert_class=3)
    await reg.acme.on_csr_submitted(data)

    reasons = _rejection(reg, data["request_id"])
    assert any("is for Class 1 certificates, and this order asks for Class 3" in r for r in reasons)
    assert any(r.startswith("Class 3 certificates are only issued to Assured members") for r in reasons)


async def test_every_reason_is_given_together(reg: Registration) -> None:
    ada, binding = await ada_with_binding(reg, domain=None)
    await reg.bindings.revoke(ada, binding)
    data = submitted(ada.id, binding, build_csr(dns=["www.example.org"]), ["www.example.org", "example.org"])
    await reg.acme.on_csr_submitted(data)

    reasons = _rejection(reg, data["request_id"])
    assert len(reasons) == 3 and "was revoked" in reasons[0] and "but the order is for" in reasons[1]
    assert reasons[2] == "www.example.org is not within a domain you have verified"


async def test_an_unknown_member_is_rejected(reg: Registration) -> None:
    data = submitted("no-such-member", "B" * 22, build_csr(dns=["www.example.org"]), ["www.example.org"])
    await reg.acme.on_csr_submitted(data)
    assert "there is no member with this id" in _rejection(reg, data["request_id"])


async def test_over_the_issuance_limit_or_the_san_cap_is_a_rejection_not_an_error() -> None:
    reg = Registration(requests_per_member=1)
    ada, binding = await ada_with_binding(reg)
    first = submitted(ada.id, binding, build_csr(dns=["www.example.org"]), ["www.example.org"])
    many = [f"h{i}.example.org" for i in range(101)]
    oversized = submitted(ada.id, binding, build_csr(dns=many), many[:100])
    await reg.acme.on_csr_submitted(first)
    await reg.acme.on_csr_submitted(oversized)

    assert reg.stored(first["request_id"])["status"] == "caa_pending"
    [rejected] = reg.data("csr.rejected")
    assert rejected["request_id"] == oversized["request_id"]
    assert any(r.startswith("too many certificate requests from this account today") for r in rejected["reasons"])
    assert any("at most 100 are allowed" in r for r in rejected["reasons"])


async def test_a_redelivered_submission_creates_no_second_request_nor_event(reg: Registration) -> None:
    ada, binding = await ada_with_binding(reg)
    approved = submitted(ada.id, binding, build_csr(dns=["www.example.org"]), ["www.example.org"])
    refused = submitted(ada.id, binding, build_csr(dns=["www.example.net"]), ["www.example.net"])
    for data in (approved, refused, approved, refused):
        await reg.acme.on_csr_submitted(data)

    assert len([r for r in reg.store.collections["requests"].values() if r.get("source") == "acme"]) == 2
    assert len(reg.data("domain.caa_check_requested")) == 1 and len(reg.data("csr.rejected")) == 1
    assert len([a for a in reg.store.audit if a["action"].startswith("csr.")]) == 2


async def test_a_request_id_naming_another_request_is_dead_lettered(reg: Registration) -> None:
    ada, binding = await ada_with_binding(reg)
    mine = await reg.requests.submit(ada, build_csr(dns=["www.example.org"]), "server")
    before = list(reg.store.queued)
    with pytest.raises(PermanentError):
        await reg.acme.on_csr_submitted(submitted(ada.id, binding, build_csr(dns=["www.example.org"]),
                                                  ["www.example.org"], request_id=mine["id"]))
    assert reg.store.queued == before and reg.stored(mine["id"]).get("source") is None


async def test_the_member_api_still_answers_its_limits_with_429_and_its_refusals_with_422() -> None:
    from services.registration.ratelimit import RateLimited

    reg = Registration(requests_per_member=1)
    ada, _ = await ada_with_binding(reg)
    with pytest.raises(ApiError) as refused:
        await reg.requests.submit(ada, build_csr(dns=["www.example.net"]), "server")
    assert refused.value.status == 422 and "source" not in reg.stored(refused.value.details["request_id"])
    with pytest.raises(RateLimited):
        await reg.requests.submit(ada, build_csr(dns=["www.example.org"]), "server")


# ---- revocations ----

async def issued(reg: Registration, member: Member, serial: str, *, key: ec.EllipticCurvePrivateKey | None = None
                 ) -> str:
    await reg.certificates.on_issued([issued_data(member, serial, key=key)])
    return serial


def issued_data(member: Member, serial: str, *, key: ec.EllipticCurvePrivateKey | None = None) -> dict[str, Any]:
    pem, _ = self_signed("www.example.org", serial=int(serial, 16), key=key)
    now = datetime.now(UTC)
    return {
        "request_id": f"r-{serial}", "member_id": member.id, "serial": serial, "issuer": "class1", "cert_class": 1,
        "profile": "server", "subject": "CN=www.example.org", "dns_names": ["www.example.org"], "ip_addresses": [],
        "emails": [],
        "not_before": isoformat(now), "not_after": isoformat(now + timedelta(days=90)),
        "fingerprint_sha256": "0" * 64, "certificate_pem": pem, "chain_pem": "", "trust_anchors": ["class1"],
        "issued_at": isoformat(now)}


def revoke_requests(reg: Registration) -> list[CloudEvent]:
    return reg.store.events("cert.revoke_requested")


async def test_an_account_revokes_its_members_certificate_once(reg: Registration) -> None:
    ada, _ = await ada_with_binding(reg)
    serial = await issued(reg, ada, "5ec1")
    for _ in range(2):  # a redelivery queues nothing new
        await reg.acme.on_revocation_requested(revocation(ada.id, serial, reason="superseded"))

    [event] = revoke_requests(reg)
    assert event.data["serial"] == serial and event.data["member_id"] == ada.id
    assert event.data["reason"] == "superseded" and event.data["requested_by"] == "acme:acct-1"
    assert ApprovalVerifier.from_pem(RA_PUBLIC_PEM).problem(event) is None
    stored = reg.store.collections["certificates"][serial]
    assert stored["status"] == "revocation_requested" and stored["acme_revocation_request_id"] == "revoke-1"
    assert reg.data("cert.key_compromised") == []


async def test_acme_revoke_right_after_download_waits_for_the_certificate_record_instead_of_refusing(
        reg: Registration) -> None:
    """Found by the chaos run: an ACME client revoked right after downloading, and registration read the ACME
    service's revocation before the signer's `cert.issued` (another topic): it refused the revocation for good
    ("not a certificate of this member") and the certificate stayed valid. Now the revocation is kept until the
    certificate is recorded, then revokes it."""
    ada, _ = await ada_with_binding(reg)
    serial = "5ec3"
    for _ in range(2):  # a redelivery keeps it once
        await reg.acme.on_revocation_requested(revocation(ada.id, serial))
    assert revoke_requests(reg) == [] and not [a for a in reg.store.audit if a["action"] == "revocation.refused"]
    assert [w["serial"] for w in await reg.store.waiting_acme_revocations(None)] == [serial]
    await reg.outcomes.issued(make_event("cert.issued", issued_data(ada, serial), source="signer"))
    [event] = revoke_requests(reg)
    assert event.data["serial"] == serial and reg.store.collections["certificates"][serial]["status"] == (
        "revocation_requested")
    assert await reg.store.waiting_acme_revocations(None) == []


async def test_a_recorded_certificate_is_looked_for_among_waiting_revocations_only_while_some_may_wait(
        reg: Registration) -> None:
    """Issue 21: nearly always no revocation waits, and looking costs a read per `cert.issued` batch."""
    ada, _ = await ada_with_binding(reg)
    looked: list[Any] = []
    real = reg.store.waiting_acme_revocations

    async def counted(serials: Any) -> list[dict[str, Any]]:
        looked.append(serials)
        return await real(serials)

    reg.store.waiting_acme_revocations = counted  # type: ignore[method-assign]
    await reg.outcomes.issued(make_event("cert.issued", issued_data(ada, "5e01"), source="signer"))
    assert looked == [["5e01"]]  # before the first sweep, something may wait
    assert await reg.acme.retry_waiting() == 0
    await reg.outcomes.issued(make_event("cert.issued", issued_data(ada, "5e02"), source="signer"))
    assert looked == [["5e01"], None]  # the sweep found none: the record did not look
    await reg.acme.on_revocation_requested(revocation(ada.id, "5e03"))  # kept: not recorded yet
    await reg.outcomes.issued(make_event("cert.issued", issued_data(ada, "5e03"), source="signer"))
    assert looked[-1] == ["5e03"]
    [event] = revoke_requests(reg)
    assert event.data["serial"] == "5e03"


async def test_registration_consumer_stall_an_acme_revocation_waiting_for_its_certificate_holds_up_no_event(
        reg: Registration) -> None:
    """Found by the chaos long run (issue 23): the revocation used to wait by failing its event as transient, so
    the consumer retried it in place for up to ten minutes, and every topic registration reads waited behind it,
    `cert` too: the `cert.issued` it waited for could not arrive, and the whole member flow stood still. It now
    returns at once; the sweep handles it once the certificate is recorded by any path, or refuses it once it
    has waited long enough."""
    ada, _ = await ada_with_binding(reg)
    await reg.acme.on_revocation_requested(revocation(ada.id, "5ec5"))  # returns: nothing raised, nothing held
    await reg.acme.on_revocation_requested(revocation(ada.id, "5ec6", request_id="revoke-2"))
    assert await reg.acme.retry_waiting() == 0  # neither recorded, neither waited long enough
    await issued(reg, ada, "5ec5")  # recorded without the outcome handler (it came between look and keeping)
    assert await reg.acme.retry_waiting() == 1
    [event] = revoke_requests(reg)
    assert event.data["serial"] == "5ec5"
    late = Registration(store=reg.store, now=NOW + CERTIFICATE_RECORD_WAIT)
    assert await late.acme.retry_waiting() == 1
    [refusal] = [a for a in reg.store.audit if a["action"] == "revocation.refused"]
    assert refusal["subject"] == "5ec6" and refusal["details"]["refusal"] == "not a certificate of this member"
    assert await reg.store.waiting_acme_revocations(None) == []


async def test_acme_revoke_while_cert_issued_is_being_recorded_waits_instead_of_refusing(reg: Registration) -> None:
    """Found by the chaos long run (issue 23, three flows): registration looked for the member's certificate, then
    for anyone's; a `cert.issued` recorded between the two reads made a revocation that should have waited
    "not a certificate of this member", refused for good. One read decides now."""
    ada, _ = await ada_with_binding(reg)
    serial = "5ec7"
    real = reg.store.certificate

    async def recorded_meanwhile(wanted: str, member_id: str | None) -> dict[str, Any] | None:
        found = await real(wanted, member_id)
        if wanted == serial and serial not in reg.store.collections["certificates"]:
            await issued(reg, ada, serial)  # cert.issued is recorded right after the first read
        return found

    reg.store.certificate = recorded_meanwhile  # type: ignore[method-assign,assignment]
    await reg.acme.on_revocation_requested(revocation(ada.id, serial))
    reg.store.certificate = real  # type: ignore[method-assign]
    await reg.acme.retry_waiting()
    assert not [a for a in reg.store.audit if a["action"] == "revocation.refused"]
    [event] = revoke_requests(reg)
    assert event.data["serial"] == serial


async def test_an_account_cannot_revoke_another_members_certificate(reg: Registration) -> None:
    ada, _ = await ada_with_binding(reg)
    bob = await reg.member("bob@example.org", name="Bob Builder")
    serial = await issued(reg, bob, "5ec2")
    await reg.acme.on_revocation_requested(revocation(ada.id, serial))
    # a serial never recorded: refused once its cert.issued would have arrived long ago
    await reg.acme.on_revocation_requested(revocation(ada.id, "ffff", requested_at=NOW - CERTIFICATE_RECORD_WAIT))

    assert revoke_requests(reg) == [] and reg.store.collections["certificates"][serial]["status"] == "valid"
    refusals = [a for a in reg.store.audit if a["action"] == "revocation.refused"]
    assert [(a["subject"], a["actor"], a["details"]["refusal"]) for a in refusals] == [
        (serial, "acme:acct-1", "not a certificate of this member"),
        ("ffff", "acme:acct-1", "not a certificate of this member")]


async def test_the_certificates_own_key_revokes_any_certificate_and_blocks_a_compromised_key(
        reg: Registration) -> None:
    ada, _ = await ada_with_binding(reg)
    bob = await reg.member("bob@example.org", name="Bob Builder")
    key = ec.generate_private_key(ec.SECP256R1())
    serial = await issued(reg, bob, "5ec3", key=key)
    data = revocation("someone-else", serial, proof="certificate_key", reason="key_compromise")
    for _ in range(2):
        await reg.acme.on_revocation_requested(data)

    [event] = revoke_requests(reg)
    assert event.data["member_id"] == bob.id and event.data["reason"] == "key_compromise"
    [blocked] = reg.data("cert.key_compromised")
    assert blocked["spki_sha256"] == spki_sha256(key.public_key()) and blocked["evidence"] == "proof_of_possession"
    assert await reg.store.blocked_key(blocked["spki_sha256"]) is not None
    # and no later CSR with that key is approved, ACME or not
    with pytest.raises(ApiError) as refused:
        await reg.requests.submit(ada, build_csr(dns=["www.example.org"], key=key), "server")
    assert any("blocked" in r for r in refused.value.details["reasons"])


async def test_reasons_a_subscriber_may_not_give_and_unknown_serials_are_refused(reg: Registration) -> None:
    ada, _ = await ada_with_binding(reg)
    serial = await issued(reg, ada, "5ec4")
    await reg.acme.on_revocation_requested(revocation(ada.id, serial, reason="certificate_hold"))
    await reg.acme.on_revocation_requested(revocation(ada.id, "abcd", proof="certificate_key",
                                                      requested_at=NOW - CERTIFICATE_RECORD_WAIT))

    assert revoke_requests(reg) == []
    assert [a["details"]["refusal"] for a in reg.store.audit if a["action"] == "revocation.refused"] == [
        "revocation reason certificate_hold is not one a subscriber may give", "no certificate with this serial"]


def test_the_acme_topic_is_what_registration_reads() -> None:
    from shared.events.access import SERVICES

    assert BY_NAME["acme.csr_submitted"].topic == BY_NAME["acme.revocation_requested"].topic == "acme"
    assert "acme" in SERVICES["registration"].reads and "acme.bindings" in SERVICES["registration"].writes


def acme_verified(member: Member, domain: str, method: str) -> CloudEvent:
    """domain_verify's answer to a challenge the ACME service asked for (registration never saw the request)."""
    return make_event("domain.verified", {
        "request_id": uuid.uuid4().hex, "member_id": member.id, "domain": domain, "method": method,
        "verified_at": isoformat(NOW), "valid_until": isoformat(NOW + timedelta(days=200))}, source="domain_verify")


async def test_a_domain_proven_by_an_acme_challenge_joins_the_members_domains_for_the_policy(
        reg: Registration) -> None:
    ada, binding = await ada_with_binding(reg, domain=None)
    event = acme_verified(ada, "web.example.net", "acme_http_01")
    await reg.domains.on_verified(event)
    await reg.domains.on_verified(event)  # redelivered
    [claim] = [d for d in reg.store.collections["domains"].values() if d["member_id"] == ada.id]
    assert (claim["domain"], claim["status"], claim["verified_method"], claim["source"]) == (
        "web.example.net", "verified", "acme_http_01", "acme")
    assert claim["request_ids"] == [event.data["request_id"]]
    assert await reg.domains.verification_methods(ada.id) == {"web.example.net": "acme_http_01"}

    exact = submitted(ada.id, binding, build_csr(dns=["web.example.net"]), ["web.example.net"])
    below = submitted(ada.id, binding, build_csr(dns=["shop.web.example.net"]), ["shop.web.example.net"])
    await reg.acme.on_csr_submitted(exact)
    await reg.acme.on_csr_submitted(below)
    assert reg.stored(exact["request_id"])["status"] == "caa_pending"
    [refused] = reg.data("csr.rejected")  # http-01 proves its FQDN alone (BR 3.2.2.4.19)
    assert refused["request_id"] == below["request_id"]
    assert "shop.web.example.net is not within a domain you have verified" in refused["reasons"]


async def test_an_http01_proof_does_not_narrow_a_domain_already_verified_for_its_subdomains(
        reg: Registration) -> None:
    ada, _ = await ada_with_binding(reg, domain="example.org")
    await reg.domains.on_verified(acme_verified(ada, "example.org", "acme_http_01"))
    assert await reg.domains.verification_methods(ada.id) == {"example.org": "dns_change"}
    await reg.domains.on_verified(acme_verified(ada, "example.org", "acme_dns_01"))
    assert await reg.domains.verification_methods(ada.id) == {"example.org": "acme_dns_01"}


async def test_a_batch_of_cert_issued_records_every_certificate_and_request_and_frees_the_revocations_waiting(
        reg: Registration) -> None:
    """Registration's `cert.issued` batch handler (issue 21: one write for the certificates, one for the
    requests and one read of the waiting revocations per batch) does what the one-event handler does for each."""
    from shared.kafka import Batch

    ada, _ = await ada_with_binding(reg)
    await reg.acme.on_revocation_requested(revocation(ada.id, "5eb2"))
    serials = ["5eb1", "5eb2", "5eb3"]
    for serial in serials:
        reg.store.collections["requests"][f"r-{serial}"] = {"_id": f"r-{serial}", "member_id": ada.id,
                                                            "status": "approved"}
    events = [make_event("cert.issued", issued_data(ada, s), source="signer") for s in [*serials, "5eb1"]]
    await reg.outcomes.issued_batch(Batch("cert", 0, events, list(range(len(events)))))  # 5eb1 redelivered in it

    assert sorted(reg.store.collections["certificates"]) == serials
    assert [reg.stored(f"r-{s}")["status"] for s in serials] == ["issued"] * 3
    assert [reg.stored(f"r-{s}")["serial"] for s in serials] == serials
    [event] = revoke_requests(reg)
    assert event.data["serial"] == "5eb2" and await reg.store.waiting_acme_revocations(None) == []
