"""Dead letters an operator can act on (`python -m shared.dlq`), over the real local Kafka.

A handler refuses a message for good (PermanentError): it lands on the DLQ, the CLI lists it with its
reason and origin. The cause is then fixed (the handler accepts it), the operator replays it: the refusing
group handles it exactly once, another group reading the same topic does not see it a second time, and a
second replay is refused. Another poison is discarded with a reason, which `list` shows; forcing a replay
of it lands it on the DLQ again with its history (replayed from, first failed at).
The CLI runs as a subprocess with the environment a pod would give it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.config import KafkaSettings
from shared.events import CloudEvent, Topics, make_event
from shared.events.envelope import header
from shared.kafka import ConsumerRunner, EventProducer, PermanentError, Subscription
from shared.kafka.consumer import RetryPolicy
from tests.eventlog import read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.usefixtures("topics")]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def registered(member_id: str) -> CloudEvent:
    """One key for all: one partition, so the order of delivery is the order of publishing."""
    event = make_event("member.registered", {"member_id": member_id, "name": "Ada", "email": "ada@example.org",
                                             "registered_at": "2026-12-03T10:00:00Z"}, source="registration")
    return dataclasses.replace(event, key="same-key")


async def dlq(kafka: KafkaSettings, *args: str) -> tuple[int, str, str]:
    """Run `python -m shared.dlq ARGS` as an operator would in a pod: settings from the environment."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": REPO, "HOME": os.environ.get("HOME", "/tmp"),
           "CACERT_KAFKA_BOOTSTRAP": kafka.bootstrap, "CACERT_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
           "CACERT_DLQ_OPERATOR": "operator-ada"}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "shared.dlq", *args, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def listed(kafka: KafkaSettings) -> list[dict[str, Any]]:
    code, out, err = await dlq(kafka, "list", "member", "--json")
    assert code == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


@contextlib.asynccontextmanager
async def consuming(kafka: KafkaSettings, producer: EventProducer, group: str, seen: list[str],
                    refused: set[str]) -> AsyncIterator[None]:
    async def handle(event: CloudEvent) -> None:
        if event.data["member_id"] in refused:
            raise PermanentError(f"member {event.data['member_id']} cannot be registered yet")
        seen.append(event.data["member_id"])

    runner = ConsumerRunner(kafka, group_id=group, producer=producer,
                            subscriptions=[Subscription("member", {"org.cacert.member.registered.v1": handle})],
                            retry=RetryPolicy(first_delay=0.05, max_delay=0.2, max_attempts_for_bugs=2))
    await runner.start()
    try:
        yield
    finally:
        await asyncio.wait_for(runner.stop(), 30)


