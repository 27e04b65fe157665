"""An append-only, hash-chained audit log kept in each service's own database.

Every security-relevant action (issuance, revocation, assurance, role change,
admin action, RA decision, domain verification) is one entry in the
collection `audit`:

    {_id: seq, seq, at, actor, action, subject, details, prev_hash, hash}

`hash` = SHA-256 (hex) over the canonical JSON (sorted keys, no spaces,
UTF-8) of `{seq, at, actor, action, subject, details, prev_hash}`, and
`prev_hash` is the `hash` of entry `seq - 1` (64 zeros for the first). So
changing, removing or re-ordering any stored entry breaks the chain at that
entry, and `verify` names the first broken link.

Concurrent writers (several replicas) cannot fork the chain: `_id` is the
sequence number, an entry is inserted with `_id = last seq + 1`, and the
loser of a race gets a duplicate-key error, re-reads the head and retries.
This uses only single-document inserts on `_id`, which MongoDB and FerretDB
both enforce atomically.

Use from a service:

    audit = AuditLog(db)
    await audit.append(actor=member_id, action="csr.approved", subject=request_id, details={...})

Verify from the command line (exit 1 and the first broken entry if tampered):

    python -m shared.audit verify [--mongo-url URL] --database registration
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.events import isoformat, utcnow

COLLECTION = "audit"
GENESIS = "0" * 64
HASHED_FIELDS = ("seq", "at", "actor", "action", "subject", "details", "prev_hash")
Document = dict[str, Any]


def canonical(value: Any) -> str:
    """The one JSON spelling of a value that is hashed (and stored): sorted keys, compact, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _plain(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """Details as plain JSON types (datetimes as ISO strings), exactly as they will be stored."""
    return json.loads(json.dumps(dict(details or {}), default=lambda v: isoformat(v) if isinstance(v, datetime)
                                 else str(v)))


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical({k: entry[k] for k in HASHED_FIELDS}).encode()).hexdigest()


@dataclasses.dataclass(frozen=True)
class Pending:
    actor: str
    action: str
    subject: str
    details: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    head_hash: str
    broken_seq: int | None = None
    problem: str | None = None

    def describe(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.entries} entries, head {self.head_hash}"
        return f"audit chain BROKEN at seq {self.broken_seq}: {self.problem} ({self.entries} entries checked)"


class AuditLog:
    """Appends entries to one database's `audit` collection and verifies the chain."""

    def __init__(self, db: AsyncDatabase[Document], *, clock: Callable[[], datetime] = utcnow,
                 collection: str = COLLECTION, max_attempts: int = 50) -> None:
        self.collection = db[collection]
        self._clock = clock
        self._lock = asyncio.Lock()  # one writer per process; replicas race on the unique _id
        self._max_attempts = max_attempts
        self._head: tuple[int, str] | None = None

    async def _current_head(self) -> tuple[int, str]:
        """The last entry's (seq, hash).

        Found by a sorted query once per process, then kept and only followed forward by `_id`
        lookups (entries other writers appended since): FerretDB scans the whole collection for a
        sort, so doing that on every append made each append slower than the last.
        """
        if self._head is None:
            head = await self.collection.find_one({}, sort=[("_id", DESCENDING)])
            self._head = (int(head["_id"]), str(head["hash"])) if head else (0, GENESIS)
        seq, prev = self._head
        while (following := await self.collection.find_one({"_id": seq + 1}, {"hash": 1})) is not None:
            seq, prev = seq + 1, str(following["hash"])
        self._head = (seq, prev)
        return self._head

    async def append(self, *, actor: str, action: str, subject: str,
                     details: Mapping[str, Any] | None = None) -> Document:
        """Append one entry and return it (as stored)."""
        (entry,) = await self.append_many([Pending(str(actor), action, str(subject), _plain(details))])
        return entry

    async def append_many(self, pending: Iterable[Pending]) -> list[Document]:
        """Append several entries as one contiguous block (one insert round trip when uncontended)."""
        todo = [dataclasses.replace(p, details=_plain(p.details)) for p in pending]
        written: list[Document] = []
        async with self._lock:
            for _ in range(self._max_attempts):
                if not todo:
                    return written
                seq, prev = await self._current_head()
                at = isoformat(self._clock())
                docs = []
                for item in todo:
                    seq += 1
                    entry: Document = {"seq": seq, "at": at, "actor": item.actor, "action": item.action,
                                       "subject": item.subject, "details": item.details, "prev_hash": prev}
                    entry["hash"] = prev = entry_hash(entry)
                    docs.append({"_id": seq, **entry})
                try:
                    if len(docs) == 1:
                        await self.collection.insert_one(docs[0])
                    else:
                        await self.collection.insert_many(docs, ordered=True)
                    self._head = (docs[-1]["_id"], docs[-1]["hash"])
                    return written + docs
                except DuplicateKeyError:
                    continue  # another writer took this seq: follow the chain from there and retry
                except BulkWriteError as exc:
                    inserted = int(exc.details.get("nInserted", 0))
                    written += docs[:inserted]
                    todo = todo[inserted:]
                    if inserted:
                        self._head = (docs[inserted - 1]["_id"], docs[inserted - 1]["hash"])
        raise RuntimeError(f"audit append lost the race {self._max_attempts} times in a row")

    async def verify(self) -> Verification:
        """Walk the chain from seq 1; the first entry whose content, hash, link or number is wrong."""
        expected_seq, prev, count = 1, GENESIS, 0
        async for doc in self.collection.find({}).sort("_id", 1):
            count += 1
            seq = doc.get("_id")
            problem = None
            if seq != expected_seq or doc.get("seq") != seq:
                problem = f"expected entry {expected_seq} here, found _id {seq!r} seq {doc.get('seq')!r} " \
                          "(an entry was removed or inserted)"
            elif any(field not in doc for field in (*HASHED_FIELDS, "hash")):
                problem = "fields are missing"
            elif doc["prev_hash"] != prev:
                problem = "prev_hash does not match the hash of the entry before it"
            elif entry_hash(doc) != doc["hash"]:
                problem = "the entry's content does not match its hash (it was altered)"
            if problem:
                return Verification(False, count, prev, expected_seq, problem)
            prev, expected_seq = doc["hash"], expected_seq + 1
        return Verification(True, count, prev)


async def _verify_command(url: str, database: str) -> Verification:
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(url, serverSelectionTimeoutMS=5000, tz_aware=True)
    try:
        return await AuditLog(client[database]).verify()
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.audit", description="audit log tools")
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="check the hash chain; exit 1 naming the first broken entry")
    verify.add_argument("--mongo-url", default=os.environ.get("CACERT_MONGO_URL", "mongodb://127.0.0.1:27017"))
    verify.add_argument("--database", default=os.environ.get("CACERT_MONGO_DATABASE"),
                        help="the service's database (default CACERT_MONGO_DATABASE)")
    args = parser.parse_args(argv)
    if not args.database:
        parser.error("--database (or CACERT_MONGO_DATABASE) is required")
    result = asyncio.run(_verify_command(args.mongo_url, args.database))
    print(result.describe())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
