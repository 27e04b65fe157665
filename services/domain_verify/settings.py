"""domain_verify's settings: where links point, how long challenges live, how attempts are limited,
which resolver validates, which perspectives corroborate, and who this CA is in CAA records."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping

from shared.config import ConfigError, setting
from shared.sealed_mail import PUBLIC_KEY_SETTING, MailSealer, sealer_from_setting
from shared.settings import CommonSettings

# Baseline Requirements 3.2.2.4.4 lets a mailed random value be used for at most 30 days.
MAX_CHALLENGE_HOURS = 30 * 24
MODES = ("primary", "perspective")
PERSPECTIVE_NAME = re.compile(r"^[a-z0-9-]{1,40}$")


def _hostport(raw: str, what: str) -> tuple[str, int]:
    host, sep, port = raw.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what} entries must be host:port, got {raw!r}")
    return host.strip("[]"), int(port)


@dataclasses.dataclass(frozen=True)
class DomainVerifySettings:
    common: CommonSettings
    public_url: str = setting("CACERT_DOMAIN_VERIFY_PUBLIC_URL", "http://127.0.0.1:8082",
                              help="base URL of the confirm endpoint as members reach it "
                                   "(put into mailed links)")
    challenge_hours: float = setting("CACERT_DOMAIN_VERIFY_CHALLENGE_HOURS", 72.0,
                                     help="how long a mailed link stays usable (at most 720 = 30 days)")
    validity_days: int = setting("CACERT_DOMAIN_VERIFY_VALIDITY_DAYS", 0,
                                 help="how long a validation may be reused before the domain must be re-verified "
                                      "(0: the BR 4.2.1 schedule of SC-081: 398 days, 200 from 2026-03-15, 100 "
                                      "from 2027-03-15, 10 from 2029-03-15)")
    sweep_seconds: float = setting("CACERT_DOMAIN_VERIFY_SWEEP_SECONDS", 60.0,
                                   help="how often expired challenges are swept and announced as failed")
    rate_limit_attempts: int = setting("CACERT_DOMAIN_VERIFY_RATE_LIMIT_ATTEMPTS", 20,
                                       help="confirm-link requests allowed per client address per window")
    rate_limit_window_seconds: float = setting("CACERT_DOMAIN_VERIFY_RATE_LIMIT_WINDOW_SECONDS", 60.0)
    mail_sealing_public_key: str = setting(PUBLIC_KEY_SETTING, "",
                                           help="the notifier's X25519 public key (PEM): confirm links in mail "
                                                "commands are sealed to it (required to serve in primary mode; "
                                                "shared/sealed_mail.py)")

    mode: str = setting("CACERT_DOMAIN_VERIFY_MODE", "primary",
                        help="primary (the validation authority) or perspective (a remote network perspective "
                             "that repeats the primary's checks, BR 3.2.2.9)")
    perspective_name: str = setting("CACERT_DOMAIN_VERIFY_PERSPECTIVE_NAME", "",
                                    help="perspective mode: this perspective's name (a-z, 0-9, -), e.g. eu-west")
    perspectives: list[str] = setting("CACERT_DOMAIN_VERIFY_PERSPECTIVES", [],
                                      help="primary mode: the remote perspectives that must corroborate each "
                                           "check (comma list; empty: the primary decides alone)")
    perspective_timeout_seconds: float = setting("CACERT_DOMAIN_VERIFY_PERSPECTIVE_TIMEOUT_SECONDS", 30.0,
                                                 help="how long the primary waits for remote answers; a "
                                                      "perspective silent that long counts as disagreeing")
    max_disagreements: int = setting("CACERT_DOMAIN_VERIFY_MAX_DISAGREEMENTS", -1,
                                     help="remote perspectives allowed not to corroborate (-1: the BR 3.2.2.9 "
                                          "table: 1 for 2-5 remote perspectives, 2 for 6 or more)")
    resolvers: list[str] = setting("CACERT_DNS_RESOLVER", ["127.0.0.1:53"],
                                   help="the DNSSEC-validating resolver(s) this process asks, host:port, comma "
                                        "separated (production: a validating resolver anchored at the IANA root)")
    dns_source_address: str = setting("CACERT_DNS_SOURCE_ADDRESS", "",
                                      help="optional local address DNS queries are sent from")
    dns_timeout_seconds: float = setting("CACERT_DNS_TIMEOUT_SECONDS", 5.0)
    caa_identities: list[str] = setting("CACERT_DOMAIN_VERIFY_CAA_IDENTITIES", ["cacert.example"],
                                        help="the issuer domain names of this CA in CAA issue/issuewild "
                                             "records (BR 4.2 / CP: the first is the one published)")
    http_port: int = setting("CACERT_DOMAIN_VERIFY_HTTP_PORT", 80,
                             help="port of website and http-01 fetches (80 in production; dev/test only may "
                                  "move it)")
    http_allow_private: list[str] = setting("CACERT_DOMAIN_VERIFY_HTTP_ALLOW_PRIVATE", [],
                                            help="CIDRs that website/http-01 fetches may reach although private "
                                                 "or loopback (dev/test only; empty in production)")
    http_timeout_seconds: float = setting("CACERT_DOMAIN_VERIFY_HTTP_TIMEOUT_SECONDS", 10.0)

    def mail_sealer(self) -> MailSealer:
        """Seals challenge mails to the notifier; ConfigError (naming the variable) when absent or unusable."""
        return sealer_from_setting(self.mail_sealing_public_key)

    @property
    def nameservers(self) -> list[tuple[str, int]]:
        return [_hostport(r, "CACERT_DNS_RESOLVER") for r in self.resolvers]

    @property
    def private_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(c, strict=False) for c in self.http_allow_private]

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"CACERT_DOMAIN_VERIFY_MODE must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "perspective" and not PERSPECTIVE_NAME.match(self.perspective_name):
            raise ConfigError("CACERT_DOMAIN_VERIFY_PERSPECTIVE_NAME must be set in perspective mode "
                              f"(a-z, 0-9, -; at most 40), got {self.perspective_name!r}")
        for name in self.perspectives:
            if not PERSPECTIVE_NAME.match(name):
                raise ConfigError(f"CACERT_DOMAIN_VERIFY_PERSPECTIVES: invalid perspective name {name!r}")
        if len(set(self.perspectives)) != len(self.perspectives):
            raise ConfigError("CACERT_DOMAIN_VERIFY_PERSPECTIVES names a perspective twice")
        if self.max_disagreements < -1 or self.max_disagreements >= max(len(self.perspectives), 1):
            raise ConfigError("CACERT_DOMAIN_VERIFY_MAX_DISAGREEMENTS must be -1 (the BR table) or from 0 to "
                              "one less than the number of perspectives, got "
                              f"{self.max_disagreements}")
        if self.perspective_timeout_seconds <= 0 or self.dns_timeout_seconds <= 0 or self.http_timeout_seconds <= 0:
            raise ConfigError("CACERT_DOMAIN_VERIFY_PERSPECTIVE_TIMEOUT_SECONDS, CACERT_DNS_TIMEOUT_SECONDS and "
                              "CACERT_DOMAIN_VERIFY_HTTP_TIMEOUT_SECONDS must be positive")
        if not self.resolvers:
            raise ConfigError("CACERT_DNS_RESOLVER must name at least one resolver (host:port)")
        _ = self.nameservers
        for cidr in self.http_allow_private:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ConfigError(f"CACERT_DOMAIN_VERIFY_HTTP_ALLOW_PRIVATE: {cidr!r} is not a CIDR") from None
        if not 0 < self.http_port < 65536:
            raise ConfigError(f"CACERT_DOMAIN_VERIFY_HTTP_PORT must be a port, got {self.http_port}")
        if not self.caa_identities or any(not i or " " in i for i in self.caa_identities):
            raise ConfigError("CACERT_DOMAIN_VERIFY_CAA_IDENTITIES must list this CA's issuer domain names")
        if not 0 < self.challenge_hours <= MAX_CHALLENGE_HOURS:
            raise ConfigError(f"CACERT_DOMAIN_VERIFY_CHALLENGE_HOURS must be above 0 and at most "
                              f"{MAX_CHALLENGE_HOURS} (30 days, Baseline Requirements 3.2.2.4.4), "
                              f"got {self.challenge_hours}")
        if self.validity_days < 0:
            raise ConfigError(f"CACERT_DOMAIN_VERIFY_VALIDITY_DAYS must be 0 (the BR schedule) or positive, "
                              f"got {self.validity_days}")
        if self.sweep_seconds <= 0:
            raise ConfigError(f"CACERT_DOMAIN_VERIFY_SWEEP_SECONDS must be positive, "
                              f"got {self.sweep_seconds}")
        if self.rate_limit_attempts <= 0 or self.rate_limit_window_seconds <= 0:
            raise ConfigError("CACERT_DOMAIN_VERIFY_RATE_LIMIT_ATTEMPTS and _WINDOW_SECONDS must be positive")
        if self.mail_sealing_public_key:
            self.mail_sealer()
        if not self.public_url.startswith(("https://", "http://")):
            raise ConfigError(f"CACERT_DOMAIN_VERIFY_PUBLIC_URL must be an http(s) URL, "
                              f"got {self.public_url!r}")


def settings_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment DomainVerifySettings are read from. A remote perspective stores nothing, so it
    needs, and in Kubernetes is given, no MongoDB URL (deploy/k8s/base/perspectives/)."""
    env = dict(environ)
    if env.get("CACERT_DOMAIN_VERIFY_MODE") == "perspective" and "CACERT_MONGO_URL_FILE" not in env:
        env.setdefault("CACERT_MONGO_URL", "")
    return env