async def test_a_poison_message_is_replayed_once_after_the_fix_and_a_discard_is_recorded(
        kafka_settings: KafkaSettings) -> None:
    dlq_topic = Topics(kafka_settings.topic_prefix).dlq("member")
    producer = EventProducer(kafka_settings, client_id="dlq-test")
    await producer.start()
    refusing_seen: list[str] = []
    other_seen: list[str] = []
    refused = {"poison", "bad-data"}  # the refusing group's handler: its "cause" is this set
    try:
        async with (consuming(kafka_settings, producer, "refusing", refusing_seen, refused),
                    consuming(kafka_settings, producer, "other", other_seen, set())):
            poison, bad = registered("poison"), registered("bad-data")
            for event in (poison, bad, registered("first-good")):
                await producer.publish(event)
            await wait_until(lambda: "first-good" in refusing_seen and "first-good" in other_seen, 30, "both groups")
            assert refusing_seen == ["first-good"] and other_seen == ["poison", "bad-data", "first-good"]

            # the operator lists the DLQ: reason, origin, first failure, still undecided
            rows = await listed(kafka_settings)
            assert [r["ce_id"] for r in rows] == [poison.id, bad.id]
            row = rows[0]
            assert row["reason"] == "rejected by handler: member poison cannot be registered yet"
            assert row["source_topic"] == Topics(kafka_settings.topic_prefix).of("member")
            assert isinstance(row["source_partition"], int) and isinstance(row["source_offset"], int)
            assert row["consumer_group"] == kafka_settings.group_prefix + "refusing"
            assert row["first_failed_at"].endswith("Z") and row["status"] == "new" and row["decision"] is None
            code, table, _ = await dlq(kafka_settings, "list")
            assert code == 0 and "rejected by handler: member poison" in table and row["ref"] in table

            code, out, err = await dlq(kafka_settings, "show", "member", row["ref"], "--json")
            assert code == 0, err
            shown = json.loads(out)
            assert shown["payload"]["member_id"] == "poison" and shown["headers"]["ce_id"] == poison.id

            # the cause is fixed; replay: the refusing group handles it once, the other group skips it
            refused.discard("poison")
            code, out, err = await dlq(kafka_settings, "replay", "member", row["ref"], "--reason", "handler fixed")
            assert code == 0, err
            assert f"{row['ref']} replayed to {row['source_topic']}:{row['source_partition']}:" in out
            await wait_until(lambda: "poison" in refusing_seen, 30, "the replayed message handled")

            code, _, err = await dlq(kafka_settings, "replay", "member", row["ref"])
            assert code == 1 and "already replayed by operator-ada" in err

            # discard the other one, with a reason; list shows both decisions
            code, out, err = await dlq(kafka_settings, "discard", "member", rows[1]["ref"], "--by", "bob",
                                       "--reason", "test data, never a real member")
            assert code == 0, err
            code, _, err = await dlq(kafka_settings, "discard", "member", rows[1]["ref"], "--reason", "again")
            assert code == 1 and "already discarded by bob" in err
            code, _, err = await dlq(kafka_settings, "replay", "member", rows[1]["ref"])
            assert code == 1 and "already discarded" in err
            decided = {r["ref"]: r for r in await listed(kafka_settings)}
            assert decided[row["ref"]]["status"] == "replayed"
            assert decided[row["ref"]]["decision"]["by"] == "operator-ada"
            assert decided[row["ref"]]["decision"]["reason"] == "handler fixed"
            assert decided[rows[1]["ref"]]["status"] == "discarded"
            assert decided[rows[1]["ref"]]["decision"]["reason"] == "test data, never a real member"
            assert decided[rows[1]["ref"]]["decision"]["by"] == "bob"

            # forced replay of a message whose cause is not fixed: dead-lettered again, with its history
            code, _, err = await dlq(kafka_settings, "replay", "member", rows[1]["ref"], "--force")
            assert code == 0, err
            records = await read_topic(kafka_settings.bootstrap, dlq_topic, expected=3, timeout=30)
            again = records[-1] if len(records) == 3 else None
            assert again is not None, "the forced replay was not dead-lettered again"
            assert header(again.headers, "dlq_replayed_from") == f"{dlq_topic}:{rows[1]['ref']}"
            assert header(again.headers, "dlq_first_failed_at") == rows[1]["first_failed_at"]
            latest = {r["ref"]: r for r in await listed(kafka_settings)}
            assert latest[rows[1]["ref"]]["decision"]["earlier"][0]["action"] == "discarded"
            replay_of = f"new (replay of {dlq_topic}:{rows[1]['ref']})"
            assert latest[f"{again.partition}:{again.offset}"]["status"] == replay_of

            # a good message behind the replays on the same key (same partition): handled, and by now
            # every replay is behind us too; each message was handled exactly once per group
            await producer.publish(registered("last-good"))
            await wait_until(lambda: "last-good" in refusing_seen and "last-good" in other_seen, 30, "last-good")
        assert refusing_seen == ["first-good", "poison", "last-good"]
        assert other_seen == ["poison", "bad-data", "first-good", "last-good"]
    finally:
        await producer.stop()
