"""The notifier's sealing key pair the tests run with: one per test process, generated at import, never
written to disk by this module. Notifier harnesses open with the private key; registration and
domain_verify harnesses seal to the public key; a test that reads a mail command off the topic opens it
with `params_of`, as only the notifier could."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from shared.events import CloudEvent
from shared.sealed_mail import MailOpener

NOTIFIER = MailOpener.generate()
NOTIFIER_PRIVATE_PEM = NOTIFIER.private_pem()
SEALING_PUBLIC_PEM = NOTIFIER.public_pem()
SEALER = NOTIFIER.sealer()


def seal(event: CloudEvent) -> CloudEvent:
    """`event` as a producer would send it (a mail command's link and code sealed to the notifier)."""
    return SEALER.seal(event)


def params_of(command: CloudEvent) -> dict[str, Any]:
    """A mail command's parameters, the sealed ones opened with the notifier's key."""
    return {**command.data["params"], **NOTIFIER.open(command.type, command.id, command.data)}


def link_parts(link: str) -> tuple[str, str]:
    """(the URL a browser requests, the token only the page's script sees) of a mailed link, whose token is in
    its fragment and nowhere in what a browser sends (shared/mailed_links.py)."""
    parts = urlsplit(link)
    token = parse_qs(parts.fragment).get("token", [""])[0]
    assert token and token not in parts.path and token not in parts.query, "the token must be in the fragment only"
    return urlunsplit(parts._replace(fragment="")), token
