"""RemotePerspective: domain_verify in `perspective` mode, one process (Deployment) per network region.

It holds no database: it consumes `perspective.check_requested`, repeats the
check with its own resolver and HTTP client (ValidationChecks, the same code
the primary runs), and publishes `perspective.check_answered`. Its answer id
is derived from (check, perspective), so a redelivered request re-runs the
check but announces one answer; the primary keeps the first it receives.
Each perspective joins its own consumer group so every one of them sees
every check (shared.events.access.perspective_group).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from services.domain_verify import events
from services.domain_verify.checks import ValidationChecks
from services.domain_verify.settings import DomainVerifySettings
from shared.events import BY_NAME, CloudEvent, utcnow
from shared.events.access import perspective_group
from shared.http import create_app
from shared.kafka import ConsumerRunner, EventProducer, Subscription, ensure_topics
from shared.logging import get_logger
from shared.service import Lifecycle, start_http

NAME = "domain_verify_perspective"
REQUESTED = BY_NAME["perspective.check_requested"].type
log = get_logger("domain_verify.perspective")


class RemotePerspective:
    def __init__(self, settings: DomainVerifySettings, *, clock: Callable[[], datetime] = utcnow,
                 checks: ValidationChecks | None = None) -> None:
        self.settings = settings
        self.name = settings.perspective_name
        self._clock = clock
        self.checks = checks or ValidationChecks(settings, perspective=self.name)
        self.http_port: int | None = None
        self._producer: EventProducer | None = None
        self._lifecycle = Lifecycle(f"{NAME}.{self.name}")

    async def handle(self, event: CloudEvent) -> None:
        data = event.data
        asked = data.get("perspectives")
        if asked is not None and self.name not in asked:
            return  # the primary did not ask this perspective (e.g. it was just added)
        outcome = await self.checks.run(data["kind"], dict(data["params"]))
        assert self._producer is not None
        await self._producer.publish(events.check_answered(
            check_id=data["check_id"], perspective=self.name, ok=outcome.ok, reason=outcome.reason,
            found=outcome.found, details=outcome.details, checked_at=self._clock()))

    async def start(self) -> None:
        common = self.settings.common
        if common.create_topics:
            await ensure_topics(common.kafka)
        self._producer = EventProducer(common.kafka, client_id=f"{NAME}.{self.name}")
        await self._producer.start()
        self._lifecycle.started("producer", self._producer.stop)
        runner = ConsumerRunner(common.kafka, group_id=perspective_group(self.name), producer=self._producer,
                                subscriptions=[Subscription("perspective", {REQUESTED: self.handle})])
        await runner.start()
        self._lifecycle.started("consumer", runner.stop)
        producer = self._producer
        app = create_app(f"domain_verify-{self.name}", readiness={"kafka": producer.ping})
        http = await start_http(app, common.http.host, common.http.port)
        self._lifecycle.started("http", http.cleanup)
        self.http_port = http.addresses[0][1]
        log.info("remote perspective started", perspective=self.name, port=self.http_port)

    async def stop(self) -> None:
        await self._lifecycle.stop()
