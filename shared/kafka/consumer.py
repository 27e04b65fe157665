"""A consumer-group runner with at-least-once delivery and a dead-letter topic.

The contract every service relies on:

* an offset is committed only after the handler's effects are durable (the
  handler returned) or the message was dead-lettered (the DLQ write was
  acknowledged), so a crash re-delivers and never skips;
* messages that can never succeed (not a CloudEvent, schema-invalid,
  `PermanentError`, a bug that keeps failing) go to `<topic>.dlq` with the
  reason in headers, and the partition moves on;
* infrastructure outages (MongoDB or Kafka unreachable, `TransientError`) are
  retried with capped exponential backoff for as long as they last, because
  dead-lettering a good message only because the database was down would
  lose work;
* partitions are processed concurrently, each partition strictly in order
  (unless its subscription says its events are independent, `ordered=False`:
  then up to `max_in_flight` fetches are handled at once, a pipeline);
* an offset is committed only once every message before it is handled, so
  fetches finishing out of order never commit past unfinished work;
* `stop()` (wired to SIGTERM) finishes the batch in hand, commits, and leaves
  the group so its partitions move to another replica at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from pymongo.errors import AutoReconnect, ConnectionFailure, ExecutionTimeout, NetworkTimeout

from shared.config import KafkaSettings
from shared.events.catalog import SchemaError, Topics, validate
from shared.events.envelope import CloudEvent, EnvelopeError, Headers, header, isoformat, utcnow
from shared.kafka.connection import client_kwargs
from shared.kafka.metrics import ASSIGNED_PARTITIONS, EVENTS_CONSUMED, HANDLER_RETRIES, HANDLER_SECONDS
from shared.kafka.producer import EventProducer
from shared.logging import bound, get_logger

Handler = Callable[[CloudEvent], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class Batch:
    """Consecutive events of one type from one partition, with their offsets.

    Offsets let a handler tell fresh messages from possible redeliveries
    (anything at or below what an earlier owner of the partition had started).
    """

    topic: str
    partition: int
    events: list[CloudEvent]
    offsets: list[int]


BatchHandler = Callable[[Batch], Awaitable[None]]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before partitions are given up, the work in hand is finished and committed (so the next owner
    does not redo it); after assignment, publishes how many partitions of each topic this replica
    holds (load tests wait for a stable split)."""

    def __init__(self, group: str, topics: list[str], drain: Callable[[], Awaitable[None]]) -> None:
        self._group = group
        self._topics = topics
        self._drain = drain

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        for topic in self._topics:
            ASSIGNED_PARTITIONS.labels(self._group, topic).set(0)
        await self._drain()

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        assigned = list(assigned)
        for topic in self._topics:
            ASSIGNED_PARTITIONS.labels(self._group, topic).set(sum(1 for tp in assigned if tp.topic == topic))
log = get_logger("shared.kafka.consumer")

# Headers of a replayed dead letter (shared/dlq.py) that a second dead-lettering keeps as they are.
KEPT_ON_DEAD_LETTER = frozenset({"dlq_first_failed_at", "dlq_replayed_from", "dlq_replayed_at", "dlq_replay_group"})


def _record_time(message: ConsumerRecord[Any, Any]) -> str:
    """The record's timestamp (when it was produced, or appended for LogAppendTime topics), RFC 3339."""
    if message.timestamp is None or message.timestamp < 0:
        return ""
    return isoformat(datetime.fromtimestamp(message.timestamp / 1000, UTC))


class PermanentError(Exception):
    """The handler can never process this event: dead-letter it with this message as the reason."""


class TransientError(Exception):
    """A temporary condition (a dependency is down): retry until it clears."""


class _HandBack(Exception):
    """Stopping (mid-outage, or with part of a fetched batch unhandled): leave the batch uncommitted for the
    next owner."""


INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    TransientError, AutoReconnect, ConnectionFailure, NetworkTimeout, ExecutionTimeout,
    KafkaError, ConnectionError, TimeoutError,
)


