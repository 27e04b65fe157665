"""Registration settings: the common ones plus links, token lifetimes, rate limits and validity."""

from __future__ import annotations

import dataclasses

from shared import acme_binding
from shared.acme_binding import BindingSealer
from shared.approvals import ApprovalKeyError, ApprovalSigner
from shared.config import ConfigError, setting
from shared.sealed_mail import PUBLIC_KEY_SETTING, MailSealer, sealer_from_setting
from shared.settings import CommonSettings


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """At most `limit` calls per `window_seconds` for one key."""

    limit: int
    window_seconds: int


@dataclasses.dataclass(frozen=True)
class RegistrationSettings:
    common: CommonSettings
    public_url: str = setting(
        "CACERT_PUBLIC_URL",
        "http://127.0.0.1:8081",
        help="base URL members reach this API at (used in confirmation links)",
    )
    session_hours: int = setting("CACERT_SESSION_HOURS", 12, help="lifetime of a login session")
    email_token_hours: int = setting(
        "CACERT_EMAIL_TOKEN_HOURS", 24, help="lifetime of an email confirmation link"
    )
    server_validity_days: int = setting(
        "CACERT_SERVER_VALIDITY_DAYS", 365, help="server certificates (max 397)"
    )
    client_validity_days: int = setting(
        "CACERT_CLIENT_VALIDITY_DAYS", 365, help="client (S/MIME) certificates"
    )
    codesign_validity_days: int = setting(
        "CACERT_CODESIGN_VALIDITY_DAYS", 365, help="code-signing certificates"
    )
    signup_per_address: int = setting(
        "CACERT_RATE_SIGNUP_PER_ADDRESS", 3, help="sign-ups per address per hour"
    )
    signup_per_client: int = setting(
        "CACERT_RATE_SIGNUP_PER_CLIENT", 30, help="sign-ups per client IP per hour"
    )
    login_per_account: int = setting(
        "CACERT_RATE_LOGIN_PER_ACCOUNT", 10,
        help="password-change and second-factor confirmation attempts per account per 15 minutes (logins "
             "themselves back off instead: CACERT_LOGIN_FREE_FAILURES)"
    )
    login_free_failures: int = setting(
        "CACERT_LOGIN_FREE_FAILURES", 5,
        help="failed logins for one address before each further attempt waits (1 s, doubling per failure)"
    )
    login_max_delay_seconds: int = setting(
        "CACERT_LOGIN_MAX_DELAY_SECONDS", 900, help="the longest wait between login attempts for one address"
    )
    login_per_client: int = setting(
        "CACERT_RATE_LOGIN_PER_CLIENT", 100, help="login attempts per client IP per 15 minutes"
    )
    confirm_per_client: int = setting(
        "CACERT_RATE_CONFIRM_PER_CLIENT", 30, help="email confirmation attempts per client IP per 15 minutes"
    )
    mail_per_account: int = setting(
        "CACERT_RATE_MAIL_PER_ACCOUNT", 10, help="mail-triggering calls per member per hour"
    )
    checks_per_account: int = setting("CACERT_RATE_CHECKS_PER_ACCOUNT", 60,
                                      help="DNS/website 'check now' requests per member per hour")
    mail_per_address: int = setting("CACERT_RATE_MAIL_PER_ADDRESS", 3, help="mails to one address per hour")
    requests_per_member: int = setting("CACERT_LIMIT_REQUESTS_PER_MEMBER", 100,
                                       help="certificate requests one member may submit per day (API and portal "
                                            "alike; 429 beyond)")
    requests_per_domain: int = setting("CACERT_LIMIT_REQUESTS_PER_DOMAIN", 300,
                                       help="certificate requests naming one registered domain (e.g. example.co.uk) "
                                            "per 7 days, whoever asks")
    domain_claims_per_member: int = setting("CACERT_LIMIT_DOMAIN_CLAIMS_PER_MEMBER", 30,
                                            help="domains one member may add per day")
    sweep_seconds: float = setting(
        "CACERT_SWEEP_SECONDS", 60.0,
        help="how often expired sessions, tokens and rate windows are deleted and ACME revocations that waited "
             "for their certificate are looked at again")
    max_body_bytes: int = setting("CACERT_MAX_BODY_BYTES", 256 * 1024, help="largest accepted request body")
    email_reuse_days: int = setting("CACERT_EMAIL_REUSE_DAYS", 30,
                                    help="how long a confirmed address counts for client (S/MIME) certificates "
                                         "before it must be confirmed again (S/MIME BR 4.2.1: 30 days)")
    ra_signing_key: str = setting("CACERT_RA_SIGNING_KEY", "", secret=True,
                                  help="the RA's Ed25519 private key (PEM) that signs every csr.approved, "
                                       "cert.revoke_requested and cert.key_compromised; the signer trusts its "
                                       "public key (required to serve; shared/approvals.py)")
    mail_sealing_public_key: str = setting(PUBLIC_KEY_SETTING, "",
                                           help="the notifier's X25519 public key (PEM): the links in mail commands "
                                                "are sealed to it (required to serve; shared/sealed_mail.py)")
    acme_sealing_public_key: str = setting(acme_binding.PUBLIC_KEY_SETTING, "",
                                           help="the ACME service's X25519 public key (PEM): the HMAC key of every "
                                                "ACME External Account Binding is sealed to it in "
                                                "acme.binding_created (required to serve; shared/acme_binding.py)")
    acme_directory_url: str = setting("CACERT_ACME_DIRECTORY_URL", "http://127.0.0.1:8089/directory",
                                      help="the ACME service's directory URL, shown to members with a new binding "
                                           "(certbot --server, cert-manager's server)")
    acme_bindings_per_member: int = setting("CACERT_ACME_BINDINGS_PER_MEMBER", 20,
                                            help="active (unrevoked) ACME External Account Bindings one member may "
                                                 "hold")

    def validate(self) -> None:
        if not 1 <= self.server_validity_days <= 397:
            raise ConfigError("CACERT_SERVER_VALIDITY_DAYS must be 1..397 (CA/B Forum BR 6.3.2)")
        for env, days in (
            ("CACERT_CLIENT_VALIDITY_DAYS", self.client_validity_days),
            ("CACERT_CODESIGN_VALIDITY_DAYS", self.codesign_validity_days),
        ):
            if not 1 <= days <= 825:
                raise ConfigError(f"{env} must be 1..825")
        if not self.public_url.startswith(("http://", "https://")):
            raise ConfigError("CACERT_PUBLIC_URL must start with http:// or https://")
        if self.email_reuse_days < 1:
            raise ConfigError(f"CACERT_EMAIL_REUSE_DAYS must be at least 1, got {self.email_reuse_days}")
        for env, value in (("CACERT_LIMIT_REQUESTS_PER_MEMBER", self.requests_per_member),
                           ("CACERT_LIMIT_REQUESTS_PER_DOMAIN", self.requests_per_domain),
                           ("CACERT_LIMIT_DOMAIN_CLAIMS_PER_MEMBER", self.domain_claims_per_member)):
            if value < 1:
                raise ConfigError(f"{env} must be at least 1, got {value}")
        if self.login_free_failures < 1:
            raise ConfigError(f"CACERT_LOGIN_FREE_FAILURES must be at least 1, got {self.login_free_failures}")
        if self.login_max_delay_seconds < 1:
            raise ConfigError(f"CACERT_LOGIN_MAX_DELAY_SECONDS must be at least 1, got {self.login_max_delay_seconds}")
        if self.ra_signing_key:
            self.approval_signer()
        if self.mail_sealing_public_key:
            self.mail_sealer()
        if self.acme_sealing_public_key:
            self.acme_sealer()
        if not self.acme_directory_url.startswith(("http://", "https://")):
            raise ConfigError("CACERT_ACME_DIRECTORY_URL must start with http:// or https://")
        if self.acme_bindings_per_member < 1:
            raise ConfigError("CACERT_ACME_BINDINGS_PER_MEMBER must be at least 1, "
                              f"got {self.acme_bindings_per_member}")

    def approval_signer(self) -> ApprovalSigner:
        """The RA's signing key; ConfigError (naming the variable, never the key) when absent or unusable."""
        if not self.ra_signing_key:
            raise ConfigError("CACERT_RA_SIGNING_KEY is required to serve (nor CACERT_RA_SIGNING_KEY_FILE): the "
                              "signer issues nothing the RA has not signed")
        try:
            return ApprovalSigner.from_pem(self.ra_signing_key)
        except ApprovalKeyError as exc:
            raise ConfigError(f"CACERT_RA_SIGNING_KEY {exc}") from None

    def mail_sealer(self) -> MailSealer:
        """Seals mail commands to the notifier; ConfigError (naming the variable) when absent or unusable."""
        return sealer_from_setting(self.mail_sealing_public_key)

    def acme_sealer(self) -> BindingSealer:
        """Seals binding HMAC keys to the ACME service; ConfigError (naming the variable) when absent or unusable."""
        return acme_binding.sealer_from_setting(self.acme_sealing_public_key)

    @property
    def rate_limits(self) -> dict[str, RateLimit]:
        """Named limits the API applies; keys are `<action>:<scope>`."""
        return {
            "signup:address": RateLimit(self.signup_per_address, 3600),
            "signup:client": RateLimit(self.signup_per_client, 3600),
            "login:account": RateLimit(self.login_per_account, 900),
            "login:client": RateLimit(self.login_per_client, 900),
            "confirm:client": RateLimit(self.confirm_per_client, 900),
            "mail:account": RateLimit(self.mail_per_account, 3600),
            "mail:address": RateLimit(self.mail_per_address, 3600),
            "check:account": RateLimit(self.checks_per_account, 3600),
            "requests:member": RateLimit(self.requests_per_member, 86400),
            "requests:domain": RateLimit(self.requests_per_domain, 7 * 86400),
            "domains:member": RateLimit(self.domain_claims_per_member, 86400),
        }
