"""How long until the CRLs are published after one more revocation, with many revoked already? `python -m
benchmarks.crl_scale`

Fills a throw-away database of the signer on the local MongoDB-protocol store (FerretDB in the local stack,
`./dev up` or `python -m devstack up --only mongo`; the JSON names the server that answered) with `--revoked`
revoked, unexpired certificates for each of two CAs (a CA directory of `ceremony.bootstrap`, whose two
CAs sign leaves): `class1`'s are spread over `--shards` CRL shards (the sharded CRLs, as issued today),
`class3`'s have no shard (the single full CRL every certificate pointed at before: the baseline, measured
in the same run). Then revokes one more certificate of each CA through the signer's `Revoker`, `--repeat`
times, and times `revoke_all`: the status flip, the rebuild and storage of the CRL concerned. Kafka is left
out (the `cert.revoked` events are collected in memory; publishing them costs the same on both sides).
Prints one JSON object: times, the largest CRL of each side in bytes, their ratios, and the load average
(1, 5, 15 minutes) before and after (a figure only means something on a quiet machine).

    python -m benchmarks.crl_scale --revoked 100000 --shards 16
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymongo import AsyncMongoClient

from services.signer.ca.ceremony import bootstrap
from services.signer.ca.crl import DEFAULT_SHARDS, CRLScope, crl_shard_of
from services.signer.ca.serials import new_serial_number, serial_hex
from services.signer.ca.urls import CAUrls
from services.signer.revoking import CRLPublisher, Revoker
from services.signer.store import INDEXES, CertificateStore, Document
from shared.approvals import ApprovalVerifier
from shared.events import CloudEvent, utcnow
from shared.logging import configure
from shared.mongo import ensure_indexes

BASE_URL = "http://pki.example.net"
SHARDED, UNSHARDED = "class1", "class3"
REASONS = ("key_compromise", "superseded", "cessation_of_operation", "affiliation_changed", "unspecified")
FILL_BATCH = 5000


class _Announcements:
    """Where `Revoker` hands the `cert.revoked` events: kept in memory, Kafka is not what is measured."""

    def __init__(self) -> None:
        self.events: list[CloudEvent] = []

    async def publish_many(self, events: list[CloudEvent]) -> None:
        self.events.extend(events)


def _status(issuer: str, shard: int | None, now: dt.datetime, n: int, *, revoked: bool) -> tuple[int, Document]:
    serial = new_serial_number()
    doc: Document = {
        "_id": serial_hex(serial), "issuer": issuer, "request_id": f"bench-{issuer}-{n}", "member_id": "bench",
        "status": "issued", "not_after": now + dt.timedelta(days=30 + n % 300), "spki_sha256": f"{n:064x}",
    }
    if shard is not None:
        doc["crl_shard"] = crl_shard_of(serial, shard)
    if revoked:
        doc |= {"status": "revoked", "revoked_at": now - dt.timedelta(minutes=n % 10_000),
                "revocation_reason": REASONS[n % len(REASONS)]}
    return serial, doc


async def _fill(store: CertificateStore, count: int, shards: int, now: dt.datetime) -> float:
    started = time.perf_counter()
    for issuer, sharding in ((SHARDED, shards), (UNSHARDED, None)):
        for first in range(0, count, FILL_BATCH):
            last = min(count, first + FILL_BATCH)
            docs = [_status(issuer, sharding, now, n, revoked=True)[1] for n in range(first, last)]
            await store.statuses.insert_many(docs, ordered=False)
    return time.perf_counter() - started


async def _revoke_one_more(store: CertificateStore, revoker: Revoker, issuer: str, shards: int | None,
                           now: dt.datetime, n: int) -> float:
    _, doc = _status(issuer, shards, now, n, revoked=False)
    await store.statuses.insert_one(doc)
    started = time.perf_counter()
    await revoker.revoke_all([(doc, "key_compromise", "bench")])
    return time.perf_counter() - started


async def measure(mongo_url: str, *, revoked: int = 100_000, shards: int = DEFAULT_SHARDS,
                  repeat: int = 3) -> dict[str, Any]:
    if shards < 2:
        raise ValueError("compare at least two shards against the unsharded CRL")
    loadavg_before = os.getloadavg()
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_url, tz_aware=True)
    name = f"bench_crl_scale_{uuid.uuid4().hex[:8]}"
    db = client[name]
    try:
        build = await client.admin.command("buildInfo")
        server = f"FerretDB {build['ferretdbVersion']}" if "ferretdbVersion" in build else f"MongoDB {build['version']}"
        with tempfile.TemporaryDirectory() as directory:
            hierarchy = bootstrap(Path(directory) / "ca", b"crl scale benchmark", "p256",
                                  class1_urls=CAUrls.under(BASE_URL, "class1"))
            await ensure_indexes(db, INDEXES)
            store = CertificateStore(db)
            now = utcnow()
            fill_s = await _fill(store, revoked, shards, now)
            crls = CRLPublisher(hierarchy, store, validity=dt.timedelta(hours=24),
                                refresh_before=dt.timedelta(hours=6), public_base_url=BASE_URL, shards=shards)
            started = time.perf_counter()
            await crls.refresh_due()  # every CRL of both CAs published once, as when the signer starts
            first_publication_s = time.perf_counter() - started
            # revoke_all acts on requests already checked: no RA key is consulted, a throw-away one fills the slot.
            approvals = ApprovalVerifier([Ed25519PrivateKey.generate().public_key()])
            revoker = Revoker(store, _Announcements(), crls, approvals)  # type: ignore[arg-type]
            sides: dict[str, dict[str, Any]] = {}
            for label, issuer, sharding in (("sharded", SHARDED, shards), ("unsharded", UNSHARDED, None)):
                times = [await _revoke_one_more(store, revoker, issuer, sharding, now, revoked + i)
                         for i in range(repeat)]
                published = await store.crl_scopes(issuer)
                sizes = {}
                for scope in published:
                    current = await store.current_crl(scope)
                    if current is not None and (scope.shard is not None) == (sharding is not None):
                        sizes[scope] = (len(current["der"]), current["revoked_count"])
                largest = max(sizes, key=lambda scope: sizes[scope][0])
                sides[label] = {
                    "issuer": issuer,
                    "crls": len(sizes),
                    "publish_after_one_revocation_s": [round(t, 4) for t in times],
                    "publish_after_one_revocation_median_s": round(statistics.median(times), 4),
                    "largest_crl": _scope_path(largest),
                    "largest_crl_bytes": sizes[largest][0],
                    "largest_crl_entries": sizes[largest][1],
                    "all_crls_bytes": sum(size for size, _ in sizes.values()),
                }
    finally:
        await client.drop_database(name)
        await client.close()
    sharded, unsharded = sides["sharded"], sides["unsharded"]
    return {
        "benchmark": "crl_scale",
        "store": f"{server} at {mongo_url}, database {name} (dropped afterwards): {2 * revoked} revoked status "
                 "documents in one collection, the signer's indexes",
        "revoked_per_ca": revoked,
        "shards": shards,
        "repeat": repeat,
        "fill_s": round(fill_s, 1),
        "first_publication_of_every_crl_s": round(first_publication_s, 2),
        "sharded": sharded,
        "unsharded": unsharded,
        "ratio_publish_time": round(sharded["publish_after_one_revocation_median_s"]
                                    / unsharded["publish_after_one_revocation_median_s"], 3),
        "ratio_largest_crl_bytes": round(sharded["largest_crl_bytes"] / unsharded["largest_crl_bytes"], 4),
        "loadavg_before": [round(v, 2) for v in loadavg_before],
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


def _scope_path(scope: CRLScope) -> str:
    return f"/{scope.name}.crl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.crl_scale", description=__doc__.split("\n")[0])
    parser.add_argument("--revoked", type=int, default=100_000, help="revoked, unexpired certificates per CA")
    parser.add_argument("--shards", type=int, default=DEFAULT_SHARDS, help="CRL shards of the sharded CA")
    parser.add_argument("--repeat", type=int, default=3, help="one-more revocations timed on each side")
    parser.add_argument("--mongo-url", default=os.environ.get("CACERT_MONGO_URL", "mongodb://127.0.0.1:27018"))
    args = parser.parse_args(argv)
    configure("crl_scale", "WARNING", stream=sys.stderr)  # stdout carries the JSON only
    result = asyncio.run(measure(args.mongo_url, revoked=args.revoked, shards=args.shards, repeat=args.repeat))
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
