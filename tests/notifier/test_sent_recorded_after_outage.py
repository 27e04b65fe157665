"""A mail the relay accepted is recorded as sent even when the database is away for a moment.

Found by the chaos run (`stack:mongo`, issue 23): FerretDB stopped while mails were being sent; the
relay accepted them, recording `sent` failed, the mail stayed `sending`, and after its lease the notifier
sent it again: two copies of the same notice (same Message-ID) without any notifier crash.
"""

from __future__ import annotations

import asyncio
import types
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from services.notifier.outgoing import OutgoingMail
from services.notifier.sender import MailSender

NOW = datetime(2026, 12, 3, 16, 5, tzinfo=UTC)


class Queue:
    collection = "outgoing_mail"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def mark_sent(self, mail: OutgoingMail, **_: Any) -> bool:
        self.calls += 1
        if self.calls <= self.failures:
            raise AutoReconnect("connection refused (FerretDB is restarting)")
        return True


class Outbox:
    flushed: list[str]

    def __init__(self) -> None:
        self.flushed = []

    async def flush(self, collection: Any, mail_id: str) -> None:
        self.flushed.append(mail_id)


def sender(queue: Queue, outbox: Outbox, lease: float = 60.0) -> MailSender:
    settings = types.SimpleNamespace(mail_from="CAcert <noreply@cacert.test>", concurrency=1,
                                     lease_seconds=lease, smtp_timeout=30.0)
    return MailSender(queue, None, None, None, outbox, settings, None, clock=lambda: NOW)  # type: ignore[arg-type]


def mail() -> OutgoingMail:
    return OutgoingMail(id="m-1", source_type="org.cacert.cert.issued.v1", template="cert_issued", context={},
                        member_id="member-1", to="ada@example.org", to_name="Ada", created_at=NOW,
                        lease="lease-1")


async def test_stack_mongo_outage_after_the_relay_accepted_records_the_mail_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real_sleep = asyncio.sleep

    async def no_wait(_: float) -> None:
        # The patch is process-wide (it replaces asyncio.sleep itself): still yield, or any other task's
        # `while ...: await asyncio.sleep(...)` loop would spin and starve the event loop.
        await real_sleep(0)

    monkeypatch.setattr("services.notifier.sender.asyncio.sleep", no_wait)
    queue, outbox = Queue(failures=3), Outbox()
    await sender(queue, outbox)._sent(mail(), NOW, to="ada@example.org", subject="Your certificate")
    assert queue.calls == 4, "the sent state was not retried until the database answered"
    assert outbox.flushed == ["m-1"], "mail.sent was not published"


async def test_a_database_away_longer_than_the_lease_still_leaves_the_mail_to_its_lease() -> None:
    queue, outbox = Queue(failures=1000), Outbox()
    with pytest.raises(AutoReconnect):  # _process logs it; the lease brings the mail back (at least once)
        await sender(queue, outbox, lease=31.0)._sent(mail(), NOW, to="ada@example.org", subject="Your certificate")
    assert outbox.flushed == []
