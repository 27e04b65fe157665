"""RegistrationService: wires the store, outbox, consumers, the expiry sweep and the member API.

Start order: database and indexes, producer (and topics in development),
outbox sweep (republishes what a crash left), consumers, the expiry sweep,
then HTTP. Stop runs the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.registration.acme_bindings import AcmeBindings
from services.registration.acme_requests import AcmeRequests
from services.registration.api.accounts import AccountRoutes
from services.registration.api.acme_bindings import AcmeBindingRoutes
from services.registration.api.certificates import CertificateRoutes
from services.registration.api.common import Authenticator, openapi_document, rate_limit_answers
from services.registration.api.domains import DomainRoutes
from services.registration.api.trust import TrustRoutes
from services.registration.assurance import Assurances
from services.registration.certificate_requests import CertificateRequests
from services.registration.certificates import Certificates
from services.registration.compromised_keys import CompromisedKeys
from services.registration.context import Context
from services.registration.domains import DomainClaims
from services.registration.email_addresses import EmailAddresses
from services.registration.event_handlers import SignerOutcomes, subscriptions
from services.registration.members import Members
from services.registration.ratelimit import RateLimiter
from services.registration.sessions import Sessions
from services.registration.settings import RegistrationSettings
from services.registration.store import INDEXES, MongoRegistrationStore
from services.registration.web.portal import WebPortal
from services.registration.web.settings import WebSettings
from shared.config import load
from shared.events import utcnow
from shared.events.access import SERVICES
from shared.http import TRUSTED_PROXIES_KEY, create_app
from shared.kafka import ConsumerRunner, EventProducer, ensure_topics
from shared.logging import get_logger
from shared.mongo import connect, ensure_indexes, ping
from shared.outbox import Outbox
from shared.periodic import Periodic
from shared.service import Lifecycle, close_http, start_http

NAME = "registration"
log = get_logger("registration.service")


async def _openapi(_: web.Request) -> web.Response:
    return web.json_response(openapi_document())


class ExpirySweep:
    """Deletes expired sessions, confirmation tokens and rate-limit windows (FerretDB has no TTL index), and
    handles the ACME revocations that waited for their certificate long enough (acme_requests.py)."""

    def __init__(self, context: Context, acme: AcmeRequests) -> None:
        self._ctx = context
        self._acme = acme
        self._periodic = Periodic("registration-expiry-sweep", self.run_once, context.settings.sweep_seconds)

    async def run_once(self) -> int:
        return await self._ctx.store.delete_expired(self._ctx.clock()) + await self._acme.retry_waiting()

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()


class RegistrationService:
    def __init__(
        self,
        settings: RegistrationSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        web_settings: WebSettings | None = None,
    ) -> None:
        self.settings = settings
        self._approvals = settings.approval_signer()  # ConfigError without the RA key: nothing unsigned leaves
        self._mail_sealer = settings.mail_sealer()  # ConfigError without the notifier's key: no link leaves clear
        self._acme_sealer = settings.acme_sealer()  # ConfigError without the ACME service's key: no HMAC key leaves
        self.web_settings = web_settings if web_settings is not None else load(WebSettings)
        self.web_settings.check_shared_secrets(settings.public_url)
        self._clock = clock
        self.http_port: int | None = None
        self.client: AsyncMongoClient[dict[str, Any]] | None = None
        self.db: AsyncDatabase[dict[str, Any]] | None = None
        self.context: Context | None = None
        self._producer: EventProducer | None = None
        self._outbox: Outbox | None = None
        self._runners: list[ConsumerRunner] = []
        self._sweep: ExpirySweep | None = None
        self._http: web.AppRunner | None = None
        self._lifecycle = Lifecycle(NAME)

    async def start(self) -> None:
        common = self.settings.common
        self.client, self.db = connect(common.mongo, service=NAME)
        self._lifecycle.started("mongodb", self.client.close)
        await ensure_indexes(self.db, INDEXES)
        if common.create_topics:
            await ensure_topics(common.kafka)
        self._producer = EventProducer(common.kafka, client_id=NAME)
        await self._producer.start()
        self._lifecycle.started("producer", self._producer.stop)
        store = MongoRegistrationStore(self.db, clock=self._clock)
        ctx = self.context = Context(store, self.settings, self._clock, self._approvals, self._mail_sealer,
                                     self._acme_sealer)
        self._outbox = store.outbox = Outbox(self._producer, store.outbox_collections())
        self._outbox.start()
        self._lifecycle.started("outbox", self._outbox.stop)

        members = Members(ctx)
        assurances = Assurances(ctx)
        domains = DomainClaims(ctx)
        requests = CertificateRequests(ctx, assurances, domains)
        certificates = Certificates(ctx)
        sessions = Sessions(ctx, members)
        emails = EmailAddresses(ctx, members)
        auth = Authenticator(sessions)
        limiter = RateLimiter(ctx)
        compromised_keys = CompromisedKeys(ctx)
        bindings = AcmeBindings(ctx, assurances)
        acme = AcmeRequests(ctx, members, bindings, requests, certificates, compromised_keys)

        subs = subscriptions(domains, SignerOutcomes(requests, certificates, acme), requests, acme)
        # domain_verify's answers (the CAA verdicts a member's certificate waits for) on a consumer of their
        # own: they do not wait behind a batch of `cert.issued` being stored, or its commit (issue 21).
        answers = [sub for sub in subs if sub.topic == "domain"]
        for part, subscribed in (("domain answers", answers), ("the rest", [s for s in subs if s not in answers])):
            runner = ConsumerRunner(
                common.kafka,
                group_id=SERVICES[NAME].consumer_group,
                producer=self._producer,
                subscriptions=subscribed,
            )
            await runner.start()
            self._runners.append(runner)
            self._lifecycle.started(f"consumer of {part}", runner.stop)
        self._sweep = ExpirySweep(ctx, acme)
        self._sweep.start()
        self._lifecycle.started("expiry sweep", self._sweep.stop)

        client = self.client
        app = create_app(
            NAME,
            readiness={"kafka": self._producer.ping, "mongodb": lambda: ping(client)},
            client_max_size=self.settings.max_body_bytes,
        )
        app[TRUSTED_PROXIES_KEY] = common.http.trusted_networks  # per-client limits behind the ingress
        app.middlewares.append(rate_limit_answers)
        app.router.add_get("/openapi.json", _openapi)
        AccountRoutes(ctx, members, emails, sessions, assurances, auth, limiter).install(app)
        TrustRoutes(members, assurances, auth).install(app)
        DomainRoutes(domains, auth, limiter).install(app)
        CertificateRoutes(requests, certificates, compromised_keys, auth, limiter).install(app)
        AcmeBindingRoutes(bindings, auth).install(app)
        WebPortal(
            ctx,
            members=members,
            emails=emails,
            sessions=sessions,
            assurances=assurances,
            domains=domains,
            requests=requests,
            certificates=certificates,
            bindings=bindings,
            limiter=limiter,
            settings=self.web_settings,
        ).install(app)
        self._http = await start_http(app, common.http.host, common.http.port)
        http, drain = self._http, common.http.drain_seconds
        self._lifecycle.started("http", lambda: close_http(http, drain))
        self.http_port = self._http.addresses[0][1]
        log.info("registration started", port=self.http_port)

    async def stop(self) -> None:
        await self._lifecycle.stop()
