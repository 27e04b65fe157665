"""Running the registration service in-process against the real stack, and talking to it over HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pyotp

from services.registration.bootstrap import bootstrap_member
from services.registration.service import RegistrationService
from services.registration.settings import RegistrationSettings
from shared.config import HttpSettings, KafkaSettings, MongoSettings
from shared.events import CloudEvent, Topics, make_event
from shared.kafka import EventProducer
from shared.settings import CommonSettings
from tests.acme_keys import ACME_SEALING_PUBLIC_PEM
from tests.approval_keys import RA_PRIVATE_PEM
from tests.eventlog import read_topic
from tests.mail_keys import SEALING_PUBLIC_PEM, params_of

PASSWORD = "a long test passphrase"


class Clock:
    """A clock the test moves forward (token expiry without sleeping)."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


def registration_settings(
    kafka: KafkaSettings, mongo: MongoSettings, **overrides: Any
) -> RegistrationSettings:
    proxies = overrides.pop("trusted_proxies", [])
    common = CommonSettings(kafka=kafka, mongo=mongo, http=HttpSettings(port=0, trusted_proxies=proxies),
                            create_topics=False)
    return RegistrationSettings(common=common, **{"sweep_seconds": 3600.0, "ra_signing_key": RA_PRIVATE_PEM,
                                                  "mail_sealing_public_key": SEALING_PUBLIC_PEM,
                                                  "acme_sealing_public_key": ACME_SEALING_PUBLIC_PEM, **overrides})


SECOND_FACTORS: dict[str, str] = {}
"""address -> TOTP secret of the staff accounts `Stack.founder` made (the latest per address)."""


def second_factor_code(address: str) -> str | None:
    """The current TOTP code of a founder's account, or None for an account without a second factor."""
    secret = SECOND_FACTORS.get(address)
    return pyotp.TOTP(secret).now() if secret else None


@dataclasses.dataclass
class Reply:
    status: int
    body: Any
    headers: Any
    raw: bytes


