"""Mail content plus addresses to an RFC 5322 message, built only through `email.message.EmailMessage`.

No header is ever assembled from strings: addresses are `Address` objects
(from `addresses.mailbox`), the subject was cleaned of CR/LF, and the
`email` package encodes non-ASCII text. The Message-ID derives from the
outgoing mail's id, so if a crash makes us send a mail twice (see the
README's delivery semantics) both copies carry the same Message-ID and mail
clients can recognise the duplicate.
"""

from __future__ import annotations

import email.utils
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage

from services.notifier.addresses import subject_text
from services.notifier.rendering import MailContent


def _transfer_encoding(text: str) -> str:
    """7bit when it is ASCII, else quoted-printable: the message stays 7-bit clean, so it never
    depends on the relay offering 8BITMIME."""
    return "7bit" if text.isascii() else "quoted-printable"


def message_id(mail_id: str, sender: Address) -> str:
    safe = "".join(ch for ch in mail_id if ch.isalnum() or ch in "-._") or "mail"
    return f"<{safe}@{sender.domain}>"


def build_message(content: MailContent, *, sender: Address, recipient: Address, mail_id: str,
                  date: datetime) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject_text(content.subject)
    message["Date"] = email.utils.format_datetime(date)
    message["Message-ID"] = message_id(mail_id, sender)
    # RFC 3834: an automatic message; well-behaved auto-responders will not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(content.text, cte=_transfer_encoding(content.text))
    if content.html is not None:
        message.add_alternative(content.html, subtype="html", cte=_transfer_encoding(content.html))
    for attachment in content.attachments:
        message.add_attachment(attachment.data, maintype=attachment.maintype, subtype=attachment.subtype,
                               filename=attachment.filename)
    return message
