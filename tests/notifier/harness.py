"""Runs the notifier in-process against real Kafka, FerretDB and a real SMTP server on loopback.

`SmtpServer` is an aiosmtpd Controller on a free port whose handler records
every accepted message, answers 550 for addresses it is told to refuse, and
can be stopped and started again on the same port (an SMTP outage).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import socket
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from prometheus_client import REGISTRY

from services.notifier.service import NotifierService
from services.notifier.settings import NotifierSettings
from shared.config import HttpSettings, KafkaSettings, MongoSettings
from shared.events import CloudEvent, Topics, isoformat, make_event, utcnow
from shared.kafka import EventProducer
from shared.logging import configure
from shared.settings import CommonSettings
from tests.eventlog import read_topic, wait_until
from tests.mail_keys import NOTIFIER_PRIVATE_PEM, seal
from tests.notifier.mailparse import parse


@dataclasses.dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def to(self) -> str:
        (rcpt,) = self.rcpt_tos
        return rcpt


class RecordingHandler:
    """aiosmtpd handler: records accepted messages, refuses listed recipients with 550."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.refuse: set[str] = set()
        self._lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    parse(envelope.original_content or envelope.content),
                )
            )
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpServer:
    def __init__(self, **controller_options: Any) -> None:
        self.port = free_port()
        self.handler = RecordingHandler()
        self._options = controller_options  # e.g. tls_context + require_starttls for a STARTTLS relay
        self._controller: Controller | None = None

    @property
    def received(self) -> list[Received]:
        return list(self.handler.received)

    def start(self) -> None:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **self._options)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if r.to == address]


class Clock:
    """Real time plus an offset the test can move forward (reminders without waiting days)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


@dataclasses.dataclass
class Harness:
    service: NotifierService
    kafka: KafkaSettings
    producer: EventProducer
    smtp: SmtpServer
    clock: Clock
    logs: io.StringIO

    @property
    def topics(self) -> Topics:
        return Topics(self.kafka.topic_prefix)

    async def publish(
        self, name: str, data: dict[str, Any], *, event_id: str | None = None, source: str = "test"
    ) -> CloudEvent:
        """Publish as a producer would: a mail command's link and code sealed to the notifier's key."""
        event = seal(make_event(name, data, source=source, event_id=event_id))
        await self.producer.publish(event)
        return event

    async def republish(self, event: CloudEvent) -> None:
        await self.producer.publish(event)

    async def register(
        self, member_id: str = "m-1", name: str = "Ada Lovelace", email: str = "ada@example.org"
    ) -> CloudEvent:
        return await self.publish(
            "member.registered",
            {"member_id": member_id, "name": name, "email": email, "registered_at": isoformat(utcnow())},
        )

    async def mail_events(self, expected: int, timeout: float = 30) -> list[CloudEvent]:
        records = await read_topic(self.kafka.bootstrap, self.topics.of("mail"), expected, timeout)
        return [CloudEvent.from_kafka(r.key, r.value, r.headers) for r in records]

    async def wait_received(self, count: int, timeout: float = 30) -> list[Received]:
        await wait_until(lambda: len(self.smtp.received) >= count, timeout, f"{count} mails received")
        return self.smtp.received

    def handled(self, topic: str, type_: str) -> float:
        value = REGISTRY.get_sample_value(
            "cacert_events_consumed_total",
            {"topic": self.topics.of(topic), "type": type_, "outcome": "handled"},
        )
        return value or 0.0

    async def mail_doc(self, mail_id: str) -> dict[str, Any] | None:
        assert self.service.queue is not None
        return await self.service.queue.get(mail_id)

    async def settle(self, seconds: float = 1.5) -> None:
        """Give a duplicate the chance to arrive (used before asserting that something did *not* happen)."""
        await asyncio.sleep(seconds)


def settings_for(
    kafka: KafkaSettings, mongo: MongoSettings, smtp_port: int, **overrides: Any
) -> NotifierSettings:
    common = CommonSettings(kafka=kafka, mongo=mongo, http=HttpSettings(host="127.0.0.1", port=0))
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "smtp_tls": "none",
        "mail_from": "CAcert Community CA <noreply@cacert.test>",
        "smtp_timeout": 5.0,
        "lease_seconds": 30.0,
        "poll_seconds": 0.2,
        "retry_first_seconds": 0.2,
        "retry_max_seconds": 1.0,
        "reminder_check_seconds": 3600.0,
        "sealing_key": NOTIFIER_PRIVATE_PEM,
        **overrides,
    }
    return NotifierSettings(common=common, **values)


@contextlib.asynccontextmanager
async def running(
    kafka: KafkaSettings,
    mongo: MongoSettings,
    *,
    smtp_up: bool = True,
    smtp_options: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[Harness]:
    logs = io.StringIO()
    configure("notifier", "DEBUG", stream=logs)
    smtp = SmtpServer(**(smtp_options or {}))
    if smtp_up:
        smtp.start()
    clock = Clock()
    service = NotifierService(settings_for(kafka, mongo, smtp.port, **overrides), clock=clock)
    producer = EventProducer(kafka, client_id=f"test-{uuid.uuid4().hex[:6]}")
    await service.start()
    await producer.start()
    try:
        yield Harness(service, kafka, producer, smtp, clock, logs)
    finally:
        await producer.stop()
        if service.client is not None and service.db is not None:
            await service.client.drop_database(service.db.name)
        await service.stop()
        smtp.stop()
