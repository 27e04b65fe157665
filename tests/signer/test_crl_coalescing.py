"""Revocations arriving one after another while a CRL is rebuilt share rebuilds (issue 18 item 6), and each
certificate's CRL is still stored before its `cert.revoked` is published."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from services.signer.ca.crl import CRLScope
from services.signer.ca.hierarchy import Hierarchy
from services.signer.revoking import CoalescedRebuild, CRLPublisher, Revoker
from shared.approvals import ApprovalVerifier
from shared.events import CloudEvent
from tests.approval_keys import RA_PUBLIC_PEM
from tests.signer.conftest import PKI_BASE

NOT_AFTER = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)


@dataclass
class _Updated:
    modified_count: int


class _Statuses:
    def __init__(self, docs: dict[str, dict[str, Any]]) -> None:
        self.docs = docs

    async def update_one(self, query: dict[str, Any], update: dict[str, Any]) -> _Updated:
        doc = self.docs.get(query["_id"])
        if doc is None or doc["status"] != query["status"]:
            return _Updated(0)
        doc.update(update["$set"])
        return _Updated(1)


class _SlowStore:
    """The signer store's CRL half, in memory; each rebuild's read of the entries takes a while, so
    revocations pile up during it. Counts rebuilds per scope and remembers each stored CRL."""

    def __init__(self, docs: dict[str, dict[str, Any]]) -> None:
        self.docs = docs
        self.statuses = _Statuses(docs)
        self.rebuilds: dict[CRLScope, int] = {}
        self.running: dict[CRLScope, int] = {}
        self.most_at_once = 0
        self.counters: dict[CRLScope, int] = {}
        self.crls: dict[CRLScope, bytes] = {}

    async def status(self, serial: str) -> dict[str, Any] | None:
        return self.docs.get(serial)

    async def revoked(self, scope: CRLScope, now: dt.datetime) -> list[dict[str, Any]]:
        self.rebuilds[scope] = self.rebuilds.get(scope, 0) + 1
        self.running[scope] = self.running.get(scope, 0) + 1
        self.most_at_once = max(self.most_at_once, self.running[scope])
        try:
            found = [dict(d) for d in self.docs.values() if d["status"] == "revoked"
                     and d["issuer"] == scope.issuer and d.get("crl_shard") == scope.shard]
            await asyncio.sleep(0.05)  # the rest of a slow rebuild: what it read is what it lists
            return found
        finally:
            self.running[scope] -= 1

    async def next_crl_number(self, scope: CRLScope) -> int:
        self.counters[scope] = self.counters.get(scope, 0) + 1
        return self.counters[scope]

    async def save_crl(self, scope: CRLScope, number: int, der: bytes, *_: Any) -> None:
        self.crls[scope] = der

    def listed(self, scope: CRLScope) -> set[int]:
        return {entry.serial_number for entry in x509.load_der_x509_crl(self.crls[scope])}


class _Producer:
    """Checks, when each `cert.revoked` is published, that the stored CRL of its certificate lists it."""

    def __init__(self, store: _SlowStore) -> None:
        self.store = store
        self.published: list[str] = []
        self.unlisted: list[str] = []

    async def publish_many(self, events: list[CloudEvent]) -> None:
        for event in events:
            serial = event.data["serial"]
            scope = CRLScope(event.data["issuer"], self.store.docs[serial].get("crl_shard"))
            if int(serial, 16) not in self.store.listed(scope):
                self.unlisted.append(serial)
            self.published.append(serial)


def _issued(serial: int, shard: int) -> dict[str, Any]:
    return {"_id": f"{serial:04x}", "issuer": "class1", "request_id": f"r-{serial}", "member_id": "m-1",
            "status": "issued", "not_after": NOT_AFTER, "crl_shard": shard}


async def test_revocations_arriving_during_a_rebuild_share_the_next_one(pki: Hierarchy) -> None:
    docs = {d["_id"]: d for d in (_issued(n, n % 2) for n in range(1, 61))}
    store = _SlowStore(docs)
    producer = _Producer(store)
    crls = CRLPublisher(pki, store, validity=dt.timedelta(hours=24),  # type: ignore[arg-type]
                        refresh_before=dt.timedelta(hours=1), public_base_url=PKI_BASE, shards=2)
    revoker = Revoker(store, producer, crls, ApprovalVerifier.from_pem(RA_PUBLIC_PEM))  # type: ignore[arg-type]

    async def revoke(serial: str, after: float) -> None:
        await asyncio.sleep(after)
        await revoker.revoke_all([(docs[serial], "superseded", "m-1")])

    # Sixty separate revocations (separate batches, as from separate fetches), spread over three rebuild times.
    await asyncio.gather(*(revoke(serial, i * 0.0025) for i, serial in enumerate(docs)))

    assert sorted(producer.published) == sorted(docs)
    assert producer.unlisted == [], "cert.revoked published before a CRL listing the certificate was stored"
    for shard in (0, 1):
        scope = CRLScope("class1", shard)
        assert store.listed(scope) == {int(s, 16) for s, d in docs.items() if d["crl_shard"] == shard}
        # One per revocation would be 30; the first runs alone, each later one gathers what came meanwhile.
        assert store.rebuilds[scope] <= 6, store.rebuilds
    assert store.most_at_once == 1  # never two rebuilds of one CRL at the same time


async def test_a_caller_never_gets_a_rebuild_that_started_before_it_called() -> None:
    started: list[float] = []
    loop = asyncio.get_running_loop()

    async def rebuild() -> int:
        started.append(loop.time())
        await asyncio.sleep(0.02)
        return len(started)

    single = CoalescedRebuild(rebuild)

    async def call(after: float) -> tuple[float, int]:
        await asyncio.sleep(after)
        called = loop.time()
        return called, await single.run()

    answers = await asyncio.gather(*(call(i * 0.003) for i in range(40)))
    for called, number in answers:
        assert started[number - 1] >= called
    assert len(started) < 10  # coalesced: 40 callers over ~6 rebuild times


async def test_a_failed_rebuild_reaches_its_callers_and_the_next_call_rebuilds_again() -> None:
    outcomes: Iterator[Exception | int] = iter([RuntimeError("database gone"), 7])

    async def rebuild() -> int:
        await asyncio.sleep(0.01)
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    single = CoalescedRebuild(rebuild)
    first = await asyncio.gather(single.run(), return_exceptions=True)
    assert isinstance(first[0], RuntimeError)
    assert await single.run() == 7
