"""Expiry reminders with an injected clock, over real Kafka, FerretDB and SMTP: once per threshold."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.notifier.expiry_reminder import reminder_id
from shared.config import KafkaSettings, MongoSettings
from shared.events import isoformat, utcnow
from tests.eventlog import wait_until
from tests.notifier.certs import CertFactory, issued_payload
from tests.notifier.harness import Harness, running
from tests.notifier.mailparse import body_text

pytestmark = pytest.mark.usefixtures("topics")


async def cert_issued(
    notifier: Harness, ca: CertFactory, *, days: int, names: tuple[str, ...], request_id: str
) -> dict[str, object]:
    issued = ca.issue(cert_class=1, dns_names=names, not_after=utcnow() + timedelta(days=days))
    data = issued_payload(issued, member_id="m-1", cert_class=1, request_id=request_id, dns_names=list(names))
    await notifier.publish("cert.issued", data)
    return data


async def test_reminders_once_per_threshold_skipping_revoked_and_renewed(
    kafka_settings: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    async with running(kafka_settings, mongo_settings) as notifier:
        assert notifier.service.reminders is not None
        reminders = notifier.service.reminders
        await notifier.register("m-1", "Ada Lovelace", "ada@example.org")
        ca = CertFactory()
        expiring = await cert_issued(notifier, ca, days=30, names=("www.example.org",), request_id="r1")
        revoked = await cert_issued(notifier, ca, days=30, names=("old.example.org",), request_id="r2")
        renewed = await cert_issued(notifier, ca, days=30, names=("shop.example.org",), request_id="r3")
        await cert_issued(notifier, ca, days=395, names=("shop.example.org",), request_id="r4")
        await notifier.publish(
            "cert.revoked",
            {
                "serial": revoked["serial"],
                "member_id": "m-1",
                "request_id": "r2",
                "issuer": "class1",
                "reason": "superseded",
                "revoked_at": isoformat(utcnow()),
            },
        )
        await notifier.wait_received(1 + 4 + 1)  # welcome, four issued, one revoked
        # Mail is at least once: under load a mail may come twice, and the count alone can be reached
        # before the revocation notice arrives. Wait for that notice, then for the queue to settle.
        await wait_until(lambda: any("was revoked" in r.message["Subject"] for r in notifier.smtp.received),
                         30, "the revocation notice")
        await notifier.settle(1.5)
        baseline = len(notifier.smtp.received)

        assert await reminders.run_once() == 0  # 30 days left: nothing due

        notifier.clock.advance(timedelta(days=17))  # 13 days left: the 14-day reminder
        assert await reminders.run_once() == 1
        assert await reminders.run_once() == 0
        (first,) = (await notifier.wait_received(baseline + 1))[baseline:]
        assert first.to == "ada@example.org"
        assert first.message["Subject"] == "Your certificate www.example.org expires in 13 days"

        notifier.clock.advance(timedelta(days=5))  # 8 days left: between thresholds
        assert await reminders.run_once() == 0

        notifier.clock.advance(timedelta(days=6))  # 2 days left: the 3-day reminder
        assert await reminders.run_once() == 1
        assert await reminders.run_once() == 0
        second = (await notifier.wait_received(baseline + 2))[-1]
        assert second.message["Subject"] == "Your certificate www.example.org expires in 2 days"

        notifier.clock.advance(timedelta(days=3))  # expired
        assert await reminders.run_once() == 0
        await notifier.settle(1.5)
        assert len(notifier.smtp.received) == baseline + 2
        reminder_subjects = [
            r.message["Subject"] for r in notifier.smtp.received if "expires in" in r.message["Subject"]
        ]
        assert reminder_subjects == [
            "Your certificate www.example.org expires in 13 days",
            "Your certificate www.example.org expires in 2 days",
        ]  # not revoked/renewed

        outcomes = await notifier.mail_events(baseline + 2)
        reminder_ids = {reminder_id(str(expiring["serial"]), 14), reminder_id(str(expiring["serial"]), 3)}
        sent = {e.data["source_event_id"]: e for e in outcomes if e.data["source_event_id"] in reminder_ids}
        assert set(sent) == reminder_ids
        assert {e.data["source_type"] for e in sent.values()} == {"org.cacert.notifier.expiry_reminder"}
        assert renewed["serial"] != expiring["serial"]


async def test_periodic_task_runs_by_itself(
    kafka_settings: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    async with running(kafka_settings, mongo_settings, reminder_check_seconds=0.3) as notifier:
        await notifier.register("m-1")
        ca = CertFactory()
        await cert_issued(notifier, ca, days=2, names=("soon.example.org",), request_id="r1")
        await notifier.wait_received(3)
        await wait_until(
            lambda: any("expires in 2 days" in r.message["Subject"] for r in notifier.smtp.received),
            what="reminder mailed by the periodic task",
        )
        await notifier.settle(1.5)
        assert sum("expires in" in r.message["Subject"] for r in notifier.smtp.received) == 1


async def test_reminder_mail_links_to_renew_under_registrations_public_url(
    kafka_settings: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    async with running(kafka_settings, mongo_settings, account_url="http://ra.cacert.test:8081") as notifier:
        assert notifier.service.reminders is not None
        await notifier.register("m-1", "Ada Lovelace", "ada@example.org")
        soon = await cert_issued(notifier, CertFactory(), days=2, names=("soon.example.org",), request_id="r1")
        await notifier.wait_received(2)  # welcome, issued
        assert await notifier.service.reminders.run_once() == 1
        reminder = (await notifier.wait_received(3))[-1]
        assert reminder.message["Subject"] == "Your certificate soon.example.org expires in 2 days"
        renew = f"http://ra.cacert.test:8081/account/certificates/{soon['serial']}/renew"
        assert f"  {renew}" in body_text(reminder.message).splitlines()
