"""The audit chain when the database refuses an insert it has made (found by CI, issue 23's "whatever the runs
find"): three writers racing onto a new collection on FerretDB ended with 61 entries for 60 appends, one event
twice. A writer told `DuplicateKeyError` now looks at what is stored under its key before taking the next one.
Pure unit test: a stand-in collection that stores the entry and then reports the duplicate."""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo.errors import DuplicateKeyError

from shared.audit import AuditLog, entry_key

Document = dict[str, Any]


class Collection:
    def __init__(self, *, refuse_after_insert: set[str] | None = None) -> None:
        self.docs: dict[str, Document] = {}
        self.refuse_after_insert = refuse_after_insert or set()

    async def insert_one(self, doc: Document) -> None:
        if doc["_id"] in self.docs:
            raise DuplicateKeyError("E11000 duplicate key")
        self.docs[doc["_id"]] = dict(doc)
        if doc["_id"] in self.refuse_after_insert:
            self.refuse_after_insert.discard(doc["_id"])
            raise DuplicateKeyError("E11000 duplicate key (reported for an insert that was made)")

    async def find_one(self, query: Document, projection: Any = None, sort: Any = None) -> Document | None:
        if "_id" in query:
            return self.docs.get(query["_id"])
        return self.docs[max(self.docs)] if self.docs else None

    async def update_one(self, query: Document, update: Document, upsert: bool = False) -> None:
        self.docs.setdefault(query["_id"], {"_id": query["_id"]}).update(update["$set"])

    def find(self, query: Document) -> Any:
        docs = [self.docs[k] for k in sorted(self.docs)]

        class Cursor:
            def sort(self, *_: Any) -> Any:
                return self

            def __aiter__(self) -> Any:
                return self._gen()

            async def _gen(self) -> Any:
                for doc in docs:
                    yield doc

        return Cursor()


class Database(dict[str, Collection]):
    def __missing__(self, name: str) -> Collection:
        self[name] = Collection()
        return self[name]


def test_an_insert_refused_after_it_was_made_is_kept_once_and_the_chain_goes_on() -> None:
    async def scenario() -> None:
        db = Database()
        log = AuditLog(db)  # type: ignore[arg-type]
        await log.append(actor="a", action="test.append", subject="0")
        db["audit"].refuse_after_insert.add(entry_key(2))
        entry = await log.append(actor="a", action="test.append", subject="1")
        await log.append(actor="a", action="test.append", subject="2")
        entries = [db["audit"].docs[k] for k in sorted(db["audit"].docs)]
        assert [(e["seq"], e["subject"]) for e in entries] == [(1, "0"), (2, "1"), (3, "2")]
        assert entry["seq"] == 2
        assert (await log.verify()).ok

    asyncio.run(scenario())


class FailingCollection(Collection):
    def __init__(self) -> None:
        super().__init__()
        self.down = True

    async def insert_one(self, doc: Document) -> None:
        if self.down:
            raise ConnectionError("the database went away")
        await super().insert_one(doc)

    async def insert_many(self, docs: list[Document], ordered: bool = True) -> None:
        if self.down:
            raise ConnectionError("the database went away")
        for doc in docs:
            await super().insert_one(doc)


def test_an_insert_error_reaches_every_caller_of_its_group_and_the_next_append_is_tried_afresh() -> None:
    async def scenario() -> None:
        db = Database()
        collection = db["audit"] = FailingCollection()
        log = AuditLog(db)  # type: ignore[arg-type]
        results = await asyncio.gather(*(log.append(actor="a", action="test.append", subject=str(n))
                                         for n in range(5)), return_exceptions=True)
        assert all(isinstance(r, ConnectionError) for r in results), results
        collection.down = False
        entries = await asyncio.gather(*(log.append(actor="a", action="test.append", subject=str(n))
                                         for n in range(3)))
        assert [(e["seq"], e["subject"]) for e in entries] == [(1, "0"), (2, "1"), (3, "2")]
        assert (await log.verify()).ok

    asyncio.run(asyncio.wait_for(scenario(), 5))
