"""ExpiryReminder: the periodic task that queues "your certificate expires soon" mails.

Each run looks at unrevoked certificates expiring within the largest
threshold, skips renewed ones (a newer unrevoked certificate for the same
member, profile and names), and queues one reminder per due threshold. The
reminder's mail id derives from serial and threshold, so the queue's unique
`_id` is the "once per (serial, threshold)" guarantee: a crash between
queueing and recording the threshold as done re-queues nothing. The clock is
injected so tests move time instead of waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from services.notifier import reminder_policy
from services.notifier.certificates import CertificateSchedule, ScheduledCertificate
from services.notifier.notices import Notice
from services.notifier.outgoing import MailQueue, OutgoingMail
from shared.events import deterministic_event_id, isoformat
from shared.logging import get_logger
from shared.periodic import Periodic

SOURCE_TYPE = "org.cacert.notifier.expiry_reminder"
TEMPLATE = "expiry_reminder"
log = get_logger("notifier.expiry_reminder")


def reminder_id(serial: str, threshold: int) -> str:
    return deterministic_event_id("notifier", "expiry-reminder", serial, str(threshold))


class ExpiryReminder:
    def __init__(self, schedule: CertificateSchedule, queue: MailQueue, *, thresholds: Sequence[int],
                 every: float, clock: Callable[[], datetime], on_queued: Callable[[], None] = lambda: None
                 ) -> None:
        self._schedule = schedule
        self._queue = queue
        self._thresholds = tuple(thresholds)
        self._every = every
        self._clock = clock
        self._on_queued = on_queued
        self._periodic: Periodic | None = None

    async def run_once(self) -> int:
        """Queue every reminder due now; returns how many were newly queued."""
        now = self._clock()
        queued = 0
        async for cert in self._schedule.expiring(now, reminder_policy.horizon(now, self._thresholds)):
            due = reminder_policy.due(cert.not_after, now, self._thresholds, cert.reminded)
            if due is None:
                continue
            renewal = await self._schedule.renewal_of(cert)
            if renewal is not None:
                await self._schedule.settle(cert.serial, self._thresholds)
                log.info("certificate renewed; no reminder", serial=cert.serial, renewed_by=renewal)
                continue
            mail = OutgoingMail.from_notice(reminder_id(cert.serial, due.threshold), SOURCE_TYPE,
                                            self._notice(cert, due.days_left), now)
            if await self._queue.enqueue(mail):
                queued += 1
                log.info("expiry reminder queued", serial=cert.serial, threshold=due.threshold,
                         mail_id=mail.id)
            await self._schedule.settle(cert.serial, due.settles)
        if queued:
            self._on_queued()
        return queued

    @staticmethod
    def _notice(cert: ScheduledCertificate, days_left: int) -> Notice:
        context = {"serial": cert.serial, "subject": cert.subject, "profile": cert.profile,
                   "names": cert.names, "not_after": isoformat(cert.not_after), "days_left": days_left}
        return Notice(template=TEMPLATE, context=context, member_id=cert.member_id)

    def start(self) -> None:
        self._periodic = Periodic("notifier-expiry-reminder", self.run_once, self._every)
        self._periodic.start()

    async def stop(self) -> None:
        if self._periodic is not None:
            await self._periodic.stop()
