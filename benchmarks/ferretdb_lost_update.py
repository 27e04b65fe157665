"""Does the MongoDB server lose an update when two update the same document at once?

`python -m benchmarks.ferretdb_lost_update [--mongo-url URL] [--documents N]` (default: the devstack's
FerretDB). For each of N documents it runs, at the same time, what registration does when an address is
confirmed (`$set` of a nested field with an event `$push`ed into `_outbox`) and what the outbox does after
publishing (`$pullAll` of the published entries), then counts the `$set`s that were acknowledged
(`modified: 1`) but are not in the document afterwards. MongoDB applies each update to a document
atomically: 0. FerretDB v1 (SQLite or PostgreSQL) reads and rewrites the whole document, and loses some
(the chaos run, issue 23, found two members whose confirmed address was not stored). The same updates go
through the services' own database (`shared.mongo.OneWriterDatabase`, one write per document at a time in
a process) too, which must lose none. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
from typing import Any


async def probe(url: str, documents: int, *, one_writer: bool = False) -> dict[str, Any]:
    from pymongo import AsyncMongoClient

    from shared.mongo import OneWriterDatabase

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, serverSelectionTimeoutMS=10000)
    name = f"lost_update_probe_{secrets.token_hex(4)}"
    docs = (OneWriterDatabase(client, name) if one_writer else client[name])["docs"]
    try:
        await docs.insert_many([{"_id": i, "emails": {"e1": {"verified": False}},
                                 "_outbox": [{"id": "a"}, {"id": "b"}]} for i in range(documents)])

        async def confirm(i: int) -> int:
            result = await docs.update_one({"_id": i, "$or": [{"emails.e1.verified": False}]},
                                           {"$set": {"emails.e1.verified": True},
                                            "$push": {"_outbox": {"$each": [{"id": "c"}]}}})
            return result.modified_count

        async def pull(i: int) -> None:
            await docs.update_one({"_id": i}, {"$pullAll": {"_outbox": [{"id": "a"}, {"id": "b"}]}})

        results = await asyncio.gather(*(confirm(i) for i in range(documents)), *(pull(i) for i in range(documents)),
                                       return_exceptions=True)
        confirmed = {i for i, r in enumerate(results[:documents]) if r == 1}  # acknowledged: modified 1
        unverified = {d["_id"] async for d in docs.find({"emails.e1.verified": False}, {"_id": 1})}
        return {"documents": documents, "set_acknowledged": len(confirmed),
                "set_acknowledged_but_lost": len(confirmed & unverified),
                "errors": sum(isinstance(r, Exception) for r in results)}
    finally:
        await client.drop_database(name)
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ferretdb_lost_update", description=__doc__)
    parser.add_argument("--mongo-url", default=os.environ.get("CACERT_MONGO_URL"))
    parser.add_argument("--documents", type=int, default=200)
    args = parser.parse_args(argv)
    url = args.mongo_url
    if not url:
        from devstack import endpoints

        url = endpoints.current().mongo_url
    plain = asyncio.run(probe(url, args.documents))
    one_writer = asyncio.run(probe(url, args.documents, one_writer=True))
    print(json.dumps({"mongo_url": url.split("@")[-1], "plain_client": plain, "one_writer_database": one_writer}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
