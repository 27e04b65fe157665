"""Settings of the member web portal (read from the environment like every other setting)."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlparse

from shared.config import ConfigError, setting

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclasses.dataclass(frozen=True)
class WebSettings:
    ca_certs_url: str = setting(
        "CACERT_CA_CERTS_URL",
        "http://127.0.0.1:8083",
        help="base URL serving the public CA certificates /class1.crt, /class3.crt and /class3-root.crt "
        "(the signer's status endpoint); fetched for the relying-party page and cached",
    )
    ca_certs_cache_seconds: float = setting(
        "CACERT_CA_CERTS_CACHE_SECONDS", 3600.0, help="how long fetched CA certificates are cached"
    )
    cookie_secure: str = setting(
        "CACERT_WEB_COOKIE_SECURE",
        "auto",
        help="true | false | auto: auto marks cookies Secure unless CACERT_PUBLIC_URL is plain http on loopback",
    )
    csrf_secret: str = setting(
        "CACERT_WEB_CSRF_SECRET",
        "",
        secret=True,
        help="HMAC key for CSRF tokens; every replica must have the same (required unless CACERT_PUBLIC_URL is "
             "plain http on loopback, the local system, where empty means random per process)",
    )

    def validate(self) -> None:
        if self.cookie_secure not in ("auto", "true", "false"):
            raise ConfigError(f"CACERT_WEB_COOKIE_SECURE must be auto, true or false, got {self.cookie_secure!r}")
        if not self.ca_certs_url.startswith(("http://", "https://")):
            raise ConfigError("CACERT_CA_CERTS_URL must start with http:// or https://")
        if self.ca_certs_cache_seconds <= 0:
            raise ConfigError("CACERT_CA_CERTS_CACHE_SECONDS must be positive")

    def check_shared_secrets(self, public_url: str) -> None:
        """Secrets every replica must share come from configuration, outside the local system: a CSRF key
        invented per process fails every form posted to another replica (two in three with three)."""
        if not self.csrf_secret and not _local(public_url):
            raise ConfigError("CACERT_WEB_CSRF_SECRET is required (nor CACERT_WEB_CSRF_SECRET_FILE) when "
                              "CACERT_PUBLIC_URL is not http on loopback: every replica must share it")

    def local_status_url(self, public_url: str) -> str | None:
        """The status service's address when this is the local system (its certificates name public CRL and
        OCSP addresses that do not serve there), else None: in a cluster it is an internal address."""
        return self.ca_certs_url.rstrip("/") if _local(public_url) else None

    def secure_cookies(self, public_url: str) -> bool:
        """Whether cookies carry the Secure flag (auto: off only for http:// on a loopback host)."""
        if self.cookie_secure != "auto":
            return self.cookie_secure == "true"
        return not _local(public_url)


def _local(public_url: str) -> bool:
    """Plain http on a loopback host: the local system, nothing else."""
    parsed = urlparse(public_url)
    return parsed.scheme == "http" and (parsed.hostname or "") in LOOPBACK_HOSTS
