"""Dead letters an operator can act on: list, show, replay or discard what a consumer parked on `<topic>.dlq`.

    python -m shared.dlq list [TOPIC ...] [--json]            # every DLQ when no topic is named
    python -m shared.dlq show TOPIC REF [--json] [--reveal]
    python -m shared.dlq replay TOPIC REF [REF ...] [--reason TEXT] [--by NAME] [--force] [--json]
    python -m shared.dlq discard TOPIC REF [REF ...] --reason TEXT [--by NAME] [--force] [--json]

TOPIC is a logical topic of the catalogue (`csr`, `mail.commands`, ...) or its dead-letter topic's full
name (`cacert.csr.dlq`); REF is `partition:offset` in the dead-letter topic, as `list` prints it (a bare
offset means partition 0). Settings come from the environment like the services' (CACERT_KAFKA_BOOTSTRAP,
CACERT_KAFKA_TOPIC_PREFIX, CACERT_KAFKA_SECURITY_PROTOCOL, CACERT_KAFKA_USERNAME, CACERT_KAFKA_PASSWORD[_FILE],
CACERT_KAFKA_CA_FILE, ...), so it runs in a pod as it does on a laptop.

**Replay** produces the dead letter's original key, value and headers (the CloudEvent, same `ce_id`) to
the topic it came from, with `dlq_replayed_from` (`<dlq topic>:<partition>:<offset>`), `dlq_replayed_at`,
`dlq_first_failed_at` and `dlq_replay_group` (the consumer group that refused it). Only that group acts
on the replayed message; every other group reading the topic handled the original already and skips it
(shared/kafka/consumer.py). Same key, so same partition: the per-key order holds.

**Decisions** (replayed, discarded; who, when, why) are recorded in the compacted topic
`<prefix>dlq.decisions`, keyed by `<dlq topic>:<partition>:<offset>`, each value carrying the earlier
decisions for the same dead letter. The dead-letter topics stay append-only and untouched. `list` shows
each dead letter's decision, and `replay` refuses a dead letter that was already replayed or discarded
unless `--force`. A replay is recorded after the broker acknowledged the replayed message: if the tool
dies in between, the message is replayed but not marked, and a second replay is harmless (the handler
de-duplicates on `ce_id`), merely visible.

`show` masks secret-looking fields of the payload (shared/logging.redact) and the tokens of confirmation
links; `--reveal` prints the payload as stored.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.config import ConfigError, KafkaSettings, load, setting
from shared.events.catalog import DLQ_SUFFIX, TOPICS, Topics
from shared.events.envelope import Headers, isoformat, utcnow
from shared.kafka.connection import client_kwargs
from shared.kafka.producer import EventProducer
from shared.logging import redact

DECISIONS = "dlq.decisions"
"""The decisions topic after the prefix: `cacert.dlq.decisions` (compacted)."""
READ_TIMEOUT = 30.0
_TOKEN_IN_URL = re.compile(r"((?:token|code|key)=)[^&\s\"]+", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class DlqSettings:
    kafka: KafkaSettings
    create_topics: bool = setting("CACERT_KAFKA_CREATE_TOPICS", True,
                                  help="create the decisions topic when missing (dev); false where Strimzi owns it")
    operator: str = setting("CACERT_DLQ_OPERATOR", "",
                            help="who acts, recorded with every decision (default: the login name; --by wins)")


class Refused(Exception):
    """The dead letter was already acted on (or cannot be replayed); the message says why."""


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """One message on a dead-letter topic, with where it came from and why it was refused."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp: str

    @classmethod
    def of(cls, record: ConsumerRecord[Any, Any]) -> DeadLetter:
        moment = ""
        if record.timestamp is not None and record.timestamp >= 0:
            moment = isoformat(datetime.fromtimestamp(record.timestamp / 1000, UTC))
        headers = [(k, v if v is not None else b"") for k, v in (record.headers or ())]
        return cls(record.topic, record.partition, record.offset, record.key, record.value, headers, moment)

    def header(self, name: str) -> str:
        for key, raw in self.headers:
            if key == name:
                return raw.decode(errors="replace")
        return ""

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def decision_key(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def source_topic(self) -> str:
        return self.header("dlq_source_topic")

    @property
    def first_failed_at(self) -> str:
        """When the message was first refused: the runner's `dlq_first_failed_at`, or (dead letters
        written before that header existed) `dlq_failed_at`, or the DLQ record's time."""
        return self.header("dlq_first_failed_at") or self.header("dlq_failed_at") or self.timestamp

    def summary(self) -> dict[str, Any]:
        source_partition, source_offset = self.header("dlq_source_partition"), self.header("dlq_source_offset")
        return {
            "dlq_topic": self.topic,
            "ref": self.ref,
            "reason": self.header("dlq_reason"),
            "source_topic": self.source_topic,
            "source_partition": int(source_partition) if source_partition.isdigit() else None,
            "source_offset": int(source_offset) if source_offset.isdigit() else None,
            "consumer_group": self.header("dlq_consumer_group"),
            "first_failed_at": self.first_failed_at,
            "failed_at": self.header("dlq_failed_at") or self.timestamp,
            "type": self.header("ce_type"),
            "ce_id": self.header("ce_id"),
            "key": self.key.decode(errors="replace") if self.key is not None else None,
            "replayed_from": self.header("dlq_replayed_from") or None,
        }


@dataclasses.dataclass(frozen=True)
class Decision:
    """What an operator did with one dead letter; `earlier` holds the decisions it superseded (--force)."""

    dead_letter: str  # <dlq topic>:<partition>:<offset>
    action: str  # replayed | discarded
    by: str
    at: str
    reason: str
    ce_id: str
    replayed_to: str | None = None  # <topic>:<partition>:<offset> of the replayed message
    earlier: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: bytes) -> Decision:
        return cls(**json.loads(raw))


