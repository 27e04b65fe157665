"""The member web portal: the shared frame over the area page modules (`pages_*.py`).

Every page goes through `WebPortal._page`, which resolves the visitor from
the cookies, enforces login (member pages) or support rights (admin pages),
checks the CSRF token of every POST before the handler runs, and turns the
domain's errors (`ApiError`, rate limits) into HTML pages with the same
status. Rules are never re-stated here or in the page modules: sign-up,
login, domains, CSR decisions, downloads and revocation call the same
objects the JSON API uses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web

from services.registration.assurance import Assurances
from services.registration.certificate_requests import CertificateRequests
from services.registration.certificates import Certificates
from services.registration.context import Context
from services.registration.domains import DomainClaims
from services.registration.email_addresses import EmailAddresses
from services.registration.members import Members
from services.registration.ratelimit import RateLimited, RateLimiter
from services.registration.sessions import Sessions
from services.registration.web.ca_certificates import CaCertificates, CaUnavailable
from services.registration.web.forms import EMPTY, Access, Form, Handler, detail_lines
from services.registration.web.pages_accounts import AccountPages
from services.registration.web.pages_admin import AdminPages
from services.registration.web.pages_certificates import CertificatePages
from services.registration.web.pages_domains import DomainPages
from services.registration.web.pages_passwords import PasswordPages
from services.registration.web.pages_roots import RootPages
from services.registration.web.pages_second_factor import SecondFactorPages
from services.registration.web.pages_trust import TrustPages
from services.registration.web.rendering import error_page, favicon, favicon_ico, see_other, stylesheet
from services.registration.web.security import CookieSecurity, Visitor, add_html_headers
from services.registration.web.settings import WebSettings
from shared import mailed_links
from shared.http import ApiError


class WebPortal:
    def __init__(
        self,
        context: Context,
        *,
        members: Members,
        emails: EmailAddresses,
        sessions: Sessions,
        assurances: Assurances,
        domains: DomainClaims,
        requests: CertificateRequests,
        certificates: Certificates,
        limiter: RateLimiter,
        settings: WebSettings,
    ) -> None:
        self.security = CookieSecurity(
            sessions,
            secure=settings.secure_cookies(context.settings.public_url),
            csrf_key=settings.csrf_secret.encode(),
            session_seconds=context.settings.session_hours * 3600,
        )
        self.ca = CaCertificates(settings.ca_certs_url, settings.ca_certs_cache_seconds)
        self.areas = (
            AccountPages(
                context,
                members=members,
                emails=emails,
                sessions=sessions,
                assurances=assurances,
                limiter=limiter,
                security=self.security,
            ),
            RootPages(self.ca),
            DomainPages(domains, limiter),
            CertificatePages(requests, certificates, assurances, self.ca, context.clock),
            TrustPages(context, members, assurances),
            AdminPages(members, assurances, certificates),
            PasswordPages(context, members, limiter),
            SecondFactorPages(context, members),
        )

    # -- wiring ------------------------------------------------------------------------------

    def install(self, app: web.Application) -> None:
        app.on_response_prepare.append(add_html_headers)
        app.router.add_get("/static/portal.css", stylesheet)
        app.router.add_get("/static/favicon.svg", favicon)
        app.router.add_get(mailed_links.SCRIPT_PATH, mailed_links.script)  # pages opened from mailed links
        app.router.add_get("/favicon.ico", favicon_ico)
        for area in self.areas:
            for method, path, handler, access in area.routes():
                app.router.add_route(method, path, self._page(handler, access))

    def _page(self, handler: Handler, access: Access) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def page(request: web.Request) -> web.StreamResponse:
            visitor = await self.security.visitor(request)
            response = await self._run(handler, access, request, visitor)
            self.security.finish(response, visitor)
            return response

        return page

    async def _run(
        self, handler: Handler, access: Access, request: web.Request, visitor: Visitor
    ) -> web.StreamResponse:
        member = visitor.member
        if access != "public" and member is None:
            if request.method == "GET":
                return see_other(f"/login?next={quote(request.path)}")
            return error_page(visitor, 401, "Please log in", "Your session has ended; log in again.")
        if access == "admin" and not (member and member.is_admin):
            return error_page(visitor, 403, "Support only", "This page needs support (admin) rights.")
        form: Form = EMPTY
        try:
            if request.method == "POST":
                form = await request.post()
                if not self.security.csrf_ok(visitor, form):
                    return error_page(
                        visitor,
                        403,
                        "Form refused",
                        "This form did not carry a valid security token (it expired, or it was not sent "
                        "from this site). Go back, reload the page and try again.",
                    )
            return await handler(request, visitor, form)
        except web.HTTPRequestEntityTooLarge:
            return error_page(visitor, 413, "Too large", "What you sent is larger than this site accepts.")
        except RateLimited as exc:
            response = error_page(
                visitor,
                429,
                "Too many attempts",
                f"{exc.human[:1].upper()}{exc.human[1:]}. Try again in {exc.retry_after} seconds.",
            )
            response.headers["Retry-After"] = str(exc.retry_after)
            return response
        except CaUnavailable:
            return error_page(
                visitor,
                503,
                "CA certificates unavailable",
                "The CA certificates cannot be fetched right now; try again in a minute.",
            )
        except ApiError as exc:
            titles = {404: "Not found", 409: "Not possible", 403: "Not allowed", 410: "Expired"}
            return error_page(
                visitor, exc.status, titles.get(exc.status, "Not done"), exc.message, detail_lines(exc.details)
            )
