"""Parsing sent mail back with the `email` package, as a mail client would."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage


def parse(raw: bytes | str) -> EmailMessage:
    data = raw.encode() if isinstance(raw, str) else raw
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def attachments(message: EmailMessage) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for part in message.iter_attachments():
        assert isinstance(part, EmailMessage)
        name = part.get_filename()
        assert name is not None
        content = part.get_content()
        found[name] = content if isinstance(content, bytes) else content.encode()
    return found


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    text = part.get_content()
    assert isinstance(text, str)
    return text