class DeadLetterOffice:
    """Reads dead-letter topics, replays or discards their messages, and keeps the decisions."""

    def __init__(self, settings: KafkaSettings, *, create_topics: bool = False) -> None:
        self._settings = settings
        self._create_topics = create_topics
        self.topics = Topics(settings.topic_prefix)
        self.decisions_topic = settings.topic_prefix + DECISIONS
        self._producer = EventProducer(settings, client_id="dlq-operator")

    async def __aenter__(self) -> DeadLetterOffice:
        if self._create_topics:
            await self._ensure_decisions_topic()
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    def dlq_topic(self, name: str) -> str:
        """`csr` or `cacert.csr.dlq` -> `cacert.csr.dlq` (ValueError for anything else)."""
        if name in TOPICS:
            return self.topics.dlq(name)
        if name in {self.topics.dlq(t) for t in TOPICS}:
            return name
        raise ValueError(f"{name!r} is neither a topic of the catalogue ({', '.join(TOPICS)}) nor its .dlq twin")

    async def dead_letters(self, dlq_topic: str) -> list[DeadLetter]:
        return [DeadLetter.of(r) for r in await self._read_all(dlq_topic)]

    async def decisions(self) -> dict[str, Decision]:
        """The latest decision per dead letter (the topic is compacted by that key; later ones win)."""
        latest: dict[str, Decision] = {}
        for record in await self._read_all(self.decisions_topic, missing_ok=True):
            if record.key is None:
                continue
            if record.value is None:  # a tombstone: the decision was withdrawn
                latest.pop(record.key.decode(), None)
            else:
                latest[record.key.decode()] = Decision.from_json(record.value)
        return latest

    async def dead_letter(self, dlq_topic: str, partition: int, offset: int) -> DeadLetter | None:
        consumer = self._consumer()
        await consumer.start()
        try:
            tp = TopicPartition(dlq_topic, partition)
            if partition not in (await self._partitions(consumer, dlq_topic)):
                return None
            consumer.assign([tp])
            consumer.seek(tp, offset)
            deadline = asyncio.get_running_loop().time() + READ_TIMEOUT
            end = (await consumer.end_offsets([tp]))[tp]
            if offset >= end:
                return None
            while asyncio.get_running_loop().time() < deadline:
                for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    return DeadLetter.of(record) if record.offset == offset else None
            raise TimeoutError(f"could not read {dlq_topic} {partition}:{offset} in {READ_TIMEOUT:.0f}s")
        finally:
            await consumer.stop()

    async def replay(self, letter: DeadLetter, *, by: str, reason: str, force: bool = False) -> Decision:
        previous = (await self.decisions()).get(letter.decision_key)
        if previous is not None and not force:
            raise Refused(f"{letter.ref} was already {previous.action} by {previous.by} at {previous.at} "
                          f"({previous.reason}); --force to replay it anyway")
        source = letter.source_topic
        if not source or source + DLQ_SUFFIX != letter.topic:
            raise Refused(f"{letter.ref} names {source!r} as its origin, not the twin of {letter.topic}")
        now = isoformat(utcnow())
        headers: Headers = [(k, v) for k, v in letter.headers if not k.startswith("dlq_")]
        headers += [
            ("dlq_replayed_from", letter.decision_key.encode()),
            ("dlq_replayed_at", now.encode()),
            ("dlq_first_failed_at", letter.first_failed_at.encode()),
        ]
        group = letter.header("dlq_consumer_group")
        if group:
            headers.append(("dlq_replay_group", group.encode()))
        written = await self._producer.send_raw(source, key=letter.key, value=letter.value, headers=headers)
        decision = Decision(letter.decision_key, "replayed", by, now, reason, letter.header("ce_id"),
                            f"{written.topic}:{written.partition}:{written.offset}", _history(previous))
        await self._record(decision)
        return decision

    async def discard(self, letter: DeadLetter, *, by: str, reason: str, force: bool = False) -> Decision:
        if not reason.strip():
            raise Refused("a discard needs a reason (--reason)")
        previous = (await self.decisions()).get(letter.decision_key)
        if previous is not None and not force:
            raise Refused(f"{letter.ref} was already {previous.action} by {previous.by} at {previous.at} "
                          f"({previous.reason}); --force to record a discard anyway")
        decision = Decision(letter.decision_key, "discarded", by, isoformat(utcnow()), reason,
                            letter.header("ce_id"), None, _history(previous))
        await self._record(decision)
        return decision

    async def _record(self, decision: Decision) -> None:
        await self._producer.send_raw(self.decisions_topic, key=decision.dead_letter.encode(),
                                      value=json.dumps(decision.as_dict(), sort_keys=True).encode(),
                                      headers=[("content-type", b"application/json")])

    def _consumer(self) -> AIOKafkaConsumer:
        # No consumer group: the tool reads, it never commits, and needs no group ACL.
        return AIOKafkaConsumer(**client_kwargs(self._settings), group_id=None, client_id="dlq-operator",
                                enable_auto_commit=False, auto_offset_reset="earliest")

    async def _partitions(self, consumer: AIOKafkaConsumer, topic: str) -> set[int]:
        cluster = await consumer._client.fetch_all_metadata()  # the topics this user may describe
        return set(cluster.partitions_for_topic(topic) or ())

    async def _read_all(self, topic: str, missing_ok: bool = False) -> list[ConsumerRecord[Any, Any]]:
        """Every record of `topic` up to its end now, in partition and offset order."""
        consumer = self._consumer()
        await consumer.start()
        try:
            partitions = await self._partitions(consumer, topic)
            if not partitions:
                if missing_ok:
                    return []
                raise ValueError(f"topic {topic} does not exist (or this user may not describe it)")
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            records: list[ConsumerRecord[Any, Any]] = []
            deadline = asyncio.get_running_loop().time() + READ_TIMEOUT
            while True:
                pending = [tp for tp in tps if await consumer.position(tp) < end[tp]]
                if not pending:
                    break
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"could not read {topic} to its end in {READ_TIMEOUT:.0f}s")
                for batch in (await consumer.getmany(*pending, timeout_ms=500)).values():
                    records.extend(r for r in batch if r.offset < end[TopicPartition(r.topic, r.partition)])
            return sorted(records, key=lambda r: (r.partition, r.offset))
        finally:
            await consumer.stop()

    async def _ensure_decisions_topic(self) -> None:
        admin = AIOKafkaAdminClient(**client_kwargs(self._settings), client_id="dlq-operator-setup")
        await admin.start()
        try:
            if self.decisions_topic not in set(await admin.list_topics()):
                try:
                    await admin.create_topics([NewTopic(self.decisions_topic, num_partitions=1, replication_factor=1,
                                                        topic_configs={"cleanup.policy": "compact"})])
                except TopicAlreadyExistsError:
                    pass
        finally:
            await admin.close()