@dataclasses.dataclass(frozen=True)
class Subscription:
    """A logical topic and the handlers for the event types this service acts on.

    Types without a handler are skipped (and committed): topics carry several
    types, and each consumer takes only what it needs.

    A type may also have a batch handler, for throughput: consecutive events of
    that type in one partition's fetch are handed over together (one database
    round trip and one producer flush for many events). If a batch keeps
    failing, the runner falls back to the single-event handler for each event,
    so one poison event is isolated and dead-lettered alone.

    `ordered=False` says the topic's events are independent of each other (and
    their handlers idempotent): a partition's next fetch may then be handled
    while an earlier one still is, so the stages of consecutive batches overlap.
    """

    topic: str
    handlers: dict[str, Handler]
    batch_handlers: dict[str, BatchHandler] = dataclasses.field(default_factory=dict)
    ordered: bool = True


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    first_delay: float = 0.2
    max_delay: float = 15.0
    max_attempts_for_bugs: int = 5  # unexpected exceptions; infrastructure errors retry without limit

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay, self.first_delay * (2 ** (attempt - 1))))


@dataclasses.dataclass
class _Span:
    """One partition's share of one fetch: committable once it and every span before it are done."""

    end: int  # the offset to commit once this span is handled
    handled: bool | None = None  # None while in hand (or failed), False if handed back: never committed


REVOKE_DRAIN_SECONDS = 60.0


