"""The shared producer and consumer runner against a real Kafka broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo.errors import AutoReconnect

from shared.config import KafkaSettings
from shared.events import CloudEvent, Topics, make_event
from shared.kafka import Batch, ConsumerRunner, EventProducer, PermanentError, Subscription
from shared.kafka.consumer import RetryPolicy
from tests.eventlog import read_topic, wait_until

pytestmark = pytest.mark.usefixtures("topics")


def registered(member_id: str) -> CloudEvent:
    return make_event(
        "member.registered",
        {"member_id": member_id, "name": "Ada", "email": "ada@example.org", "registered_at": "2026-01-01T00:00:00Z"},
        source="test",
    )


@pytest.fixture
async def producer(kafka_settings: KafkaSettings) -> AsyncIterator[EventProducer]:
    producer = EventProducer(kafka_settings, client_id="test")
    await producer.start()
    yield producer
    await producer.stop()


@contextlib.asynccontextmanager
async def running(kafka_settings: KafkaSettings, producer: EventProducer, group: str,
                  handler: Callable[[CloudEvent], Awaitable[None]], **kwargs: Any) -> AsyncIterator[ConsumerRunner]:
    runner = ConsumerRunner(
        kafka_settings, group_id=group, producer=producer,
        subscriptions=[Subscription("member", {"org.cacert.member.registered.v1": handler})],
        retry=RetryPolicy(first_delay=0.05, max_delay=0.2, max_attempts_for_bugs=3), **kwargs,
    )
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.started.wait(), 30)
    try:
        yield runner
    finally:
        await asyncio.wait_for(runner.stop(), 30)
        await task


async def test_published_event_arrives_decoded_and_schema_valid(kafka_settings: KafkaSettings,
                                                                producer: EventProducer) -> None:
    received: list[CloudEvent] = []

    async def handler(event: CloudEvent) -> None:
        received.append(event)

    sent = registered("m-1")
    async with running(kafka_settings, producer, "g-roundtrip", handler):
        await producer.publish(sent)
        await wait_until(lambda: len(received) == 1)
    (event,) = received
    assert event.id == sent.id and event.type == "org.cacert.member.registered.v1"
    assert event.data == sent.data and event.key == "m-1"


async def test_poison_messages_go_to_dlq_with_reason_and_next_message_is_handled(
        kafka_settings: KafkaSettings, producer: EventProducer) -> None:
    topic = Topics(kafka_settings.topic_prefix).of("member")
    received: list[str] = []

    async def handler(event: CloudEvent) -> None:
        if event.data["member_id"] == "refuse-me":
            raise PermanentError("member id is on the refusal list")
        received.append(event.data["member_id"])

    _, good_value, headers = registered("m-good").to_kafka()
    schema_invalid = json.dumps({"member_id": "m-bad", "name": "x", "email": 42,
                                 "registered_at": "2026-01-01T00:00:00Z"}).encode()
    async with running(kafka_settings, producer, "g-poison", handler):
        # All to one key so they share a partition and order matters.
        await producer.send_raw(topic, key=b"k", value=b"{this is not json", headers=headers)
        await producer.send_raw(topic, key=b"k", value=schema_invalid, headers=headers)
        await producer.publish(registered("refuse-me"))
        await producer.send_raw(topic, key=b"k", value=good_value, headers=headers)
        await wait_until(lambda: received == ["m-good"])
    dead = await read_topic(kafka_settings.bootstrap, topic + ".dlq", expected=3)
    reasons = sorted(dict(m.headers)["dlq_reason"].decode() for m in dead)
    assert len(dead) == 3
    assert any("not JSON" in r for r in reasons)
    assert any("SchemaError" in r and "email" in r for r in reasons)
    assert any("refusal list" in r for r in reasons)
    for message in dead:
        assert dict(message.headers)["dlq_source_topic"].decode() == topic
        assert dict(message.headers)["dlq_consumer_group"] == (kafka_settings.group_prefix + "g-poison").encode()


async def test_transient_failure_is_retried_and_offset_stays_uncommitted_until_success(
        kafka_settings: KafkaSettings, producer: EventProducer) -> None:
    topic = Topics(kafka_settings.topic_prefix).of("member")
    attempts: list[str] = []

    async def failing(event: CloudEvent) -> None:
        attempts.append(event.id)
        raise AutoReconnect("database unreachable")

    sent = registered("m-retry")
    async with running(kafka_settings, producer, "g-retry", failing):
        await producer.publish(sent)
        await wait_until(lambda: len(attempts) >= 3)
    # Stopped mid-outage: the message was retried, never dead-lettered, and its offset is not committed.
    assert set(attempts) == {sent.id}
    probe = AIOKafkaConsumer(bootstrap_servers=kafka_settings.bootstrap,
                             group_id=kafka_settings.group_prefix + "g-retry", enable_auto_commit=False)
    await probe.start()
    try:
        partitions = probe.partitions_for_topic(topic) or set()
        committed = [await probe.committed(TopicPartition(topic, p)) for p in partitions]
    finally:
        await probe.stop()
    assert all(c in (None, 0) for c in committed)

    # A restarted consumer in the same group gets the same message again and succeeds.
    handled: list[str] = []

    async def healthy(event: CloudEvent) -> None:
        handled.append(event.id)

    async with running(kafka_settings, producer, "g-retry", healthy):
        await wait_until(lambda: handled == [sent.id])
    dead = await read_topic(kafka_settings.bootstrap, topic + ".dlq", expected=1, timeout=2)
    assert dead == []


async def test_a_handler_bug_is_retried_then_dead_lettered(kafka_settings: KafkaSettings,
                                                          producer: EventProducer) -> None:
    topic = Topics(kafka_settings.topic_prefix).of("member")
    attempts: list[int] = []

    async def buggy(event: CloudEvent) -> None:
        attempts.append(1)
        raise KeyError("missing")

    async with running(kafka_settings, producer, "g-bug", buggy):
        await producer.publish(registered("m-bug"))
        dead = await read_topic(kafka_settings.bootstrap, topic + ".dlq", expected=1)
    assert len(attempts) == 3
    assert "gave up after 3 attempts" in dict(dead[0].headers)["dlq_reason"].decode()


async def test_batch_handler_gets_many_events_and_a_poison_event_is_isolated(
        kafka_settings: KafkaSettings, producer: EventProducer) -> None:
    topic = Topics(kafka_settings.topic_prefix).of("member")
    batches: list[int] = []
    singles: list[str] = []

    async def batch(received: Batch) -> None:
        if any(e.data["member_id"] == "poison" for e in received.events):
            raise ValueError("cannot handle this batch")
        assert received.offsets == sorted(received.offsets) and len(received.offsets) == len(received.events)
        batches.append(len(received.events))

    async def single(event: CloudEvent) -> None:
        if event.data["member_id"] == "poison":
            raise PermanentError("poison member")
        singles.append(event.data["member_id"])

    runner = ConsumerRunner(
        kafka_settings, group_id="g-batch", producer=producer,
        subscriptions=[Subscription("member", {"org.cacert.member.registered.v1": single},
                                    {"org.cacert.member.registered.v1": batch})],
        retry=RetryPolicy(first_delay=0.05, max_delay=0.2, max_attempts_for_bugs=2),
    )
    # Everything is in the topic before the consumer starts, so one fetch returns many events.
    await producer.publish_many([registered(f"m-{i}") for i in range(50)])
    await producer.publish_many([make_event("member.registered", dict(registered("x").data, member_id="poison"),
                                            source="test")])
    task = asyncio.create_task(runner.run())
    try:
        dead = await read_topic(kafka_settings.bootstrap, topic + ".dlq", expected=1)
        await wait_until(lambda: sum(batches) + len(singles) == 50)
    finally:
        await runner.stop()
        await task
    assert max(batches) > 1
    assert len(dead) == 1 and b"poison member" in dict(dead[0].headers)["dlq_reason"]


async def committed_offsets(kafka_settings: KafkaSettings, group: str, topic: str) -> int:
    """The sum of a group's committed offsets on `topic`, read without joining the group."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(kafka_settings.group_prefix + group)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


