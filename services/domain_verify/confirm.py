"""ConfirmEndpoint: the page a challenge link opens, the review of what it would confirm, the confirmation.

The mailed link is `<public URL>/confirm#token=...`: the token is in the fragment, which browsers never
send, so no request line (ingress access logs included) ever holds it (shared/mailed_links.py).

* `GET /confirm` is a static page: its script moves the token from the fragment into a form and posts it
  to `/confirm/review` at once; without JavaScript the contact types the code from the mail and presses
  "Continue".
* `POST /confirm/review` shows what the token would confirm (account, domain, contact, expiry), with the
  confirm button; it changes nothing, so a link scanner that runs scripts confirms nothing either.
* `POST /confirm` confirms. It needs no CSRF token: the only credential is the 256-bit token in the body
  (there are no cookies or sessions, so no ambient authority a cross-site form could borrow), and anyone
  able to forge the POST must already know the token, which is exactly the power to confirm.

No outcome page says more than the holder of the link could already know, and nothing here logs a token.
Handlers catch their own errors instead of letting the shared middleware log the failing request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

import idna
from aiohttp import web

from services.domain_verify import events, pages
from services.domain_verify.challenge import ChallengeState, DomainChallenge, valid_until
from services.domain_verify.ratelimit import AttemptLimiter
from services.domain_verify.settings import DomainVerifySettings
from services.domain_verify.store import ChallengeStore
from services.domain_verify.tokens import looks_like_token, token_hash
from services.domain_verify.va.reuse import reuse_days
from shared import mailed_links
from shared.audit import AuditLog
from shared.events import utcnow
from shared.http import client_address
from shared.logging import bound, get_logger
from shared.outbox import Outbox

log = get_logger("domain_verify.confirm")

# (status, title, message, hint) per outcome a visitor can meet.
OUTCOMES: dict[str, tuple[int, str, str, str]] = {
    "unknown": (404, "Link not valid",
                "This confirmation link is not valid.",
                "Check that the whole link was copied from the mail. Nothing was changed."),
    "expired": (410, "Link expired",
                "This confirmation link has expired.",
                "The member has to request the verification again. Nothing was changed."),
    "used": (410, "Link already used",
             "This confirmation link has already been used; the domain was confirmed then.",
             "Each link works once. Nothing was changed."),
    "superseded": (410, "Link replaced",
                   "A newer verification request for this domain replaced this link.",
                   "Use the link in the most recent mail. Nothing was changed."),
    "confirmed": (200, "Domain confirmed",
                  "Thank you. The domain is now verified for this account.",
                  "You can close this page."),
    "limited": (429, "Too many attempts",
                "Too many attempts from your address.",
                "Wait a minute and try again. Nothing was changed."),
    "unavailable": (503, "Try again later",
                    "The service cannot answer right now.",
                    "Nothing was changed; please try the link again in a few minutes."),
}

_BY_STATE = {
    ChallengeState.EXPIRED: "expired",
    ChallengeState.CONFIRMED: "used",
    ChallengeState.SUPERSEDED: "superseded",
    ChallengeState.REFUSED: "unknown",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def outcome_page(outcome: str, retry_after: float | None = None) -> web.Response:
    status, title, message, hint = OUTCOMES[outcome]
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
    css = "confirmed" if outcome == "confirmed" else "refused"
    return pages.render("outcome.html", status=status, headers=headers, title=title, message=message,
                        hint=hint, outcome=css)


def display_domain(domain: str) -> str:
    """The Unicode form of an IDN for people; the A-label if it does not decode."""
    try:
        return idna.decode(domain)
    except idna.IDNAError:
        return domain


class ConfirmEndpoint:
    def __init__(self, store: ChallengeStore, outbox: Outbox, settings: DomainVerifySettings,
                 clock: Callable[[], datetime] = utcnow, audit: AuditLog | None = None) -> None:
        self._store = store
        self._outbox = outbox
        self._settings = settings
        self._clock = clock
        self._limiter = AttemptLimiter(settings.rate_limit_attempts, settings.rate_limit_window_seconds)
        self._audit = audit

    def install(self, app: web.Application) -> None:
        app.router.add_get(events.CONFIRM_PATH, self._guarded(self.landing))
        app.router.add_post(f"{events.CONFIRM_PATH}/review", self._guarded(self.show))
        app.router.add_post(events.CONFIRM_PATH, self._guarded(self.confirm))
        app.router.add_get("/static/confirm.css", pages.stylesheet)
        app.router.add_get(mailed_links.SCRIPT_PATH, mailed_links.script)
        app.on_response_prepare.append(pages.add_security_headers)

    def _client(self, request: web.Request) -> str:
        return client_address(request)  # the peer, or behind a trusted proxy its X-Forwarded-For entry

    def _guarded(self, handler: Handler) -> Handler:
        """Rate limit, then run; any failure becomes a page without the path reaching a log line."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            retry_after = self._limiter.allow(self._client(request))
            if retry_after is not None:
                log.warning("confirm attempts rate-limited", client=self._client(request))
                return outcome_page("limited", retry_after)
            try:
                return await handler(request)
            except Exception as exc:
                log.error("confirm request failed", method=request.method, error=type(exc).__name__)
                return outcome_page("unavailable")

        return guarded

    async def _challenge(self, request: web.Request) -> tuple[str, DomainChallenge | None]:
        """The token posted in the form (typed in: spaces around are forgiven) and its challenge, if any."""
        try:
            form = await request.post()
        except ValueError:
            return "", None
        token = form.get(mailed_links.TOKEN_FIELD)
        token = token.strip() if isinstance(token, str) else ""
        if not looks_like_token(token):
            return "", None
        return token, await self._store.by_token_hash(token_hash(token))

    async def landing(self, _: web.Request) -> web.StreamResponse:
        """What the mailed link opens: the token is in its fragment, which only the page's script reads."""
        return pages.render("landing.html", title="Confirm domain control")

    async def show(self, request: web.Request) -> web.StreamResponse:
        """The confirm page for a usable token; an explanation otherwise. Changes nothing."""
        token, challenge = await self._challenge(request)
        if challenge is None:
            return outcome_page("unknown")
        state = challenge.effective_state(self._clock())
        if state is not ChallengeState.PENDING:
            return outcome_page(_BY_STATE[state])
        account = f"{challenge.member_name} ({challenge.member_id})" if challenge.member_name \
            else challenge.member_id
        assert challenge.expires_at is not None  # pending challenges always expire
        return pages.render(
            "confirm.html", title="Confirm domain control", account=account, domain=challenge.domain,
            domain_display=display_domain(challenge.domain), contact=challenge.contact,
            expires_at=challenge.expires_at.strftime("%Y-%m-%d %H:%M"), token=token,
        )

    async def confirm(self, request: web.Request) -> web.StreamResponse:
        """Confirm once: settling is a unique insert, so exactly one POST wins, whatever the concurrency."""
        _, challenge = await self._challenge(request)
        if challenge is None:
            return outcome_page("unknown")
        now = self._clock()
        with bound(verification_request_id=challenge.request_id):
            if not challenge.can_confirm(now):
                return outcome_page(_BY_STATE[challenge.effective_state(now)])
            event = events.verified(
                request_id=challenge.request_id, member_id=challenge.member_id, domain=challenge.domain,
                contact=challenge.contact, verified_at=now,
                valid_until=valid_until(now, reuse_days(now, self._settings.validity_days or None)),
            )
            if not await self._store.settle(challenge.request_id, ChallengeState.CONFIRMED, now, event,
                                            {"confirmed_at": now}):
                # Lost a race (a second click, the sweep, a newer request): show what happened instead.
                latest = await self._store.get(challenge.request_id)
                state = latest.effective_state(now) if latest else ChallengeState.REFUSED
                return outcome_page(_BY_STATE.get(state, "unknown"))
            log.info("domain verified", member_id=challenge.member_id, domain=challenge.domain,
                     contact=challenge.contact)
            try:
                await self._outbox.flush(self._store.settlements, challenge.request_id)
            except Exception as exc:
                # The confirmation is durable with its event in the outbox; the outbox sweep publishes it.
                log.warning("publishing domain.verified deferred to the outbox sweep",
                            error=type(exc).__name__)
            if self._audit is not None:
                await self._audit.append(actor=challenge.contact, action="domain.verified", subject=challenge.domain,
                                         details={"member_id": challenge.member_id,
                                                  "request_id": challenge.request_id})
            return outcome_page("confirmed")
