"""Entry point: `python -m services.notifier` (configuration and wiring only)."""

from __future__ import annotations

import os
import sys

from services.notifier.service import NAME, NotifierService
from services.notifier.settings import NotifierSettings
from shared.config import ConfigError, load_or_exit
from shared.logging import configure
from shared.service import run, run_until_stopped

# The notifier's port on the local stack (health and metrics only); CACERT_HTTP_PORT still wins.
DEFAULT_PORT = "8085"


def main() -> None:
    settings = load_or_exit(NotifierSettings, {"CACERT_HTTP_PORT": DEFAULT_PORT, **os.environ})
    configure(NAME, settings.common.log_level)
    try:
        service = NotifierService(settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(lambda stop: run_until_stopped(service, stop)))


if __name__ == "__main__":
    main()
