"""DomainVerifyService: wires the validation authority (primary mode).

Consumers: verification requests (email challenges, or checked methods),
CAA check requests, and the remote perspectives' answers. Sweeps: expired
challenges, and checks whose perspectives did not answer in time. HTTP: the
confirm-link endpoint. `perspective` mode runs perspective.RemotePerspective
instead (see __main__.py).

Start order: database and indexes, producer (and topics in development),
outbox sweep (republishes what a crash left), the consumer, the sweeps,
then HTTP. Stop runs the other way round, so no new confirmations arrive
while the consumer drains.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.domain_verify import caa_checks, validations
from services.domain_verify.caa_checks import CaaChecks
from services.domain_verify.checks import ValidationChecks
from services.domain_verify.confirm import ConfirmEndpoint
from services.domain_verify.corroboration import Corroboration
from services.domain_verify.issuer import ChallengeIssuer
from services.domain_verify.settings import DomainVerifySettings
from services.domain_verify.store import INDEXES, ChallengeStore, CorroborationStore
from services.domain_verify.sweep import ExpirySweep
from services.domain_verify.va.quorum import required_remote_perspectives
from services.domain_verify.validations import DomainValidations
from shared.audit import AuditLog
from shared.events import BY_NAME, CloudEvent, utcnow
from shared.events.access import SERVICES
from shared.http import TRUSTED_PROXIES_KEY, create_app
from shared.kafka import ConsumerRunner, EventProducer, Subscription, ensure_topics
from shared.logging import get_logger
from shared.mongo import connect, ensure_indexes, ping
from shared.outbox import Outbox
from shared.service import Lifecycle, close_http, start_http

NAME = "domain_verify"
REQUESTED = BY_NAME["domain.verification_requested"].type
CAA_REQUESTED = BY_NAME["domain.caa_check_requested"].type
ANSWERED = BY_NAME["perspective.check_answered"].type
log = get_logger("domain_verify.service")


class DomainVerifyService:
    def __init__(self, settings: DomainVerifySettings, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self._mail_sealer = settings.mail_sealer()  # ConfigError without the notifier's key: no link leaves clear
        self._clock = clock
        self.http_port: int | None = None
        self.client: AsyncMongoClient[dict[str, Any]] | None = None
        self.db: AsyncDatabase[dict[str, Any]] | None = None
        self.store: ChallengeStore | None = None
        self.sweep: ExpirySweep | None = None
        self._producer: EventProducer | None = None
        self._outbox: Outbox | None = None
        self._runner: ConsumerRunner | None = None
        self._http: web.AppRunner | None = None
        self._lifecycle = Lifecycle(NAME)

    async def start(self) -> None:
        common = self.settings.common
        required = required_remote_perspectives(self._clock().date())
        if len(self.settings.perspectives) < required:
            # allowed (a dev stack, a first deployment), but the operator must know it is below the BR
            log.warning("fewer remote perspectives than BR 3.2.2.9 requires today", configured=len(
                self.settings.perspectives), required=required)
        self.client, self.db = connect(common.mongo, service=NAME)
        self._lifecycle.started("mongodb", self.client.close)
        await ensure_indexes(self.db, INDEXES)
        self.store = ChallengeStore(self.db)
        if common.create_topics:
            await ensure_topics(common.kafka)
        self._producer = EventProducer(common.kafka, client_id=NAME)
        await self._producer.start()
        self._lifecycle.started("producer", self._producer.stop)
        corroborations = CorroborationStore(self.db)
        self._outbox = Outbox(self._producer, [self.store.collection, self.store.settlements,
                                               corroborations.collection, corroborations.outcomes])
        self._outbox.start()
        self._lifecycle.started("outbox", self._outbox.stop)

        audit = AuditLog(self.db, clock=self._clock)
        issuer = ChallengeIssuer(self.store, self._outbox, self.settings, self._mail_sealer, clock=self._clock)
        self.checks = ValidationChecks(self.settings)
        announcers: dict[str, Any] = {}
        self.corroboration = Corroboration(corroborations, self._outbox, self.settings, announcers,
                                           audit=audit, clock=self._clock,
                                           answers_read_until=self._answers_read_until)
        checked = DomainValidations(self.checks, self.corroboration, self.settings, clock=self._clock)
        caa = CaaChecks(self.checks, self.corroboration)
        announcers.update({validations.PURPOSE: checked.announce, caa_checks.PURPOSE: caa.announce})

        async def on_request(event: CloudEvent) -> None:
            if event.data.get("method", "email") in ("email", "dns"):
                await issuer.handle(event)  # 'dns' (reserved, never produced) is refused there
            else:
                await checked.handle(event)

        self._runner = ConsumerRunner(
            common.kafka, group_id=SERVICES[NAME].consumer_group, producer=self._producer,
            subscriptions=[Subscription("domain", {REQUESTED: on_request, CAA_REQUESTED: caa.handle}),
                           Subscription("perspective", {ANSWERED: self.corroboration.on_answer})],
        )
        await self._runner.start()
        self._lifecycle.started("consumer", self._runner.stop)

        self.sweep = ExpirySweep(self.store, self._outbox, every=self.settings.sweep_seconds,
                                 clock=self._clock)
        self.sweep.start()
        self._lifecycle.started("expiry sweep", self.sweep.stop)
        self.corroboration.start(every=max(1.0, min(5.0, self.settings.perspective_timeout_seconds / 3)))
        self._lifecycle.started("corroboration sweep", self.corroboration.stop)

        client = self.client
        app = create_app(NAME, readiness={"kafka": self._producer.ping, "mongodb": lambda: ping(client)})
        app[TRUSTED_PROXIES_KEY] = self.settings.common.http.trusted_networks  # confirm-link rate limit
        ConfirmEndpoint(self.store, self._outbox, self.settings, clock=self._clock,
                        audit=audit).install(app)
        self._http = await start_http(app, common.http.host, common.http.port)
        http, drain = self._http, common.http.drain_seconds
        self._lifecycle.started("http", lambda: close_http(http, drain))
        self.http_port = self._http.addresses[0][1]
        log.info("domain_verify started", port=self.http_port)

    async def _answers_read_until(self) -> datetime | None:
        """When (by this service's clock) the group had read every perspective answer written before;
        None while it lags (see Corroboration.sweep_once)."""
        if self._runner is None:
            return None
        began = self._clock()
        return began if await self._runner.caught_up("perspective") is not None else None

    async def stop(self) -> None:
        await self._lifecycle.stop()
