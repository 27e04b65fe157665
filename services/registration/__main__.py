"""`python -m services.registration` runs the service; `... create-admin` / `... create-assurer --email ...`
bootstrap the support staff and the founding Assurers."""

from __future__ import annotations

import os
import sys

from services.registration.service import NAME, RegistrationService
from services.registration.settings import RegistrationSettings
from shared.config import ConfigError, load_or_exit
from shared.logging import configure
from shared.service import run, run_until_stopped

DEFAULT_PORT = "8081"  # the member API's port on the local stack (docs/architecture.md)


def main() -> None:
    if sys.argv[1:2] in (["create-admin"], ["create-assurer"]):
        from services.registration.bootstrap import main as create_account

        sys.exit(create_account(sys.argv[2:], sys.argv[1]))
    settings = load_or_exit(RegistrationSettings, {"CACERT_HTTP_PORT": DEFAULT_PORT, **os.environ})
    configure(NAME, settings.common.log_level)
    try:
        service = RegistrationService(settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(lambda stop: run_until_stopped(service, stop)))


if __name__ == "__main__":
    main()
