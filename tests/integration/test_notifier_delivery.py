"""notifier's delivery guarantees against a real SMTP server: never twice, never lost, failures reported."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from services.notifier.outgoing import OutgoingMail
from shared.config import KafkaSettings, MongoSettings
from shared.events import isoformat, utcnow
from tests.eventlog import wait_until
from tests.notifier.harness import running

pytestmark = pytest.mark.usefixtures("topics")
NOW = isoformat(utcnow())
MAIL_SENT = "org.cacert.mail.sent.v1"
MAIL_FAILED = "org.cacert.mail.failed.v1"


def failures(permanent: str) -> float:
    """The counter the operator's mail alerts watch (deploy/k8s/components/monitoring)."""
    labels = {"template": "email_confirmation", "permanent": permanent}
    return REGISTRY.get_sample_value("cacert_notifier_mail_failures_total", labels) or 0.0


def confirmation(to: str, n: int = 0) -> dict[str, object]:
    return {
        "to": to,
        "template": "email_confirmation",
        "params": {"link": f"https://ca.test/c?token=t{n}"},
        "requested_at": NOW,
    }


async def test_the_same_event_delivered_three_times_sends_one_mail(
    kafka_settings: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    async with running(kafka_settings, mongo_settings) as notifier:
        event = await notifier.publish("mail.send_requested", confirmation("ada@example.org"))
        await notifier.republish(event)
        await notifier.republish(event)
        await wait_until(
            lambda: notifier.handled("mail.commands", event.type) >= 3, what="3 deliveries handled"
        )
        await notifier.wait_received(1)
        await notifier.settle(2.0)
        assert len(notifier.smtp.received) == 1
        outcomes = await notifier.mail_events(2, timeout=4)
        assert [(e.type, e.data["source_event_id"]) for e in outcomes] == [(MAIL_SENT, event.id)]


async def test_mails_queue_while_smtp_is_down_and_each_arrives_once_when_it_is_back(
    kafka_settings: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    async with running(kafka_settings, mongo_settings) as notifier:
        before = await notifier.publish("mail.send_requested", confirmation("before@example.org"))
        await notifier.wait_received(1)
        notifier.smtp.stop()  # the relay goes away

        addresses = [f"user{n}@example.org" for n in range(5)]
        events = [
            await notifier.publish("mail.send_requested", confirmation(a, n)) for n, a in enumerate(addresses)
        ]

        async def all_retried() -> bool:
            docs = [await notifier.mail_doc(e.id) for e in events]
            return all(d is not None and d["state"] == "pending" and d["attempts"] >= 2 for d in docs)

        for _ in range(30):
            if await all_retried():
                break
            await notifier.settle(1.0)
        else:
            raise AssertionError("mails were not retried while SMTP was down")
        doc = await notifier.mail_doc(events[0].id)
        assert doc is not None and "connect" in doc["last_error"].lower()
        assert len(notifier.smtp.received) == 1

        notifier.smtp.start()  # back, on the same port
        await notifier.wait_received(6)
        await notifier.settle(2.0)
        assert sorted(r.to for r in notifier.smtp.received[1:]) == addresses  # each exactly once
        outcomes = await notifier.mail_events(7, timeout=5)
        assert sorted(e.data["source_event_id"] for e in outcomes if e.type == MAIL_SENT) == sorted(
            e.id for e in [before, *events]
        )
        assert not [e for e in outcomes if e.type == MAIL_FAILED]


async def test_a_mail_left_sending_by_a_crashed_sender_is_sent_after_its_lease(
    kafka_settings: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    """The at-least-once choice: a mail claimed by a sender that died is not lost."""
    async with running(kafka_settings, mongo_settings) as notifier:
        assert notifier.service.queue is not None
        now = notifier.clock()
        mail = OutgoingMail(
            id="crashed-1",
            source_type="org.cacert.mail.send_requested.v1",
            template="email_confirmation",
            context={"link": "https://ca.test/c?token=x"},
            member_id=None,
            to="ada@example.org",
            to_name="Ada",
            created_at=now,
        )
        doc = mail.to_document() | {
            "state": "sending",
            "lease": "dead-replica",
            "lease_until": now + timedelta(seconds=2),
        }
        await notifier.service.queue.collection.insert_one(doc)
        await notifier.settle(1.0)
        assert notifier.smtp.received == []  # still leased to the "crashed" sender
        (received,) = await notifier.wait_received(1)
        assert received.to == "ada@example.org"
        assert received.message["Message-ID"] == "<crashed-1@cacert.test>"  # same id on every attempt
        (sent,) = await notifier.mail_events(1)
        assert sent.type == MAIL_SENT and sent.data["source_event_id"] == "crashed-1"


async def test_550_yields_mail_failed_and_the_next_mail_still_goes_out(
    kafka_settings: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    permanent_before = failures("true")
    async with running(kafka_settings, mongo_settings) as notifier:
        notifier.smtp.handler.refuse.add("nobody@example.org")
        refused = await notifier.publish("mail.send_requested", confirmation("nobody@example.org", 1))
        after = await notifier.publish("mail.send_requested", confirmation("ada@example.org", 2))
        (received,) = await notifier.wait_received(1)
        assert received.to == "ada@example.org"
        outcomes = {e.data["source_event_id"]: e for e in await notifier.mail_events(2)}
        failed = outcomes[refused.id]
        assert failed.type == MAIL_FAILED and failed.data["permanent"] is True
        assert failed.data["to"] == "nobody@example.org" and failed.data["reason"].startswith("550")
        assert outcomes[after.id].type == MAIL_SENT
        doc = await notifier.mail_doc(refused.id)
        assert doc is not None and doc["state"] == "failed" and doc["attempts"] == 1  # not retried
        await notifier.settle(1.5)
        assert len(notifier.smtp.received) == 1
    assert failures("true") == permanent_before + 1


async def test_invalid_address_is_a_permanent_failure_without_smtp(
    kafka_settings: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    async with running(kafka_settings, mongo_settings) as notifier:
        bad = await notifier.publish("mail.send_requested", confirmation("ada@localhost"))
        (failed,) = await notifier.mail_events(1)
        assert failed.type == MAIL_FAILED and failed.data["source_event_id"] == bad.id
        assert failed.data["permanent"] is True and failed.data["reason"].startswith("invalid address")
        assert notifier.smtp.received == []


async def test_a_temporary_failure_past_the_give_up_horizon_is_reported(
    kafka_settings: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    gave_up_before = failures("false")
    async with running(kafka_settings, mongo_settings, smtp_up=False, give_up_hours=0.0005) as notifier:
        event = await notifier.publish("mail.send_requested", confirmation("ada@example.org"))
        (failed,) = await notifier.mail_events(1)
        assert failed.type == MAIL_FAILED and failed.data["source_event_id"] == event.id
        assert failed.data["permanent"] is False and "undeliverable" in failed.data["reason"]
    assert failures("false") == gave_up_before + 1
