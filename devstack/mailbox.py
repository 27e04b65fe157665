"""A catch-all SMTP server that keeps every mail in a Maildir, a small JSON API to read it, and a client.

The notifier and domain_verify services send real SMTP; tests and the demo need to see what was
sent (a confirmation link, an attached certificate). This accepts any sender and recipient on
loopback, stores each message as one file in a Maildir (so it survives restarts and can be opened
with any mail tool), and serves it over HTTP:

    GET    /healthz               200 while it serves (what devstack's readiness check asks; costs nothing)
    GET    /api/messages          summaries, oldest first: id, from, to, subject, date, size, message_id
                                  (optional filters: ?to=ADDRESS, ?subject=SUBSTRING)
    GET    /api/messages/{id}     summary + headers + text/html bodies + attachments + raw source
    DELETE /api/messages/{id}     delete one
    DELETE /api/messages          delete all

`to` is the SMTP envelope recipients (so Bcc recipients are included); `from` is the From header,
or the envelope sender when there is none. The envelope is kept in the stored file as the
headers `Return-Path` and `X-Envelope-To`, added on top like a local delivery agent would.

Run: python -m devstack.mailbox --smtp 127.0.0.1:2525 --http 127.0.0.1:8025 --maildir DIR
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import email.policy
import email.utils
import logging
import mailbox
import signal
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

log = logging.getLogger("devstack.mailbox")

Message = dict[str, Any]
Messages = list[Message]

_PARSER = BytesParser(policy=email.policy.default)


# -- storage -------------------------------------------------------------------------------------


class MailStore:
    """The Maildir plus the JSON views of its messages."""

    def __init__(self, directory: Path) -> None:
        # Maildir(create=True) skips cur/new/tmp when the directory itself exists already.
        for sub in ("cur", "new", "tmp"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(directory, create=False)

    def add(self, envelope_from: str, envelope_to: list[str], content: bytes) -> str:
        trace = f"Return-Path: <{envelope_from}>\r\nX-Envelope-To: {', '.join(envelope_to)}\r\n"
        key: str = self.maildir.add(trace.encode() + content)
        return key

    def _load(self, key: str) -> tuple[bytes, float] | None:
        try:
            message = self.maildir.get_message(key)
        except (KeyError, FileNotFoundError):
            return None
        return message.as_bytes(), message.get_date()

    def keys(self) -> list[str]:
        """Keys oldest first (delivery time, then key), so ids stay in arrival order."""
        dated = []
        for key in self.maildir.keys():
            try:
                dated.append((self.maildir.get_message(key).get_date(), key))
            except (KeyError, FileNotFoundError):
                continue  # deleted meanwhile
        return [key for _, key in sorted(dated)]

    def summaries(self, *, to: str | None = None, subject: str | None = None) -> Messages:
        result = []
        for key in self.keys():
            loaded = self._load(key)
            if loaded is None:
                continue
            raw, delivered = loaded
            summary = _summary(key, _PARSER.parsebytes(raw, headersonly=True), len(raw), delivered)
            if to and to.lower() not in (addr.lower() for addr in summary["to"] + _header_addresses(raw)):
                continue
            if subject and subject.lower() not in summary["subject"].lower():
                continue
            result.append(summary)
        return result

    def detail(self, key: str) -> Message | None:
        loaded = self._load(key)
        if loaded is None:
            return None
        raw, delivered = loaded
        parsed = _PARSER.parsebytes(raw)
        assert isinstance(parsed, EmailMessage)
        headers: dict[str, list[str]] = {}
        for name, value in parsed.items():
            headers.setdefault(name.lower(), []).append(str(value))
        text_part = parsed.get_body(preferencelist=("plain",))
        html_part = parsed.get_body(preferencelist=("html",))
        attachments = [
            {
                "filename": part.get_filename(),
                "content_type": part.get_content_type(),
                "size": len(part.get_payload(decode=True) or b""),
            }
            for part in parsed.iter_attachments()
        ]
        return {
            **_summary(key, parsed, len(raw), delivered),
            "headers": headers,
            "text": _content(text_part),
            "html": _content(html_part),
            "attachments": attachments,
            "raw": raw.decode("utf-8", "replace"),
        }

    def delete(self, key: str) -> bool:
        try:
            self.maildir.remove(key)
        except (KeyError, FileNotFoundError):
            return False
        return True

    def clear(self) -> int:
        count = 0
        for key in list(self.maildir.keys()):
            count += self.delete(key)
        return count


def _content(part: Any) -> str | None:
    if part is None:
        return None
    try:
        return str(part.get_content())
    except (LookupError, ValueError):  # unknown charset, broken encoding: still show something
        payload = part.get_payload(decode=True) or b""
        return str(payload.decode("utf-8", "replace"))


def _header_addresses(raw: bytes) -> list[str]:
    headers = _PARSER.parsebytes(raw, headersonly=True)
    values = [str(v) for name in ("To", "Cc") for v in headers.get_all(name, [])]
    return [addr for _, addr in email.utils.getaddresses(values) if addr]


def _summary(key: str, headers: Any, size: int, delivered: float) -> Message:
    envelope_to = [a.strip() for a in str(headers.get("X-Envelope-To", "")).split(",") if a.strip()]
    envelope_from = str(headers.get("Return-Path", "")).strip().strip("<>")
    date = None
    if headers.get("Date"):
        try:
            date = email.utils.parsedate_to_datetime(str(headers["Date"]))
        except (TypeError, ValueError):
            date = None
    if date is None:
        date = dt.datetime.fromtimestamp(delivered, dt.UTC)
    return {
        "id": key,
        "from": str(headers.get("From", "")) or envelope_from,
        "envelope_from": envelope_from,
        "to": envelope_to,
        "subject": str(headers.get("Subject", "")),
        "date": date.isoformat(),
        "delivered": dt.datetime.fromtimestamp(delivered, dt.UTC).isoformat(),
        "size": size,
        "message_id": str(headers.get("Message-ID", "")).strip(),
    }


# -- SMTP and HTTP servers ------------------------------------------------------------------------


class _Handler:
    """aiosmtpd handler: accept every message and store it."""

    def __init__(self, store: MailStore) -> None:
        self.store = store

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        key = self.store.add(envelope.mail_from or "", list(envelope.rcpt_tos), content)
        log.info("stored %s from <%s> to %s", key, envelope.mail_from, ", ".join(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


def _http_app(store: MailStore) -> web.Application:
    async def list_messages(request: web.Request) -> web.Response:
        return web.json_response(
            store.summaries(to=request.query.get("to"), subject=request.query.get("subject"))
        )

    async def get_message(request: web.Request) -> web.Response:
        message = store.detail(request.match_info["id"])
        if message is None:
            return web.json_response({"error": "no such message"}, status=404)
        return web.json_response(message)

    async def delete_message(request: web.Request) -> web.Response:
        if not store.delete(request.match_info["id"]):
            return web.json_response({"error": "no such message"}, status=404)
        return web.json_response({"deleted": 1})

    async def clear(request: web.Request) -> web.Response:
        return web.json_response({"deleted": store.clear()})

    async def health(request: web.Request) -> web.Response:
        # Readiness must not depend on how much mail is stored: listing reads every message.
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/healthz", health)
    app.router.add_get("/api/messages", list_messages)
    app.router.add_delete("/api/messages", clear)
    app.router.add_get("/api/messages/{id}", get_message)
    app.router.add_delete("/api/messages/{id}", delete_message)
    return app


class Mailbox:
    """SMTP server + HTTP API on one event loop; port 0 picks free ports (see smtp_port/http_port).

    Used by `python -m devstack.mailbox` and, in-process, by tests:

        async with Mailbox(tmp_path, smtp=("127.0.0.1", 0), http=("127.0.0.1", 0)) as mb:
            ... send to mb.smtp_port, read mb.url ...
    """

    def __init__(self, maildir: Path, *, smtp: tuple[str, int], http: tuple[str, int]) -> None:
        self.store = MailStore(maildir)
        self._smtp_addr, self._http_addr = smtp, http
        self._smtp_server: asyncio.Server | None = None
        self._runner: web.AppRunner | None = None
        self.smtp_port = smtp[1]
        self.http_port = http[1]

    @property
    def url(self) -> str:
        return f"http://{self._http_addr[0]}:{self.http_port}"

    async def start(self) -> None:
        from aiosmtpd.smtp import SMTP

        handler = _Handler(self.store)
        loop = asyncio.get_running_loop()
        self._smtp_server = await loop.create_server(
            # hostname given: aiosmtpd's default does a (possibly slow) reverse DNS lookup.
            lambda: SMTP(handler, hostname="mailbox.devstack", enable_SMTPUTF8=True, loop=loop),
            host=self._smtp_addr[0],
            port=self._smtp_addr[1],
        )
        self.smtp_port = self._smtp_server.sockets[0].getsockname()[1]
        self._runner = web.AppRunner(_http_app(self.store), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._http_addr[0], self._http_addr[1])
        await site.start()
        self.http_port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._smtp_server is not None:
            self._smtp_server.close()
            await self._smtp_server.wait_closed()
            self._smtp_server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Mailbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# -- client ---------------------------------------------------------------------------------------


class MailboxClient:
    """Async client of the mailbox API, for tests and the demo.

    Each call opens its own short HTTP session, so the client needs no closing and can be used
    from any event loop.
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8025", *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _request(self, method: str, path: str, **params: str) -> Any:
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            async with session.request(method, self.base_url + path, params=params) as response:
                if response.status == 404:
                    raise KeyError(path)
                response.raise_for_status()
                return await response.json()

    async def list(self, *, to: str | None = None, subject: str | None = None) -> Messages:
        """Summaries (id, from, to, subject, date, ...) oldest first, optionally filtered."""
        params = {k: v for k, v in (("to", to), ("subject", subject)) if v}
        result: Messages = await self._request("GET", "/api/messages", **params)
        return result

    async def get(self, message_id: str) -> Message:
        """One message with headers (lower-case name -> values), text, html, attachments, raw."""
        result: Message = await self._request("GET", f"/api/messages/{message_id}")
        return result

    async def delete(self, message_id: str) -> None:
        await self._request("DELETE", f"/api/messages/{message_id}")

    async def clear(self) -> int:
        """Delete every message; returns how many there were."""
        result = await self._request("DELETE", "/api/messages")
        return int(result["deleted"])

    async def wait_for(
        self,
        predicate: Callable[[Message], bool] | None = None,
        timeout: float = 10.0,
        *,
        to: str | None = None,
        subject: str | None = None,
        interval: float = 0.2,
    ) -> Message:
        """First message (full, as from `get`) matching the filters and `predicate`, waiting for it.

        Mail is sent asynchronously by the services, so tests poll instead of expecting it at once.
        Raises TimeoutError listing what the mailbox does hold, which usually shows the mistake.
        """
        seen: dict[str, Message] = {}
        deadline = time.monotonic() + timeout
        while True:
            summaries = await self.list(to=to, subject=subject)
            for summary in summaries:
                message = seen.get(summary["id"])
                if message is None:
                    try:
                        message = seen[summary["id"]] = await self.get(summary["id"])
                    except KeyError:
                        continue  # deleted between list and get
                if predicate is None or predicate(message):
                    return message
            if time.monotonic() >= deadline:
                held = await self.list()
                listing = "; ".join(f"{m['to']} {m['subject']!r}" for m in held[-10:]) or "nothing"
                raise TimeoutError(
                    f"no matching mail within {timeout}s (to={to!r}, subject={subject!r}); "
                    f"the mailbox holds {len(held)}: {listing}"
                )
            await asyncio.sleep(interval)


# -- command line ---------------------------------------------------------------------------------


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Mailbox(args.maildir, smtp=args.smtp, http=args.http) as mb:
        log.warning("mailbox: SMTP on %s:%d, API on %s, Maildir %s",
                    args.smtp[0], mb.smtp_port, mb.url, args.maildir)  # fmt: skip
        await stop.wait()
    log.warning("mailbox: stopped")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.mailbox", description=__doc__.split("\n")[0])
    parser.add_argument("--smtp", type=_address, default=("127.0.0.1", 2525), help="SMTP HOST:PORT")
    parser.add_argument("--http", type=_address, default=("127.0.0.1", 8025), help="mailbox API HOST:PORT")
    parser.add_argument("--maildir", type=Path, required=True, help="Maildir to store messages in")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every connection at INFO
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
