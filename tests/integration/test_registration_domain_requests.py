"""A domain claim follows the verification request domain_verify keeps, whatever order two requests' writes land
in (issue 23, found by the chaos run: `kill9:registration` during `POST /v1/domains/{id}/verify`).

The client's try lost its answer and was sent again while the first was still being handled: one claim got two
requests, and the older one's write landed last. domain_verify kept the newer one (the latest `requested_at`) and
superseded the older, whose `domain.verification_failed` then failed the claim, since registration had made the
older request current; the member's confirmation of the newer one changed nothing. Registration's store (on
FerretDB, as in the run) now keeps the newer request current by the same rule
(`shared.domain_methods.current_request_order`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient

from services.registration.store import MongoRegistrationStore
from shared import outbox
from shared.config import MongoSettings
from shared.domain_methods import current_request_order
from shared.events import isoformat, make_event, utcnow

Document = dict[str, Any]


def _request_event(request_id: str, member_id: str, requested_at: datetime) -> Any:
    return make_event("domain.verification_requested", {
        "request_id": request_id, "member_id": member_id, "member_name": "Ada", "domain": "example.org",
        "contact": "hostmaster@example.org", "method": "email", "requested_at": isoformat(requested_at)},
        source="registration")


async def test_kill9_registration_during_verify_the_claim_follows_the_newest_request_whatever_order_writes_land(
        mongo_settings: MongoSettings) -> None:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_settings.url)
    try:
        store = MongoRegistrationStore(client[mongo_settings.database], clock=utcnow)
        member_id, claim_id = "member-1", uuid.uuid4().hex
        assert await store.insert_domain({"_id": claim_id, "member_id": member_id, "domain": "example.org",
                                          "status": "unverified", "request_ids": [], "created_at": utcnow()})
        first_try = datetime.now(UTC).replace(microsecond=123456)
        second_try = first_try + timedelta(milliseconds=40)
        older, newer = uuid.uuid4().hex, uuid.uuid4().hex

        def fields(at: datetime) -> Document:
            return {"status": "pending", "contact": "hostmaster@example.org", "requested_at": at,
                    "failure_reason": None, "failure_found": [], "method": "email"}

        # The second try's write lands first, the first try's after it.
        await store.record_verification_request(claim_id, newer, fields(second_try),
                                                _request_event(newer, member_id, second_try))
        await store.record_verification_request(claim_id, older, fields(first_try),
                                                _request_event(older, member_id, first_try))
        claim = await store.domain(claim_id, member_id)
        assert claim is not None and claim["request_id"] == newer and set(claim["request_ids"]) == {older, newer}
        raw = await client[mongo_settings.database]["domains"].find_one({"_id": claim_id})
        assert raw is not None and len(raw[outbox.FIELD]) == 2  # both requests go out (no producer: still queued)

        # domain_verify supersedes the older one: its failure does not touch the claim.
        assert not await store.record_domain_failed(older, member_id, {"failure_reason": "superseded"})
        assert (await store.domain(claim_id, member_id) or {})["status"] == "pending"
        # The member confirms the newer one: verified.
        assert await store.record_domain_verified(newer, member_id, "example.org", {"status": "verified"})
        assert (await store.domain(claim_id, member_id) or {})["status"] == "verified"

        # Two requests in the same millisecond: the greater request id is current, as domain_verify decides.
        other_claim = uuid.uuid4().hex
        assert await store.insert_domain({"_id": other_claim, "member_id": member_id, "domain": "example.net",
                                          "status": "unverified", "request_ids": [], "created_at": utcnow()})
        same_ms = first_try.replace(microsecond=500000)
        low, high = sorted([uuid.uuid4().hex, uuid.uuid4().hex])
        for request_id, at in ((high, same_ms), (low, same_ms.replace(microsecond=500900))):
            await store.record_verification_request(other_claim, request_id, fields(at),
                                                    _request_event(request_id, member_id, at))
        assert current_request_order(same_ms, high) > current_request_order(same_ms.replace(microsecond=500900), low)
        assert (await store.domain(other_claim, member_id) or {})["request_id"] == high
    finally:
        await client.close()
