"""Entry point: `python -m services.domain_verify` (configuration and wiring only)."""

from __future__ import annotations

import os
import sys

from services.domain_verify.perspective import RemotePerspective
from services.domain_verify.service import NAME, DomainVerifyService
from services.domain_verify.settings import DomainVerifySettings, settings_environment
from shared.config import ConfigError, load_or_exit
from shared.logging import configure
from shared.service import run, run_until_stopped

# The confirm endpoint's port on the local stack (docs/architecture.md); CACERT_HTTP_PORT still wins.
# Perspective processes on the local stack get their own ports from devstack/system.py.
DEFAULT_PORT = "8082"


def main() -> None:
    environ = settings_environment({"CACERT_HTTP_PORT": DEFAULT_PORT, **os.environ})
    settings = load_or_exit(DomainVerifySettings, environ)
    configure(NAME, settings.common.log_level)
    try:
        service = RemotePerspective(settings) if settings.mode == "perspective" else DomainVerifyService(settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(lambda stop: run_until_stopped(service, stop)))


if __name__ == "__main__":
    main()
