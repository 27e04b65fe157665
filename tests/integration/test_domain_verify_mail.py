"""The SMTP leg: domain_verify and the notifier in-process, a real SMTP server (aiosmtpd) on loopback.

request → a mail arrives at the SMTP server addressed to the chosen contact, containing the link →
GET shows the confirm page and changes nothing → POST confirms → `domain.verified` once.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from shared.config import HttpSettings, KafkaSettings, MongoSettings
from shared.mongo import connect
from shared.settings import CommonSettings
from tests.domain_verify.harness import PUBLIC_URL, Harness, running
from tests.eventlog import wait_until
from tests.mail_keys import NOTIFIER_PRIVATE_PEM

notifier_service = pytest.importorskip("services.notifier.service")
notifier_settings = pytest.importorskip("services.notifier.settings")

pytestmark = pytest.mark.usefixtures("topics")


class Inbox:
    """aiosmtpd handler keeping every delivered message with its envelope recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), message))
        return "250 OK"


@pytest.fixture
async def inbox() -> AsyncIterator[tuple[Inbox, int]]:
    handler = Inbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="smtp.test"), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield handler, port
    server.close()
    await server.wait_closed()


@pytest.fixture
async def stack(kafka_settings: KafkaSettings, mongo_settings: MongoSettings,
                inbox: tuple[Inbox, int]) -> AsyncIterator[tuple[Harness, Inbox]]:
    handler, port = inbox
    async with running(kafka_settings, mongo_settings) as dv:
        common = CommonSettings(kafka=kafka_settings,
                                mongo=MongoSettings(url=mongo_settings.url,
                                                    database=f"{mongo_settings.database}_notifier"),
                                http=HttpSettings(host="127.0.0.1", port=0))
        settings: Any = notifier_settings.NotifierSettings(common=common, smtp_host="127.0.0.1",
                                                           smtp_port=port, poll_seconds=0.2,
                                                           sealing_key=NOTIFIER_PRIVATE_PEM)
        notifier = notifier_service.NotifierService(settings)
        await notifier.start()
        try:
            yield dv, handler
        finally:
            await notifier.stop()
            client, _ = connect(common.mongo, service="test")
            await client.drop_database(common.mongo.database)
            await client.close()


def text_of(message: EmailMessage) -> str:
    body = message.get_body(preferencelist=("plain", "html"))
    assert body is not None
    content = body.get_content()
    assert isinstance(content, str)
    return content


async def test_the_link_arrives_by_smtp_at_the_chosen_contact_and_confirms_once(
        stack: tuple[Harness, Inbox]) -> None:
    dv, inbox = stack
    request = await dv.request(member_id="m-smtp", member_name="Grace", domain="example.org",
                               contact="postmaster@example.org")
    await wait_until(lambda: len(inbox.messages) >= 1, timeout=30, what="the challenge mail over SMTP")
    (recipients, message), *more = inbox.messages
    assert more == []
    assert recipients == ["postmaster@example.org"] and "postmaster@example.org" in str(message["To"])
    text = text_of(message)
    assert "example.org" in text and "Grace" in text
    (link,) = [word for word in text.split() if word.startswith(PUBLIC_URL + "/confirm#token=")]
    token = dv.token(link)
    assert f"go to {PUBLIC_URL}/confirm" in text and token in text.split("enter this code:", 1)[1], \
        "the code to type in where the link does not work"

    async with dv.review(link) as page:
        assert page.status == 200 and "example.org" in await page.text()
    doc = await dv.challenge_doc(request.data["request_id"])
    assert doc is not None and doc["state"] == "pending"
    async with dv.confirm(link) as confirmed:
        assert confirmed.status == 200
    (verified,) = await dv.outcomes(2, timeout=4)
    assert verified.type == "org.cacert.domain.verified.v1" and verified.data["member_id"] == "m-smtp"
    assert verified.data["contact"] == "postmaster@example.org"
    for record in await dv.raw("domain", 100, timeout=2):
        assert token.encode() not in (record.value or b"")
    assert token not in dv.logs.getvalue()
