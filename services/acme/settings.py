"""The ACME service's settings: where it is reached, who it is in CAA, how long things live, the limits."""

from __future__ import annotations

import dataclasses
from urllib.parse import urlsplit

from shared.acme_binding import PRIVATE_KEY_SETTING, BindingOpener, opener_from_setting
from shared.config import ConfigError, setting
from shared.settings import CommonSettings


@dataclasses.dataclass(frozen=True)
class AcmeSettings:
    common: CommonSettings
    public_url: str = setting("CACERT_ACME_PUBLIC_URL", "http://127.0.0.1:8089",
                              help="base URL of the ACME API as clients reach it; the directory is "
                                   "<base>/directory and every resource lives under the base's path (behind an "
                                   "ingress path such as https://ca.example.net/acme)")
    sealing_key: str = setting(PRIVATE_KEY_SETTING, "", secret=True,
                               help="the X25519 private key(s) (PEM) that open the HMAC keys registration seals "
                                    "to this service (shared/acme_binding.py); required to serve")
    terms_of_service_url: str = setting("CACERT_ACME_TERMS_URL", "http://127.0.0.1:8081/",
                                        help="the directory's meta.termsOfService")
    website_url: str = setting("CACERT_ACME_WEBSITE_URL", "http://127.0.0.1:8081/",
                               help="the directory's meta.website")
    caa_identities: list[str] = setting("CACERT_ACME_CAA_IDENTITIES", ["cacert.example"],
                                        help="the directory's meta.caaIdentities: this CA's issuer domain names in "
                                             "CAA records (the same list as CACERT_DOMAIN_VERIFY_CAA_IDENTITIES)")
    ca_certs_url: str = setting("CACERT_CA_CERTS_URL", "http://127.0.0.1:8083",
                                help="base URL serving /class1.crt and /class3-root.crt (the signer's status "
                                     "endpoint): the roots the certificate chains end with")
    ca_certs_cache_seconds: float = setting("CACERT_CA_CERTS_CACHE_SECONDS", 3600.0,
                                            help="how long fetched CA certificates are cached")
    nonce_seconds: int = setting("CACERT_ACME_NONCE_SECONDS", 600,
                                 help="how long an unused Replay-Nonce stays good")
    order_hours: int = setting("CACERT_ACME_ORDER_HOURS", 24 * 7,
                               help="how long a pending order (and its authorizations) lives")
    orders_per_account_per_hour: int = setting("CACERT_ACME_ORDERS_PER_ACCOUNT_PER_HOUR", 300,
                                               help="newOrder requests one account may make per hour "
                                                    "(rateLimited beyond)")
    orders_per_domain_per_hour: int = setting("CACERT_ACME_ORDERS_PER_DOMAIN_PER_HOUR", 300,
                                              help="newOrder requests naming one registered domain per hour, "
                                                   "over all accounts (rateLimited beyond)")
    accounts_per_binding: int = setting("CACERT_ACME_ACCOUNTS_PER_BINDING", 10,
                                        help="ACME accounts one External Account Binding may create")
    retry_after_seconds: int = setting("CACERT_ACME_RETRY_AFTER_SECONDS", 1,
                                       help="Retry-After on processing orders and challenges")

    def binding_opener(self) -> BindingOpener:
        return opener_from_setting(self.sealing_key)

    @property
    def base_path(self) -> str:
        """The path every resource lives under ('' at a host's root, '/acme' behind an ingress path)."""
        return urlsplit(self.public_url).path.rstrip("/")

    def url(self, path: str) -> str:
        return self.public_url.rstrip("/") + path

    def validate(self) -> None:
        parts = urlsplit(self.public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(f"CACERT_ACME_PUBLIC_URL must be an http(s) base URL, got {self.public_url!r}")
        for name, value in (("CACERT_ACME_NONCE_SECONDS", self.nonce_seconds),
                            ("CACERT_ACME_ORDER_HOURS", self.order_hours),
                            ("CACERT_ACME_ORDERS_PER_ACCOUNT_PER_HOUR", self.orders_per_account_per_hour),
                            ("CACERT_ACME_ORDERS_PER_DOMAIN_PER_HOUR", self.orders_per_domain_per_hour),
                            ("CACERT_ACME_ACCOUNTS_PER_BINDING", self.accounts_per_binding),
                            ("CACERT_ACME_RETRY_AFTER_SECONDS", self.retry_after_seconds)):
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if not self.caa_identities or any(not i or " " in i for i in self.caa_identities):
            raise ConfigError("CACERT_ACME_CAA_IDENTITIES must list this CA's issuer domain names")
        if not self.ca_certs_url.startswith(("http://", "https://")) or self.ca_certs_cache_seconds <= 0:
            raise ConfigError("CACERT_CA_CERTS_URL must be an http(s) URL and CACERT_CA_CERTS_CACHE_SECONDS positive")
        if self.sealing_key:
            self.binding_opener()
