"""notifier's settings: the SMTP relay, the sender address, queue pacing and reminder thresholds."""

from __future__ import annotations

import dataclasses
import enum
from urllib.parse import urlsplit

from services.notifier.addresses import InvalidAddress, parse_mailbox
from shared.config import ConfigError, setting
from shared.sealed_mail import PRIVATE_KEY_SETTING, MailOpener, opener_from_setting
from shared.settings import CommonSettings


class SmtpTls(enum.StrEnum):
    """How the connection to the relay is protected."""

    NONE = "none"  # plain SMTP: only for a relay on loopback or inside the pod network
    STARTTLS = "starttls"  # RFC 3207 upgrade, usually port 587
    IMPLICIT = "implicit"  # TLS from the first byte (SMTPS), usually port 465


@dataclasses.dataclass(frozen=True)
class NotifierSettings:
    common: CommonSettings
    smtp_host: str = setting("CACERT_SMTP_HOST", "127.0.0.1", help="SMTP relay host")
    smtp_port: int = setting("CACERT_SMTP_PORT", 2525, help="SMTP relay port")
    smtp_tls: str = setting("CACERT_SMTP_TLS", "none", help="none | starttls | implicit")
    smtp_username: str = setting("CACERT_SMTP_USERNAME", "", help="SMTP AUTH user (empty: no AUTH)")
    smtp_password: str = setting("CACERT_SMTP_PASSWORD", "", secret=True, help="SMTP AUTH password")
    smtp_ca_file: str = setting("CACERT_SMTP_CA_FILE", "",
                                help="CA bundle to verify the relay's certificate (empty: system store)")
    smtp_timeout: float = setting("CACERT_SMTP_TIMEOUT_SECONDS", 30.0, help="per SMTP session")
    mail_from: str = setting("CACERT_MAIL_FROM", "CAcert Community CA <noreply@cacert.test>",
                             help="sender address, optionally with a display name")
    reminder_days: tuple[int, ...] = setting("CACERT_NOTIFIER_REMINDER_DAYS", (14, 3),
                                       help="days before expiry at which members are reminded, e.g. 14,3")
    reminder_check_seconds: float = setting("CACERT_NOTIFIER_REMINDER_CHECK_SECONDS", 3600.0,
                                            help="how often the expiry schedule is checked")
    poll_seconds: float = setting("CACERT_NOTIFIER_POLL_SECONDS", 1.0,
                                  help="how often the sender looks for mails that became due")
    concurrency: int = setting("CACERT_NOTIFIER_CONCURRENCY", 4, help="mails in flight at once")
    retry_first_seconds: float = setting("CACERT_NOTIFIER_RETRY_FIRST_SECONDS", 30.0,
                                         help="first back-off after a temporary failure (doubles each time)")
    retry_max_seconds: float = setting("CACERT_NOTIFIER_RETRY_MAX_SECONDS", 3600.0, help="back-off cap")
    give_up_hours: float = setting("CACERT_NOTIFIER_GIVE_UP_HOURS", 120.0,
                                   help="a mail still undeliverable this long after it was queued is "
                                        "reported as mail.failed (permanent=false), like an MTA bounce")
    lease_seconds: float = setting("CACERT_NOTIFIER_LEASE_SECONDS", 300.0,
                                   help="a mail left 'sending' longer than this (crashed replica) is retried")
    account_url: str = setting("CACERT_NOTIFIER_ACCOUNT_URL", "",
                               help="registration's public URL (its CACERT_PUBLIC_URL): named in the mail "
                                    "footer; expiry reminders link to <it>/account/certificates/<serial>/renew "
                                    "(empty: neither)")
    sealing_key: str = setting(PRIVATE_KEY_SETTING, "", secret=True,
                               help="the notifier's X25519 private key(s) (PEM; two concatenated during a "
                                    "rollover) that open the links sealed into mail commands (required to serve; "
                                    "shared/sealed_mail.py)")

    def mail_opener(self) -> MailOpener:
        """Opens what producers sealed; ConfigError (naming the variable, never the key) when absent or unusable."""
        return opener_from_setting(self.sealing_key)

    @property
    def tls(self) -> SmtpTls:
        return SmtpTls(self.smtp_tls)

    def validate(self) -> None:
        if self.smtp_tls not in {t.value for t in SmtpTls}:
            raise ConfigError(f"CACERT_SMTP_TLS must be none, starttls or implicit, got {self.smtp_tls!r}")
        if not 0 < self.smtp_port <= 65535:
            raise ConfigError(f"CACERT_SMTP_PORT must be between 1 and 65535, got {self.smtp_port}")
        if bool(self.smtp_username) != bool(self.smtp_password):
            raise ConfigError("CACERT_SMTP_USERNAME and CACERT_SMTP_PASSWORD must be set together")
        if not self.reminder_days or any(d <= 0 for d in self.reminder_days):
            raise ConfigError(f"CACERT_NOTIFIER_REMINDER_DAYS must list positive day counts, "
                              f"got {self.reminder_days}")
        for name, value in (("CACERT_NOTIFIER_POLL_SECONDS", self.poll_seconds),
                            ("CACERT_NOTIFIER_REMINDER_CHECK_SECONDS", self.reminder_check_seconds),
                            ("CACERT_NOTIFIER_RETRY_FIRST_SECONDS", self.retry_first_seconds),
                            ("CACERT_NOTIFIER_RETRY_MAX_SECONDS", self.retry_max_seconds),
                            ("CACERT_NOTIFIER_GIVE_UP_HOURS", self.give_up_hours),
                            ("CACERT_NOTIFIER_LEASE_SECONDS", self.lease_seconds),
                            ("CACERT_SMTP_TIMEOUT_SECONDS", self.smtp_timeout)):
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.concurrency <= 0:
            raise ConfigError(f"CACERT_NOTIFIER_CONCURRENCY must be positive, got {self.concurrency}")
        if self.lease_seconds <= self.smtp_timeout:
            raise ConfigError("CACERT_NOTIFIER_LEASE_SECONDS must exceed CACERT_SMTP_TIMEOUT_SECONDS, "
                              "or a slow send would be retried while still in flight")
        if self.account_url:
            try:
                url = urlsplit(self.account_url)
                bad = url.scheme not in ("http", "https") or not url.hostname or bool(url.query or url.fragment)
            except ValueError:  # e.g. an unclosed IPv6 bracket
                bad = True
            if bad:
                raise ConfigError("CACERT_NOTIFIER_ACCOUNT_URL must be registration's public http(s) URL "
                                  f"without query or fragment, got {self.account_url!r}")
        if self.sealing_key:
            self.mail_opener()
        try:
            parse_mailbox(self.mail_from)
        except InvalidAddress as exc:
            raise ConfigError(f"CACERT_MAIL_FROM is not a valid address: {exc}") from None
