"""NotifierService: wires the consumer, the mail queue's sender, expiry reminders, outbox and HTTP.

Start order: database and indexes, producer (and topics in development),
outbox sweep (publishes mail.sent/mail.failed a crash left behind), the
sender, the consumer, the reminder task, then HTTP (health and metrics
only). Stop runs the other way round; the sender lets SMTP sessions in hand
finish.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.notifier import certificates, members, outgoing
from services.notifier.certificates import CertificateSchedule
from services.notifier.expiry_reminder import ExpiryReminder
from services.notifier.intake import MailIntake
from services.notifier.members import MemberDirectory
from services.notifier.outgoing import MailQueue
from services.notifier.rendering import MailRenderer
from services.notifier.sender import MailSender
from services.notifier.settings import NotifierSettings
from services.notifier.smtp_relay import SmtpRelay, Transport
from shared.events import utcnow
from shared.events.access import SERVICES
from shared.http import create_app
from shared.kafka import ConsumerRunner, EventProducer, ensure_topics
from shared.logging import get_logger
from shared.mongo import connect, ensure_indexes, ping
from shared.outbox import Outbox
from shared.service import Lifecycle, close_http, start_http

NAME = "notifier"
log = get_logger("notifier.service")


class NotifierService:
    def __init__(self, settings: NotifierSettings, *, clock: Callable[[], datetime] = utcnow,
                 transport: Transport | None = None) -> None:
        self.settings = settings
        self._opener = settings.mail_opener()  # ConfigError without the key: no sealed link could be mailed
        self._clock = clock
        self._transport = transport or SmtpRelay(settings)
        self.http_port: int | None = None
        self.client: AsyncMongoClient[dict[str, Any]] | None = None
        self.db: AsyncDatabase[dict[str, Any]] | None = None
        self.queue: MailQueue | None = None
        self.members: MemberDirectory | None = None
        self.schedule: CertificateSchedule | None = None
        self.sender: MailSender | None = None
        self.reminders: ExpiryReminder | None = None
        self._producer: EventProducer | None = None
        self._outbox: Outbox | None = None
        self._runner: ConsumerRunner | None = None
        self._http: web.AppRunner | None = None
        self._lifecycle = Lifecycle(NAME)

    async def start(self) -> None:
        common = self.settings.common
        self.client, self.db = connect(common.mongo, service=NAME)
        self._lifecycle.started("mongodb", self.client.close)
        await ensure_indexes(self.db, {**outgoing.INDEXES, **members.INDEXES, **certificates.INDEXES})
        self.queue = MailQueue(self.db)
        self.members = MemberDirectory(self.db)
        self.schedule = CertificateSchedule(self.db)
        if common.create_topics:
            await ensure_topics(common.kafka)
        self._producer = EventProducer(common.kafka, client_id=NAME)
        await self._producer.start()
        self._lifecycle.started("producer", self._producer.stop)
        self._outbox = Outbox(self._producer, [self.queue.collection])
        self._outbox.start()
        self._lifecycle.started("outbox", self._outbox.stop)

        renderer = MailRenderer(account_url=self.settings.account_url)
        self.sender = MailSender(self.queue, self.members, renderer, self._transport, self._outbox,
                                 self.settings, self._opener, clock=self._clock)
        self.sender.start()
        self._lifecycle.started("sender", self.sender.stop)

        intake = MailIntake(self.queue, self.members, self.schedule, self._opener, clock=self._clock,
                            wake=self.sender.wake)
        self._runner = ConsumerRunner(common.kafka, group_id=SERVICES[NAME].consumer_group, producer=self._producer,
                                      subscriptions=intake.subscriptions())
        await self._runner.start()
        self._lifecycle.started("consumer", self._runner.stop)

        self.reminders = ExpiryReminder(self.schedule, self.queue, thresholds=self.settings.reminder_days,
                                        every=self.settings.reminder_check_seconds, clock=self._clock,
                                        on_queued=self.sender.wake)
        self.reminders.start()
        self._lifecycle.started("expiry reminders", self.reminders.stop)

        client = self.client
        app = create_app(NAME, readiness={"kafka": self._producer.ping, "mongodb": lambda: ping(client)})
        self._http = await start_http(app, common.http.host, common.http.port)
        http, drain = self._http, common.http.drain_seconds
        self._lifecycle.started("http", lambda: close_http(http, drain))
        self.http_port = self._http.addresses[0][1]
        log.info("notifier started", port=self.http_port, smtp_host=self.settings.smtp_host,
                 smtp_port=self.settings.smtp_port, tls=self.settings.smtp_tls)

    async def stop(self) -> None:
        await self._lifecycle.stop()
