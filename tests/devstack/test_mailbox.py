"""The local SMTP server + mailbox API: real SMTP in, JSON out, on free loopback ports.

Needs no running stack: each test starts its own mailbox (in-process, or as the
`python -m devstack.mailbox` process the stack runs) on ports the OS picks.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import pytest

from devstack.mailbox import Mailbox, MailboxClient

ROOT = Path(__file__).resolve().parents[2]


def _message(subject: str, *, to: str = "member@example.org") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "CAcert Community CA <noreply@ca.example.org>"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("Confirm your address: https://ca.example.org/confirm/abc123\n")
    html = "<p>Confirm: <a href='https://ca.example.org/confirm/abc123'>link</a></p>"
    msg.add_alternative(html, subtype="html")
    return msg


def _send(port: int, msg: EmailMessage, *, to_addrs: list[str] | None = None) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(msg, to_addrs=to_addrs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def mailbox(tmp_path: Path) -> AsyncIterator[Mailbox]:
    async with Mailbox(tmp_path / "mail", smtp=("127.0.0.1", 0), http=("127.0.0.1", 0)) as mb:
        yield mb


async def test_sent_mail_is_listed_and_readable_over_http(mailbox: Mailbox) -> None:
    msg = _message("Please confirm your email address")
    msg.add_attachment(b"-----BEGIN CERTIFICATE-----\n", maintype="application", subtype="x-pem-file",
                       filename="cert.pem")  # fmt: skip
    # Envelope recipients include one that is in no header (a Bcc), which `to` must show.
    recipients = ["member@example.org", "audit@example.org"]
    await asyncio.to_thread(_send, mailbox.smtp_port, msg, to_addrs=recipients)

    client = MailboxClient(mailbox.url)
    listed = await client.list()
    assert len(listed) == 1
    summary = listed[0]
    assert summary["subject"] == "Please confirm your email address"
    assert summary["to"] == recipients
    assert "noreply@ca.example.org" in summary["from"]
    assert summary["date"]

    full = await client.get(summary["id"])
    assert "https://ca.example.org/confirm/abc123" in full["text"]
    assert "<a href=" in full["html"]
    assert full["attachments"] == [
        {"filename": "cert.pem", "content_type": "application/x-pem-file", "size": 28}
    ]
    assert full["headers"]["subject"] == ["Please confirm your email address"]
    assert full["headers"]["x-envelope-to"] == ["member@example.org, audit@example.org"]
    assert "Subject: Please confirm your email address" in full["raw"]


async def test_filters_wait_for_delete_and_clear(mailbox: Mailbox) -> None:
    client = MailboxClient(mailbox.url)

    async def send_later() -> None:
        await asyncio.sleep(0.3)
        await asyncio.to_thread(_send, mailbox.smtp_port, _message("first", to="a@example.org"))
        await asyncio.to_thread(_send, mailbox.smtp_port, _message("second", to="b@example.org"))

    sender = asyncio.create_task(send_later())
    got = await client.wait_for(lambda m: "abc123" in (m["text"] or ""), timeout=10, to="b@example.org")
    await sender
    assert got["subject"] == "second"

    assert [m["subject"] for m in await client.list()] == ["first", "second"]  # arrival order
    assert [m["subject"] for m in await client.list(to="A@example.org")] == ["first"]
    assert [m["subject"] for m in await client.list(subject="SEC")] == ["second"]

    await client.delete(got["id"])
    with pytest.raises(KeyError):
        await client.get(got["id"])
    assert await client.clear() == 1
    assert await client.list() == []

    with pytest.raises(TimeoutError, match="holds 0"):
        await client.wait_for(timeout=0.3)


async def test_mailbox_process_keeps_mail_across_restarts(tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    maildir.mkdir()  # an existing empty directory, as the stack prepares it
    smtp_port, http_port = _free_port(), _free_port()
    argv = [sys.executable, "-m", "devstack.mailbox", "--smtp", f"127.0.0.1:{smtp_port}",
            "--http", f"127.0.0.1:{http_port}", "--maildir", str(maildir)]  # fmt: skip
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    client = MailboxClient(f"http://127.0.0.1:{http_port}")

    async def run_once(action: str) -> list[str]:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    subjects = [m["subject"] for m in await client.list()]
                    break
                except OSError:
                    assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                    assert time.monotonic() < deadline, "mailbox did not start"
                    await asyncio.sleep(0.1)
            if action == "send":
                await asyncio.to_thread(_send, smtp_port, _message("kept"))
                subjects = [(await client.wait_for(timeout=5))["subject"]]
            return subjects
        finally:
            proc.terminate()
            assert proc.wait(timeout=10) == 0

    assert await run_once("send") == ["kept"]
    assert await run_once("read") == ["kept"]


async def test_stack_smtp_restart_with_much_mail_stored_is_ready_at_once(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The chaos run's `stack:smtp` fault: a relay restarted with a few hundred messages stored was never
    found ready, because readiness asked /api/messages, which reads every message (seconds on a busy
    machine, beyond the probe's 2 s). Readiness now asks /healthz, which reads none."""
    from devstack import endpoints
    from devstack.smtp import MailboxComponent

    async with Mailbox(tmp_path / "mail", smtp=("127.0.0.1", 0), http=("127.0.0.1", 0)) as mb:
        for n in range(3):
            mb.store.add("noreply@cacert.test", [f"member{n}@example.org"], _message(f"mail {n}").as_bytes())
        read: list[str] = []
        loaded = mb.store._load

        def counting(key: str) -> tuple[bytes, float] | None:
            read.append(key)
            return loaded(key)

        monkeypatch.setattr(mb.store, "_load", counting)
        monkeypatch.setenv("CACERT_STACK_SMTP_PORT", str(mb.smtp_port))
        monkeypatch.setenv("CACERT_STACK_MAILBOX_PORT", str(mb.http_port))
        component = MailboxComponent(endpoints.current())
        assert await asyncio.to_thread(component.healthy)
        assert read == [], "the readiness check read stored messages"
        async with aiohttp.ClientSession() as http, http.get(f"{mb.url}/api/messages") as listing:
            assert len(await listing.json()) == 3 and len(read) == 3  # the listing itself still works