def _history(previous: Decision | None) -> list[dict[str, Any]]:
    if previous is None:
        return []
    earlier = previous.as_dict()
    return [*earlier.pop("earlier"), earlier]


def status(letter: DeadLetter, decision: Decision | None) -> str:
    if decision is not None:
        return decision.action
    return f"new (replay of {letter.header('dlq_replayed_from')})" if letter.header("dlq_replayed_from") else "new"


def masked_payload(value: bytes | None) -> Any:
    """The payload for a terminal: JSON with secret-looking fields and link tokens masked."""
    if value is None:
        return None
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"undecodable_bytes": value[:2000].decode(errors="replace")}
    return _mask_links(redact(data))


def _mask_links(value: Any) -> Any:
    if isinstance(value, str):
        return _TOKEN_IN_URL.sub(r"\1[redacted]", value)
    if isinstance(value, dict):
        return {k: _mask_links(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_links(v) for v in value]
    return value


def table(rows: list[dict[str, Any]], columns: Sequence[tuple[str, str, int]]) -> str:
    """A plain-text table: (field, heading, maximum width) per column."""
    cells = [[_cell(row.get(field), width) for field, _, width in columns] for row in rows]
    widths = [max([len(heading)] + [len(c[i]) for c in cells]) for i, (_, heading, _) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (_, h, _), w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _cell(value: Any, width: int) -> str:
    text = "" if value is None else str(value).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


LIST_COLUMNS = (
    ("ref", "REF", 12), ("first_failed_at", "FIRST FAILED", 24), ("origin", "ORIGIN (topic:partition:offset)", 40),
    ("consumer_group", "GROUP", 24), ("type", "TYPE", 36), ("status", "STATUS", 40), ("reason", "REASON", 70),
)


def parse_ref(text: str) -> tuple[int, int]:
    partition, _, offset = text.rpartition(":")
    try:
        return int(partition or 0), int(offset)
    except ValueError:
        raise ValueError(f"{text!r} is not partition:offset") from None


async def _list(office: DeadLetterOffice, names: list[str], as_json: bool) -> int:
    decisions = await office.decisions()
    rows = []
    for dlq in [office.dlq_topic(n) for n in names] or [office.topics.dlq(t) for t in TOPICS]:
        for letter in await office.dead_letters(dlq):
            decision = decisions.get(letter.decision_key)
            row = letter.summary()
            row["status"] = status(letter, decision)
            row["decision"] = decision.as_dict() if decision else None
            row["origin"] = f"{row['source_topic']}:{row['source_partition']}:{row['source_offset']}"
            row["type"] = (row["type"] or "").removeprefix("org.cacert.")
            rows.append(row)
    if as_json:
        print(json.dumps([{k: v for k, v in r.items() if k != "origin"} for r in rows], indent=2))
        return 0
    current = None
    for row in rows:
        if row["dlq_topic"] != current:
            current = row["dlq_topic"]
            group = [r for r in rows if r["dlq_topic"] == current]
            print(f"{current}: {len(group)} dead letter(s)")
            print(table(group, LIST_COLUMNS))
            print()
    if not rows:
        print("no dead letters")
    return 0


async def _show(office: DeadLetterOffice, name: str, ref: str, as_json: bool, reveal: bool) -> int:
    partition, offset = parse_ref(ref)
    letter = await office.dead_letter(office.dlq_topic(name), partition, offset)
    if letter is None:
        print(f"no dead letter {ref} on {office.dlq_topic(name)}", file=sys.stderr)
        return 1
    decision = (await office.decisions()).get(letter.decision_key)
    out = letter.summary()
    out["status"] = status(letter, decision)
    out["decision"] = decision.as_dict() if decision else None
    out["headers"] = {k: v.decode(errors="replace") for k, v in letter.headers}
    if reveal:
        out["payload"] = letter.value.decode(errors="replace") if letter.value is not None else None
    else:
        out["payload"] = masked_payload(letter.value)
    if as_json:
        print(json.dumps(out, indent=2))
    else:
        for field in ("dlq_topic", "ref", "status", "reason", "source_topic", "source_partition", "source_offset",
                      "consumer_group", "first_failed_at", "failed_at", "type", "ce_id", "key", "replayed_from"):
            print(f"{field + ':':<18}{'' if out[field] is None else out[field]}")
        if decision:
            print(f"{'decision:':<18}{json.dumps(out['decision'])}")
        print("headers:")
        for key, value in out["headers"].items():
            print(f"  {key}: {value}")
        print("payload:")
        print(json.dumps(out["payload"], indent=2) if not isinstance(out["payload"], str) else out["payload"])
    return 0


async def _act(office: DeadLetterOffice, action: str, name: str, refs: list[str], by: str, reason: str,
               force: bool, as_json: bool) -> int:
    dlq = office.dlq_topic(name)
    done: list[dict[str, Any]] = []
    failed = 0
    for ref in refs:
        partition, offset = parse_ref(ref)
        letter = await office.dead_letter(dlq, partition, offset)
        try:
            if letter is None:
                raise Refused(f"no dead letter {ref} on {dlq}")
            act = office.replay if action == "replay" else office.discard
            decision = await act(letter, by=by, reason=reason, force=force)
        except Refused as exc:
            failed += 1
            print(f"refused: {exc}", file=sys.stderr)
            continue
        done.append(decision.as_dict())
        if not as_json:
            where = f" to {decision.replayed_to}" if decision.replayed_to else ""
            print(f"{ref} {decision.action}{where} by {decision.by}: {decision.reason}")
    if as_json:
        print(json.dumps(done, indent=2))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.dlq", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="dead letters with reason, origin, first failure and decision")
    listing.add_argument("topics", nargs="*", help="logical topics (default: every DLQ)")
    show = sub.add_parser("show", help="one dead letter: headers, payload (secrets masked), decision")
    show.add_argument("topic")
    show.add_argument("ref", help="partition:offset in the DLQ, as `list` prints it")
    show.add_argument("--reveal", action="store_true", help="print the payload as stored (secrets included)")
    replay = sub.add_parser("replay", help="send dead letters back to their topic, for the group that refused them")
    discard = sub.add_parser("discard", help="record that dead letters will not be replayed, and why")
    for command in (replay, discard):
        command.add_argument("topic")
        command.add_argument("refs", nargs="+", metavar="ref")
        command.add_argument("--by", help="who decides (default: CACERT_DLQ_OPERATOR, else the login name)")
        command.add_argument("--force", action="store_true", help="act even if already replayed or discarded")
    replay.add_argument("--reason", default="cause fixed", help="recorded with the replay")
    discard.add_argument("--reason", required=True, help="why it is not replayed (recorded)")
    for command in (listing, show, replay, discard):
        command.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)

    try:
        settings = load(DlqSettings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    by = getattr(args, "by", None) or settings.operator or _login_name()

    async def run() -> int:
        async with DeadLetterOffice(settings.kafka, create_topics=settings.create_topics) as office:
            if args.command == "list":
                return await _list(office, args.topics, args.json)
            if args.command == "show":
                return await _show(office, args.topic, args.ref, args.json, args.reveal)
            return await _act(office, args.command, args.topic, args.refs, by, args.reason, args.force, args.json)

    try:
        return asyncio.run(run())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container's uid without a passwd entry
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
