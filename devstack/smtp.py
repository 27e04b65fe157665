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
        api = f"{self.endpoints.mailbox_url}/api/messages"
        return smtp_banner_ok(HOST, self.endpoints.smtp) and http_ok(api)


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


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our own loopback URL)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
