"""Expiry reminder scheduling with a fake clock: once per threshold, nearest only, skip renewed/revoked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from services.notifier import reminder_policy
from services.notifier.certificates import ScheduledCertificate
from services.notifier.expiry_reminder import ExpiryReminder, reminder_id
from services.notifier.outgoing import OutgoingMail

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EXPIRES = T0 + timedelta(days=30)
THRESHOLDS = (14, 3)


def test_nothing_due_before_the_first_threshold() -> None:
    assert reminder_policy.due(EXPIRES, EXPIRES - timedelta(days=14, seconds=1), THRESHOLDS, ()) is None


def test_each_threshold_is_due_once_at_its_time() -> None:
    at_14 = reminder_policy.due(EXPIRES, EXPIRES - timedelta(days=14), THRESHOLDS, ())
    assert at_14 is not None and at_14.threshold == 14 and at_14.settles == (14,) and at_14.days_left == 14
    assert reminder_policy.due(EXPIRES, EXPIRES - timedelta(days=5), THRESHOLDS, (14,)) is None
    at_3 = reminder_policy.due(EXPIRES, EXPIRES - timedelta(days=2, hours=23), THRESHOLDS, (14,))
    assert at_3 is not None and at_3.threshold == 3 and at_3.settles == (3,) and at_3.days_left == 3
    assert reminder_policy.due(EXPIRES, EXPIRES - timedelta(hours=1), THRESHOLDS, (14, 3)) is None


def test_late_look_sends_only_the_nearest_threshold_and_settles_the_rest() -> None:
    late = reminder_policy.due(EXPIRES, EXPIRES - timedelta(days=2), THRESHOLDS, ())
    assert late is not None and late.threshold == 3 and late.settles == (3, 14)


def test_expired_certificates_get_no_reminder() -> None:
    assert reminder_policy.due(EXPIRES, EXPIRES, THRESHOLDS, ()) is None
    assert reminder_policy.due(EXPIRES, EXPIRES + timedelta(days=1), THRESHOLDS, ()) is None


def test_days_left_rounds_up_and_names_key_ignores_order_and_case() -> None:
    assert reminder_policy.days_left(EXPIRES, EXPIRES - timedelta(days=2, hours=1)) == 3
    assert reminder_policy.names_key(["B.example.org", "a.example.org"], []) == reminder_policy.names_key(
        ["a.example.org", "b.example.org"], []
    )
    assert reminder_policy.names_key(["a.example.org"], []) != reminder_policy.names_key(
        ["b.example.org"], []
    )
    assert reminder_policy.horizon(T0, THRESHOLDS) == T0 + timedelta(days=14)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeSchedule:
    """The CertificateSchedule contract in memory."""

    def __init__(self) -> None:
        self.certs: dict[str, dict[str, Any]] = {}

    def add(
        self, serial: str, not_after: datetime, *, names: str = "www.example.org", revoked: bool = False
    ) -> None:
        self.certs[serial] = {
            "member_id": "m-1",
            "profile": "server",
            "names_key": names,
            "not_after": not_after,
            "revoked": revoked,
            "reminded": [],
        }

    def _cert(self, serial: str) -> ScheduledCertificate:
        c = self.certs[serial]
        return ScheduledCertificate(
            serial=serial,
            member_id=c["member_id"],
            profile=c["profile"],
            subject=f"CN={c['names_key']}",
            names=[c["names_key"]],
            names_key=c["names_key"],
            not_after=c["not_after"],
            reminded=tuple(c["reminded"]),
        )

    async def expiring(self, now: datetime, until: datetime) -> AsyncIterator[ScheduledCertificate]:
        for serial, c in list(self.certs.items()):
            if not c["revoked"] and now < c["not_after"] <= until:
                yield self._cert(serial)

    async def renewal_of(self, cert: ScheduledCertificate) -> str | None:
        for serial, c in self.certs.items():
            if (
                serial != cert.serial
                and not c["revoked"]
                and c["names_key"] == cert.names_key
                and c["not_after"] > cert.not_after
            ):
                return serial
        return None

    async def settle(self, serial: str, thresholds: Any) -> None:
        self.certs[serial]["reminded"] = sorted({*self.certs[serial]["reminded"], *thresholds})


class FakeQueue:
    def __init__(self) -> None:
        self.mails: dict[str, OutgoingMail] = {}

    async def enqueue(self, mail: OutgoingMail) -> bool:
        if mail.id in self.mails:
            return False
        self.mails[mail.id] = mail
        return True


def reminder(schedule: FakeSchedule, queue: FakeQueue, clock: FakeClock) -> ExpiryReminder:
    return ExpiryReminder(schedule, queue, thresholds=THRESHOLDS, every=60, clock=clock)  # type: ignore[arg-type]


async def test_a_month_of_ticks_mails_once_per_threshold() -> None:
    schedule, queue, clock = FakeSchedule(), FakeQueue(), FakeClock(T0)
    schedule.add("aa", EXPIRES)
    task = reminder(schedule, queue, clock)
    sent_on: list[tuple[int, int]] = []
    for hour in range(0, 40 * 24, 6):  # every 6 hours for 40 days
        clock.now = T0 + timedelta(hours=hour)
        if await task.run_once():
            sent_on.append((hour // 24, len(queue.mails)))
    assert sent_on == [(16, 1), (27, 2)]  # 14 days and 3 days before day 30
    assert set(queue.mails) == {reminder_id("aa", 14), reminder_id("aa", 3)}
    mail = queue.mails[reminder_id("aa", 3)]
    assert mail.member_id == "m-1" and mail.to is None and mail.template == "expiry_reminder"
    assert mail.context["days_left"] == 3 and mail.source_type == "org.cacert.notifier.expiry_reminder"


async def test_revoked_and_renewed_certificates_are_skipped() -> None:
    schedule, queue, clock = FakeSchedule(), FakeQueue(), FakeClock(EXPIRES - timedelta(days=10))
    schedule.add("revoked", EXPIRES, names="a.example.org", revoked=True)
    schedule.add("old", EXPIRES, names="b.example.org")
    schedule.add("new", EXPIRES + timedelta(days=365), names="b.example.org")
    schedule.add("other-names", EXPIRES, names="c.example.org")
    assert await reminder(schedule, queue, clock).run_once() == 1
    assert set(queue.mails) == {reminder_id("other-names", 14)}
    assert schedule.certs["old"]["reminded"] == [3, 14]  # settled: never reminded later either


async def test_crash_between_queueing_and_settling_queues_nothing_twice() -> None:
    schedule, queue, clock = FakeSchedule(), FakeQueue(), FakeClock(EXPIRES - timedelta(days=10))
    schedule.add("aa", EXPIRES)
    task = reminder(schedule, queue, clock)
    await task.run_once()
    schedule.certs["aa"]["reminded"] = []  # as if the settle write had been lost
    assert await task.run_once() == 0 and len(queue.mails) == 1
