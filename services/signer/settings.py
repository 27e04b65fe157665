"""The signer's settings: where the CA lives, which URLs go into certificates, how it lints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from shared.config import ConfigError, setting
from shared.settings import CommonSettings

ALGORITHMS = ("rsa4096", "rsa2048", "p256", "p384")
PROFILES = ("server", "client", "codesign")


@dataclasses.dataclass(frozen=True)
class SignerSettings:
    common: CommonSettings
    ca_dir: Path = setting("CACERT_CA_DIR", help="directory holding the CA certificates and encrypted keys")
    ca_passphrase: bytes = setting(
        "CACERT_CA_PASSPHRASE", secret=True, help="passphrase of the encrypted CA and OCSP keys"
    )
    ca_algorithm: str = setting(
        "CACERT_CA_ALGORITHM", "rsa4096", help="key algorithm for init-ca: rsa4096, rsa2048, p256, p384"
    )
    public_base_url: str = setting(
        "CACERT_SIGNER_PUBLIC_URL",
        "http://127.0.0.1:8083",
        help="base URL of the status endpoints, written into CRL DP and AIA",
    )
    lint_profiles: list[str] = setting(
        "CACERT_LINT_PROFILES",
        ["server", "client", "codesign"],
        help="profiles linted with pkilint before signing (comma list; empty: none)",
    )
    signing_workers: int = setting(
        "CACERT_SIGNER_WORKERS",
        1,
        help="signing processes per replica (CSR checks, lint, signatures); up to the cores it may use",
    )
    crl_validity_hours: int = setting("CACERT_CRL_VALIDITY_HOURS", 24)
    crl_refresh_before_hours: int = setting(
        "CACERT_CRL_REFRESH_BEFORE_HOURS", 6, help="regenerate a CRL this long before its nextUpdate"
    )
    ocsp_validity_hours: int = setting("CACERT_OCSP_VALIDITY_HOURS", 24)

    def validate(self) -> None:
        if self.ca_algorithm not in ALGORITHMS:
            raise ConfigError(
                f"CACERT_CA_ALGORITHM must be one of {', '.join(ALGORITHMS)}, got {self.ca_algorithm!r}"
            )
        unknown = [p for p in self.lint_profiles if p not in PROFILES]
        if unknown:
            raise ConfigError(f"CACERT_LINT_PROFILES has unknown profiles: {', '.join(unknown)}")
        if not 1 <= self.signing_workers <= 64:
            raise ConfigError(f"CACERT_SIGNER_WORKERS must be between 1 and 64, got {self.signing_workers}")
        if not self.ca_passphrase:
            raise ConfigError("CACERT_CA_PASSPHRASE must not be empty")
        if self.crl_refresh_before_hours >= self.crl_validity_hours:
            raise ConfigError(
                "CACERT_CRL_REFRESH_BEFORE_HOURS must be smaller than CACERT_CRL_VALIDITY_HOURS"
            )
