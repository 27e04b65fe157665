"""The hash-chained audit log: what registration and domain_verify record, concurrent appends, tampering."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from pymongo import AsyncMongoClient, monitoring

from shared.audit import AuditLog, Pending, entry_hash, entry_key
from shared.config import KafkaSettings, MongoSettings
from shared.mongo import connect
from tests.integration.test_registration_certificates import verify_domain
from tests.mail_keys import params_of
from tests.registration.csrs import build_csr
from tests.registration.harness import running

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("topics")]


class Recorder(monitoring.CommandListener):
    """The commands a client sent, by name, and how many documents each insert carried."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.inserted: list[int] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)
        if event.command_name == "insert":
            self.inserted.append(len(event.command["documents"]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...


def verify_cli(mongo: MongoSettings) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shared.audit", "verify", "--mongo-url", mongo.url,
                           "--database", str(mongo.database)], capture_output=True, text=True, timeout=60,
                          check=False, env=dict(os.environ))


async def test_registration_actions_are_audited_and_tampering_is_found(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    async with running(kafka_settings, mongo_settings) as stack:
        api = stack.api
        member_id, member = await stack.member("Ann Audit", "ann@example.org")
        assurer_id, assurer = await stack.founder("Abe Assurer", "abe@example.org", ("member", "assurer"))
        admin_id, admin = await stack.founder("Ada Admin", "ada@example.net", ("member", "admin"))
        await verify_domain(stack, member_id, member, "example.org")
        assured = await api.call("POST", "/v1/assurances", token=assurer, json_body={
            "member": member_id, "points": 35, "location": "Paris", "date": "2026-01-02", "documents_checked": True})
        assert assured.status == 201
        assert (await api.call("GET", f"/v1/admin/members/{member_id}", token=admin)).status == 200
        refused = await api.call("POST", f"/v1/admin/members/{assurer_id}/assurer", token=admin,
                                 json_body={"assurer_test_passed": True})
        assert refused.status == 409  # not audited: nothing changed
        proposed = await api.call("POST", f"/v1/admin/members/{assurer_id}/codesign", token=admin,
                                  json_body={"enabled": True})
        assert proposed.status == 202
        second_id, second = await stack.founder("Bo Second", "bo@example.net", ("member", "admin"))
        codesign = await api.call("POST", f"/v1/admin/members/{assurer_id}/codesign", token=second,
                                  json_body={"enabled": True})
        assert codesign.status == 200
        approved = await api.call("POST", "/v1/requests", token=member,
                                  json_body={"csr_pem": build_csr(dns=["www.example.org"]), "profile": "server"})
        rejected = await api.call("POST", "/v1/requests", token=member,
                                  json_body={"csr_pem": build_csr(dns=["www.example.com"]), "profile": "server"})
        assert approved.status == 202 and rejected.status == 422

        audit = AuditLog(stack.service.db)  # type: ignore[arg-type]
        entries = await audit.collection.find({}).sort("_id", 1).to_list()
        actions = [(e["actor"], e["action"], e["subject"]) for e in entries]
        assert ("bootstrap", "member.bootstrapped", "abe@example.org") in actions
        assert (assurer_id, "assurance.recorded", member_id) in actions
        assert (admin_id, "admin.member_viewed", member_id) in actions
        assert (admin_id, "admin.codesign_proposed", assurer_id) in actions
        assert (second_id, "admin.codesign_changed", assurer_id) in actions
        assert (member_id, "csr.approved", approved.body["id"]) in actions
        rejected_id = rejected.body["error"]["details"]["request_id"]
        assert (member_id, "csr.rejected", rejected_id) in actions
        assert not [a for a in actions if a[1] == "admin.assurer_granted"]
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
        assert [e["_id"] for e in entries] == [entry_key(n) for n in range(1, len(entries) + 1)]
        assert (await audit.verify()).ok
        ok = verify_cli(mongo_settings)
        assert ok.returncode == 0 and f"{len(entries)} entries" in ok.stdout, ok.stdout + ok.stderr

        # Tamper with the assurance entry (points 35 -> 5): verification fails exactly there.
        target = next(e for e in entries if e["action"] == "assurance.recorded")
        await audit.collection.update_one({"_id": target["_id"]}, {"$set": {"details.points": 5}})
        result = await audit.verify()
        assert not result.ok and result.broken_seq == target["seq"] and "altered" in (result.problem or "")
        broken = verify_cli(mongo_settings)
        assert broken.returncode == 1 and f"BROKEN at seq {target['seq']}" in broken.stdout, broken.stdout

        # Re-hashing the altered entry to hide it breaks the link to the next one instead.
        doc = await audit.collection.find_one({"_id": target["_id"]})
        assert doc is not None
        await audit.collection.update_one({"_id": target["_id"]}, {"$set": {"hash": entry_hash(doc)}})
        result = await audit.verify()
        assert not result.ok and result.broken_seq == target["seq"] + 1 and "prev_hash" in (result.problem or "")

        # Deleting an entry is found as a gap.
        await audit.collection.delete_one({"_id": entry_key(2)})
        assert (await audit.verify()).broken_seq == 2


async def test_concurrent_appenders_never_fork_the_chain(mongo_settings: MongoSettings) -> None:
    client, db = connect(mongo_settings, service="audit-test")
    try:
        replicas = [AuditLog(db) for _ in range(3)]  # three "replicas" racing on one collection
        await asyncio.gather(*(log.append(actor=f"r{i}", action="test.append", subject=str(n), details={"n": n})
                               for n in range(20) for i, log in enumerate(replicas)))
        entries = await replicas[0].collection.find({}).sort("_id", 1).to_list()
        assert [e["seq"] for e in entries] == list(range(1, 61))
        assert (await replicas[0].verify()).ok
    finally:
        await client.drop_database(str(mongo_settings.database))
        await client.close()


async def test_domain_verify_audits_a_verified_domain(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    from tests.domain_verify.harness import running as domain_verify

    async with domain_verify(kafka_settings, mongo_settings) as harness:
        await harness.request(member_id="m-7", domain="example.org", contact="webmaster@example.org")
        (mail,) = await harness.mail_commands(1)
        reply = await harness.confirm(params_of(mail)["link"])
        assert reply.status == 200
        audit = AuditLog(harness.service.db)  # type: ignore[arg-type]
        (entry,) = await audit.collection.find({}).to_list()
        assert (entry["actor"], entry["action"], entry["subject"]) == (
            "webmaster@example.org", "domain.verified", "example.org")
        assert entry["details"]["member_id"] == "m-7"
        assert (await audit.verify()).ok


async def test_a_lone_writer_appends_without_reading_the_chain(mongo_settings: MongoSettings) -> None:
    """Appends stay cheap: a writer that loses no race only inserts; one that lost follows in O(log k) lookups."""
    recorder = Recorder()
    commands = recorder.names
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_settings.url, event_listeners=[recorder])
    db = client[str(mongo_settings.database)]
    try:
        log = AuditLog(db)  # type: ignore[arg-type]
        await log.append(actor="a", action="test.append", subject="0")
        commands.clear()
        for n in range(1, 6):
            await log.append(actor="a", action="test.append", subject=str(n))
        assert commands == ["insert"] * 5
        other = AuditLog(db)  # type: ignore[arg-type]  # a second writer: the first must now follow it
        await other.append_many(Pending("b", "test.append", str(n), {}) for n in range(6, 43))
        commands.clear()
        await log.append(actor="a", action="test.append", subject="43")
        # one lost insert, the head hint (none yet), then a gallop and a bisection over the 37 new
        # entries (not 37 lookups), one insert
        assert commands.count("insert") == 2 and commands.count("find") <= 2 * 6 + 2, commands
        assert (await log.verify()).ok and (await log.verify()).entries == 44
        # Both have lost a race now, so both share their head and read the other's before appending: taking
        # turns costs one lookup and loses no insert.
        for n in range(44, 104, 30):
            await other.append_many(Pending("b", "test.append", str(m), {}) for m in range(n, n + 29))
            commands.clear()
            await log.append(actor="a", action="test.append", subject=str(n + 29))
            assert commands == ["find", "insert", "update"], commands  # the hint, the entry, its own hint
        assert (await log.verify()).ok and (await log.verify()).entries == 104
        # The hint is only where to start: without it (gone, or left behind by a writer that stopped before
        # sharing) the insert loses its race, and the chain is followed.
        await other.append_many(Pending("b", "test.append", str(m), {}) for m in range(104, 110))
        await db["audit_head"].delete_one({"_id": "head"})
        commands.clear()
        await log.append(actor="a", action="test.append", subject="110")
        assert commands.count("insert") == 2, commands
        assert (await log.verify()).ok and (await log.verify()).entries == 111
    finally:
        await client.drop_database(str(mongo_settings.database))
        await client.close()


async def test_appends_made_at_once_go_in_together_in_order_and_chained(mongo_settings: MongoSettings) -> None:
    """Group commit (issue 21): 40 appends made while an insert runs take a few inserts, not 40, and every caller
    gets its own entry back."""
    recorder = Recorder()
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_settings.url, event_listeners=[recorder])
    db = client[str(mongo_settings.database)]
    try:
        log = AuditLog(db)  # type: ignore[arg-type]
        entries = await asyncio.gather(*(log.append(actor="a", action="test.append", subject=str(n))
                                         for n in range(40)))
        assert [e["subject"] for e in entries] == [str(n) for n in range(40)]  # each caller its own entry
        assert sorted(e["seq"] for e in entries) == list(range(1, 41))
        inserts = recorder.inserted
        assert sum(inserts) == 40 and len(inserts) <= 3, inserts  # the first alone, the rest together
        verification = await log.verify()
        assert verification.ok and verification.entries == 40
    finally:
        await client.drop_database(str(mongo_settings.database))
        await client.close()
