"""An append-only, hash-chained audit log kept in each service's own database.

Every security-relevant action (issuance, revocation, assurance, role change,
admin action, RA decision, domain verification) is one entry in the
collection `audit`:

    {_id: "000000000000042", seq: 42, at, actor, action, subject, details, prev_hash, hash}

`hash` = SHA-256 (hex) over the canonical JSON (sorted keys, no spaces,
UTF-8) of `{seq, at, actor, action, subject, details, prev_hash}`, and
`prev_hash` is the `hash` of entry `seq - 1` (64 zeros for the first). So
changing, removing or re-ordering any stored entry breaks the chain at that
entry, and `verify` names the first broken link.

Concurrent writers (several replicas) cannot fork the chain: `_id` is the
sequence number, an entry is inserted with `_id = last seq + 1`, and the
loser of a race gets a duplicate-key error, follows the chain from its head
and retries. This uses only inserts and lookups on `_id`, which MongoDB and
FerretDB both enforce atomically.

The `_id` is the sequence number as a zero-padded *string* (`entry_key`):
FerretDB v1 answers a lookup by a string `_id` from its primary key but scans
the whole collection for a numeric one, which made every append O(entries).
The happy path does no lookup at all: a writer keeps the head it last wrote
and only reads when an insert says another writer got there first. Writers
that keep losing races (replicas appending batch after batch) leave their
head in `audit_head` for each other and, for a while, read it before each append,
so taking turns costs a lookup, not a lost insert; the hint is only where to
start (an insert after a stale one loses its race and follows the chain), never
trusted as the chain.

Use from a service:

    audit = AuditLog(db)
    await audit.append(actor=member_id, action="csr.approved", subject=request_id, details={...})

Verify from the command line (exit 1 and the first broken entry if tampered):

    python -m shared.audit verify [--mongo-url URL] --database registration
    python -m shared.audit verify --file ca-roots/ceremony-audit.jsonl   # the offline ceremonies' log
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from shared.events import isoformat, utcnow

COLLECTION = "audit"
GENESIS = "0" * 64
KEY_DIGITS = 15
CONTENDED_SECONDS = 60.0  # how long a writer that lost a race keeps sharing its head
HASHED_FIELDS = ("seq", "at", "actor", "action", "subject", "details", "prev_hash")
Document = dict[str, Any]


def canonical(value: Any) -> str:
    """The one JSON spelling of a value that is hashed (and stored): sorted keys, compact, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _plain(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """Details as plain JSON types (datetimes as ISO strings), exactly as they will be stored."""
    return json.loads(json.dumps(dict(details or {}), default=lambda v: isoformat(v) if isinstance(v, datetime)
                                 else str(v)))


def entry_key(seq: int) -> str:
    """The `_id` of entry `seq`: zero-padded, so string order is sequence order."""
    return f"{seq:0{KEY_DIGITS}d}"


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical({k: entry[k] for k in HASHED_FIELDS}).encode()).hexdigest()


def chained(seq: int, prev: str, at: str, item: Pending) -> Document:
    """Entry ``seq`` of a chain whose entry before has hash ``prev``, with its own hash."""
    entry: Document = {"seq": seq, "at": at, "actor": item.actor, "action": item.action,
                       "subject": item.subject, "details": item.details, "prev_hash": prev}
    entry["hash"] = entry_hash(entry)
    return entry


def link_problem(entry: Mapping[str, Any], expected_seq: int, prev: str) -> str | None:
    """Why ``entry`` is not a valid entry ``expected_seq`` after a head of hash ``prev`` (None: it is)."""
    if entry.get("seq") != expected_seq or entry.get("_id", entry_key(expected_seq)) != entry_key(expected_seq):
        return (f"expected entry {expected_seq} here, found _id {entry.get('_id')!r} "
                f"seq {entry.get('seq')!r} (an entry was removed or inserted)")
    if any(field not in entry for field in (*HASHED_FIELDS, "hash")):
        return "fields are missing"
    if entry["prev_hash"] != prev:
        return "prev_hash does not match the hash of the entry before it"
    if entry_hash(entry) != entry["hash"]:
        return "the entry's content does not match its hash (it was altered)"
    return None


def verify_entries(entries: Iterable[Mapping[str, Any]]) -> Verification:
    """Walk a chain from seq 1: the first entry whose content, hash, link or number is wrong."""
    expected_seq, prev, count = 1, GENESIS, 0
    for entry in entries:
        count += 1
        problem = link_problem(entry, expected_seq, prev)
        if problem:
            return Verification(False, count, prev, expected_seq, problem)
        prev, expected_seq = entry["hash"], expected_seq + 1
    return Verification(True, count, prev)


