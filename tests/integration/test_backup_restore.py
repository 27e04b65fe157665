"""Backup and restore (issue 20 item 2): the CA's memory survives losing its databases.

Registration and the signer's issuing mode run over the local Kafka and FerretDB; certificates are
issued and one revoked, and an event is left pending in registration's outbox. Both databases are
dumped with `python -m shared.backup dump` (the CronJob's command), dropped, and restored with
`python -m shared.backup restore`. Then every document is back as it was (serials, revocations, CRL
counters, the outbox), both audit chains verify with `python -m shared.audit verify`, the pending
event is published once registration runs again, and the next certificate and CRL follow on without
a collision.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pymongo import AsyncMongoClient

from services.registration.service import RegistrationService
from services.registration.store import MongoRegistrationStore
from services.signer.ca.ceremony import bootstrap
from services.signer.ca.urls import CAUrls
from services.signer.revoking import crl_scope_of
from services.signer.service import SignerService
from services.signer.settings import SignerSettings
from shared.config import HttpSettings, KafkaSettings, MongoSettings
from shared.events import Topics, isoformat, make_event, utcnow
from shared.kafka import EventProducer
from shared.settings import CommonSettings
from tests.approval_keys import RA_PUBLIC_PEM
from tests.integration.test_registration_certificates import verify_domain
from tests.integration.test_signer_service import PASSPHRASE
from tests.registration.csrs import build_csr
from tests.registration.harness import Api, Clock, Stack, registration_settings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("topics")]
ROOT = Path(__file__).resolve().parents[2]
PKI_URL = "http://pki.example.net"
Document = dict[str, Any]


@asynccontextmanager
async def registration(kafka: KafkaSettings, mongo: MongoSettings) -> AsyncIterator[Stack]:
    """Registration on `mongo`'s database, which it leaves as it is (the harness's `running` drops it)."""
    clock = Clock()
    service = RegistrationService(registration_settings(kafka, mongo), clock=clock)
    await service.start()
    producer = EventProducer(kafka, client_id="backup-test")
    await producer.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Stack(service, Api(f"http://127.0.0.1:{service.http_port}", http), kafka,
                        Topics(kafka.topic_prefix), producer, clock)
    finally:
        await producer.stop()
        await service.stop()


@asynccontextmanager
async def signer(kafka: KafkaSettings, database: MongoSettings, ca_dir: Path) -> AsyncIterator[SignerService]:
    common = CommonSettings(kafka=kafka, mongo=database, http=HttpSettings(host="127.0.0.1", port=0),
                            create_topics=False)
    service = SignerService(SignerSettings(common=common, ca_dir=ca_dir, ca_passphrase=PASSPHRASE,
                                           public_base_url=PKI_URL, ra_public_keys=RA_PUBLIC_PEM),
                            mode="issuing", lint=False)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def issued(stack: Stack, token: str, name: str) -> str:
    return await stack.issued_serial(token, build_csr(dns=[name], key=ec.generate_private_key(ec.SECP256R1())))


async def revoked(stack: Stack, token: str, serial: str) -> None:
    asked = await stack.api.call("POST", f"/v1/certificates/{serial}/revoke", token=token,
                                 json_body={"reason": "superseded"})
    assert asked.status == 202, asked.body
    for _ in range(300):
        if (await stack.api.call("GET", f"/v1/certificates/{serial}", token=token)).body.get("status") == "revoked":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{serial} was not revoked")


async def contents(client: AsyncMongoClient[Document], database: str) -> dict[str, list[Document]]:
    db = client[database]
    return {name: await db[name].find({}, sort=[("_id", 1)]).to_list()
            for name in sorted(await db.list_collection_names())}


def tool(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


async def test_dump_wipe_restore_brings_back_every_serial_revocation_audit_link_and_pending_event(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings, tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    bootstrap(ca_dir, PASSPHRASE, "p256", class1_urls=CAUrls.under(PKI_URL, "class1"))
    signer_db = MongoSettings(url=mongo_settings.url, database=f"{mongo_settings.database}_signer")
    databases = [mongo_settings.database, signer_db.database]
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_settings.url)
    try:
        async with signer(kafka_settings, signer_db, ca_dir) as ca, \
                registration(kafka_settings, mongo_settings) as stack:
            member_id, token = await stack.member("Bea Backup", "bea@example.org")
            await verify_domain(stack, member_id, token, "example.org")
            serials = [await issued(stack, token, f"{n}.example.org") for n in ("www", "shop", "mail")]
            await revoked(stack, token, serials[0])
            assert ca.store is not None
            crl_before = {scope: doc["number"] for issuer in ("class1", "class3")
                          for scope, doc in (await ca.store.crl_scopes(issuer)).items()}
        # An event registration has stored but not yet published (its producer is gone): the outbox holds it.
        pending = make_event("member.role_changed", {"member_id": member_id, "roles": ["member"],
                                                     "codesign_enabled": False, "changed_at": isoformat(utcnow())},
                             source="registration")
        await MongoRegistrationStore(client[mongo_settings.database], clock=utcnow).update_member_with_events(
            member_id, {}, [pending])
        before = {name: await contents(client, name) for name in databases}

        dumped = tool("shared.backup", "dump", "--mongo-url", mongo_settings.url, *[
            a for name in databases for a in ("--database", name)], "--out", str(tmp_path / "backup"))
        assert dumped.returncode == 0, dumped.stderr
        assert json.loads(dumped.stdout)["documents"] == sum(len(d) for c in before.values() for d in c.values())
        for name in databases:
            await client.drop_database(name)
        assert not await client[mongo_settings.database].list_collection_names()
        restored = tool("shared.backup", "restore", "--mongo-url", mongo_settings.url, "--from",
                        str(tmp_path / "backup"))
        assert restored.returncode == 0, restored.stderr

        assert {name: await contents(client, name) for name in databases} == before
        for name in databases:
            verified = tool("shared.audit", "verify", "--mongo-url", mongo_settings.url, "--database", name)
            assert verified.returncode == 0 and "intact" in verified.stdout, verified.stdout + verified.stderr
        again = tool("shared.backup", "restore", "--mongo-url", mongo_settings.url, "--from", str(tmp_path / "backup"))
        assert again.returncode == 1 and "not empty" in again.stderr, "a restore never silently overwrites"

        async with signer(kafka_settings, signer_db, ca_dir) as ca, \
                registration(kafka_settings, mongo_settings) as stack:
            for _ in range(30):  # the outbox sweep publishes what was pending when the database was dumped
                if pending.id in {e.id for e in await stack.events("member", "member.role_changed", timeout=1)}:
                    break
            else:
                raise AssertionError("the pending event was not published after the restore")
            token = await stack.login("bea@example.org")
            certificates = (await stack.api.call("GET", "/v1/certificates", token=token)).body["certificates"]
            assert {c["serial"]: c["status"] for c in certificates} == {
                serials[0]: "revoked", serials[1]: "valid", serials[2]: "valid"}
            following = await issued(stack, token, "next.example.org")
            assert following not in serials
            await revoked(stack, token, serials[1])
            assert ca.store is not None
            rebuilt = crl_scope_of(await ca.store.status(serials[1]) or {})
            assert (await ca.store.current_crl(rebuilt) or {})["number"] > crl_before[rebuilt], (
                "CRL numbers go on rising")
    finally:
        for name in databases:
            await client.drop_database(name)
        await client.close()


async def test_a_damaged_backup_is_refused_before_anything_is_written(mongo_settings: MongoSettings,
                                                                      tmp_path: Path) -> None:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_settings.url)
    source = mongo_settings.database
    try:
        await client[source]["statuses"].insert_many([{"_id": f"{n:032x}", "status": "issued"} for n in range(3)])
        assert tool("shared.backup", "dump", "--mongo-url", mongo_settings.url, "--database", source,
                    "--out", str(tmp_path / "b")).returncode == 0
        refused = tool("shared.backup", "dump", "--mongo-url", mongo_settings.url, "--database", source,
                       "--out", str(tmp_path / "b"))
        assert refused.returncode == 1 and "never overwrites" in refused.stderr
        data = tmp_path / "b" / source / "statuses.bson"
        data.write_bytes(data.read_bytes()[:-7])  # a truncated file
        damaged = tool("shared.backup", "restore", "--mongo-url", mongo_settings.url, "--from", str(tmp_path / "b"),
                       "--replace")
        assert damaged.returncode == 1 and "does not match the manifest" in damaged.stderr
        assert await client[source]["statuses"].count_documents({}) == 3, "nothing was dropped or written"
    finally:
        await client.drop_database(source)
        await client.close()


async def test_nightly_dumps_go_under_one_directory_and_only_the_newest_are_kept(
        mongo_settings: MongoSettings, tmp_path: Path) -> None:
    client: AsyncMongoClient[Document] = AsyncMongoClient(mongo_settings.url)
    try:
        await client[mongo_settings.database]["audit"].insert_one({"_id": 1})
        (tmp_path / "19990101T000000Z").mkdir()  # no manifest: a dump cut short is left for a person
        made = []
        for _ in range(3):
            run = tool("shared.backup", "dump", "--mongo-url", mongo_settings.url, "--database",
                       mongo_settings.database, "--under", str(tmp_path), "--keep", "2")
            assert run.returncode == 0, run.stderr
            made.append(sorted(p.name for p in tmp_path.iterdir()))
            await asyncio.sleep(1.1)  # the directory name is the UTC second
        dumps = [name for name in made[-1] if name != "19990101T000000Z"]
        first = made[0][-1]
        assert "19990101T000000Z" in made[-1], "a directory without a manifest is never deleted"
        assert len(dumps) == 2 and first not in dumps, f"the oldest complete backup was pruned: {made}"
    finally:
        await client.drop_database(mongo_settings.database)
        await client.close()
