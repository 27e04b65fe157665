"""FerretDB v1 applies an update by reading the document and writing it back whole, so an update running at the
same moment as another on the same document can be lost though acknowledged (the chaos run, issue 23: two
members' email confirmations answered 200 and were not stored). The services' database (`connect` returns a
`OneWriterDatabase`) runs one write per document at a time in the process. Against the local stack's FerretDB:
registration's confirm update and the outbox's pull, each on 200 documents at once, lose nothing, and FerretDB
does not stall on them (its pool of 50 connections once let 50 updates each hold one and wait for another)."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY

from shared.config import MongoSettings
from shared.mongo import OneWriterDatabase, connect, update_each

DOCUMENTS = 200


async def test_confirm_and_outbox_pull_of_one_member_at_once_lose_no_update(mongo_settings: MongoSettings) -> None:
    client, db = connect(mongo_settings, service="one-writer-test")
    assert isinstance(db, OneWriterDatabase)
    docs = db["members"]
    try:
        await docs.insert_many([{"_id": f"m{i}", "emails": {"e1": {"verified": False}},
                                 "_outbox": [{"id": "a"}, {"id": "b"}]} for i in range(DOCUMENTS)])

        async def confirm(i: int) -> int:
            result = await docs.update_one({"_id": f"m{i}", "emails.e1.verified": False},
                                           {"$set": {"emails.e1.verified": True},
                                            "$push": {"_outbox": {"$each": [{"id": "c"}]}}})
            return result.modified_count

        async def pull(i: int) -> Any:
            return await docs.update_one({"_id": f"m{i}"}, {"$pullAll": {"_outbox": [{"id": "a"}, {"id": "b"}]}})

        async with asyncio.timeout(120):
            results = await asyncio.gather(*(confirm(i) for i in range(DOCUMENTS)),
                                           *(pull(i) for i in range(DOCUMENTS)))
        assert results[:DOCUMENTS] == [1] * DOCUMENTS
        stored = {d["_id"]: d async for d in docs.find({})}
        assert [i for i, d in stored.items() if not d["emails"]["e1"]["verified"]] == []
        assert {tuple(e["id"] for e in d["_outbox"]) for d in stored.values()} == {("c",)}
        assert len(db.writers) == 0
    finally:
        await client.drop_database(db.name)
        await client.close()


async def test_a_batch_of_updates_is_one_command_and_loses_none_beside_single_writes(
        mongo_settings: MongoSettings) -> None:
    """`update_each` (registration's `cert.issued` batches, issue 21) sends one command for the batch, holds each
    document's lock, and an outbox pull of the same documents at the same time loses neither write."""
    client, db = connect(mongo_settings, service="one-writer-batch-test")
    docs = db["requests"]

    def updates_sent() -> float:
        return REGISTRY.get_sample_value("cacert_mongo_commands_total",
                                         {"command": "update", "collection": "requests"}) or 0.0

    try:
        await docs.insert_many([{"_id": f"r{i}", "status": "approved", "_outbox": [{"id": "a"}]}
                                for i in range(DOCUMENTS)])
        before = updates_sent()
        await update_each(docs, [({"_id": f"r{i}"}, {"$set": {"status": "checked"}}) for i in range(10)])
        assert updates_sent() - before == 1
        assert await docs.count_documents({"status": "checked"}) == 10

        async with asyncio.timeout(120):
            await asyncio.gather(
                update_each(docs, [({"_id": f"r{i}"}, {"$set": {"status": "issued", "serial": f"s{i}"}})
                                   for i in range(DOCUMENTS)]),
                *(docs.update_one({"_id": f"r{i}"}, {"$pullAll": {"_outbox": [{"id": "a"}]}})
                  for i in range(DOCUMENTS)))
        stored = [d async for d in docs.find({})]
        assert [d["_id"] for d in stored if d["status"] != "issued" or d["_outbox"]] == []
        assert len(db.writers) == 0
    finally:
        await client.drop_database(db.name)
        await client.close()


async def test_a_batch_naming_one_document_twice_sends_it_once(mongo_settings: MongoSettings) -> None:
    """A redelivered `cert.issued` twice in one batch: one upsert of that serial (the last), not two racing."""
    client, db = connect(mongo_settings, service="one-writer-twice-test")
    docs = db["certificates"]
    try:
        changes = [({"_id": "s1"}, {"$setOnInsert": {"n": 1}}), ({"_id": "s2"}, {"$setOnInsert": {"n": 2}}),
                   ({"_id": "s1"}, {"$setOnInsert": {"n": 3}})]
        await update_each(docs, changes, upsert=True)
        assert {d["_id"]: d["n"] async for d in docs.find({})} == {"s1": 3, "s2": 2}
    finally:
        await client.drop_database(db.name)
        await client.close()
