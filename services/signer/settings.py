"""The signer's settings: where the CA lives, which URLs go into certificates, how it lints.

``SignerSettings`` configures the two serving modes; ``CeremonySettings`` the offline commands
(``init-ca``, ``renew-ocsp``), which need neither Kafka nor MongoDB."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from services.signer.ca.crl import DEFAULT_SHARDS, MAX_SHARDS
from services.signer.ca.hierarchy import key_path
from services.signer.ca.hsm import SOFTHSM2_MODULE, CAKeySource
from services.signer.ca.keys import ALGORITHMS
from services.signer.ca.urls import CAUrls
from shared.approvals import ApprovalKeyError, ApprovalVerifier
from shared.config import ConfigError, setting
from shared.settings import CommonSettings

PROFILES = ("server", "client", "codesign")
ISSUING, STATUS = "issuing", "status"
"""The two serving modes: the ``python -m services.signer`` command and ``SignerService(mode=...)``."""
_CA_DIR_HELP = "directory holding the CA certificates and encrypted keys"
_PASSPHRASE_HELP = "passphrase of the encrypted CA and OCSP keys"  # noqa: S105 (a help text)
_PUBLIC_URL_HELP = "base URL of the status endpoints, written into CRL DP and AIA"


_OCSP_PASSPHRASE_HELP = (
    "passphrase of the OCSP signers' keys, in the CA directory and the renewed ones stored in the signer "  # noqa: S105
    "database: the status mode needs only this one (default: CACERT_CA_PASSPHRASE)"
)


def _check_ca_files(passphrase: bytes, public_base_url: str) -> None:
    if not passphrase:
        raise ConfigError("CACERT_CA_PASSPHRASE must not be empty")
    _check_public_url(public_base_url)


def _check_public_url(public_base_url: str) -> None:
    try:
        CAUrls.under(public_base_url, "class1")
    except ValueError:
        raise ConfigError(
            f"CACERT_SIGNER_PUBLIC_URL must be an absolute http:// URL, got {public_base_url!r}"
        ) from None


@dataclasses.dataclass(frozen=True)
class CeremonySettings:
    """The offline commands (``init-ca``, ``add-issuing``, ``arl``, ``renew-ocsp``, ``self-sign-class3``): the
    CA directory, the root directory, their passphrase, the algorithm of new keys."""

    ca_dir: Path = setting("CACERT_CA_DIR", help=_CA_DIR_HELP)
    ca_passphrase: bytes = setting("CACERT_CA_PASSPHRASE", secret=True, help=_PASSPHRASE_HELP)
    ocsp_signer_passphrase: bytes = setting("CACERT_OCSP_SIGNER_PASSPHRASE", b"", secret=True,
                                            help=_OCSP_PASSPHRASE_HELP)
    ca_algorithm: str = setting(
        "CACERT_CA_ALGORITHM", ALGORITHMS[0], help=f"key algorithm for init-ca: {', '.join(ALGORITHMS)}"
    )
    public_base_url: str = setting("CACERT_SIGNER_PUBLIC_URL", "http://127.0.0.1:8083", help=_PUBLIC_URL_HELP)
    ca_root_dir: Path | None = setting(
        "CACERT_CA_ROOT_DIR", None,
        help="directory of the roots' keys, kept offline (default: <CACERT_CA_DIR>-roots beside the CA directory)",
    )

    def validate(self) -> None:
        if self.ca_algorithm not in ALGORITHMS:
            raise ConfigError(
                f"CACERT_CA_ALGORITHM must be one of {', '.join(ALGORITHMS)}, got {self.ca_algorithm!r}"
            )
        _check_ca_files(self.ca_passphrase, self.public_base_url)

    @property
    def root_dir(self) -> Path:
        return self.ca_root_dir or self.ca_dir.with_name(f"{self.ca_dir.name}-roots")

    @property
    def ocsp_key_passphrase(self) -> bytes:
        return self.ocsp_signer_passphrase or self.ca_passphrase

    def key_dir(self, label: str) -> Path | None:
        """Where the key of CA ``label`` is: the CA directory (issuing CAs, and the roots of a directory made
        before issue 18), else the root directory; None when neither has it."""
        for directory in (self.ca_dir, self.root_dir):
            if key_path(directory, label).exists():
                return directory
        return None


@dataclasses.dataclass(frozen=True)
class SignerSettings:
    common: CommonSettings
    ca_dir: Path = setting("CACERT_CA_DIR", help=_CA_DIR_HELP)
    ca_passphrase: bytes = setting(
        "CACERT_CA_PASSPHRASE", b"", secret=True,
        help=f"{_PASSPHRASE_HELP}; required in the issuing mode, not given to the status mode",
    )
    public_base_url: str = setting("CACERT_SIGNER_PUBLIC_URL", "http://127.0.0.1:8083", help=_PUBLIC_URL_HELP)
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
    crl_shards: int = setting(
        "CACERT_CRL_SHARDS",
        DEFAULT_SHARDS,
        help="CRL shards per issuing CA for new certificates, each at /<ca>/<n>.crl and named in the certificate's "
             "CRL Distribution Points (0: none, one CRL at /<ca>.crl); lowering it keeps publishing the old shards",
    )
    crl_refresh_before_hours: int = setting(
        "CACERT_CRL_REFRESH_BEFORE_HOURS", 6, help="regenerate a CRL this long before its nextUpdate"
    )
    ocsp_validity_hours: int = setting("CACERT_OCSP_VALIDITY_HOURS", 24)
    ocsp_signer_passphrase: bytes = setting(
        "CACERT_OCSP_SIGNER_PASSPHRASE", b"", secret=True, help=_OCSP_PASSPHRASE_HELP,
    )
    ocsp_signer_renew_before_days: int = setting(
        "CACERT_OCSP_SIGNER_RENEW_BEFORE_DAYS",
        45,
        help="the issuing mode re-issues a CA's OCSP signer this many days before it ends; readiness warns "
             "when one is inside this window and not renewed",
    )
    ocsp_signer_validity_days: int = setting(
        "CACERT_OCSP_SIGNER_VALIDITY_DAYS", 90, help="lifetime of a re-issued OCSP signer certificate"
    )
    ocsp_signer_check_seconds: float = setting(
        "CACERT_OCSP_SIGNER_CHECK_SECONDS",
        60.0,
        help="how often the issuing mode checks whether an OCSP signer is due and the status mode reloads them",
    )
    ra_public_keys: str = setting(
        "CACERT_SIGNER_RA_PUBLIC_KEYS",
        "",
        help="the RA's Ed25519 public key(s), PEM, concatenated (two during a key rollover): issuing mode "
             "issues and revokes only what one of them signed (required there; shared/approvals.py)",
    )

    ca_hsm_keys: str = setting(
        "CACERT_CA_HSM_KEYS",
        "",
        help="CA keys on a PKCS#11 token, white-space separated 'label=pkcs11:token=...;object=...' entries "
             "(RFC 7512; module-path and pin-source in the URI's query override the two settings below); a CA "
             "label not listed uses its encrypted key file in CACERT_CA_DIR",
    )
    pkcs11_module: Path = setting(
        "CACERT_PKCS11_MODULE", SOFTHSM2_MODULE, help="the PKCS#11 module (shared library) of the HSM"
    )
    pkcs11_pin: bytes = setting(
        "CACERT_PKCS11_PIN", b"", secret=True, help="user PIN of the token(s) holding CA keys (use _FILE)"
    )

    def ca_key_source(self) -> CAKeySource:
        """Where each CA key lives (the issuing mode's concern: the status mode holds no CA keys); ConfigError
        naming CACERT_CA_HSM_KEYS when an entry is malformed or has no PIN."""
        try:
            return CAKeySource.from_setting(self.ca_hsm_keys, module=self.pkcs11_module, pin=self.pkcs11_pin)
        except ValueError as exc:
            raise ConfigError(f"CACERT_CA_HSM_KEYS {exc}") from None

    def approval_verifier(self) -> ApprovalVerifier:
        """The RA keys the issuing mode trusts; ConfigError naming the variable when absent or unusable."""
        if not self.ra_public_keys.strip():
            raise ConfigError("CACERT_SIGNER_RA_PUBLIC_KEYS is required in issuing mode (nor "
                              "CACERT_SIGNER_RA_PUBLIC_KEYS_FILE): the signer acts only on approvals the RA signed")
        try:
            return ApprovalVerifier.from_pem(self.ra_public_keys)
        except ApprovalKeyError as exc:
            raise ConfigError(f"CACERT_SIGNER_RA_PUBLIC_KEYS {exc}") from None

    @property
    def ocsp_key_passphrase(self) -> bytes:
        """The passphrase of the OCSP signers' keys (the CA directory's and those stored in the database)."""
        return self.ocsp_signer_passphrase or self.ca_passphrase

    def check_passphrases(self, mode: str) -> None:
        """The issuing mode needs the CA passphrase unless its keys are on a token (a key file left without it
        is refused by name when the hierarchy loads); the status mode only the OCSP signers'."""
        if mode == ISSUING and not self.ca_passphrase and not self.ca_hsm_keys.strip():
            raise ConfigError("CACERT_CA_PASSPHRASE is required in issuing mode (nor CACERT_CA_PASSPHRASE_FILE)")
        if not self.ocsp_key_passphrase:
            raise ConfigError("CACERT_OCSP_SIGNER_PASSPHRASE (or CACERT_CA_PASSPHRASE) is required: it opens the "
                              "OCSP signers' keys")

    def validate(self) -> None:
        if self.ra_public_keys.strip():
            self.approval_verifier()
        unknown = [p for p in self.lint_profiles if p not in PROFILES]
        if unknown:
            raise ConfigError(f"CACERT_LINT_PROFILES has unknown profiles: {', '.join(unknown)}")
        if not 1 <= self.signing_workers <= 64:
            raise ConfigError(f"CACERT_SIGNER_WORKERS must be between 1 and 64, got {self.signing_workers}")
        _check_public_url(self.public_base_url)
        if not 1 <= self.ocsp_signer_validity_days <= 366:
            raise ConfigError(
                f"CACERT_OCSP_SIGNER_VALIDITY_DAYS must be between 1 and 366, got {self.ocsp_signer_validity_days}"
            )
        if not 0 < self.ocsp_signer_renew_before_days < self.ocsp_signer_validity_days:
            raise ConfigError(
                "CACERT_OCSP_SIGNER_RENEW_BEFORE_DAYS must be positive and smaller than "
                "CACERT_OCSP_SIGNER_VALIDITY_DAYS"
            )
        if self.ocsp_signer_check_seconds <= 0:
            raise ConfigError("CACERT_OCSP_SIGNER_CHECK_SECONDS must be positive")
        if not 0 <= self.crl_shards <= MAX_SHARDS:
            raise ConfigError(f"CACERT_CRL_SHARDS must be between 0 and {MAX_SHARDS}, got {self.crl_shards}")
        if self.crl_refresh_before_hours >= self.crl_validity_hours:
            raise ConfigError(
                "CACERT_CRL_REFRESH_BEFORE_HOURS must be smaller than CACERT_CRL_VALIDITY_HOURS"
            )