class Api:
    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base
        self.http = http

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        token: str | None = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent_headers = dict(headers or {})
        if token:
            sent_headers["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            data = json.dumps(json_body)
            sent_headers.setdefault("Content-Type", "application/json")
        async with self.http.request(method, self.base + path, data=data, headers=sent_headers) as response:
            raw = await response.read()
            body: Any = raw
            if response.content_type == "application/json":
                body = json.loads(raw)
            return Reply(response.status, body, response.headers, raw)


@dataclasses.dataclass
class Stack:
    service: RegistrationService
    api: Api
    kafka: KafkaSettings
    topics: Topics
    producer: EventProducer
    clock: Clock

    async def events(
        self, topic: str, type_suffix: str, expected: int = 1, timeout: float = 20
    ) -> list[CloudEvent]:
        """Events of one type on a logical topic, waiting until `expected` have arrived."""
        found: list[CloudEvent] = []
        deadline = 0.0

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            records = await read_topic(
                self.kafka.bootstrap, self.topics.of(topic), expected=10**6, timeout=1.0
            )
            found = [
                e
                for e in (CloudEvent.from_kafka(r.key, r.value, r.headers) for r in records)
                if e.type.endswith(type_suffix + ".v1")
            ]
            if len(found) >= expected:
                return found
        return found

    async def confirmation_token(self, address: str, nth: int = 1) -> str:
        """The token of the nth confirmation mail to `address`, read from the mail-command topic."""

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while loop.time() < deadline:
            mails = [
                e
                for e in await self.events("mail.commands", "mail.send_requested", expected=1, timeout=2)
                if e.data["to"] == address and e.data["template"] == "email_confirmation"
            ]
            if len(mails) >= nth:
                params = params_of(mails[nth - 1])
                assert params["link"].endswith("#token=" + params["code"]), "the token only in the fragment"
                return str(params["code"])
        raise AssertionError(f"no confirmation mail #{nth} to {address}")

    async def issued_serial(self, token: str, csr_pem: str) -> str:
        """Submit a server CSR through the API, play domain_verify's CAA answer, and wait for a signer
        (which the test runs beside) to issue it; the serial."""
        submitted = await self.api.call("POST", "/v1/requests", token=token,
                                        json_body={"csr_pem": csr_pem, "profile": "server"})
        assert submitted.status == 202, submitted.body
        await self.answer_caa(submitted.body["id"])
        for _ in range(300):
            found = (await self.api.call("GET", f"/v1/requests/{submitted.body['id']}", token=token)).body
            if found.get("status") == "issued" and found.get("serial"):
                return str(found["serial"])
            await asyncio.sleep(0.1)
        raise AssertionError(f"request {submitted.body['id']} was not issued")

    async def answer_caa(self, request_id: str, *, allowed: bool = True, reason: str = "no_caa",
                         records: list[str] | None = None) -> CloudEvent:
        """Play domain_verify for one CAA check: answer the request's `domain.caa_check_requested`.

        Registration tests stand in for the validation authority here as they do for
        `domain.verified`; tests/integration/test_caa_issuance.py runs the real one against the real DNS.
        """
        asked = [e for e in await self.events("domain", "domain.caa_check_requested", expected=1)
                 if e.data["request_id"] == request_id]
        assert asked, f"no CAA check was requested for {request_id}"
        check = asked[-1].data
        names = [{"name": n, "allowed": allowed, "reason": reason if not allowed else "no_caa",
                  "relevant_name": None, "records": records or []} for n in check["names"]]
        return await self.publish("domain.caa_checked", {
            "check_id": check["check_id"], "request_id": request_id, "member_id": check["member_id"],
            "verdict": "allowed" if allowed else "refused", "reason": reason, "names": names,
            "perspectives": {}, "checked_at": datetime.now(UTC).isoformat(),
        }, source="domain_verify")

    async def publish(self, name: str, data: dict[str, Any], source: str = "test") -> CloudEvent:
        event = make_event(name, data, source=source)
        await self.producer.publish(event)
        return event

    async def member(self, name: str, address: str, date_of_birth: str = "1990-05-17") -> tuple[str, str]:
        """Sign up, confirm the mailed link and log in: (member id, session token)."""
        reply = await self.api.call(
            "POST",
            "/v1/members",
            json_body={"name": name, "date_of_birth": date_of_birth, "email": address, "password": PASSWORD},
        )
        assert reply.status == 201, reply.body
        token = await self.confirmation_token(address)
        confirmed = await self.api.call("POST", "/v1/emails/confirm", json_body={"token": token})
        assert confirmed.status == 200, confirmed.body
        return reply.body["member_id"], await self.login(address)

    async def login(self, address: str, password: str = PASSWORD) -> str:
        body = {"email": address, "password": password}
        if address in SECOND_FACTORS:
            body["totp"] = pyotp.TOTP(SECOND_FACTORS[address]).now()
        reply = await self.api.call("POST", "/v1/sessions", json_body=body)
        assert reply.status == 201, reply.body
        return str(reply.body["token"])

    async def founder(
        self, name: str, address: str, roles: tuple[str, ...] = ("member", "admin", "assurer")
    ) -> tuple[str, str]:
        """A bootstrapped account (as `create-admin` / `create-assurer` make it: staff with their second
        factor on, its secret in SECOND_FACTORS), logged in."""
        assert self.service.db is not None
        secret = pyotp.random_base32() if {"admin", "assurer"} & set(roles) else None
        member = await bootstrap_member(
            self.service.db,
            self.service.settings,
            email=address,
            name=name,
            date_of_birth=datetime(1970, 1, 1).date(),
            password=PASSWORD,
            roles=roles,
            second_factor_secret=secret,
        )
        if secret:
            SECOND_FACTORS[address] = secret
        else:
            SECOND_FACTORS.pop(address, None)
        return member.id, await self.login(address)


@asynccontextmanager
async def running(kafka: KafkaSettings, mongo: MongoSettings, **overrides: Any) -> AsyncIterator[Stack]:
    clock = Clock()
    service = RegistrationService(registration_settings(kafka, mongo, **overrides), clock=clock)
    await service.start()
    producer = EventProducer(kafka, client_id="test-driver")
    await producer.start()
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(f"http://127.0.0.1:{service.http_port}", http)
            yield Stack(service, api, kafka, Topics(kafka.topic_prefix), producer, clock)
    finally:
        await producer.stop()
        if service.client is not None and service.db is not None:
            await service.client.drop_database(service.db.name)
        await service.stop()
