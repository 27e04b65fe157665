"""Does a burst of logins stall everyone else? `python -m benchmarks.login_load`

Registration runs in-process against the local stack (Kafka, FerretDB: `./dev up` or `python -m devstack
up`) on topics and a database of its own. One member's `GET /v1/me` is timed, one call after another:
first alone (the baseline), then while `--logins` clients log in over and over (Argon2id, 19 MiB, about
40 ms of CPU each). Password hashing runs in worker threads, so the loop keeps answering; the ratio of
the two medians says how much a login burst costs a bystander. Prints one JSON object. A figure only
means something on a quiet machine: the load average is in the output.

    python -m benchmarks.login_load --logins 20 --calls 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from datetime import date
from typing import Any

import aiohttp

from services.registration.bootstrap import bootstrap_member
from services.registration.service import RegistrationService
from services.registration.settings import RegistrationSettings
from shared.acme_binding import BindingOpener
from shared.approvals import ApprovalSigner
from shared.config import HttpSettings, KafkaSettings, MongoSettings
from shared.kafka.topics import delete_topics_with_prefix
from shared.logging import configure
from shared.sealed_mail import MailOpener
from shared.settings import CommonSettings

PASSWORD = "a benchmark passphrase"  # noqa: S105 (a throw-away account on a throw-away database)


async def _timed_calls(http: aiohttp.ClientSession, url: str, token: str, calls: int) -> list[float]:
    timings = []
    for _ in range(calls):
        started = time.perf_counter()
        async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as reply:
            await reply.read()
            assert reply.status == 200, reply.status
        timings.append((time.perf_counter() - started) * 1000)
    return timings


async def _login_forever(http: aiohttp.ClientSession, url: str, address: str, done: asyncio.Event,
                         counter: list[int]) -> None:
    while not done.is_set():
        async with http.post(url, json={"email": address, "password": PASSWORD}) as reply:
            await reply.read()
            assert reply.status == 201, reply.status
        counter[0] += 1


def _summary(timings: list[float]) -> dict[str, float]:
    ordered = sorted(timings)
    return {"p50_ms": round(statistics.median(ordered), 3), "p90_ms": round(ordered[int(len(ordered) * 0.9)], 3),
            "max_ms": round(ordered[-1], 3)}


async def measure(bootstrap: str, mongo_url: str, *, logins: int, calls: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(bootstrap=bootstrap, topic_prefix=f"login{run}.", group_prefix=f"login{run}.")
    mongo = MongoSettings(url=mongo_url, database=f"login_bench_{run}")
    key = ApprovalSigner.generate().private_pem()  # this run's RA key: registration needs one to serve
    settings = RegistrationSettings(
        common=CommonSettings(kafka=kafka, mongo=mongo, http=HttpSettings(port=0)),
        login_per_account=10**9, login_per_client=10**9, ra_signing_key=key,
        mail_sealing_public_key=MailOpener.generate().public_pem(),  # no mail is read: a throw-away key
        acme_sealing_public_key=BindingOpener.generate().public_pem())  # nor any ACME binding opened
    service = RegistrationService(settings)
    await service.start()
    try:
        assert service.db is not None
        await bootstrap_member(service.db, settings, email="bench@example.org", name="Bench Mark",
                               date_of_birth=date(1990, 1, 1), password=PASSWORD, roles=("member",))
        base = f"http://127.0.0.1:{service.http_port}"
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/v1/sessions", json={"email": "bench@example.org", "password": PASSWORD}
                                 ) as reply:
                token = (await reply.json())["token"]
            await _timed_calls(http, base + "/v1/me", token, 20)  # warm-up
            alone = await _timed_calls(http, base + "/v1/me", token, calls)
            done, counter = asyncio.Event(), [0]
            storm = [asyncio.create_task(_login_forever(http, base + "/v1/sessions", "bench@example.org", done,
                                                        counter)) for _ in range(logins)]
            await asyncio.sleep(0.5)  # let the burst build up
            started = time.perf_counter()
            during = await _timed_calls(http, base + "/v1/me", token, calls)
            elapsed = time.perf_counter() - started
            done.set()
            await asyncio.gather(*storm)
    finally:
        await service.stop()
        await delete_topics_with_prefix(kafka, kafka.topic_prefix)
    idle, busy = _summary(alone), _summary(during)
    return {
        "benchmark": "login_load", "logins_in_flight": logins, "calls": calls,
        "me_alone": idle, "me_during_logins": busy,
        "ratio_p50": round(busy["p50_ms"] / idle["p50_ms"], 2),
        "logins_per_s_during": round(counter[0] / elapsed, 1) if elapsed else 0.0,
        "loadavg_before": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.login_load", description=__doc__.split("\n")[0])
    parser.add_argument("--logins", type=int, default=20, help="clients logging in over and over at once")
    parser.add_argument("--calls", type=int, default=200, help="timed GET /v1/me calls, alone and during logins")
    parser.add_argument("--bootstrap", default=os.environ.get("CACERT_KAFKA_BOOTSTRAP", "127.0.0.1:19092"))
    parser.add_argument("--mongo-url", default=os.environ.get("CACERT_MONGO_URL", "mongodb://127.0.0.1:27018"))
    args = parser.parse_args(argv)
    configure("login_load", "WARNING", stream=sys.stderr)  # stdout carries the JSON only
    result = asyncio.run(measure(args.bootstrap, args.mongo_url, logins=args.logins, calls=args.calls))
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
