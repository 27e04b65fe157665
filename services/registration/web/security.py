"""Cookie sessions, CSRF tokens and the security headers of the portal's HTML.

* The session cookie holds the registration's own session token (the one
  `POST /v1/sessions` hands out; the database keeps only its SHA-256 digest).
  It is HttpOnly, SameSite=Strict, and Secure unless the portal runs on plain
  http on loopback (development); when Secure it takes the `__Host-` prefix,
  so no subdomain can plant it.
* CSRF: every form carries a token that is an HMAC (server key) of what the
  visitor is bound to: the session digest once logged in, before that a
  random anonymous cookie (a signed double-submit cookie). A POST whose token
  does not match is refused with 403 before its handler runs.
* HTML responses carry a CSP without any script, no framing, nosniff and no
  referrer. Pages opened from a mailed link (confirm-email, reset-password) get
  `LINK_PAGE_HEADERS`, whose CSP starts from `default-src 'none'` and allows one
  script, the static `/static/mailed-link.js` that moves the token from the URL
  fragment into the form (shared/mailed_links.py).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from services.registration import tokens
from services.registration.members import Member
from services.registration.sessions import Sessions

CSRF_FIELD = "csrf"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'none'; style-src 'self'; img-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HTML_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
# Opened from a mailed link (the token in its fragment): nothing but the stylesheet, the icon, the one static
# script that puts the token into the form (shared/mailed_links.py), and a form to this site.
LINK_PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
LINK_PAGE_HEADERS = {**HTML_HEADERS, "Content-Security-Policy": LINK_PAGE_CSP}


@dataclasses.dataclass
class Visitor:
    """Who is asking: the logged-in member (if any) and what their CSRF tokens are bound to."""

    member: Member | None
    session_digest: str | None
    anonymous_id: str
    new_anonymous_id: bool
    csrf: str


class CookieSecurity:
    def __init__(self, sessions: Sessions, *, secure: bool, csrf_key: bytes, session_seconds: int) -> None:
        self._sessions = sessions
        self.secure = secure
        self._key = csrf_key or secrets.token_bytes(32)
        self._session_seconds = session_seconds
        prefix = "__Host-" if secure else ""
        self.session_cookie = f"{prefix}cacert_session"
        self.anonymous_cookie = f"{prefix}cacert_csrf"

    def _token(self, binding: str) -> str:
        mac = hmac.new(self._key, f"csrf:{binding}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    async def visitor(self, request: web.Request) -> Visitor:
        member = digest = None
        raw = request.cookies.get(self.session_cookie, "")
        if raw:
            found = await self._sessions.member_for(raw)
            if found is not None:
                member, digest = found
        anonymous = request.cookies.get(self.anonymous_cookie, "")
        fresh = not tokens.looks_like_token(anonymous)
        if fresh:
            anonymous = secrets.token_urlsafe(32)
        binding = f"session:{digest}" if digest else f"anonymous:{anonymous}"
        return Visitor(member, digest, anonymous, fresh, self._token(binding))

    def csrf_ok(self, visitor: Visitor, form: Mapping[str, Any]) -> bool:
        sent = form.get(CSRF_FIELD)
        if visitor.new_anonymous_id and visitor.session_digest is None:
            return False  # no cookie came with the form: nothing to bind the token to
        return isinstance(sent, str) and hmac.compare_digest(sent.encode(), visitor.csrf.encode())

    def finish(self, response: web.StreamResponse, visitor: Visitor) -> None:
        if visitor.new_anonymous_id:
            self._set(response, self.anonymous_cookie, visitor.anonymous_id, max_age=None)

    def log_in(self, response: web.StreamResponse, raw_token: str) -> None:
        self._set(response, self.session_cookie, raw_token, max_age=self._session_seconds)

    def log_out(self, response: web.StreamResponse) -> None:
        response.del_cookie(self.session_cookie, path="/", secure=self.secure, httponly=True, samesite="Strict")

    def _set(self, response: web.StreamResponse, name: str, value: str, *, max_age: int | None) -> None:
        response.set_cookie(
            name, value, path="/", max_age=max_age, secure=self.secure, httponly=True, samesite="Strict"
        )


async def add_html_headers(_: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: security headers on every HTML answer of the service; nosniff on all."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if (response.content_type or "").startswith("text/html"):
        for name, value in HTML_HEADERS.items():
            response.headers.setdefault(name, value)
