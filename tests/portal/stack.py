"""The whole system in-process for browser tests: registration (with the portal), domain_verify, the
signer (issuing and status), the notifier, against the real local stack (Kafka, FerretDB, the devstack
mailbox's SMTP server). Each service gets its own database; the topic prefix is the test's.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from urllib.parse import urlparse

from pymongo import AsyncMongoClient

from services.domain_verify.service import DomainVerifyService
from services.domain_verify.settings import DomainVerifySettings
from services.notifier.service import NotifierService
from services.notifier.settings import NotifierSettings
from services.registration.service import RegistrationService
from services.registration.web.settings import WebSettings
from services.signer.ca.ceremony import bootstrap
from services.signer.ca.urls import CAUrls
from services.signer.service import SignerService
from services.signer.settings import SignerSettings
from shared.config import HttpSettings, KafkaSettings, MongoSettings
from shared.settings import CommonSettings
from tests.approval_keys import RA_PUBLIC_PEM
from tests.mail_keys import NOTIFIER_PRIVATE_PEM, SEALING_PUBLIC_PEM
from tests.registration.harness import registration_settings

PASSPHRASE = b"portal test passphrase"
PKI_URL = "http://pki.example.net"  # pkilint refuses loopback addresses in CRL/OCSP URLs
PORTAL_URL = "http://portal.cacert.test"  # mailed links name these origins; tests map them to bound ports
VERIFY_URL = "http://verify.cacert.test"
STARTUP_SECONDS = 60


@dataclasses.dataclass
class System:
    registration: RegistrationService
    domain_verify: DomainVerifyService
    ca_dir: Path

    @property
    def portal(self) -> str:
        return f"http://127.0.0.1:{self.registration.http_port}"

    def local(self, link: str) -> str:
        """The bound address for a link from a mail (registration's or domain_verify's public origin)."""
        parsed = urlparse(link)
        origin = f"{parsed.scheme}://{parsed.netloc}"
        port = {PORTAL_URL: self.registration.http_port, VERIFY_URL: self.domain_verify.http_port}[origin]
        return (f"http://127.0.0.1:{port}{parsed.path}" + (f"?{parsed.query}" if parsed.query else "")
                + (f"#{parsed.fragment}" if parsed.fragment else ""))  # mailed links carry their token there


def _common(kafka: KafkaSettings, mongo: MongoSettings, name: str) -> CommonSettings:
    database = MongoSettings(url=mongo.url, database=f"{mongo.database}_{name}")
    return CommonSettings(kafka=kafka, mongo=database, http=HttpSettings(host="127.0.0.1", port=0),
                          create_topics=False)


@asynccontextmanager
async def running_system(kafka: KafkaSettings, mongo: MongoSettings, env: dict[str, str], ca_dir: Path
                         ) -> AsyncIterator[System]:
    bootstrap(ca_dir, PASSPHRASE, "p256", class1_urls=CAUrls.under(PKI_URL, "class1"))
    services = []
    async with AsyncExitStack() as stack:
        cleaner: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo.url)
        stack.push_async_callback(cleaner.close)
        for name in ("signer", "domain_verify", "notifier", "reg"):
            stack.push_async_callback(cleaner.drop_database, f"{mongo.database}_{name}")

        async def start(service):  # type: ignore[no-untyped-def]
            async with asyncio.timeout(STARTUP_SECONDS):  # never hang on a stack that is being restarted
                await service.start()
            services.append(service)
            stack.push_async_callback(service.stop)
            return service

        signer = SignerSettings(common=_common(kafka, mongo, "signer"), ca_dir=ca_dir, ca_passphrase=PASSPHRASE,
                                public_base_url=PKI_URL, ra_public_keys=RA_PUBLIC_PEM)
        status = await start(SignerService(signer, mode="status"))
        await start(SignerService(signer, mode="issuing"))
        verify = await start(DomainVerifyService(DomainVerifySettings(
            common=_common(kafka, mongo, "domain_verify"), public_url=VERIFY_URL,
            resolvers=[env["CACERT_DNS_RESOLVER"]], mail_sealing_public_key=SEALING_PUBLIC_PEM)))
        await start(NotifierService(NotifierSettings(
            common=_common(kafka, mongo, "notifier"), smtp_host=env["CACERT_SMTP_HOST"],
            smtp_port=int(env["CACERT_SMTP_PORT"]), poll_seconds=0.2,
            sealing_key=NOTIFIER_PRIVATE_PEM)))
        settings = registration_settings(kafka, MongoSettings(url=mongo.url, database=f"{mongo.database}_reg"),
                                         public_url=PORTAL_URL)
        web = WebSettings(ca_certs_url=f"http://127.0.0.1:{status.http_port}", cookie_secure="false",
                          csrf_secret="portal-test-csrf-key")  # a public URL that is not loopback needs one
        registration = await start(RegistrationService(settings, web_settings=web))
        yield System(registration, verify, ca_dir)
