"""MailIntake: the consumer's handlers. Each event becomes at most one queued mail, durably.

A handler only writes to the notifier's database (the views and the queue)
and returns; the runner then commits the offset. Sending happens later in
`MailSender`, so a dead SMTP server never stalls a partition, and the
queue's unique `_id` (the event id) makes a redelivered event a no-op.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from services.notifier.certificates import CertificateSchedule
from services.notifier.members import MemberDirectory
from services.notifier.notices import MAIL_COMMAND, NOTICE_TYPES, NoticeError, notice_for
from services.notifier.outgoing import MailQueue, OutgoingMail
from shared.events import BY_NAME, BY_TYPE, CloudEvent
from shared.kafka import PermanentError, Subscription
from shared.kafka.consumer import Handler
from shared.logging import get_logger
from shared.sealed_mail import MailOpener

log = get_logger("notifier.intake")
HANDLED = (MAIL_COMMAND, *NOTICE_TYPES, BY_NAME["member.email_verified"].type)
MAX_EVENT_ID = 64  # mail.sent / mail.failed carry it as source_event_id (schema limit)


class MailIntake:
    def __init__(self, queue: MailQueue, members: MemberDirectory, schedule: CertificateSchedule,
                 opener: MailOpener, *, clock: Callable[[], datetime], wake: Callable[[], None]) -> None:
        self._queue = queue
        self._opener = opener
        self._members = members
        self._schedule = schedule
        self._clock = clock
        self._wake = wake

    def subscriptions(self) -> list[Subscription]:
        """mail.commands, member, cert, csr and domain: only the types listed in HANDLED."""
        by_topic: dict[str, dict[str, Handler]] = {}
        for type_ in HANDLED:
            by_topic.setdefault(BY_TYPE[type_].topic, {})[type_] = self.handle
        return [Subscription(topic, handlers) for topic, handlers in by_topic.items()]

    async def handle(self, event: CloudEvent) -> None:
        name = BY_TYPE[event.type].name
        now = self._clock()
        data = event.data
        # First the views (idempotent upserts), so a mail queued below can already be addressed.
        if name == "member.registered":
            await self._members.registered(data["member_id"], data["name"], data["email"], now)
            await self._queue.release_member(data["member_id"], now)
        elif name == "member.email_verified":
            if await self._members.email_verified(data["member_id"], data["email"], data.get("primary"), now):
                await self._queue.release_member(data["member_id"], now)
                self._wake()
            return
        elif name == "cert.issued":
            await self._schedule.issued(data)
        elif name == "cert.revoked":
            await self._schedule.revoked(data["serial"], data["member_id"],
                                         datetime.fromisoformat(data["revoked_at"]))
        await self._enqueue(event, now)

    async def _enqueue(self, event: CloudEvent, now: datetime) -> None:
        if len(event.id) > MAX_EVENT_ID:
            raise PermanentError(f"event id longer than {MAX_EVENT_ID} characters; cannot be tracked")
        try:
            notice = notice_for(event, self._opener)
        except NoticeError as exc:
            raise PermanentError(str(exc)) from None
        mail = OutgoingMail.from_notice(event.id, event.type, notice, now)
        if await self._queue.enqueue(mail):
            log.info("mail queued", mail_id=mail.id, template=mail.template)
        else:
            log.info("mail already queued for this event; redelivery ignored", mail_id=mail.id)
        self._wake()
