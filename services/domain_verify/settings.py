"""domain_verify's settings: where links point, how long challenges live, how attempts are limited."""

from __future__ import annotations

import dataclasses

from shared.config import ConfigError, setting
from shared.settings import CommonSettings

# Baseline Requirements 3.2.2.4.4 lets a mailed random value be used for at most 30 days.
MAX_CHALLENGE_HOURS = 30 * 24


@dataclasses.dataclass(frozen=True)
class DomainVerifySettings:
    common: CommonSettings
    public_url: str = setting("CACERT_DOMAIN_VERIFY_PUBLIC_URL", "http://127.0.0.1:8082",
                              help="base URL of the confirm endpoint as members reach it "
                                   "(put into mailed links)")
    challenge_hours: float = setting("CACERT_DOMAIN_VERIFY_CHALLENGE_HOURS", 72.0,
                                     help="how long a mailed link stays usable (at most 720 = 30 days)")
    validity_days: int = setting("CACERT_DOMAIN_VERIFY_VALIDITY_DAYS", 398,
                                 help="how long a verification counts before the domain must be re-verified")
    sweep_seconds: float = setting("CACERT_DOMAIN_VERIFY_SWEEP_SECONDS", 60.0,
                                   help="how often expired challenges are swept and announced as failed")
    rate_limit_attempts: int = setting("CACERT_DOMAIN_VERIFY_RATE_LIMIT_ATTEMPTS", 20,
                                       help="confirm-link requests allowed per client address per window")
    rate_limit_window_seconds: float = setting("CACERT_DOMAIN_VERIFY_RATE_LIMIT_WINDOW_SECONDS", 60.0)
    trust_forwarded_for: bool = setting("CACERT_DOMAIN_VERIFY_TRUST_FORWARDED_FOR", False,
                                        help="rate-limit by the last X-Forwarded-For address, the one the "
                                             "proxy saw (only behind exactly one proxy that sets it)")

    def validate(self) -> None:
        if not 0 < self.challenge_hours <= MAX_CHALLENGE_HOURS:
            raise ConfigError(f"CACERT_DOMAIN_VERIFY_CHALLENGE_HOURS must be above 0 and at most "
                              f"{MAX_CHALLENGE_HOURS} (30 days, Baseline Requirements 3.2.2.4.4), "
                              f"got {self.challenge_hours}")
        if self.validity_days <= 0:
            raise ConfigError(f"CACERT_DOMAIN_VERIFY_VALIDITY_DAYS must be positive, "
                              f"got {self.validity_days}")
        if self.sweep_seconds <= 0:
            raise ConfigError(f"CACERT_DOMAIN_VERIFY_SWEEP_SECONDS must be positive, "
                              f"got {self.sweep_seconds}")
        if self.rate_limit_attempts <= 0 or self.rate_limit_window_seconds <= 0:
            raise ConfigError("CACERT_DOMAIN_VERIFY_RATE_LIMIT_ATTEMPTS and _WINDOW_SECONDS must be positive")
        if not self.public_url.startswith(("https://", "http://")):
            raise ConfigError(f"CACERT_DOMAIN_VERIFY_PUBLIC_URL must be an http(s) URL, "
                              f"got {self.public_url!r}")