class ConsumerRunner:
    def __init__(
        self,
        settings: KafkaSettings,
        *,
        group_id: str,
        subscriptions: Iterable[Subscription],
        producer: EventProducer,
        retry: RetryPolicy | None = None,
        max_batch: int = 200,
        max_in_flight: int = 1,
    ) -> None:
        """A fetch returns as soon as one record is there (fetch_min_bytes 1): nothing waits for a
        fuller batch below saturation, and under load the records that arrived while the last
        batch was handled come together anyway.

        `max_in_flight` > 1 handles up to that many fetches at once: for `ordered=False`
        subscriptions a pipeline (one fetch is being stored while the next is computed), for
        ordered ones only partitions that are not busy go ahead."""
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        group_id = settings.group_prefix + group_id
        self.group_id = group_id
        self._topics = Topics(settings.topic_prefix)
        self._routes: dict[str, dict[str, Handler]] = {}
        self._batch_routes: dict[str, dict[str, BatchHandler]] = {}
        self._unordered: set[str] = set()
        for sub in subscriptions:
            self._routes[self._topics.of(sub.topic)] = sub.handlers
            self._batch_routes[self._topics.of(sub.topic)] = sub.batch_handlers
            if not sub.ordered:
                self._unordered.add(self._topics.of(sub.topic))
        self._producer = producer
        self._retry = retry or RetryPolicy()
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._spans: dict[TopicPartition, collections.deque[_Span]] = {}
        self._tails: dict[TopicPartition, asyncio.Task[bool]] = {}  # an ordered partition's latest span
        self._fetches: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._commit_lock = asyncio.Lock()
        self._end_samples: dict[str, collections.deque[tuple[datetime, dict[TopicPartition, int]]]] = {}
        self._consumer = AIOKafkaConsumer(
            **client_kwargs(settings),
            group_id=group_id,
            client_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=600000,
            session_timeout_ms=15000,
            heartbeat_interval_ms=3000,
            fetch_min_bytes=1,
            fetch_max_wait_ms=200,
        )
        self._consumer.subscribe(list(self._routes), listener=_Rebalance(group_id, list(self._routes), self._drain))
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.started = asyncio.Event()

    async def start(self) -> None:
        """Consume in the background; return once the consumer has started, or raise why it could not."""
        self._task = asyncio.create_task(self.run(), name=f"{self.group_id}-consumer")
        started = asyncio.create_task(self.started.wait())
        await asyncio.wait({started, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            started.cancel()
            self._task.result()  # re-raises why the consumer could not start

    async def run(self) -> None:
        """Consume until stop(); always leaves the group cleanly."""
        try:
            await self._consumer.start()
            self.started.set()
            log.info("consumer started", group=self.group_id, topics=sorted(self._routes))
            while not self._stopping.is_set():
                if self._failure is not None:
                    raise self._failure
                if len(self._fetches) >= self._max_in_flight:
                    await asyncio.wait(self._fetches, return_when=asyncio.FIRST_COMPLETED)
                    continue
                batch = await self._consumer.getmany(timeout_ms=500, max_records=self._max_batch)
                if batch:
                    self._launch(batch)
            await self._drain(timeout=None)
            if self._failure is not None:
                raise self._failure
        finally:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            self._stopped.set()
            log.info("consumer stopped", group=self.group_id)

    def _launch(self, batch: dict[TopicPartition, list[ConsumerRecord[Any, Any]]]) -> None:
        """Start handling one fetch: a task per partition, chained after that partition's previous
        one unless its topic is unordered; the fetch commits what it finished when all are done."""
        spans = []
        for tp, messages in batch.items():
            span = _Span(end=messages[-1].offset + 1)
            self._spans.setdefault(tp, collections.deque()).append(span)
            previous = None if tp.topic in self._unordered else self._tails.get(tp)
            task = asyncio.create_task(self._handle_span(tp, messages, span, previous))
            if tp.topic not in self._unordered:
                self._tails[tp] = task
            spans.append(task)
        fetch = asyncio.create_task(self._finish_fetch(spans))
        self._fetches.add(fetch)
        fetch.add_done_callback(self._fetch_done)

    def _fetch_done(self, fetch: asyncio.Task[None]) -> None:
        self._fetches.discard(fetch)
        if not fetch.cancelled() and fetch.exception() is not None and self._failure is None:
            self._failure = fetch.exception()

    async def _handle_span(self, tp: TopicPartition, messages: list[ConsumerRecord[Any, Any]], span: _Span,
                           previous: asyncio.Task[bool] | None) -> bool:
        if previous is not None:
            await asyncio.wait([previous])
            if previous.cancelled() or previous.exception() is not None or not previous.result():
                span.handled = False  # the earlier span was not handled: nothing after it may be committed
                return False
        try:
            await self._process_partition(tp, messages)
        except _HandBack as exc:
            log.warning("stopping; uncommitted work is handed back", partition=str(tp), reason=str(exc))
            span.handled = False
            return False
        span.handled = True
        return True

    async def _finish_fetch(self, spans: list[asyncio.Task[bool]]) -> None:
        results = await asyncio.gather(*spans, return_exceptions=True)
        await self._commit_finished()
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _commit_finished(self) -> None:
        """Commit, per partition, up to the first span still in hand (or handed back)."""
        async with self._commit_lock:  # in order: a later commit never goes out before an earlier one
            offsets = {}
            for tp, spans in self._spans.items():
                while spans and spans[0].handled:
                    offsets[tp] = spans.popleft().end
            if offsets:
                await self._commit(offsets)

    async def _drain(self, timeout: float | None = REVOKE_DRAIN_SECONDS) -> None:
        """Let the fetches in hand finish (and commit); then forget what is left."""
        if self._fetches:
            await asyncio.wait(set(self._fetches), timeout=timeout)
        if self._fetches:
            log.warning("partitions revoked with work still in hand; it will be redelivered",
                        in_hand=len(self._fetches))
        self._spans.clear()
        self._tails.clear()

    async def stop(self) -> None:
        """Finish the batch in hand, commit, leave the group (a no-op if the consumer already ended)."""
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(Exception):  # a consumer that crashed has already said why in the log
                await self._task
        else:
            await self._stopped.wait()

    async def caught_up(self, topic: str) -> datetime | None:
        """A time before which every record of `topic` has been handled (committed) by the consumer group, on
        every partition, whichever replica owns it: this call's start if the group is level with the end
        now, else the latest earlier call whose end offsets it has since passed; None if none.

        For deadlines on answers that arrive as events: an answer written before the deadline but not read
        yet (this replica was paused, restarting, rebalancing, behind) has not been missed, and a sweep that
        decides "no answer in time" must not act before the group has read up to the deadline."""
        name = self._topics.of(topic)
        partitions = self._consumer.partitions_for_topic(name)
        if not partitions:
            return None
        tps = [TopicPartition(name, p) for p in sorted(partitions)]
        began = utcnow()
        ends = await self._consumer.end_offsets(tps)
        committed = {tp: (await self._consumer.committed(tp)) or 0 for tp in tps}
        # Under steady traffic the group is rarely level with the end at the very moment it is asked, so
        # earlier samples count too: the latest one whose ends the group has committed past is the answer.
        samples = self._end_samples.setdefault(name, collections.deque(maxlen=20))
        samples.append((began, ends))
        answer = None
        for at, sampled in samples:
            if all(committed[tp] >= sampled.get(tp, 0) for tp in tps):
                answer = at
        return answer

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group rebalanced while we worked: the new owner re-delivers, handlers are idempotent.
            log.warning("offset commit failed after rebalance; messages will be redelivered", error=str(exc))

    async def _process_partition(self, tp: TopicPartition, messages: list[ConsumerRecord[Any, Any]]) -> None:
        batch_handlers = self._batch_routes.get(tp.topic, {})
        pending: list[tuple[ConsumerRecord[Any, Any], CloudEvent]] = []
        for message in messages:
            if self._stopping.is_set():
                # Stopping with a fetched batch in hand: finish nothing more of it. Handling up to 200
                # events first outlasted a 30 s grace period (the chaos run's sigterm:notifier); the rest
                # stays uncommitted and the next owner of the partition gets it (handlers are idempotent).
                raise _HandBack("stopping with part of a fetched batch unhandled")
            decoded = await self._decode(message)
            if decoded is None:
                continue
            if decoded.type in batch_handlers:
                if pending and pending[0][1].type != decoded.type:
                    await self._handle_batch(pending, batch_handlers[pending[0][1].type])
                    pending = []
                pending.append((message, decoded))
                continue
            if pending:
                await self._handle_batch(pending, batch_handlers[pending[0][1].type])
                pending = []
            with bound(event_id=decoded.id, event_type=decoded.type, subject=decoded.subject):
                await self._handle_with_retry(message, decoded, self._routes[tp.topic][decoded.type])
        if pending:
            await self._handle_batch(pending, batch_handlers[pending[0][1].type])

    async def _decode(self, message: ConsumerRecord[Any, Any]) -> CloudEvent | None:
        """The event if this consumer acts on it; None if skipped or dead-lettered."""
        topic = message.topic
        handlers = self._routes[topic]
        type_ = header(message.headers, "ce_type") or "?"
        replay_group = header(message.headers, "dlq_replay_group")
        if replay_group is not None and replay_group != self.group_id:
            # A dead letter replayed for the group that refused it: the other groups handled it already.
            EVENTS_CONSUMED.labels(topic, type_, "skipped").inc()
            return None
        if type_ != "?" and type_ not in handlers and header(message.headers, "ce_specversion") == "1.0":
            EVENTS_CONSUMED.labels(topic, type_, "skipped").inc()
            return None
        try:
            event = CloudEvent.from_kafka(message.key, message.value, message.headers)
            validate(event.type, event.data)
        except (EnvelopeError, SchemaError) as exc:
            await self._dead_letter(message, f"{type(exc).__name__}: {exc}")
            return None
        if event.type not in handlers:
            EVENTS_CONSUMED.labels(topic, event.type, "skipped").inc()
            return None
        return event

    async def _handle_batch(self, items: list[tuple[ConsumerRecord[Any, Any], CloudEvent]],
                            batch_handler: BatchHandler) -> None:
        events = [event for _, event in items]
        type_ = events[0].type
        batch = Batch(items[0][0].topic, items[0][0].partition, events, [m.offset for m, _ in items])
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                await batch_handler(batch)
            except INFRASTRUCTURE_ERRORS as exc:
                if self._stopping.is_set():
                    raise _HandBack(str(exc)) from exc
                log.warning("transient failure in batch, will retry", attempt=attempt, size=len(events),
                            error=f"{type(exc).__name__}: {exc}")
            except Exception as exc:
                log.warning("batch failed; handling its events one by one", size=len(events),
                            error=f"{type(exc).__name__}: {exc}", exc_info=True)
                break
            else:
                HANDLER_SECONDS.labels(type_).observe(time.perf_counter() - started)
                EVENTS_CONSUMED.labels(items[0][0].topic, type_, "handled").inc(len(events))
                return
            HANDLER_RETRIES.labels(type_).inc()
            await asyncio.sleep(self._retry.delay(attempt))
        for message, event in items:
            with bound(event_id=event.id, event_type=event.type, subject=event.subject):
                await self._handle_with_retry(message, event, self._routes[message.topic][event.type])

    async def _handle_with_retry(self, message: ConsumerRecord[Any, Any], event: CloudEvent,
                                 handler: Handler) -> None:
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                await handler(event)
            except PermanentError as exc:
                await self._dead_letter(message, f"rejected by handler: {exc}")
                return
            except INFRASTRUCTURE_ERRORS as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if self._stopping.is_set():
                    # Shutting down mid-outage: leave the offset uncommitted and hand the work back.
                    raise _HandBack(reason) from exc
                log.warning("transient failure, will retry", attempt=attempt, error=reason)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if attempt >= self._retry.max_attempts_for_bugs:
                    log.error("handler keeps failing; dead-lettering", attempt=attempt, error=reason)
                    await self._dead_letter(message, f"gave up after {attempt} attempts: {reason}")
                    return
                log.warning("handler failed, will retry", attempt=attempt, error=reason, exc_info=True)
            else:
                HANDLER_SECONDS.labels(event.type).observe(time.perf_counter() - started)
                EVENTS_CONSUMED.labels(message.topic, event.type, "handled").inc()
                return
            HANDLER_RETRIES.labels(event.type).inc()
            await asyncio.sleep(self._retry.delay(attempt))

    async def _dead_letter(self, message: ConsumerRecord[Any, Any], reason: str) -> None:
        failed_at = isoformat(utcnow())
        # A replayed message (python -m shared.dlq replay) that fails again keeps where it was replayed
        # from and when it first failed, so an operator sees its history on the new dead letter.
        kept = {k: v for k, v in (message.headers or ()) if k in KEPT_ON_DEAD_LETTER}
        headers: Headers = [(k, v) for k, v in (message.headers or ()) if not k.startswith("dlq_")]
        headers += [
            ("dlq_reason", reason[:2000].encode()),
            ("dlq_source_topic", message.topic.encode()),
            ("dlq_source_partition", str(message.partition).encode()),
            ("dlq_source_offset", str(message.offset).encode()),
            ("dlq_source_timestamp", _record_time(message).encode()),
            ("dlq_consumer_group", self.group_id.encode()),
            ("dlq_failed_at", failed_at.encode()),
            ("dlq_first_failed_at", kept.pop("dlq_first_failed_at", failed_at.encode())),
        ]
        headers += sorted(kept.items())
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._producer.send_raw(message.topic + ".dlq", key=message.key, value=message.value,
                                              headers=headers)
                break
            except KafkaError as exc:
                log.warning("dead-letter write failed, will retry", error=str(exc))
                await asyncio.sleep(self._retry.delay(attempt))
        EVENTS_CONSUMED.labels(message.topic, header(message.headers, "ce_type") or "?", "dead_lettered").inc()
        log.warning("message dead-lettered", reason=reason, topic=message.topic,
                    partition=message.partition, offset=message.offset)
