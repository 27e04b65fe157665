"""Registration killed between its outbox write and the publish: the certificate still arrives, once
(issue 21's acceptance: the cuts to the hot path keep the outbox's recovery).

Registration and the signer run as real processes (`python -m services...`, as the pods do) on a namespace
of their own; the test plays domain_verify, as the registration tests do. To stop registration at exactly
that point, the Kafka broker is stopped before the member submits a CSR: registration writes the request
with its `domain.caa_check_requested` in the document's outbox, and its publish cannot reach the broker.
Once the outbox entry is in the database, registration gets SIGKILL, the broker starts again, and a new
registration process starts on the same database. Only its start-up sweep can publish the event now. The
CAA answer then makes the request approved and the signer issues it: one certificate, one `cert.issued`,
the request `issued`, nothing left in any outbox.

(Pausing the broker instead, SIGSTOP, does not test this: the paused broker reads the dead process's
produce request from the socket once it continues, so the event comes out without the sweep.)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pymongo import AsyncMongoClient

import devstack
from benchmarks.chaos_system import ChaosSystem, Service
from shared import outbox
from shared.config import KafkaSettings
from shared.events import CloudEvent, Topics
from shared.kafka import EventProducer
from tests.eventlog import read_topic
from tests.integration.test_registration_certificates import verify_domain
from tests.mail_keys import SEALING_PUBLIC_PEM
from tests.registration.csrs import build_csr
from tests.registration.harness import Api, Clock, Stack

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(600)]


@contextlib.asynccontextmanager
async def broker_stopped() -> AsyncIterator[None]:
    """The local Kafka broker stopped for the block, and started again whatever happens in it."""
    try:
        await asyncio.to_thread(devstack.stop, "kafka")
        yield
    finally:
        await asyncio.to_thread(devstack.start, "kafka")


@pytest.fixture
async def system(stack_env: dict[str, str], tmp_path: Path) -> AsyncIterator[ChaosSystem]:
    """Registration and the signer's issuing mode as processes, on topics and databases of their own."""
    chaos = ChaosSystem(tmp_path)
    chaos.work.mkdir(parents=True, exist_ok=True)
    chaos.make_keys()
    # sealed to the tests' mail key, so the harness can open the confirmation mail
    chaos.sealing_public = chaos._write_secret("mail-sealing-public-key.pem", SEALING_PUBLIC_PEM)
    await asyncio.to_thread(chaos.init_ca)
    chaos.define()
    chaos.services = [s for s in chaos.services if s.name in ("registration", "signer-issue")]
    await chaos.create_topics()
    try:
        for service in chaos.services:
            service.start()
        await asyncio.gather(*(s.wait_ready() for s in chaos.services))
        yield chaos
    finally:
        await chaos.stop_all()
        await chaos.drop()


@pytest.fixture
async def stack(system: ChaosSystem) -> AsyncIterator[Stack]:
    """The registration test harness, talking to the registration process."""
    kafka = KafkaSettings(bootstrap=system.ep.kafka_bootstrap, topic_prefix=system.prefix)
    producer = EventProducer(kafka, client_id="test-driver")
    await producer.start()
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(system.by_name("registration").url, http)
            # Stack.service is the in-process service, used only by founder(); registration is a process here
            yield Stack(cast(Any, None), api, kafka, Topics(kafka.topic_prefix), producer, Clock())
    finally:
        await producer.stop()


async def _pending_request(requests: Any, member_id: str, timeout: float = 60) -> dict[str, Any]:
    """The member's request once it is written with an event still in its outbox."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        found = await requests.find_one({"member_id": member_id, **outbox.PENDING})
        if found is not None:
            return dict(found)
        await asyncio.sleep(0.05)
    raise AssertionError("registration never wrote the request with its event in the outbox")


async def _kill(service: Service) -> None:
    service.signal(signal.SIGKILL)
    assert service.process is not None
    await asyncio.to_thread(service.process.wait, 10)


async def test_registration_killed_between_outbox_write_and_publish_still_issues_exactly_once(
        system: ChaosSystem, stack: Stack) -> None:
    member_id, token = await stack.member("Olga Outbox", "olga@example.org")
    await verify_domain(stack, member_id, token, "example.org")
    csr = build_csr(dns=["www.example.org"], key=ec.generate_private_key(ec.SECP256R1()))
    registration = system.by_name("registration")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(system.ep.mongo_url)
    requests = client[system.databases["registration"]]["requests"]
    try:
        async with broker_stopped():
            submitted = asyncio.create_task(stack.api.call(
                "POST", "/v1/requests", token=token, json_body={"csr_pem": csr, "profile": "server"}))
            written = await _pending_request(requests, member_id)
            await _kill(registration)  # the write landed, the publish had not finished: killed there
            with contextlib.suppress(aiohttp.ClientError):
                await submitted  # the member's connection died with the process
        request_id = str(written["_id"])
        assert [e["type"] for e in written[outbox.FIELD]] == ["org.cacert.domain.caa_check_requested.v1"]

        registration.start()  # the same database: its start-up sweep publishes what the killed one left
        await registration.wait_ready()
        await stack.answer_caa(request_id)  # domain_verify's answer; registration approves, the signer issues

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        body: dict[str, Any] = {}
        while loop.time() < deadline:
            body = (await stack.api.call("GET", f"/v1/requests/{request_id}", token=token)).body
            if body.get("status") == "issued":
                break
            await asyncio.sleep(0.2)
        assert body.get("status") == "issued", body
        await asyncio.sleep(3)  # room for a second certificate, were one to come

        records = await read_topic(system.ep.kafka_bootstrap, Topics(system.prefix).of("cert"), expected=10**6,
                                   timeout=3)
        issued = [e for e in (CloudEvent.from_kafka(r.key, r.value, r.headers) for r in records)
                  if e.type.endswith("cert.issued.v1") and e.data["request_id"] == request_id]
        assert len({e.data["serial"] for e in issued}) == 1, [e.data["serial"] for e in issued]
        assert len({e.id for e in issued}) == 1
        assert body["serial"] == issued[0].data["serial"]
        listed = (await stack.api.call("GET", "/v1/certificates", token=token)).body
        assert [c["serial"] for c in listed["certificates"]] == [body["serial"]], listed
        for name in ("requests", "certificates"):
            left = await client[system.databases["registration"]][name].count_documents(
                outbox.PENDING)
            assert left == 0, f"{left} {name} still hold unpublished events"
    finally:
        await client.close()
