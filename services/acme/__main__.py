"""Entry point: `python -m services.acme` (configuration and wiring only)."""

from __future__ import annotations

import os
import sys

from services.acme.service import NAME, AcmeService
from services.acme.settings import AcmeSettings
from shared.config import ConfigError, load_or_exit
from shared.logging import configure
from shared.service import run, run_until_stopped

# The ACME API's port on the local stack (devstack/system.py); CACERT_HTTP_PORT still wins.
DEFAULT_PORT = "8089"


def main() -> None:
    settings = load_or_exit(AcmeSettings, {"CACERT_HTTP_PORT": DEFAULT_PORT, **os.environ})
    configure(NAME, settings.common.log_level)
    try:
        service = AcmeService(settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(lambda stop: run_until_stopped(service, stop)))


if __name__ == "__main__":
    main()
