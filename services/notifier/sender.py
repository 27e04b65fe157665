"""MailSender: the loop that delivers queued mails, each on its own schedule.

It claims due mails one at a time (atomically, with a lease) and sends up
to `concurrency` of them at once, so a slow or failing mail never holds up
the others: a temporary failure only moves *that* mail's `next_attempt_at`
forward (exponential back-off with jitter), and the loop claims the next.
It sleeps until a new mail is queued (`wake()`) or the poll interval passes.

Outcomes: sent -> `mail.sent`; permanent failure (5xx for this recipient or
content, an invalid address, a template that cannot render) ->
`mail.failed` with `permanent: true`; temporary failures past the give-up
horizon -> `mail.failed` with `permanent: false`, as an MTA bounces after
days. A member notice whose member is not in the view yet waits like a
temporary failure and is woken as soon as the member's address arrives.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import jinja2
from prometheus_client import Counter
from pymongo.errors import PyMongoError

from services.notifier.addresses import InvalidAddress, mailbox, parse_mailbox
from services.notifier.members import MemberDirectory
from services.notifier.message import build_message
from services.notifier.notices import opened_context
from services.notifier.outgoing import MailQueue, OutgoingMail
from services.notifier.rendering import TEMPLATES, MailRenderer, TemplateMissing
from services.notifier.settings import NotifierSettings
from services.notifier.smtp_relay import DeliveryResult, Outcome, Transport
from shared.events import deterministic_event_id, isoformat, make_event
from shared.logging import bound, get_logger
from shared.outbox import Outbox
from shared.periodic import Wakeup, end_loop
from shared.sealed_mail import MailOpener, UnopenableMail

SOURCE = "notifier"
log = get_logger("notifier.sender")
DATABASE_ERRORS = (PyMongoError, OSError)
ATTEMPTS = Counter("cacert_notifier_mail_attempts_total", "Mail delivery attempts by template and outcome",
                   ["template", "outcome"])  # outcome: sent, deferred, failed
FAILURES = Counter("cacert_notifier_mail_failures_total",
                   "Mails given up (mail.failed), by template and whether the failure was permanent",
                   ["template", "permanent"])  # permanent: "true" (5xx, bad address, template), "false" (gave up)
# From 0 for every template, so that an alert on increase() sees the first failure.
for _template in sorted(p.name.removesuffix(".txt.j2") for p in TEMPLATES.glob("*.txt.j2") if p.name[0] != "_"):
    for _permanent in ("true", "false"):
        FAILURES.labels(_template, _permanent)


def backoff(attempts: int, first: float, cap: float, jitter: float = 0.1) -> float:
    """Seconds to wait after the `attempts`-th failure: first, 2x, 4x, ... capped, +-10% jitter
    so mails that failed together (the relay was down) do not all retry in the same instant."""
    delay = min(cap, first * 2 ** max(0, attempts - 1))
    return float(delay * random.uniform(1 - jitter, 1 + jitter))


class MailSender:
    def __init__(self, queue: MailQueue, members: MemberDirectory, renderer: MailRenderer,
                 transport: Transport, outbox: Outbox, settings: NotifierSettings, opener: MailOpener,
                 *, clock: Callable[[], datetime]) -> None:
        self._queue = queue
        self._opener = opener
        self._members = members
        self._renderer = renderer
        self._transport = transport
        self._outbox = outbox
        self._settings = settings
        self._clock = clock
        self._sender = parse_mailbox(settings.mail_from)
        self._wake = Wakeup()
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """A mail was queued (or a member's address arrived): look now, not at the next poll."""
        self._wake.wake()

    def start(self) -> None:
        self._task = asyncio.create_task(self._forever(), name="notifier-sender")

    async def stop(self) -> None:
        if self._task:
            await end_loop(self._task, self._wake)
        if self._in_flight:
            # Let SMTP sessions in hand finish; a mail cut off stays `sending` and is retried after its lease.
            _, late = await asyncio.wait(self._in_flight, timeout=self._settings.smtp_timeout + 5)
            for task in late:
                task.cancel()

    async def _forever(self) -> None:
        lease = timedelta(seconds=self._settings.lease_seconds)
        while not self._wake.stopped:
            await self._slots.acquire()
            self._wake.clear()
            try:
                mail = await self._queue.claim(self._clock(), lease)
            except Exception as exc:
                self._slots.release()
                log.warning("cannot claim mail; will retry", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(self._settings.poll_seconds)
                continue
            if mail is None:
                self._slots.release()
                await self._wake.sleep(self._settings.poll_seconds)
                continue
            task = asyncio.create_task(self._process(mail), name=f"mail-{mail.id}")
            self._in_flight.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slots.release()

    async def _process(self, mail: OutgoingMail) -> None:
        with bound(mail_id=mail.id, template=mail.template, member_id=mail.member_id):
            now = self._clock()
            try:
                await self._attempt(mail, now)
            except Exception as exc:  # the database or Kafka hiccuped: the lease brings the mail back
                log.warning("mail attempt failed unexpectedly; retried after its lease",
                            error=f"{type(exc).__name__}: {exc}", exc_info=True)

    async def _attempt(self, mail: OutgoingMail, now: datetime) -> None:
        to, name, context = mail.to, mail.to_name, dict(mail.context)
        if to is None:
            contact = await self._members.get(mail.member_id) if mail.member_id else None
            if contact is None or not contact.email:
                unknown = DeliveryResult(Outcome.TEMPORARY, "member address unknown yet")
                await self._temporary(mail, now, unknown, to="")
                return
            to, name = contact.email, contact.name
            if context.get("name") is None:
                context["name"] = contact.name
        try:
            recipient = mailbox(name, to)
        except InvalidAddress as exc:
            await self._fail(mail, now, to=to, reason=f"invalid address: {exc}", permanent=True)
            return
        try:
            context = opened_context(mail.id, mail.source_type, mail.to, mail.template, context, mail.sealed,
                                     self._opener)
        except UnopenableMail as exc:  # e.g. the key that sealed it was rotated away since intake
            await self._fail(mail, now, to=recipient.addr_spec, reason=f"cannot open: {exc}", permanent=True)
            return
        try:
            content = self._renderer.render(mail.template, context)
        except (TemplateMissing, jinja2.TemplateError) as exc:
            await self._fail(mail, now, to=recipient.addr_spec, reason=f"cannot render: {exc}",
                             permanent=True)
            return
        message = build_message(content, sender=self._sender, recipient=recipient, mail_id=mail.id, date=now)
        result = await self._transport.deliver(message, sender=self._sender.addr_spec,
                                               recipient=recipient.addr_spec)
        if result.outcome is Outcome.SENT:
            await self._sent(mail, now, to=recipient.addr_spec, subject=content.subject)
        elif result.outcome is Outcome.PERMANENT:
            await self._fail(mail, now, to=recipient.addr_spec, reason=result.detail, permanent=True)
        else:
            await self._temporary(mail, now, result, to=recipient.addr_spec)

    async def _sent(self, mail: OutgoingMail, now: datetime, *, to: str, subject: str) -> None:
        event = make_event("mail.sent", {
            "source_event_id": mail.id, "source_type": mail.source_type, "to": to, "subject": subject,
            "sent_at": isoformat(now)},
            source=SOURCE, event_id=deterministic_event_id(SOURCE, "sent", mail.id))
        if await self._record_delivered(mail, lambda: self._queue.mark_sent(mail, now=now, to=to, subject=subject,
                                                                             event=event)):
            ATTEMPTS.labels(mail.template, "sent").inc()
            log.info("mail sent", attempts=mail.attempts + 1)
            await self._flush(mail)
        else:
            log.warning("mail sent but its lease had passed to another sender; it may arrive twice")

    async def _record_delivered(self, mail: OutgoingMail, record: Callable[[], Awaitable[bool]]) -> bool:
        """The relay has accepted the mail: record that, retrying while the database is away (until the
        lease would end). Giving up at the first error left the mail `sending`, and after its lease it was
        sent again: a second copy for every mail in flight when FerretDB restarted (the chaos run's
        stack:mongo). Only a crash between the relay's answer and this record still sends twice."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(1.0, self._settings.lease_seconds - self._settings.smtp_timeout)
        pause = 0.5
        while True:
            try:
                return await record()
            except DATABASE_ERRORS as exc:
                if loop.time() + pause >= deadline:
                    raise
                log.warning("mail sent but not recorded yet; retrying", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)

    async def _fail(self, mail: OutgoingMail, now: datetime, *, to: str, reason: str,
                    permanent: bool) -> None:
        event = make_event("mail.failed", {
            "source_event_id": mail.id, "source_type": mail.source_type, "to": to, "reason": reason[:1000],
            "permanent": permanent, "failed_at": isoformat(now)},
            source=SOURCE, event_id=deterministic_event_id(SOURCE, "failed", mail.id))
        if await self._queue.mark_failed(mail, now=now, reason=reason, event=event):
            ATTEMPTS.labels(mail.template, "failed").inc()
            FAILURES.labels(mail.template, "true" if permanent else "false").inc()
            log.warning("mail failed", reason=reason, permanent=permanent, attempts=mail.attempts + 1)
            await self._flush(mail)

    async def _temporary(self, mail: OutgoingMail, now: datetime, result: DeliveryResult, *, to: str) -> None:
        s = self._settings
        if now - mail.created_at >= timedelta(hours=s.give_up_hours):
            reason = f"undeliverable for {s.give_up_hours:g} hours; last error: {result.detail}"
            await self._fail(mail, now, to=to, reason=reason, permanent=False)
            return
        delay = backoff(mail.attempts + 1, s.retry_first_seconds, s.retry_max_seconds)
        await self._queue.retry_later(mail, at=now + timedelta(seconds=delay), error=result.detail)
        ATTEMPTS.labels(mail.template, "deferred").inc()
        log_method = log.error if result.config_problem else log.info
        log_method("mail deferred", error=result.detail, attempts=mail.attempts + 1, retry_in=round(delay, 1))

    async def _flush(self, mail: OutgoingMail) -> None:
        try:
            await self._outbox.flush(self._queue.collection, mail.id)
        except Exception as exc:  # the outbox sweep publishes it later
            log.warning("mail outcome not published yet; the outbox sweep will", error=str(exc))
