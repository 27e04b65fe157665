"""Header injection is impossible: CR/LF and non-ASCII in names and subjects yield well-formed mail."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.notifier.addresses import (
    InvalidAddress,
    header_text,
    mailbox,
    normalise_address,
    parse_mailbox,
    subject_text,
)
from services.notifier.message import build_message
from services.notifier.rendering import MailContent, MailRenderer
from tests.notifier.mailparse import body_text, parse

SENDER = parse_mailbox("CAcert <noreply@cacert.test>")
NOW = datetime(2026, 3, 1, tzinfo=UTC)


def roundtrip(content: MailContent, name: str | None, to: str = "ada@example.org"):  # type: ignore[no-untyped-def]
    message = build_message(content, sender=SENDER, recipient=mailbox(name, to), mail_id="m-1", date=NOW)
    raw = message.as_bytes()
    assert all(ord(ch) < 128 for ch in raw.decode("ascii"))  # 7-bit clean: no SMTPUTF8 needed
    return raw, parse(raw)


def test_crlf_in_subject_and_name_cannot_add_headers() -> None:
    evil = "Ada\r\nBcc: victim@evil.example\r\nX-Injected: yes"
    content = MailContent(subject="Domain ok\r\nBcc: victim@evil.example\nX-Injected: 1", text="hi\n")
    raw, message = roundtrip(content, evil)
    assert message["Bcc"] is None and message["X-Injected"] is None
    assert b"\nBcc:" not in raw and b"\nX-Injected" not in raw
    assert message["Subject"] == "Domain ok Bcc: victim@evil.example X-Injected: 1"
    (to,) = message["To"].addresses
    assert to.addr_spec == "ada@example.org"
    assert to.display_name == "Ada Bcc: victim@evil.example X-Injected: yes"
    assert len(message.get_all("To")) == 1


def test_template_subject_with_crlf_from_event_data_is_one_line() -> None:
    # A domain name is validated upstream, but the notifier does not rely on it.
    content = MailRenderer().render(
        "domain_verified",
        {"domain": "example.org\r\nBcc: x@evil.example", "valid_until": "2027-01-01T00:00:00Z", "name": None},
    )
    _, message = roundtrip(content, None)
    assert message["Bcc"] is None and message["Subject"] == "Domain example.org Bcc: x@evil.example verified"


def test_non_ascii_name_and_subject_are_encoded_and_decode_back() -> None:
    content = MailContent(subject="Grüße, Zoë — 証明書", text="Hallo Jörg Ünlü\n")
    raw, message = roundtrip(content, "Jörg Ünlü 山田")
    assert b"=?utf-8?" in raw  # RFC 2047 encoded words, not raw 8-bit headers
    assert message["To"].addresses[0].display_name == "Jörg Ünlü 山田"
    assert message["Subject"] == "Grüße, Zoë — 証明書"
    assert body_text(message) == "Hallo Jörg Ünlü\n"


def test_name_with_quotes_and_angle_brackets_stays_a_display_name() -> None:
    _, message = roundtrip(MailContent(subject="s", text="t\n"), 'Eve "<evil@x.example>", x@y.example')
    (to,) = message["To"].addresses
    assert to.addr_spec == "ada@example.org" and to.display_name == 'Eve "<evil@x.example>", x@y.example'


def test_idn_domain_is_sent_as_a_label() -> None:
    assert normalise_address("ada@Bücher.Example") == "ada@xn--bcher-kva.example"
    _, message = roundtrip(MailContent(subject="s", text="t\n"), None, to="ada@bücher.example")
    assert message["To"].addresses[0].addr_spec == "ada@xn--bcher-kva.example"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "no-at-sign",
        "@example.org",
        "ada@",
        "a b@example.org",
        "ada@example.org\r\nBcc: x@y.org",
        "ada@exa mple.org",
        "ada@localhost",
        "ada@-bad-.org",
        "ädä@example.org",
        '"quoted"@example.org',
        "a..b@example.org",
        "ada@[127.0.0.1]",
        "x" * 65 + "@example.org",
        "ada@example.org>",
    ],
)
def test_invalid_addresses_are_refused(bad: str) -> None:
    with pytest.raises(InvalidAddress):
        mailbox("Ada", bad)


def test_header_text_drops_controls_and_bidi_overrides() -> None:
    assert header_text("a\x00b\tc\u202ed\u200be", 100) == "a b cde"
    assert subject_text("x" * 400) == "x" * 250


def test_configured_sender_must_be_one_address() -> None:
    assert parse_mailbox("CAcert <noreply@cacert.test>").display_name == "CAcert"
    for bad in ("a@b.org, c@d.org", "nonsense", "CAcert <noreply@cacert.test>\r\nBcc: x@y.org"):
        with pytest.raises(InvalidAddress):
            parse_mailbox(bad)
