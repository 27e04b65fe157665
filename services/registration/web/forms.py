"""What every page module of the portal shares: the route shape, form reading, notices, the signed-in member."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from services.registration.api.common import email_field
from services.registration.members import Member, Members
from services.registration.web import messages
from services.registration.web.security import Visitor
from shared.http import ApiError

Form = Mapping[str, Any]
Handler = Callable[[web.Request, Visitor, Form], Awaitable[web.StreamResponse]]
Access = Literal["public", "member", "admin"]
Route = tuple[str, str, Handler, Access]  # method, path, handler, who may open it
EMPTY: Form = MultiDictProxy(MultiDict())
NOTICES = {
    "logged_out": "You are logged out.",
    "signed_up": "Account created. We sent a confirmation link to your address: open it, press the button, "
    "then log in here.",
    "mail_sent": "We sent the verification mail. Open the link in it and press confirm; then reload this page.",
    "check_started": "The check has started: the CA is looking for the record or file now.",
    "email_added": "We sent a confirmation link to the new address: open it and press the button.",
    "confirmation_resent": "We sent the confirmation link again.",
    "revocation_requested": "Revocation requested. The certificate will be listed on the next CRL.",
    "assured": "The assurance was recorded.",
    "roles_changed": "The member's roles were changed.",
    "codesign_proposed": "Code signing is proposed for this member; a second admin must approve it.",
    "password_changed": "Your password was changed. Every other session of your account has ended.",
    "password_reset": "Your new password is set. Log in with it.",
    "second_factor_on": "Two-factor authentication is on: from now on logging in asks for your app's code.",
    "acme_binding_revoked": "The binding is revoked: ACME accounts registered with it can no longer order or revoke "
    "certificates.",
}


def text(form: Form, name: str, max_length: int = 1024) -> str:
    value = form.get(name, "")
    return value[:max_length] if isinstance(value, str) else ""


def notice_of(request: web.Request) -> str | None:
    return NOTICES.get(request.query.get("notice", ""))


def signed_in(visitor: Visitor) -> Member:
    assert visitor.member is not None  # guaranteed by the access check in WebPortal._run
    return visitor.member


async def member_by_reference(members: Members, reference: str) -> Member:
    """The member a support or assurance form names, by email address or member id; 404 if none."""
    reference = reference.strip()
    found = (
        await members.by_address(email_field(reference, "member"))
        if "@" in reference
        else await members.get(reference)
        if reference
        else None
    )
    if found is None:
        raise ApiError(404, "not_found", "There is no member with this address or id.")
    return found


def sentence(error: ApiError) -> str:
    """An API error as the portal's sentence for the member (web/messages.py: no field names, no library text)."""
    return messages.for_error(error)
