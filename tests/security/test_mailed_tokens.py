"""Confirmation tokens at rest and in transit (issue 19, item 5), over real Kafka, FerretDB and SMTP.

Registration, domain_verify and the notifier run in-process, logging JSON at DEBUG into buffers the test
reads. An email confirmation, a password reset and a domain challenge are mailed while the SMTP server is
down, so each sits in the notifier's queue; then:

* no token is in any document of registration's, domain_verify's or the notifier's database (outboxes and
  the mail queue included), in any message on any topic (`mail.commands` holds them only sealed to the
  notifier's key), nor in any log line;
* the SMTP server comes up and the mails arrive with working links: followed as a browser does (the token
  in the fragment stays in the client, the page's form posts it), each confirms;
* no request line the client sent carried a token (an aiohttp trace of every URL requested).

Also: a service without its sealing key does not start, and says which setting is missing; a command the
notifier cannot open (another key, tampered, re-addressed) is dead-lettered with the reason, and the
notifier mails on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp
import pytest

from shared.config import KafkaSettings, MongoSettings
from shared.events import CloudEvent, Topics, isoformat, make_event, utcnow
from shared.logging import configure
from shared.mongo import connect
from shared.sealed_mail import MailOpener
from tests.eventlog import read_topic, wait_until
from tests.mail_keys import NOTIFIER_PRIVATE_PEM, SEALING_PUBLIC_PEM, params_of, seal
from tests.notifier.mailparse import body_text
from tests.registration.harness import PASSWORD

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("topics")]
ROOT = Path(__file__).resolve().parents[2]
NEW_PASSWORD = "another long passphrase"


async def until(count: Any, expected: int, what: str, timeout: float = 30) -> None:
    """Poll the awaitable `count()` until it reaches `expected`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await count() < expected:
        assert loop.time() < deadline, f"{what} not reached within {timeout}s"
        await asyncio.sleep(0.1)


def mailed_link(text: str, page: str) -> str:
    (link,) = [w for w in text.split() if w.startswith(page + "#token=")]
    return link


class Browser:
    """Follows mailed links as a browser does, and records every URL it sends (the request lines)."""

    def __init__(self, http: aiohttp.ClientSession, origins: dict[str, str]) -> None:
        self.http = http
        self.origins = origins  # public origin -> bound address

    def local(self, url: str) -> str:
        parts = urlsplit(url)
        base = self.origins[f"{parts.scheme}://{parts.netloc}"]
        return base + parts.path + (f"?{parts.query}" if parts.query else "")

    async def open(self, link: str) -> tuple[str, str]:
        """GET the link's page (a browser sends no fragment); returns (page HTML, the token its script reads)."""
        parts = urlsplit(link)
        async with self.http.get(self.local(urlunsplit(parts._replace(fragment="")))) as page:
            assert page.status == 200
            html = await page.text()
        assert 'src="/static/mailed-link.js"' in html and "data-mailed-token" in html
        return html, parse_qs(parts.fragment)["token"][0]

    async def post(self, url: str, form: dict[str, str]) -> tuple[int, str]:
        async with self.http.post(url, data=form, allow_redirects=False) as reply:
            return reply.status, await reply.text()


async def everything_stored(mongo: MongoSettings, databases: list[str]) -> str:
    client, _ = connect(mongo, service="test")
    try:
        dump = []
        for name in databases:
            db = client[name]
            for collection in await db.list_collection_names():
                dump += [json.dumps(doc, default=str) async for doc in db[collection].find({})]
        return "\n".join(dump)
    finally:
        await client.close()


async def everything_published(kafka: KafkaSettings) -> str:
    carried = []
    for name in Topics(kafka.topic_prefix).all():
        for r in await read_topic(kafka.bootstrap, name, expected=10**6, timeout=1.5):
            carried.append((r.key or b"").decode("utf-8", "replace") + (r.value or b"").decode("utf-8", "replace")
                           + "".join(f"{k}={(v or b'').decode('utf-8', 'replace')}" for k, v in r.headers or ()))
    return "\n".join(carried)


