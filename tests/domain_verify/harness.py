"""Runs domain_verify in-process against the real stack and observes it from outside (integration tests).

The service binds port 0; its public URL is deliberately another origin, as
behind an ingress, so tests check the mailed link's base and then send the
link's path to the bound port.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
from prometheus_client import REGISTRY

from devstack import endpoints
from services.domain_verify.service import REQUESTED, DomainVerifyService
from services.domain_verify.settings import DomainVerifySettings
from shared.config import HttpSettings, KafkaSettings, MongoSettings
from shared.events import CloudEvent, Topics, isoformat, make_event
from shared.kafka import EventProducer
from shared.logging import configure
from shared.settings import CommonSettings
from tests.eventlog import read_topic, wait_until
from tests.mail_keys import SEALING_PUBLIC_PEM, link_parts

PUBLIC_URL = "https://verify.cacert.test"


@dataclasses.dataclass
class Harness:
    service: DomainVerifyService
    kafka: KafkaSettings
    producer: EventProducer
    logs: io.StringIO
    http: aiohttp.ClientSession

    @property
    def topics(self) -> Topics:
        return Topics(self.kafka.topic_prefix)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.service.http_port}"

    def token(self, link: str) -> str:
        """The token of a mailed link: in its fragment (`<public URL>/confirm#token=...`), nowhere else."""
        page, token = link_parts(link)
        assert page == PUBLIC_URL + "/confirm", link
        return token

    def review(self, link: str) -> Any:
        """What the link's page does in a browser: its script posts the fragment's token to the review step."""
        return self.http.post(f"{self.base_url}/confirm/review", data={"token": self.token(link)})

    def confirm(self, link: str) -> Any:
        """The contact presses the confirm button of the review page (a form posting the token)."""
        return self.http.post(f"{self.base_url}/confirm", data={"token": self.token(link)})

    async def request(self, *, member_id: str = "m-1", domain: str = "example.org",
                      contact: str = "hostmaster@example.org", request_id: str | None = None,
                      requested_at: datetime | None = None, event_id: str | None = None,
                      **extra: Any) -> CloudEvent:
        """Publish a domain.verification_requested the way registration does."""
        data = {"request_id": request_id or f"req-{uuid.uuid4().hex[:12]}", "member_id": member_id,
                "domain": domain, "contact": contact,
                "requested_at": isoformat(requested_at or datetime.now(UTC)), **extra}
        event = make_event("domain.verification_requested", data, source="registration", event_id=event_id)
        await self.producer.publish(event)
        return event

    async def republish(self, event: CloudEvent) -> None:
        await self.producer.publish(event)

    def handled(self) -> float:
        value = REGISTRY.get_sample_value("cacert_events_consumed_total", {
            "topic": self.topics.of("domain"), "type": REQUESTED, "outcome": "handled"})
        return value or 0.0

    async def wait_handled(self, count: int, timeout: float = 30) -> None:
        await wait_until(lambda: self.handled() >= count, timeout, f"{count} requests handled")

    async def events(self, topic: str, expected: int, timeout: float = 30) -> list[CloudEvent]:
        records = await read_topic(self.kafka.bootstrap, self.topics.of(topic), expected, timeout)
        return [CloudEvent.from_kafka(r.key, r.value, r.headers) for r in records]

    async def raw(self, topic: str, expected: int, timeout: float = 30) -> list[Any]:
        return await read_topic(self.kafka.bootstrap, self.topics.of(topic), expected, timeout)

    async def mail_commands(self, expected: int, timeout: float = 30) -> list[CloudEvent]:
        return await self.events("mail.commands", expected, timeout)

    async def outcomes(self, expected: int, timeout: float = 30) -> list[CloudEvent]:
        """domain_verify's own events on the domain topic (requests filtered out)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            everything = await self.events("domain", 10_000, timeout=1.5)
            found = [e for e in everything if e.source == "domain_verify"]
            if len(found) >= expected or asyncio.get_running_loop().time() > deadline:
                return found

    async def challenge_doc(self, request_id: str) -> dict[str, Any] | None:
        assert self.service.store is not None
        return await self.service.store.collection.find_one({"_id": request_id})


def settings_for(kafka: KafkaSettings, mongo: MongoSettings, **overrides: Any) -> DomainVerifySettings:
    common = CommonSettings(kafka=kafka, mongo=mongo, http=HttpSettings(host="127.0.0.1", port=0))
    # The stack's validating resolver (devstack's Unbound), unless a test names another.
    resolver = os.environ.get("CACERT_DNS_RESOLVER") or endpoints.current().env()["CACERT_DNS_RESOLVER"]
    values: dict[str, Any] = {"public_url": PUBLIC_URL, "sweep_seconds": 0.5, "resolvers": [resolver],
                              "mail_sealing_public_key": SEALING_PUBLIC_PEM, **overrides}
    return DomainVerifySettings(common=common, **values)


@contextlib.asynccontextmanager
async def running(kafka: KafkaSettings, mongo: MongoSettings, **overrides: Any) -> AsyncIterator[Harness]:
    logs = io.StringIO()
    configure("domain_verify", "DEBUG", stream=logs)
    service = DomainVerifyService(settings_for(kafka, mongo, **overrides))
    producer = EventProducer(kafka, client_id="test-registration")
    await service.start()
    await producer.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Harness(service, kafka, producer, logs, http)
    finally:
        await producer.stop()
        if service.client is not None and service.db is not None:
            await service.client.drop_database(service.db.name)
        await service.stop()