class AuditFile:
    """The same chain in a JSON-lines file, for work done where no database is reachable: the key
    ceremonies on the offline machine (``python -m services.signer.ceremony``). Each line is one entry."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[Document]:
        if not self.path.exists():
            return []
        try:
            return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.path} is not an audit log (line {exc.lineno}: {exc.msg})") from None

    def verify(self) -> Verification:
        return verify_entries(self.entries())

    def append(self, *, actor: str, action: str, subject: str, details: Mapping[str, Any] | None = None,
               at: datetime | None = None) -> Document:
        """Append one entry after checking the whole chain (refuses to extend a broken one)."""
        verification = self.verify()
        if not verification.ok:
            raise ValueError(f"{self.path}: {verification.describe()}")
        entry = chained(verification.entries + 1, verification.head_hash, isoformat(at or utcnow()),
                        Pending(str(actor), action, str(subject), _plain(details)))
        with self.path.open("a", encoding="utf-8") as out:
            out.write(canonical(entry) + "\n")
            out.flush()
            os.fsync(out.fileno())
        return entry


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
        self._hint = db[f"{collection}_head"]  # where contended writers leave the head for each other
        self._clock = clock
        self._lock = asyncio.Lock()  # one writer per process; replicas race on the unique _id
        self._max_attempts = max_attempts
        self._head: tuple[int, str] | None = None
        self._contended_until = 0.0  # monotonic time until which this writer reads and shares the head hint
        self._queued: list[tuple[Pending, asyncio.Future[Document]]] = []  # waiting for the next group commit
        self._committer: asyncio.Task[None] | None = None

    @property
    def _contended(self) -> bool:
        """Whether this writer lost a race in the last CONTENDED_SECONDS: it reads and shares the head hint."""
        return time.monotonic() < self._contended_until

    def _lost_race(self) -> None:
        self._contended_until = time.monotonic() + CONTENDED_SECONDS

    async def _current_head(self, *, follow: bool) -> tuple[int, str]:
        """The last entry's (seq, hash) as far as this writer knows; `follow` catches up with other writers.

        Found by a sorted query once per process, then kept; after a lost race it is followed
        forward by `_id` lookups (the entries other writers appended since). FerretDB scans the
        whole collection for a sort, so doing that on every append made each append slower than
        the last.
        """
        if self._head is None:
            head = await self.collection.find_one({}, sort=[("_id", DESCENDING)])
            self._head = (int(head["seq"]), str(head["hash"])) if head else (0, GENESIS)
        if follow or self._contended:
            # Writers that lost a race lately keep appending in turn, so the head the others left is read
            # before inserting: one lookup instead of a lost insert, a check of it and the lookups after it
            # (issue 21: two signer replicas). Only after a lost race is the chain followed from there.
            hint = await self._hint.find_one({"_id": "head"})
            if hint is not None and int(hint["seq"]) > self._head[0]:
                self._head = (int(hint["seq"]), str(hint["hash"]))
        if follow:
            self._head = await self._follow(*self._head)
        return self._head

    async def _share_head(self) -> None:
        """After a lost race, for a while, leave the head where the other writers look first.

        Replicas appending batch after batch take turns: following the chain from their own last
        entry would cost two lookups per doubling of what the others wrote (14 for 100 entries),
        and that became most of FerretDB's work with two signers. Reading the hint before each
        insert (`_current_head`) makes a turn one lookup and no lost insert. A lone writer never
        writes it. The hint is only a starting point: after a stale one the insert loses its race
        and the chain is followed forward, and the chain itself is what `verify` checks.
        """
        if self._head is not None and self._contended:
            seq, digest = self._head
            await self._hint.update_one({"_id": "head"}, {"$set": {"seq": seq, "hash": digest}}, upsert=True)

    async def _follow(self, seq: int, prev: str) -> tuple[int, str]:
        """The head after entry `seq`, found with O(log k) `_id` lookups when others appended k entries.

        Other writers append whole batches, so stepping one entry at a time cost a lookup per entry
        they wrote. Only the last entry's hash is needed: gallop forward (seq+1, +2, +4, ...) to an
        entry that does not exist, then bisect between the last one that does and that one.
        """
        async def entry(n: int) -> Document | None:
            return await self.collection.find_one({"_id": entry_key(n)}, {"hash": 1})

        last, last_hash = seq, prev  # the furthest entry known to exist, and its hash
        step = 1
        while (found := await entry(last + step)) is not None:
            last, last_hash = last + step, str(found["hash"])
            step *= 2
        missing = last + step  # known not to exist (entries are contiguous)
        while missing - last > 1:
            middle = (last + missing) // 2
            if (found := await entry(middle)) is not None:
                last, last_hash = middle, str(found["hash"])
            else:
                missing = middle
        return last, last_hash

    async def append(self, *, actor: str, action: str, subject: str,
                     details: Mapping[str, Any] | None = None) -> Document:
        """Append one entry and return it (as stored), once it is stored.

        Group commit: entries appended while an insert is running wait for it to end and then go in together,
        one insert for all of them (issue 21: two request handlers at once cost one audit insert, not two).
        An error of that insert is every waiting caller's error.
        """
        done: asyncio.Future[Document] = asyncio.get_running_loop().create_future()
        self._queued.append((Pending(str(actor), action, str(subject), _plain(details)), done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_queued(), name="audit-group-commit")
        return await done

    async def _commit_queued(self) -> None:
        """Append what is queued, as one block, until nothing is."""
        while self._queued:
            group, self._queued = self._queued, []
            try:
                stored = await self.append_many([item for item, _ in group])
            except asyncio.CancelledError:
                for _, done in group + self._queued:
                    done.cancel()
                self._queued = []
                raise
            except Exception as exc:  # every caller waiting on this group gets the insert's error
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), entry in zip(group, stored, strict=True):
                if not done.done():
                    done.set_result(entry)

    async def append_many(self, pending: Iterable[Pending]) -> list[Document]:
        """Append several entries as one contiguous block (one insert round trip when uncontended)."""
        todo = [dataclasses.replace(p, details=_plain(p.details)) for p in pending]
        written: list[Document] = []
        async with self._lock:
            lost_race = False
            for _ in range(self._max_attempts):
                if not todo:
                    return written
                seq, prev = await self._current_head(follow=lost_race)
                lost_race = True  # from here on, every retry follows the chain first
                at = isoformat(self._clock())
                docs = []
                for item in todo:
                    seq += 1
                    entry = chained(seq, prev, at, item)
                    prev = entry["hash"]
                    docs.append({"_id": entry_key(seq), **entry})
                try:
                    if len(docs) == 1:
                        await self.collection.insert_one(docs[0])
                    else:
                        await self.collection.insert_many(docs, ordered=True)
                    self._head = (docs[-1]["seq"], docs[-1]["hash"])
                    await self._share_head()
                    return written + docs
                except DuplicateKeyError:
                    self._lost_race()
                    if await self._stored_as_ours(docs[0]):  # insert_one's: insert_many raises BulkWriteError
                        # The database refused an insert it had made (FerretDB did, once, with three writers
                        # racing onto a new collection in CI): the entry is there, and appending it again
                        # would put one event in the chain twice.
                        self._head = (docs[0]["seq"], docs[0]["hash"])
                        await self._share_head()
                        return written + docs
                    continue  # another writer took this seq: follow the chain from there and retry
                except BulkWriteError as exc:
                    self._lost_race()
                    inserted = int(exc.details.get("nInserted", 0))
                    written += docs[:inserted]
                    todo = todo[inserted:]
                    if inserted:
                        self._head = (docs[inserted - 1]["seq"], docs[inserted - 1]["hash"])
        raise RuntimeError(f"audit append lost the race {self._max_attempts} times in a row")

    async def _stored_as_ours(self, doc: Document) -> bool:
        """Whether the entry stored under ``doc``'s key is ``doc`` itself (its hash covers the content, the time
        and the link to the one before)."""
        stored = await self.collection.find_one({"_id": doc["_id"]}, {"hash": 1})
        return stored is not None and stored.get("hash") == doc["hash"]

    async def verify(self) -> Verification:
        """Walk the chain from seq 1; the first entry whose content, hash, link or number is wrong."""
        return verify_entries([doc async for doc in self.collection.find({}).sort("_id", 1)])


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
    verify.add_argument("--file", type=Path, help="a JSON-lines audit log instead (the key ceremonies')")
    args = parser.parse_args(argv)
    if args.file:
        try:
            result = AuditFile(args.file).verify()
        except ValueError as exc:
            print(exc)
            return 1
        print(result.describe())
        return 0 if result.ok else 1
    if not args.database:
        parser.error("--database (or CACERT_MONGO_DATABASE) is required")
    result = asyncio.run(_verify_command(args.mongo_url, args.database))
    print(result.describe())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
