"""Loopback addresses of the stack's servers and the CACERT_* environment that points at them.

Every port can be moved with an environment variable (for a second stack next to the first, or
when a default port is taken); the host is always 127.0.0.1, because nothing here has
authentication and none of it may be reachable from the network.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

HOST = "127.0.0.1"


def _port(var: str, default: int) -> int:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"{var} must be a port number, got {raw!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"{var} must be between 1 and 65535, got {port}")
    return port


@dataclass(frozen=True)
class Endpoints:
    """The ports in effect, read from the environment once per call of `current()`."""

    kafka: int
    kafka_controller: int
    mongo: int
    smtp: int
    mailbox_http: int

    @property
    def kafka_bootstrap(self) -> str:
        return f"{HOST}:{self.kafka}"

    @property
    def mongo_url(self) -> str:
        return f"mongodb://{HOST}:{self.mongo}"

    @property
    def mailbox_url(self) -> str:
        return f"http://{HOST}:{self.mailbox_http}"

    def env(self) -> dict[str, str]:
        """The variables services and tests read to find the stack (see shared/config.py)."""
        return {
            "CACERT_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "CACERT_MONGO_URL": self.mongo_url,
            "CACERT_SMTP_HOST": HOST,
            "CACERT_SMTP_PORT": str(self.smtp),
            "CACERT_MAILBOX_URL": self.mailbox_url,
        }


def current() -> Endpoints:
    """Ports from CACERT_STACK_*_PORT, falling back to the documented defaults."""
    return Endpoints(
        kafka=_port("CACERT_STACK_KAFKA_PORT", 19092),
        kafka_controller=_port("CACERT_STACK_KAFKA_CONTROLLER_PORT", 19093),
        mongo=_port("CACERT_STACK_MONGO_PORT", 27018),
        smtp=_port("CACERT_STACK_SMTP_PORT", 2525),
        mailbox_http=_port("CACERT_STACK_MAILBOX_PORT", 8025),
    )
