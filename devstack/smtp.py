"""The SMTP server + mailbox API (devstack/mailbox.py) as a stack component.

It runs as `python -m devstack.mailbox` with the interpreter that runs devstack, so it needs only
the project's Python dependencies (aiosmtpd, aiohttp), nothing fetched or built.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

from devstack import paths
from devstack.component import Component, Say, inherited_env
from devstack.endpoints import HOST
from devstack.errors import StackError


class MailboxComponent(Component):
    name = "smtp"
    title = "SMTP server + mailbox API"
    ready_timeout = 30.0
    stop_timeout = 10.0

    def ports(self) -> list[tuple[int, str]]:
        return [
            (self.endpoints.smtp, "CACERT_STACK_SMTP_PORT"),
            (self.endpoints.mailbox_http, "CACERT_STACK_MAILBOX_PORT"),
        ]

    def address(self) -> str:
        return f"smtp://{HOST}:{self.endpoints.smtp}, {self.endpoints.mailbox_url}"

    @property
    def maildir(self) -> Path:
        return paths.state_dir() / "mail"

    def data_dirs(self) -> list[Path]:
        return [self.maildir]

    def prepare(self, say: Say) -> None:
        missing = [m for m in ("aiosmtpd", "aiohttp") if importlib.util.find_spec(m) is None]
        if missing:
            raise StackError(
                f"Python package(s) {', '.join(missing)} missing for {sys.executable}: "
                "install the dev dependencies (`pip install -e '.[dev]'`, or run ./dev)"
            )
        self.maildir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "devstack.mailbox",
            "--smtp", f"{HOST}:{self.endpoints.smtp}",
            "--http", f"{HOST}:{self.endpoints.mailbox_http}",
            "--maildir", str(self.maildir),
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        # Import devstack from this checkout whatever the working directory or install mode.
        root = str(paths.PACKAGE_DIR.parent)
        pythonpath = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        return inherited_env(PYTHONPATH=pythonpath, PYTHONUNBUFFERED="1")

    def healthy(self) -> bool:
        """The SMTP banner and the API's /healthz. Not /api/messages: it reads every stored message, and
        with a few hundred of them on a busy machine it took longer than the probe's timeout, so a
        restarted relay was never found ready (the chaos run's `stack:smtp` fault). A mailbox started
        by an older devstack has no /healthz (404): the listing is still asked there."""
        if not smtp_banner_ok(HOST, self.endpoints.smtp):
            return False
        base = self.endpoints.mailbox_url
        status = http_status(f"{base}/healthz")
        return status == 200 or (status == 404 and http_ok(f"{base}/api/messages"))


def smtp_banner_ok(host: str, port: int, timeout: float = 2.0) -> bool:
    """True if an SMTP server greets with 220 (and we say QUIT politely)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            banner = sock.recv(512)
            sock.sendall(b"QUIT\r\n")
            return banner.startswith(b"220")
    except OSError:
        return False


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status the URL answers with, None when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our own loopback URL)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our own loopback URL)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
