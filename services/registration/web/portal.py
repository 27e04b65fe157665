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

from services.registration.acme_bindings import AcmeBindings
from services.registration.assurance import Assurances
from services.registration.certificate_requests import CertificateRequests
from services.registration.certificates import Certificates
from services.registration.context import Context
from services.registration.domains import DomainClaims
from services.registration.email_addresses import EmailAddresses
from services.registration.members import Members
from services.registration.ratelimit import RateLimited, RateLimiter
from services.registration.sessions import Sessions
from services.registration.web.forms import EMPTY, Access, Form, Handler, sentence
from services.registration.web.messages import detail_lines
from services.registration.web.pages_accounts import AccountPages
from services.registration.web.pages_acme import AcmePages
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
from shared.ca_certificates import CaCertificates, CaUnavailable
from shared.http import ApiError
from shared.logging import get_logger

log = get_logger("registration.web")
API_PREFIXES = ("/v1/",)
API_PATHS = frozenset({"/v1", "/openapi.json", "/healthz", "/readyz", "/metrics"})


def is_api_path(path: str) -> bool:
    """The JSON API and the operational endpoints: their errors stay JSON."""
    return path in API_PATHS or path.startswith(API_PREFIXES)


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
        bindings: AcmeBindings,
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
            RootPages(self.ca, settings.local_status_url(context.settings.public_url)),
            DomainPages(domains, limiter),
            CertificatePages(requests, certificates, assurances, self.ca, context.clock),
            TrustPages(context, members, assurances),
            AdminPages(members, assurances, certificates),
            PasswordPages(context, members, limiter),
            SecondFactorPages(context, members),
            AcmePages(bindings, assurances),
        )

    # -- wiring ------------------------------------------------------------------------------

    def install(self, app: web.Application) -> None:
        app.on_response_prepare.append(add_html_headers)
        app.middlewares.append(self._html_errors)
        app.router.add_get("/static/portal.css", stylesheet)
        app.router.add_get("/static/favicon.svg", favicon)
        app.router.add_get(mailed_links.SCRIPT_PATH, mailed_links.script)  # pages opened from mailed links
        app.router.add_get("/favicon.ico", favicon_ico)
        for area in self.areas:
            for method, path, handler, access in area.routes():
                app.router.add_route(method, path, self._page(handler, access))

    @web.middleware
    async def _html_errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Unknown portal addresses and unexpected failures answer HTML pages; the API keeps its JSON errors."""
        if is_api_path(request.path):
            return await handler(request)
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return await self._plain_error(
                request, 404, "Page not found",
                "There is no page at this address. Check the address, or start again from the start page.",
            )
        except web.HTTPMethodNotAllowed:
            return await self._plain_error(
                request, 405, "Not available this way",
                "This address is not opened like this. Go back and use the page's links and buttons.",
            )
        except (web.HTTPException, ApiError, RateLimited):
            raise
        except Exception:
            request_id = str(request.get("request_id", ""))
            log.exception("unhandled error in the portal", path=request.path, method=request.method)
            anonymous = Visitor(None, None, "", False, "")
            return error_page(
                anonymous, 500, "Something went wrong",
                "The CA could not complete this. Try again in a minute; if it keeps failing, write to support "
                f"and quote this reference: {request_id}.",
            )

    async def _plain_error(self, request: web.Request, status: int, title: str, message: str) -> web.Response:
        try:
            visitor = await self.security.visitor(request)
        except Exception:  # the store is unreachable: the page still answers, without the menu
            visitor = Visitor(None, None, "", False, "")
        response = error_page(visitor, status, title, message)
        if visitor.anonymous_id:
            self.security.finish(response, visitor)
        return response

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
            details = [] if exc.code == "validation_failed" else detail_lines(exc.details)
            return error_page(visitor, exc.status, titles.get(exc.status, "Not done"), sentence(exc), details)
