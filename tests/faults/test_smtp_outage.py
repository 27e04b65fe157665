"""The SMTP relay goes away mid-stream: every mail still arrives once it is back, each exactly once.

Uses the notifier harness's stoppable aiosmtpd server (tests/notifier/harness.py) and sends
CACERT_FAULT_REQUESTS / 5 mail commands (at least 20), stopping the relay after a third arrived.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter

import pytest

from shared.config import KafkaSettings, MongoSettings
from shared.events import isoformat, utcnow
from tests.eventlog import wait_until
from tests.faults.cluster import fault_requests
from tests.notifier.harness import running

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.usefixtures("topics")]
MAILS = max(20, fault_requests() // 5)
MAIL_SENT = "org.cacert.mail.sent.v1"


async def test_smtp_down_for_a_while_every_mail_arrives_exactly_once(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    async with running(kafka_settings, mongo_settings) as notifier:
        addresses = [f"user{n}@example.org" for n in range(MAILS)]

        async def publish_all() -> list[str]:
            ids = []
            for n, address in enumerate(addresses):
                event = await notifier.publish("mail.send_requested", {
                    "to": address, "template": "email_confirmation",
                    "params": {"link": f"https://ca.test/confirm-email?token=t{n}", "name": f"User {n}"},
                    "requested_at": isoformat(utcnow())})
                ids.append(event.id)
                await asyncio.sleep(4 / MAILS)  # a stream over ~4 s, so the outage meets mails in flight
            return ids

        publisher = asyncio.create_task(publish_all())
        await wait_until(lambda: len(notifier.smtp.received) >= MAILS // 3, 60, "a third of the mails")
        notifier.smtp.stop()
        received_before = len(notifier.smtp.received)
        await asyncio.sleep(5)  # the notifier retries against a closed port meanwhile
        assert len(notifier.smtp.received) == received_before
        notifier.smtp.start()
        ids = await publisher
        await notifier.wait_received(MAILS, timeout=120)
        await notifier.settle(3.0)  # room for a duplicate to show up

        per_address = Counter(r.to for r in notifier.smtp.received)
        assert sorted(per_address) == sorted(addresses), "every mail arrived"
        assert set(per_address.values()) == {1}, [a for a, n in per_address.items() if n > 1]
        sent = [e for e in await notifier.mail_events(MAILS, timeout=30) if e.type == MAIL_SENT]
        assert sorted({e.data["source_event_id"] for e in sent}) == sorted(ids)
        print("\nFAULT smtp outage: " + json.dumps({
            "mails": MAILS, "received_before_outage": received_before, "received": len(notifier.smtp.received),
            "duplicates": sum(n - 1 for n in per_address.values())}), file=sys.stderr)
