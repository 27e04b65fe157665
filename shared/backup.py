"""Backup and restore of the services' databases: `python -m shared.backup dump|restore`.

Every serial, revocation, CRL number, audit-log entry and pending outbox event lives in MongoDB; losing
it loses the CA's memory (BR 5.5 asks a CA to archive its records). The tool dumps whole databases,
collection by collection, as concatenated BSON documents (`<database>/<collection>.bson`: the same
file format `mongodump` writes, so `bsondump` reads it), with a `manifest.json` holding each file's
document count and SHA-256. Restore checks every file against the manifest before it writes
anything, and refuses to write into a database that holds data unless told to replace it. BSON
keeps every type as stored (dates, binary DER, 64-bit integers), so a restored document is the
dumped one, byte for byte.

It speaks only the MongoDB wire protocol (pymongo), so the same tool, tested here against FerretDB,
runs as the Kubernetes backup CronJob against the MongoDB replica set (deploy/k8s/base/mongodb-backup.yaml).
Indexes are not dumped: each service creates its own at start-up (`ensure_indexes`).

A dump taken while the services run is consistent per document, not across collections; every
cross-collection link the services keep is repaired by their own redelivery and outbox logic, which
is what a crash needs too. The runbook (docs/operations.md) stops the writers for a restore.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import bson
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

MANIFEST = "manifest.json"
FORMAT = "cacert-backup/1"
BATCH = 500
_RAW = CodecOptions(document_class=RawBSONDocument)


class BackupError(Exception):
    """The backup cannot be made or restored; the message says why (never a credential)."""


@dataclasses.dataclass(frozen=True)
class Summary:
    databases: dict[str, dict[str, int]]  # database -> collection -> documents

    @property
    def documents(self) -> int:
        return sum(sum(c.values()) for c in self.databases.values())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dump(client: MongoClient[Any], databases: Sequence[str], out: Path) -> Summary:
    """Write every collection of `databases` under `out` (which must not exist yet)."""
    if out.exists():
        raise BackupError(f"{out} exists already: a backup never overwrites another")
    out.mkdir(parents=True)
    manifest: dict[str, Any] = {"format": FORMAT, "created_at": dt.datetime.now(dt.UTC).isoformat(),
                                "databases": {}}
    counts: dict[str, dict[str, int]] = {}
    for name in databases:
        db = client.get_database(name, codec_options=_RAW)
        (out / name).mkdir()
        manifest["databases"][name] = {}
        counts[name] = {}
        for collection in sorted(db.list_collection_names()):
            path = out / name / f"{collection}.bson"
            count = 0
            with path.open("wb") as handle:
                for raw in db[collection].find({}, sort=[("_id", 1)]):
                    handle.write(raw.raw)
                    count += 1
            manifest["databases"][name][collection] = {"documents": count, "sha256": _sha256(path)}
            counts[name][collection] = count
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return Summary(counts)


def prune(under: Path, keep: int) -> list[Path]:
    """Delete all but the `keep` newest backups directly under `under` (those with a manifest); returns
    what was deleted. Directories without a manifest (a dump cut short) are left for a person to look at."""
    made = sorted((p for p in under.iterdir() if (p / MANIFEST).is_file()), key=lambda p: p.name)
    doomed = made[:-keep] if keep > 0 else made
    for path in doomed:
        shutil.rmtree(path)
    return doomed


def _checked_manifest(source: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{source / MANIFEST} cannot be read: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{source} is not a backup this tool wrote (format {manifest.get('format')!r})")
    for name, collections in manifest["databases"].items():
        for collection, facts in collections.items():
            path = source / name / f"{collection}.bson"
            if not path.is_file() or _sha256(path) != facts["sha256"]:
                raise BackupError(f"{path} is missing or does not match the manifest: refusing to restore")
    return dict(manifest)


def _batches(documents: Iterable[Any]) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for document in documents:
        batch.append(document)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def restore(client: MongoClient[Any], source: Path, *, replace: bool = False,
            databases: Sequence[str] | None = None) -> Summary:
    """Restore the backup in `source` (all its databases, or those named). A database that holds
    data is refused unless `replace`, which drops each of its collections first."""
    manifest = _checked_manifest(source)
    chosen = list(databases) if databases else sorted(manifest["databases"])
    unknown = set(chosen) - set(manifest["databases"])
    if unknown:
        raise BackupError(f"the backup holds no database {', '.join(sorted(unknown))}")
    for name in chosen:
        existing = client[name].list_collection_names()
        if existing and not replace:
            raise BackupError(f"database {name} is not empty ({len(existing)} collections): restore with "
                              "--replace to drop them first")
    counts: dict[str, dict[str, int]] = {}
    for name in chosen:
        db = client.get_database(name, codec_options=_RAW)
        for collection in db.list_collection_names():
            db.drop_collection(collection)
        counts[name] = {}
        for collection, facts in sorted(manifest["databases"][name].items()):
            count = 0
            with (source / name / f"{collection}.bson").open("rb") as handle:
                for batch in _batches(bson.decode_file_iter(handle, codec_options=_RAW)):
                    db[collection].insert_many(batch, ordered=True)
                    count += len(batch)
            if count != facts["documents"]:
                raise BackupError(f"{name}.{collection}: restored {count} documents, the manifest says "
                                  f"{facts['documents']}")
            if count == 0:
                db.create_collection(collection)
            counts[name][collection] = count
    return Summary(counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.backup",
                                     description="dump or restore the CA's databases (BSON per collection)")
    commands = parser.add_subparsers(dest="command", required=True)
    url_help = "MongoDB connection string (default: $CACERT_MONGO_URL, or the file in $CACERT_MONGO_URL_FILE)"
    for command in ("dump", "restore"):
        sub = commands.add_parser(command)
        sub.add_argument("--mongo-url", help=url_help)
        sub.add_argument("--database", action="append", default=[],
                         help="a database (repeatable); dump: required; restore: default all in the backup")
    where = commands.choices["dump"].add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="directory to create (it must not exist)")
    where.add_argument("--under", type=Path,
                       help="make the backup in a new directory under this one, named by the UTC time")
    commands.choices["dump"].add_argument("--keep", type=int, default=0,
                                          help="with --under: then delete all but the KEEP newest backups there")
    commands.choices["restore"].add_argument("--from", dest="source", type=Path, required=True,
                                             help="a directory made by dump")
    commands.choices["restore"].add_argument("--replace", action="store_true",
                                             help="drop the collections of a database that holds data first")
    args = parser.parse_args(argv)
    url = args.mongo_url or os.environ.get("CACERT_MONGO_URL")
    if not url and os.environ.get("CACERT_MONGO_URL_FILE"):
        url = Path(os.environ["CACERT_MONGO_URL_FILE"]).read_text().strip()
    if not url:
        print("CACERT_MONGO_URL (or --mongo-url) is required", file=sys.stderr)
        return 2
    if args.command == "dump" and not args.database:
        print("dump needs at least one --database", file=sys.stderr)
        return 2
    client: MongoClient[Any] = MongoClient(url, serverSelectionTimeoutMS=10_000)
    try:
        if args.command == "dump":
            out = args.out or args.under / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            summary = dump(client, args.database, out)
            if args.under and args.keep:
                for old in prune(args.under, args.keep):
                    print(json.dumps({"pruned": str(old)}))
        else:
            summary = restore(client, args.source, replace=args.replace, databases=args.database or None)
    except BackupError as exc:
        print(f"{args.command} refused: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(json.dumps({"command": args.command, "databases": summary.databases, "documents": summary.documents}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