async def test_tokens_are_in_no_document_event_log_line_or_request_line_and_the_mailed_links_work(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    from tests.domain_verify.harness import PUBLIC_URL as VERIFY_URL
    from tests.domain_verify.harness import running as domain_verify
    from tests.notifier.harness import running as notifier
    from tests.registration.harness import running as registration

    logs = io.StringIO()
    configure("mailed-tokens", "DEBUG", stream=logs)
    databases = {name: dataclasses.replace(mongo_settings, database=f"{mongo_settings.database}_{name}")
                 for name in ("reg", "dv", "notifier")}
    requested: list[str] = []
    trace = aiohttp.TraceConfig()

    async def on_request_start(_: Any, __: SimpleNamespace, params: Any) -> None:
        requested.append(str(params.url))

    trace.on_request_start.append(on_request_start)
    async with registration(kafka_settings, databases["reg"]) as reg, \
            domain_verify(kafka_settings, databases["dv"]) as dv, \
            notifier(kafka_settings, databases["notifier"], smtp_up=False) as mail, \
            aiohttp.ClientSession(trace_configs=[trace], cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        configure("mailed-tokens", "DEBUG", stream=logs)  # every service's lines from here on, in one buffer
        registration_url = reg.service.settings.public_url
        browser = Browser(http, {registration_url: reg.api.base, VERIFY_URL: dv.base_url})

        # 1. Three mails, queued while SMTP is down: a sign-up's confirmation, a reset, a domain challenge.
        async with http.post(reg.api.base + "/v1/members", json={
                "name": "Tok Ens", "date_of_birth": "1990-01-01", "email": "tok@example.org",
                "password": PASSWORD}) as signed_up:
            assert signed_up.status == 201
        await dv.request(member_id="m-tok", domain="example.org", contact="hostmaster@example.org")
        assert mail.service.queue is not None
        queue = mail.service.queue.collection
        await until(lambda: queue.count_documents({"source_type": {"$regex": "send_requested"}}), 2,
                    "the confirmation and the challenge queued")
        # While queued, the notifier keeps them sealed: only its key makes them usable.
        at_rest_while_queued = await everything_stored(mongo_settings, [d.database for d in databases.values()])
        assert '"sealed"' in at_rest_while_queued, "the notifier's queue keeps the sealed form"
        mail.smtp.start()

        async def mailed(subject: str) -> str:
            await wait_until(lambda: any(r.message["Subject"] == subject for r in mail.smtp.received), 30, subject)
            message = next(r.message for r in mail.smtp.received if r.message["Subject"] == subject)
            return body_text(message).replace("\r\n", "\n")

        confirm_link = mailed_link(await mailed("Confirm your email address"), f"{registration_url}/confirm-email")
        challenge_link = mailed_link(await mailed("Confirm control of example.org"), f"{VERIFY_URL}/confirm")

        html, token = await browser.open(confirm_link)
        assert token not in html
        status, text = await browser.post(f"{reg.api.base}/confirm-email", {"token": token})
        assert status == 200 and "is now verified" in text
        tokens = {"email confirmation": token}

        html, token = await browser.open(challenge_link)  # its script posts the token to the review step
        status, text = await browser.post(f"{dv.base_url}/confirm/review", {"token": token})
        assert status == 200 and "example.org" in text and 'action="/confirm"' in text
        status, text = await browser.post(f"{dv.base_url}/confirm", {"token": token})
        assert status == 200 and "Domain confirmed" in text
        tokens["domain challenge"] = token

        mail.smtp.stop()
        async with http.post(reg.api.base + "/v1/password-resets", json={"email": "tok@example.org"}) as asked:
            assert asked.status == 202

        await until(lambda: queue.count_documents({"template": "password_reset"}), 1, "the reset mail queued")
        at_rest_while_queued += await everything_stored(mongo_settings, [d.database for d in databases.values()])
        mail.smtp.start()
        reset_text = await mailed("Reset your CAcert password")
        reset_link = mailed_link(reset_text, f"{registration_url}/reset-password")
        html, token = await browser.open(reset_link)
        assert token not in html and 'name="token"' in html
        assert f"enter this code:\n\n  {token}" in reset_text, "without JavaScript the code is typed in"
        csrf = html.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        status, _ = await browser.post(f"{reg.api.base}/reset-password", {
            "csrf": csrf, "token": token, "new_password": NEW_PASSWORD, "new_password_again": NEW_PASSWORD})
        assert status == 303, "the reset link works"
        tokens["password reset"] = token
        async with http.post(reg.api.base + "/v1/sessions", json={"email": "tok@example.org",
                                                                 "password": NEW_PASSWORD}) as login:
            assert login.status == 201
        await until(lambda: queue.count_documents({"source_type": {"$regex": "send_requested"}, "state": "sent"}), 3,
                    "the three commands sent (the queue then drops what it held)")

        stored = await everything_stored(mongo_settings, [d.database for d in databases.values()])
        published = await everything_published(kafka_settings)
        commands = await read_topic(kafka_settings.bootstrap, Topics(kafka_settings.topic_prefix).of("mail.commands"),
                                    expected=3, timeout=5)
        opened = [str(params_of(CloudEvent.from_kafka(r.key, r.value, r.headers))) for r in commands]
        service_logs = logs.getvalue() + dv.logs.getvalue() + mail.logs.getvalue()

    assert '"mail queued"' in service_logs and "mail sent" in service_logs, "the logs were captured"
    for what, token in tokens.items():  # the scan looked where the tokens are: sealed in the mail commands
        assert any(token in params for params in opened), f"the {what} token is not in a sealed mail command"
    leaks = [f"{what} token in {where}" for what, token in tokens.items()
             for where, text in (("a stored document", stored), ("a document while queued", at_rest_while_queued),
                                 ("an event", published), ("a log line", service_logs))
             if token in text]
    leaks += [f"{what} token in the request line {url}" for what, token in tokens.items()
              for url in requested if token in url]
    assert not leaks, leaks
    assert any("/confirm-email" in url for url in requested) and any("/confirm/review" in url for url in requested)


async def test_the_notifier_dead_letters_a_command_it_cannot_open_and_mails_on(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    from tests.notifier.harness import running

    def command(to: str) -> CloudEvent:
        return make_event("mail.send_requested", {
            "to": to, "template": "email_confirmation", "requested_at": isoformat(utcnow()),
            "params": {"link": "https://ca.test/confirm-email#token=SECRET-TOKEN-1", "code": "SECRET-TOKEN-1",
                       "page": "https://ca.test/confirm-email", "name": "Ada"}}, source="registration")

    stranger = MailOpener.generate().sealer()
    other_key = stranger.seal(command("a@example.org"))
    tampered = seal(command("b@example.org"))
    value = tampered.data["sealed"]["value"]
    tampered = dataclasses.replace(tampered, data={**tampered.data, "sealed": {
        **tampered.data["sealed"], "value": value[:-2] + ("AA" if value[-2:] != "AA" else "BB")}})
    readdressed = seal(command("c@example.org"))
    readdressed = dataclasses.replace(readdressed, data={**readdressed.data, "to": "mallory@example.net"})
    in_clear = command("d@example.org")
    good = seal(command("ada@example.org"))

    async with running(kafka_settings, mongo_settings) as notifier:
        for event in (other_key, tampered, readdressed, in_clear, good):
            await notifier.producer.publish(event)
        (delivered,) = await notifier.wait_received(1)
        assert delivered.to == "ada@example.org" and "SECRET-TOKEN-1" in body_text(delivered.message)
        dead = await read_topic(kafka_settings.bootstrap, notifier.topics.of("mail.commands") + ".dlq", 4, 20)
        reasons = {json.loads(r.value)["to"]: dict(r.headers or ()).get("dlq_reason", b"").decode() for r in dead}
        await notifier.settle(1.0)
        assert len(notifier.smtp.received) == 1, "nothing but the good command was mailed"
        logs = notifier.logs.getvalue()
    assert set(reasons) == {"a@example.org", "b@example.org", "mallory@example.net", "d@example.org"}, reasons
    assert "which this notifier does not hold" in reasons["a@example.org"]
    assert "do not open" in reasons["b@example.org"] and "do not open" in reasons["mallory@example.net"]
    assert "must be sealed" in reasons["d@example.org"]
    assert all("SECRET-TOKEN-1" not in reason for reason in reasons.values())
    assert "message dead-lettered" in logs and "SECRET-TOKEN-1" not in logs


@pytest.mark.parametrize(("module", "env", "setting"), [
    ("services.notifier", {}, "CACERT_NOTIFIER_SEALING_KEY"),
    ("services.notifier", {"CACERT_NOTIFIER_SEALING_KEY": "not a key"}, "CACERT_NOTIFIER_SEALING_KEY"),
    ("services.domain_verify", {}, "CACERT_MAIL_SEALING_PUBLIC_KEY"),
    ("services.registration", {}, "CACERT_MAIL_SEALING_PUBLIC_KEY"),
    ("services.registration", {"CACERT_MAIL_SEALING_PUBLIC_KEY": NOTIFIER_PRIVATE_PEM},
     "CACERT_MAIL_SEALING_PUBLIC_KEY"),
    # and the ACME service's key, to which the HMAC keys of ACME bindings are sealed (shared/acme_binding.py)
    ("services.registration", {"CACERT_MAIL_SEALING_PUBLIC_KEY": SEALING_PUBLIC_PEM},
     "CACERT_ACME_SEALING_PUBLIC_KEY"),
    ("services.registration", {"CACERT_MAIL_SEALING_PUBLIC_KEY": SEALING_PUBLIC_PEM,
                               "CACERT_ACME_SEALING_PUBLIC_KEY": NOTIFIER_PRIVATE_PEM},
     "CACERT_ACME_SEALING_PUBLIC_KEY"),
])
def test_a_service_without_its_sealing_key_does_not_start_and_names_the_setting(
        module: str, env: dict[str, str], setting: str) -> None:
    from tests.approval_keys import RA_PRIVATE_PEM

    environ = {k: v for k, v in os.environ.items() if not k.startswith("CACERT_")}
    environ.update(PYTHONPATH=str(ROOT), CACERT_KAFKA_BOOTSTRAP="127.0.0.1:9", CACERT_MONGO_URL="mongodb://127.0.0.1:9",
                   CACERT_RA_SIGNING_KEY=RA_PRIVATE_PEM, **env)
    result = subprocess.run([sys.executable, "-m", module], env=environ, capture_output=True, text=True,
                            timeout=60, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: {setting}"), lines[0]
    assert "PRIVATE KEY" not in result.stderr
