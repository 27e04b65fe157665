"""Which mail an event calls for: the template, its parameters, and who receives it.

Pure functions of one event (and the key that opens a command's sealed
parameters), so the consumer stays a thin "decide, then enqueue" and this
mapping is unit-testable without Kafka. Mail commands name
their recipient; member notices name only the member, whose primary address
the sender looks up in the notifier's own member view when it sends.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from shared.events import BY_NAME, CloudEvent
from shared.sealed_mail import SEALED_FIELD, MailOpener, UnopenableMail

# The mail commands' templates, with the params each one needs. `link` and `code` (its token, to type in
# where the link does not work) arrive sealed (shared/sealed_mail.py); `page` is the link without its token,
# the page the code is typed into (the mail names both only when it has both).
COMMAND_TEMPLATES: dict[str, tuple[str, ...]] = {
    "email_confirmation": ("link",),
    "domain_challenge": ("link", "domain"),
    "password_reset": ("link",),
}
OPTIONAL_PARAMS: dict[str, tuple[str, ...]] = {
    "email_confirmation": ("name", "code", "page"),
    "domain_challenge": ("expires_at", "member_name", "code", "page"),
    "password_reset": ("name", "hours", "code", "page"),
}

# Member notices: event name -> template, and the payload fields the template uses.
MEMBER_NOTICES: dict[str, tuple[str, tuple[str, ...]]] = {
    "member.registered": ("member_registered", ("member_id", "name", "registered_at")),
    "member.assurance_recorded": ("assurance_recorded", (
        "assurer_name", "points", "total_points", "assured", "location", "date")),
    "cert.issued": ("cert_issued", (
        "request_id", "serial", "issuer", "cert_class", "profile", "subject", "dns_names", "ip_addresses",
        "emails", "not_before", "not_after", "fingerprint_sha256", "certificate_pem", "chain_pem",
        "trust_anchors")),
    "cert.rejected": ("cert_rejected", ("request_id", "reason", "details", "rejected_at")),
    "cert.revoked": ("cert_revoked", ("serial", "request_id", "issuer", "reason", "revoked_at")),
    "csr.rejected": ("csr_rejected", ("request_id", "profile", "reasons", "rejected_at")),
    "domain.verified": ("domain_verified", ("request_id", "domain", "method", "verified_at", "valid_until")),
    "domain.verification_failed": ("domain_verification_failed", ("request_id", "domain", "reason",
                                                                  "failed_at")),
}

MAIL_COMMAND = BY_NAME["mail.send_requested"].type
NOTICE_TYPES: dict[str, str] = {BY_NAME[name].type: name for name in MEMBER_NOTICES}


class NoticeError(ValueError):
    """The event can never become a mail (e.g. a command missing its link): dead-letter it."""


@dataclasses.dataclass(frozen=True)
class Notice:
    template: str
    context: dict[str, Any]
    member_id: str | None
    to: str | None = None  # explicit recipient; None: the member's primary address at send time
    to_name: str | None = None
    sealed: dict[str, Any] | None = None  # a command's sealed secret params, opened again only to render


def for_command(event: CloudEvent, opener: MailOpener) -> Notice:
    """A `mail.send_requested` command: the recipient and parameters are given.

    Its secret parameters are opened here only to check the command can be mailed (a command that does not
    open, or lacks a parameter, is dead-lettered now rather than failing at send time); the notice keeps
    them sealed, and the sender opens them again when it renders the mail."""
    data = event.data
    template = data["template"]
    params = data.get("params") or {}
    if template not in COMMAND_TEMPLATES:
        raise NoticeError(f"unknown template {template!r}")
    try:
        secrets = opener.open(event.type, event.id, data)
    except UnopenableMail as exc:
        raise NoticeError(str(exc)) from None
    given = {**params, **secrets}
    missing = [p for p in COMMAND_TEMPLATES[template] if not isinstance(given.get(p), str) or not given[p]]
    if missing:
        raise NoticeError(f"template {template} needs params {', '.join(missing)}")
    context: dict[str, Any] = {k: params.get(k) for k in OPTIONAL_PARAMS[template]}
    context.update({k: v for k, v in params.items() if isinstance(v, str | int | float | bool | list | None)})
    # A confirmation or a reset goes to the member; a domain challenge to the domain's contact, not the member.
    name = context.get("name") if template in ("email_confirmation", "password_reset") else None
    context["name"] = name if isinstance(name, str) else None
    return Notice(template=template, context=context, member_id=data.get("member_id"), to=data["to"],
                  to_name=context["name"], sealed=dict(data[SEALED_FIELD]))


def opened_context(mail_id: str, source_type: str, to: str | None, template: str, context: dict[str, Any],
                   sealed: dict[str, Any] | None, opener: MailOpener) -> dict[str, Any]:
    """The template context with a command's secret parameters opened (UnopenableMail if they do not)."""
    if sealed is None:
        return context
    secrets = opener.open(source_type, mail_id, {"to": to, "template": template, SEALED_FIELD: sealed})
    return {**context, **secrets}


def for_member_event(event: CloudEvent) -> Notice:
    """An event the member should hear about: mailed to the member's primary address."""
    name = NOTICE_TYPES[event.type]
    template, fields = MEMBER_NOTICES[name]
    data = event.data
    context = {field: data.get(field) for field in fields}
    if name == "member.registered":
        # The address is known right here; the view may not have it yet when the sender runs.
        return Notice(template=template, context=context, member_id=data["member_id"], to=data["email"],
                      to_name=data["name"])
    return Notice(template=template, context=context, member_id=data["member_id"])


def notice_for(event: CloudEvent, opener: MailOpener) -> Notice:
    if event.type == MAIL_COMMAND:
        return for_command(event, opener)
    if event.type in NOTICE_TYPES:
        return for_member_event(event)
    raise NoticeError(f"no mail for {event.type}")