def same_member(count: int) -> list[CloudEvent]:
    """`count` events with one partition key: they land in one partition, in this order."""
    return [make_event("member.registered", dict(registered("m-same").data, name=f"n{i}"), source="test")
            for i in range(count)]


async def test_unordered_fetches_overlap_but_the_commit_never_passes_unfinished_work(
        kafka_settings: KafkaSettings, producer: EventProducer) -> None:
    topic = Topics(kafka_settings.topic_prefix).of("member")
    release = asyncio.Event()
    handled: list[str] = []

    async def handler(event: CloudEvent) -> None:
        if event.data["name"] == "n0":
            await release.wait()
        handled.append(event.data["name"])

    runner = ConsumerRunner(
        kafka_settings, group_id="g-unordered", producer=producer,
        subscriptions=[Subscription("member", {"org.cacert.member.registered.v1": handler}, ordered=False)],
        max_batch=1, max_in_flight=3,
    )
    await producer.publish_many(same_member(3))
    task = asyncio.create_task(runner.run())
    try:
        # The two later fetches are handled while the first is still in hand ...
        await wait_until(lambda: handled == ["n1", "n2"], what="later fetches handled")
        await asyncio.sleep(1)
        # ... but nothing is committed past the unfinished first message.
        assert await committed_offsets(kafka_settings, "g-unordered", topic) == 0
        release.set()
        await wait_until(lambda: len(handled) == 3)
        for _ in range(100):
            if await committed_offsets(kafka_settings, "g-unordered", topic) == 3:
                break
            await asyncio.sleep(0.1)
        assert await committed_offsets(kafka_settings, "g-unordered", topic) == 3
    finally:
        release.set()
        await runner.stop()
        await task


