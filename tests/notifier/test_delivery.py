"""SMTP answers to outcomes, back-off, and the notifier's settings."""

from __future__ import annotations

import aiosmtplib
import pytest

from services.notifier.sender import backoff
from services.notifier.settings import NotifierSettings, SmtpTls
from services.notifier.smtp_relay import Outcome, classify
from shared.config import ConfigError, load

BASE_ENV = {"CACERT_KAFKA_BOOTSTRAP": "127.0.0.1:19092", "CACERT_MONGO_URL": "mongodb://127.0.0.1:27018"}


def refused(code: int) -> aiosmtplib.SMTPRecipientsRefused:
    return aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(code, "no\r\nsuch user", "a@b.org")]
    )


@pytest.mark.parametrize(
    ("exc", "outcome", "config_problem"),
    [
        (refused(550), Outcome.PERMANENT, False),
        (refused(450), Outcome.TEMPORARY, False),
        (aiosmtplib.SMTPRecipientRefused(553, "bad mailbox", "a@b.org"), Outcome.PERMANENT, False),
        (aiosmtplib.SMTPDataError(554, "content rejected"), Outcome.PERMANENT, False),
        (aiosmtplib.SMTPDataError(451, "try later"), Outcome.TEMPORARY, False),
        (aiosmtplib.SMTPAuthenticationError(535, "bad credentials"), Outcome.TEMPORARY, True),
        (aiosmtplib.SMTPSenderRefused(550, "sender refused", "noreply@cacert.test"), Outcome.TEMPORARY, True),
        (aiosmtplib.SMTPConnectError("connection refused"), Outcome.TEMPORARY, False),
        (ConnectionRefusedError(111, "refused"), Outcome.TEMPORARY, False),
        (aiosmtplib.SMTPServerDisconnected("gone"), Outcome.TEMPORARY, False),
        (aiosmtplib.SMTPReadTimeoutError("slow"), Outcome.TEMPORARY, False),
    ],
)
def test_classification(exc: BaseException, outcome: Outcome, config_problem: bool) -> None:
    result = classify(exc)
    assert result.outcome is outcome and result.config_problem is config_problem
    assert "\r" not in result.detail and "\n" not in result.detail


def test_backoff_doubles_to_the_cap_with_jitter() -> None:
    assert [round(backoff(n, 1, 60, jitter=0)) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert all(0.9 <= backoff(1, 1, 60) <= 1.1 for _ in range(100))


def test_settings_defaults_and_parsing() -> None:
    s = load(
        NotifierSettings,
        {
            **BASE_ENV,
            "CACERT_SMTP_TLS": "starttls",
            "CACERT_SMTP_PORT": "587",
            "CACERT_NOTIFIER_REMINDER_DAYS": "30, 7,1",
        },
    )
    assert s.tls is SmtpTls.STARTTLS and s.smtp_port == 587 and s.reminder_days == (30, 7, 1)
    default = load(NotifierSettings, BASE_ENV)
    assert default.reminder_days == (14, 3) and default.tls is SmtpTls.NONE
    assert default.account_url == ""  # no footer link, no Renew link


def test_registration_url_accepts_http_and_https_bases() -> None:
    for url in ("https://ra.cacert.example", "http://127.0.0.1:8081", "https://cacert.example/ra/"):
        assert load(NotifierSettings, {**BASE_ENV, "CACERT_NOTIFIER_ACCOUNT_URL": url}).account_url == url


@pytest.mark.parametrize(
    "env",
    [
        {"CACERT_SMTP_TLS": "ssl"},
        {"CACERT_SMTP_USERNAME": "u"},
        {"CACERT_NOTIFIER_REMINDER_DAYS": "14,0"},
        {"CACERT_MAIL_FROM": "not an address"},
        {"CACERT_NOTIFIER_LEASE_SECONDS": "10", "CACERT_SMTP_TIMEOUT_SECONDS": "30"},
        {"CACERT_NOTIFIER_ACCOUNT_URL": "ra.cacert.example"},
        {"CACERT_NOTIFIER_ACCOUNT_URL": "ftp://ra.cacert.example"},
        {"CACERT_NOTIFIER_ACCOUNT_URL": "https://"},
        {"CACERT_NOTIFIER_ACCOUNT_URL": "https://ra.cacert.example/?next=/account"},
        {"CACERT_NOTIFIER_ACCOUNT_URL": "http://[::1"},
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as bad:
        load(NotifierSettings, {**BASE_ENV, **env})
    assert str(bad.value).startswith("CACERT_")


def test_password_may_come_from_a_mounted_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    s = load(
        NotifierSettings, {**BASE_ENV, "CACERT_SMTP_USERNAME": "u", "CACERT_SMTP_PASSWORD_FILE": str(secret)}
    )
    assert s.smtp_password == "s3cret"


@pytest.mark.parametrize(
    ("tls", "use_tls", "start_tls"),
    [("none", False, False), ("starttls", False, True), ("implicit", True, False)],
)
async def test_relay_passes_tls_and_auth_settings_to_aiosmtplib(
    monkeypatch: pytest.MonkeyPatch, tls: str, use_tls: bool, start_tls: bool
) -> None:
    from email.message import EmailMessage

    from services.notifier import smtp_relay

    seen: dict[str, object] = {}

    async def fake_send(message: EmailMessage, **kwargs: object) -> None:
        seen.update(kwargs)

    monkeypatch.setattr(smtp_relay.aiosmtplib, "send", fake_send)
    env = {
        **BASE_ENV,
        "CACERT_SMTP_TLS": tls,
        "CACERT_SMTP_HOST": "smtp.example.org",
        "CACERT_SMTP_PORT": "587",
        "CACERT_SMTP_USERNAME": "notifier",
        "CACERT_SMTP_PASSWORD": "pw",
    }
    relay = smtp_relay.SmtpRelay(load(NotifierSettings, env))
    result = await relay.deliver(EmailMessage(), sender="noreply@cacert.test", recipient="ada@example.org")
    assert result.outcome is Outcome.SENT
    assert seen["use_tls"] is use_tls and seen["start_tls"] is start_tls  # never opportunistic (None)
    assert (seen["hostname"], seen["port"], seen["username"], seen["password"]) == (
        "smtp.example.org",
        587,
        "notifier",
        "pw",
    )
    assert seen["recipients"] == ["ada@example.org"] and seen["sender"] == "noreply@cacert.test"
    assert (seen["tls_context"] is None) is (tls == "none")
