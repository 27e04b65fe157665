"""SmtpRelay: hands one message to the configured SMTP server and says how it went.

The answer is one of three outcomes, because the queue treats them
differently: *sent*; *temporary* (retry this mail later: connection refused,
timeouts, 4xx, and also server-side refusals that are our configuration's
fault, like failed AUTH or a refused sender, since failing every member's
mail permanently for an operator's typo would lose them all); *permanent*
(this mail can never be delivered: the server refused this recipient or this
content with 5xx).
"""

from __future__ import annotations

import dataclasses
import enum
import ssl
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib

from services.notifier.settings import NotifierSettings, SmtpTls


class Outcome(enum.StrEnum):
    SENT = "sent"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


@dataclasses.dataclass(frozen=True)
class DeliveryResult:
    outcome: Outcome
    detail: str = ""
    config_problem: bool = False  # the relay refused us, not the mail: worth an operator's attention


class Transport(Protocol):
    async def deliver(self, message: EmailMessage, *, sender: str, recipient: str) -> DeliveryResult: ...


def _reply(code: int, message: str) -> str:
    return f"{code} {' '.join(message.split())}"[:500]


def classify(exc: BaseException) -> DeliveryResult:
    """Map an aiosmtplib (or network) exception to an outcome."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        detail = "; ".join(_reply(r.code, r.message) for r in exc.recipients) or "recipient refused"
        permanent = bool(codes) and all(500 <= c < 600 for c in codes)
        return DeliveryResult(Outcome.PERMANENT if permanent else Outcome.TEMPORARY, detail)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        outcome = Outcome.PERMANENT if 500 <= exc.code < 600 else Outcome.TEMPORARY
        return DeliveryResult(outcome, _reply(exc.code, exc.message))
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # Greeting, HELO, AUTH, MAIL FROM: the relay refuses *us*; every mail would fail alike.
        return DeliveryResult(Outcome.TEMPORARY, f"{type(exc).__name__}: {_reply(exc.code, exc.message)}",
                              config_problem=True)
    if isinstance(exc, aiosmtplib.SMTPNotSupported | ssl.SSLError):
        return DeliveryResult(Outcome.TEMPORARY, f"{type(exc).__name__}: {exc}", config_problem=True)
    return DeliveryResult(Outcome.TEMPORARY, f"{type(exc).__name__}: {exc}"[:500])


class SmtpRelay:
    def __init__(self, settings: NotifierSettings) -> None:
        self._settings = settings
        self._tls_context: ssl.SSLContext | None = None
        if settings.tls is not SmtpTls.NONE:
            self._tls_context = ssl.create_default_context(cafile=settings.smtp_ca_file or None)

    async def deliver(self, message: EmailMessage, *, sender: str, recipient: str) -> DeliveryResult:
        s = self._settings
        try:
            await aiosmtplib.send(
                message, sender=sender, recipients=[recipient],
                hostname=s.smtp_host, port=s.smtp_port, timeout=s.smtp_timeout,
                use_tls=s.tls is SmtpTls.IMPLICIT,
                start_tls=s.tls is SmtpTls.STARTTLS,  # False, not None: never upgrade opportunistically
                tls_context=self._tls_context,
                username=s.smtp_username or None, password=s.smtp_password or None,
            )
        except Exception as exc:
            return classify(exc)
        return DeliveryResult(Outcome.SENT)
