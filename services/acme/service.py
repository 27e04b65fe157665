"""AcmeService: wires the ACME front door (RFC 8555) to its database, Kafka and HTTP.

Start order: database and indexes, producer (and topics in development), outbox sweep (republishes
what a crash left: a finalized order's CSR, a started challenge, a revocation), the consumer of the
answers (bindings, verifications, the RA's and the signer's outcomes), the nonce sweep, then HTTP.
Stop runs the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from services.acme.answers import Answers
from services.acme.orders import OrderBook
from services.acme.settings import AcmeSettings
from services.acme.store import INDEXES, AcmeStore
from services.acme.wfe.front import AcmeFrontEnd
from shared.events import utcnow
from shared.events.access import SERVICES
from shared.http import create_app
from shared.kafka import ConsumerRunner, EventProducer, ensure_topics
from shared.logging import get_logger
from shared.mongo import connect, ensure_indexes, ping
from shared.outbox import Outbox
from shared.periodic import Periodic
from shared.service import Lifecycle, close_http, start_http

NAME = "acme"
log = get_logger("acme.service")


class AcmeService:
    def __init__(self, settings: AcmeSettings, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self._opener = settings.binding_opener()  # ConfigError without the key: no binding could be checked
        self._clock = clock
        self.http_port: int | None = None
        self.client: AsyncMongoClient[dict[str, Any]] | None = None
        self.db: AsyncDatabase[dict[str, Any]] | None = None
        self.store: AcmeStore | None = None
        self._lifecycle = Lifecycle(NAME)

    async def start(self) -> None:
        common = self.settings.common
        self.client, self.db = connect(common.mongo, service=NAME)
        self._lifecycle.started("mongodb", self.client.close)
        await ensure_indexes(self.db, INDEXES)
        store = self.store = AcmeStore(self.db)
        if common.create_topics:
            await ensure_topics(common.kafka)
        producer = EventProducer(common.kafka, client_id=NAME)
        await producer.start()
        self._lifecycle.started("producer", producer.stop)
        outbox = Outbox(producer, store.outbox_collections)
        outbox.start()
        self._lifecycle.started("outbox", outbox.stop)
        book = OrderBook(store, outbox, order_lifetime=timedelta(hours=self.settings.order_hours), clock=self._clock)
        answers = Answers(store, book, self._opener, self._clock)
        runner = ConsumerRunner(common.kafka, group_id=SERVICES[NAME].consumer_group, producer=producer,
                                subscriptions=answers.subscriptions())
        await runner.start()
        self._lifecycle.started("consumer", runner.stop)

        async def sweep() -> int:
            return await store.sweep_nonces(self._clock())

        sweeper = Periodic("acme-nonce-sweep", sweep, 60.0)
        sweeper.start()
        self._lifecycle.started("nonce sweep", sweeper.stop)

        client = self.client
        app = create_app(NAME, readiness={"kafka": producer.ping, "mongodb": lambda: ping(client)})
        AcmeFrontEnd(store, book, self.settings, self._opener, self._clock).install(app)
        runner_http: web.AppRunner = await start_http(app, common.http.host, common.http.port)
        drain = common.http.drain_seconds
        self._lifecycle.started("http", lambda: close_http(runner_http, drain))
        self.http_port = runner_http.addresses[0][1]
        log.info("acme started", port=self.http_port, directory=self.settings.url("/directory"))

    async def stop(self) -> None:
        await self._lifecycle.stop()
