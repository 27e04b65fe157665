"""Which mail each event becomes, and which commands are refused (dead-lettered) instead."""

from __future__ import annotations

from typing import Any

import pytest

from services.notifier.notices import NoticeError, notice_for
from shared.events import CloudEvent, make_event
from shared.sealed_mail import MailOpener
from tests.mail_keys import NOTIFIER, seal


def command(template: str, params: dict[str, Any], **extra: Any) -> CloudEvent:
    return make_event(
        "mail.send_requested",
        {
            "to": "ada@example.org",
            "template": template,
            "params": params,
            "requested_at": "2026-03-01T00:00:00Z",
            **extra,
        },
        source="test",
    )


def test_command_keeps_recipient_member_and_params_and_its_link_sealed() -> None:
    sealed = seal(command("email_confirmation", {"link": "https://x/c#token=T", "code": "T", "page": "https://x/c",
                                                 "name": "Ada"}, member_id="m-1"))
    notice = notice_for(sealed, NOTIFIER)
    assert (notice.template, notice.to, notice.to_name, notice.member_id) == (
        "email_confirmation",
        "ada@example.org",
        "Ada",
        "m-1",
    )
    assert notice.context == {"name": "Ada", "page": "https://x/c", "code": None}, "link and code stay sealed"
    assert notice.sealed == sealed.data["sealed"]


@pytest.mark.parametrize("how", ["clear", "wrong key", "moved"])
def test_a_command_that_does_not_open_is_refused_without_quoting_it(how: str) -> None:
    plain = command("email_confirmation", {"link": "https://x/c#token=SECRET-TOKEN", "name": "Ada"})
    event = plain
    opener = NOTIFIER
    if how == "wrong key":
        event, opener = seal(plain), MailOpener.generate()
    elif how == "moved":
        other = command("email_confirmation", {"name": "Ada"})
        event = CloudEvent(type=other.type, source="test", subject=other.subject, id=other.id,
                           data={**other.data, "sealed": seal(plain).data["sealed"]})
    with pytest.raises(NoticeError) as refused:
        notice_for(event, opener)
    assert "SECRET" not in str(refused.value)


@pytest.mark.parametrize(
    ("template", "params"),
    [
        ("email_confirmation", {"name": "SECRET-NAME"}),
        ("email_confirmation", {"link": ""}),
        ("domain_challenge", {"link": "https://x/c/SECRET-TOKEN"}),
        ("domain_challenge", {"domain": "example.org", "link": 5}),
    ],
)
def test_command_missing_required_params_is_refused(template: str, params: dict[str, Any]) -> None:
    with pytest.raises(NoticeError) as refused:
        notice_for(seal(command(template, params)), NOTIFIER)
    assert "SECRET" not in str(refused.value)  # the dead-letter reason never echoes the params


def test_unknown_template_is_refused() -> None:
    event = CloudEvent(
        type="org.cacert.mail.send_requested.v1",
        source="test",
        subject="x",
        data={
            "to": "ada@example.org",
            "template": "bogus",
            "params": {"link": "l"},
            "requested_at": "2026-03-01T00:00:00Z",
        },
    )
    with pytest.raises(NoticeError):
        notice_for(event, NOTIFIER)


def test_member_registered_is_addressed_from_the_event_itself() -> None:
    event = make_event(
        "member.registered",
        {
            "member_id": "m-1",
            "name": "Ada",
            "email": "ada@example.org",
            "registered_at": "2026-03-01T00:00:00Z",
        },
        source="test",
    )
    notice = notice_for(event, NOTIFIER)
    assert (notice.template, notice.to, notice.to_name, notice.member_id) == (
        "member_registered",
        "ada@example.org",
        "Ada",
        "m-1",
    )


def test_other_member_notices_wait_for_the_member_view() -> None:
    event = make_event(
        "domain.verified",
        {
            "request_id": "r",
            "member_id": "m-2",
            "domain": "example.org",
            "method": "email",
            "verified_at": "2026-03-01T00:00:00Z",
            "valid_until": "2027-03-01T00:00:00Z",
        },
        source="test",
    )
    notice = notice_for(event, NOTIFIER)
    assert notice.to is None and notice.member_id == "m-2" and notice.template == "domain_verified"