async def test_an_ordered_partition_waits_for_its_earlier_fetch_even_with_several_in_flight(
        kafka_settings: KafkaSettings, producer: EventProducer) -> None:
    release = asyncio.Event()
    started: list[str] = []

    async def handler(event: CloudEvent) -> None:
        started.append(event.data["name"])
        if event.data["name"] == "n0":
            await release.wait()

    runner = ConsumerRunner(
        kafka_settings, group_id="g-ordered", producer=producer,
        subscriptions=[Subscription("member", {"org.cacert.member.registered.v1": handler})],
        max_batch=1, max_in_flight=3,
    )
    await producer.publish_many(same_member(3))
    task = asyncio.create_task(runner.run())
    try:
        await wait_until(lambda: started == ["n0"])
        await asyncio.sleep(1)
        assert started == ["n0"]
        release.set()
        await wait_until(lambda: started == ["n0", "n1", "n2"])
    finally:
        release.set()
        await runner.stop()
        await task


async def test_sigterm_notifier_with_a_full_batch_in_hand_stops_at_once_and_hands_the_rest_back(
        kafka_settings: KafkaSettings, producer: EventProducer) -> None:
    """The chaos run's `sigterm:notifier` (issue 23): a notifier restarted onto a backlog got SIGTERM while
    it held a fetched batch of up to 200 events, and stop() handled every one of them first (a database
    write each, ~0.1 s on a busy machine), so it was still at it when the 30 s grace ran out and was
    killed. Stopping now finishes the event in hand, leaves the rest of the batch uncommitted and goes."""
    events = same_member(60)
    handled: list[str] = []

    async def slow(event: CloudEvent) -> None:
        handled.append(event.id)
        await asyncio.sleep(0.2)

    await producer.publish_many(events)
    loop = asyncio.get_running_loop()
    async with running(kafka_settings, producer, "g-stop", slow):
        await wait_until(lambda: len(handled) >= 3)
        stopping = loop.time()
    took = loop.time() - stopping  # the context's exit is runner.stop()
    assert took < 3.0, f"stop() took {took:.1f} s with a batch in hand"
    assert len(handled) < len(events), "the whole batch was handled before stopping"

    again: list[str] = []

    async def quick(event: CloudEvent) -> None:
        again.append(event.id)

    async with running(kafka_settings, producer, "g-stop", quick):  # the rest was handed back, not lost
        await wait_until(lambda: {e.id for e in events} <= set(handled) | set(again))


async def test_caught_up_says_until_when_every_record_was_handled(kafka_settings: KafkaSettings,
                                                                  producer: EventProducer) -> None:
    """What domain_verify's deadline sweep waits for (the chaos run's `pause:domain_verify`): a time before
    which the group has handled every record, or None while a record written earlier is not handled."""
    from shared.events import utcnow

    release = asyncio.Event()
    handled: list[str] = []

    async def held(event: CloudEvent) -> None:
        await release.wait()
        handled.append(event.id)

    async with running(kafka_settings, producer, "g-caught-up", held) as runner:
        await wait_until(lambda: runner._consumer.partitions_for_topic(
            Topics(kafka_settings.topic_prefix).of("member")) is not None)
        assert await runner.caught_up("member") is not None  # nothing written yet: level with the end
        written = utcnow()
        await producer.publish(registered("m-held"))
        await asyncio.sleep(1.0)
        at = await runner.caught_up("member")
        release.set()
        assert at is None or at < written, "claimed to have handled a record it has not"
        await wait_until(lambda: len(handled) == 1)

        async def level() -> bool:
            at = await runner.caught_up("member")
            return at is not None and at >= written

        for _ in range(100):
            if await level():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the group never caught up after handling the record")
