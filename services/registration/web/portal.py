"""The member web portal: server-rendered pages over the registration's own domain objects.

Every page goes through `WebPortal._page`, which resolves the visitor from
the cookies, enforces login (member pages) or support rights (admin pages),
checks the CSRF token of every POST before the handler runs, and turns the
domain's errors (`ApiError`, rate limits) into HTML pages with the same
status. Rules are never re-stated here: sign-up, login, domains, CSR
decisions, downloads and revocation call the same objects the JSON API uses.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import date
from typing import Any
from urllib.parse import quote

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from services.registration.api.accounts import member_view
from services.registration.api.common import client_address, email_field
from services.registration.assurance import MAX_POINTS, Assurances
from services.registration.certificate_requests import CertificateRequests
from services.registration.certificates import FORMATS, REVOCATION_REASONS, Certificates
from services.registration.context import Context
from services.registration.domains import DomainClaims
from services.registration.email_addresses import EmailAddresses
from services.registration.issuance_policy import ASSURED_POINTS
from services.registration.members import ASSURER_POINTS, Member, Members
from services.registration.ratelimit import RateLimited, RateLimiter
from services.registration.sessions import Sessions
from services.registration.signup import Signup, SignupProblem, SignupRefused, enrol, parse_signup
from services.registration.staff_actions import StaffActions
from services.registration.web import preview as previews
from services.registration.web.ca_certificates import LABELS, CaCertificates, CaUnavailable
from services.registration.web.rendering import error_page, favicon, favicon_ico, render, see_other, stylesheet
from services.registration.web.security import CookieSecurity, Visitor, add_html_headers
from services.registration.web.settings import WebSettings
from shared.http import ApiError

Form = Mapping[str, Any]
Handler = Callable[[web.Request, Visitor, Form], Awaitable[web.StreamResponse]]
EMPTY: Form = MultiDictProxy(MultiDict())
_NEXT = re.compile(r"^/account(/[A-Za-z0-9._~/-]*)?$")
NOTICES = {
    "logged_out": "You are logged out.",
    "signed_up": "Account created. We sent a confirmation link to your address: open it, press the button, "
    "then log in here.",
    "mail_sent": "We sent the verification mail. Open the link in it and press confirm; then reload this page.",
    "revocation_requested": "Revocation requested. The certificate will be listed on the next CRL.",
    "assured": "The assurance was recorded.",
    "roles_changed": "The member's roles were changed.",
}
KIND_TITLES = {"server": "Server Certificates", "client": "Client Certificates"}
KIND_PROFILES = {"server": ("server",), "client": ("client", "codesign")}


def _text(form: Form, name: str, max_length: int = 1024) -> str:
    value = form.get(name, "")
    return value[:max_length] if isinstance(value, str) else ""


def _safe_next(value: str) -> str:
    return value if _NEXT.match(value or "") else "/account"


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
        self._ctx = context
        self._members = members
        self._emails = emails
        self._sessions = sessions
        self._assurances = assurances
        self._domains = domains
        self._requests = requests
        self._certificates = certificates
        self._limiter = limiter
        self.security = CookieSecurity(
            sessions,
            secure=settings.secure_cookies(context.settings.public_url),
            csrf_key=settings.csrf_secret.encode(),
            session_seconds=context.settings.session_hours * 3600,
        )
        self.ca = CaCertificates(settings.ca_certs_url, settings.ca_certs_cache_seconds)

    # -- wiring ------------------------------------------------------------------------------

    def install(self, app: web.Application) -> None:
        app.on_response_prepare.append(add_html_headers)
        app.router.add_get("/static/portal.css", stylesheet)
        app.router.add_get("/static/favicon.svg", favicon)
        app.router.add_get("/favicon.ico", favicon_ico)
        pages: list[tuple[str, str, Handler, str]] = [
            ("GET", "/", self.home, "public"),
            ("GET", "/signup", self.signup_form, "public"),
            ("POST", "/signup", self.signup, "public"),
            ("GET", "/login", self.login_form, "public"),
            ("POST", "/login", self.login, "public"),
            ("POST", "/logout", self.logout, "member"),
            ("GET", "/roots", self.roots, "public"),
            ("GET", "/roots/{label:class[13]}.{fmt:pem|der}", self.root_download, "public"),
            ("GET", "/account", self.account, "member"),
            ("GET", "/account/domains", self.domain_list, "member"),
            ("POST", "/account/domains", self.domain_add, "member"),
            ("GET", "/account/domains/{domain_id}", self.domain_page, "member"),
            ("POST", "/account/domains/{domain_id}/verify", self.domain_verify, "member"),
            ("GET", "/account/{kind:server|client}-certs", self.certificate_list, "member"),
            ("GET", "/account/{kind:server|client}-certs/new", self.csr_form, "member"),
            ("POST", "/account/{kind:server|client}-certs/new", self.csr_preview, "member"),
            ("POST", "/account/{kind:server|client}-certs/submit", self.csr_submit, "member"),
            ("GET", "/account/requests/{request_id}", self.request_page, "member"),
            ("GET", "/account/certificates/{serial}", self.certificate_page, "member"),
            ("GET", "/account/certificates/{serial}/download/{fmt}", self.certificate_download, "member"),
            ("POST", "/account/certificates/{serial}/revoke", self.certificate_revoke, "member"),
            ("GET", "/account/assurance", self.assurance, "member"),
            ("POST", "/account/assurance", self.assure, "member"),
            ("GET", "/account/admin", self.admin, "admin"),
            ("POST", "/account/admin/members/{member_id}/assurer", self.admin_grant_assurer, "admin"),
            ("POST", "/account/admin/members/{member_id}/codesign", self.admin_codesign, "admin"),
            ("POST", "/account/admin/revoke", self.admin_revoke, "admin"),
        ]
        for method, path, handler, access in pages:
            app.router.add_route(method, path, self._page(handler, access))

    def _page(self, handler: Handler, access: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def page(request: web.Request) -> web.StreamResponse:
            visitor = await self.security.visitor(request)
            response = await self._run(handler, access, request, visitor)
            self.security.finish(response, visitor)
            return response

        return page

    async def _run(self, handler: Handler, access: str, request: web.Request, visitor: Visitor) -> web.StreamResponse:
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
                f"Too many {exc.what} attempts. Try again in {exc.retry_after} seconds.",
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
                visitor, exc.status, titles.get(exc.status, "Not done"), exc.message, _detail_lines(exc.details)
            )

    # -- public pages ------------------------------------------------------------------------

    async def home(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        if visitor.member is not None:
            return see_other("/account")
        return render(visitor, "home.html", title="CAcert community CA")

    async def signup_form(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        return render(visitor, "signup.html", title="Join", values={}, errors=[])

    async def signup(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        values = {k: _text(form, k, 256) for k in ("name", "date_of_birth", "email")}
        password = _text(form, "password", 1024)
        signup: Signup | None = None
        problems: tuple[SignupProblem, ...] = ()
        try:
            signup = parse_signup(
                name=values["name"],
                email=values["email"],
                date_of_birth=values["date_of_birth"],
                password=password,
                today=self._ctx.clock().date(),
            )
        except SignupRefused as refused:
            problems = refused.problems
        errors = [signup_error_line(p) for p in problems]
        # Typing the password twice is a form concern only (the API takes it once).
        if not any(p.field == "password" for p in problems) and password != _text(form, "password_again", 1024):
            errors.append("The two passwords differ.")
        if errors or signup is None:
            return render(visitor, "signup.html", title="Join", values=values, errors=errors, status=422)
        await self._limiter.hit("signup:client", client_address(request))
        await self._limiter.hit("signup:address", signup.email)
        try:
            await enrol(signup, self._members, self._emails)
        except ApiError as exc:
            return render(visitor, "signup.html", title="Join", values=values, errors=[exc.message], status=exc.status)
        return see_other("/login?notice=signed_up")

    async def login_form(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        following = _safe_next(request.query.get("next", ""))
        if visitor.member is not None:
            return see_other(following)
        notice = NOTICES.get(request.query.get("notice", ""))
        return render(visitor, "login.html", title="Log in", next=following, notice=notice, error=None, email="")

    async def login(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        following = _safe_next(_text(form, "next"))
        typed = _text(form, "email", 256)
        try:
            address = email_field(typed)
            await self._limiter.hit("login:client", client_address(request))
            await self._limiter.hit("login:account", address)
            session = await self._sessions.login(address, _text(form, "password", 1024))
        except ApiError as exc:
            message = exc.message if exc.code != "validation_failed" else "Enter the email address you joined with."
            return render(
                visitor,
                "login.html",
                title="Log in",
                next=following,
                notice=None,
                error=message,
                email=typed,
                status=exc.status,
            )
        response = see_other(following)
        self.security.log_in(response, session["token"])
        return response

    async def logout(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        assert visitor.session_digest is not None
        await self._sessions.logout(visitor.session_digest)
        response = see_other("/login?notice=logged_out")
        self.security.log_out(response)
        return response

    async def roots(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        try:
            certificates = await self.ca.all()
        except CaUnavailable:
            return render(visitor, "roots.html", title="Trust the CAcert roots", section="roots", cas=None, status=503)
        return render(
            visitor,
            "roots.html",
            title="Trust the CAcert roots",
            section="roots",
            cas=[certificates[label] for label in LABELS if label in certificates],
        )

    async def root_download(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        label, fmt = request.match_info["label"], request.match_info["fmt"]
        ca = await self.ca.get(label)
        body, content_type, extension = (
            (ca.pem, "application/x-pem-file", "pem") if fmt == "pem" else (ca.der, "application/pkix-cert", "crt")
        )
        return web.Response(
            body=body,
            content_type=content_type,
            headers={"Content-Disposition": f'attachment; filename="cacert-{label}.{extension}"'},
        )

    # -- account and domains -----------------------------------------------------------------

    async def account(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        member = _member(visitor)
        view = await member_view(member, self._assurances)
        return render(
            visitor,
            "account.html",
            title="My account",
            section="account",
            view=view,
            notice=NOTICES.get(request.query.get("notice", "")),
        )

    async def domain_list(
        self,
        request: web.Request,
        visitor: Visitor,
        form: Form,
        *,
        error: str | None = None,
        typed: str = "",
        status: int = 200,
    ) -> web.StreamResponse:
        domains = await self._domains.listing(_member(visitor))
        return render(
            visitor,
            "domains.html",
            title="Domains",
            section="domains",
            domains=domains,
            error=error,
            typed=typed,
            status=status,
        )

    async def domain_add(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        typed = _text(form, "domain", 300)
        try:
            claim = await self._domains.add(_member(visitor), typed, None)
        except ApiError as exc:
            return await self.domain_list(request, visitor, form, error=exc.message, typed=typed, status=exc.status)
        return see_other(f"/account/domains/{claim['id']}")

    async def domain_page(
        self, request: web.Request, visitor: Visitor, form: Form, *, error: str | None = None, status: int = 200
    ) -> web.StreamResponse:
        doc = await self._domains.get(_member(visitor), request.match_info["domain_id"])
        view = self._domains.view(doc)
        contacts = self._domains.contacts(doc["domain"])["contacts"]
        return render(
            visitor,
            "domain.html",
            title=f"Domain {view['display_name']}",
            section="domains",
            domain=view,
            contacts=contacts,
            error=error,
            status=status,
            notice=NOTICES.get(request.query.get("notice", "")),
        )

    async def domain_verify(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        member = _member(visitor)
        claim_id = request.match_info["domain_id"]
        await self._domains.get(member, claim_id)
        contact = _text(form, "contact", 320)
        if not contact:
            return await self.domain_page(request, visitor, form, error="Choose one of the addresses.", status=422)
        await self._limiter.hit("mail:account", member.id)
        await self._limiter.hit("mail:address", contact.lower())
        try:
            await self._domains.request_verification(member, claim_id, contact)
        except ApiError as exc:
            return await self.domain_page(request, visitor, form, error=exc.message, status=exc.status)
        return see_other(f"/account/domains/{claim_id}?notice=mail_sent")

    # -- certificates ------------------------------------------------------------------------

    async def certificate_list(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        member = _member(visitor)
        kind = request.match_info["kind"]
        profiles = KIND_PROFILES[kind]
        certificates = [c for c in await self._certificates.listing(member) if c["profile"] in profiles]
        pending = [
            r for r in await self._requests.listing(member) if r["profile"] in profiles and r.get("status") != "issued"
        ]
        return render(
            visitor,
            "certificates.html",
            title=KIND_TITLES[kind],
            section=kind,
            kind=kind,
            certificates=certificates,
            requests=pending,
        )

    def _profiles_for(self, kind: str, member: Member) -> tuple[str, ...]:
        if kind == "server":
            return ("server",)
        return ("client", "codesign") if member.is_assurer and member.codesign_enabled else ("client",)

    async def csr_form(
        self, request: web.Request, visitor: Visitor, form: Form, *, error: str | None = None, status: int = 200
    ) -> web.StreamResponse:
        kind = request.match_info["kind"]
        return render(
            visitor,
            "csr_form.html",
            title=f"New {KIND_TITLES[kind][:-1].lower()}",
            section=kind,
            kind=kind,
            profiles=self._profiles_for(kind, _member(visitor)),
            error=error,
            status=status,
        )

    async def _chosen_profile(self, kind: str, member: Member, form: Form) -> str:
        profiles = self._profiles_for(kind, member)
        chosen = _text(form, "profile", 16) or profiles[0]
        return chosen if chosen in profiles else profiles[0]

    async def csr_preview(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        member = _member(visitor)
        kind = request.match_info["kind"]
        pem = _text(form, "csr_pem", 70000)
        upload = form.get("csr_file")
        if isinstance(upload, web.FileField) and upload.filename:
            pem = upload.file.read(70001).decode("utf-8", "replace")
        if not pem.strip():
            return await self.csr_form(request, visitor, form, error="Paste a CSR or choose a .csr file.", status=422)
        profile = await self._chosen_profile(kind, member, form)
        shown = await previews.preview(self._requests, member, pem, profile)
        return render(
            visitor,
            "csr_preview.html",
            title="Check before you confirm",
            section=kind,
            kind=kind,
            preview=shown,
            status=200 if shown.approved else 422,
        )

    async def csr_submit(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        member = _member(visitor)
        kind = request.match_info["kind"]
        pem = _text(form, "csr_pem", 70000)
        profile = await self._chosen_profile(kind, member, form)
        try:
            submitted = await self._requests.submit(member, pem, profile)
        except ApiError as exc:
            if exc.code != "csr_rejected":
                raise
            shown = await previews.preview(self._requests, member, pem, profile)
            if shown.approved:  # refused for a reason the preview no longer sees (cannot happen today)
                shown = previews.Preview(profile, pem, tuple(previews.refusal(r) for r in exc.details["reasons"]))
            return render(
                visitor,
                "csr_preview.html",
                title="The request was refused",
                section=kind,
                kind=kind,
                preview=shown,
                status=422,
            )
        return see_other(f"/account/requests/{submitted['id']}")

    async def request_page(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        found = await self._requests.get(_member(visitor), request.match_info["request_id"])
        if found.get("status") == "issued" and found.get("serial"):
            return see_other(f"/account/certificates/{found['serial']}")
        kind = "server" if found.get("profile") == "server" else "client"
        refusals = [previews.refusal(r) for r in found.get("reasons") or []]
        return render(
            visitor,
            "request.html",
            title="Certificate request",
            section=kind,
            req=found,
            refusals=refusals,
            waiting=found.get("status") == "approved",
        )

    async def certificate_page(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        cert = await self._certificates.get(_member(visitor), request.match_info["serial"])
        kind = "server" if cert.get("profile") == "server" else "client"
        return render(
            visitor,
            "certificate.html",
            title="Certificate",
            section=kind,
            cert=cert,
            reasons=REVOCATION_REASONS,
            notice=NOTICES.get(request.query.get("notice", "")),
        )

    async def certificate_download(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        fmt = request.match_info["fmt"]
        if fmt not in FORMATS:
            raise ApiError(404, "not_found", "no such download format")
        body, content_type, filename = await self._certificates.download(
            _member(visitor), request.match_info["serial"], fmt
        )
        return web.Response(
            body=body,
            content_type=content_type,
            headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
        )

    async def certificate_revoke(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        reason = _text(form, "reason", 64)
        if reason not in REVOCATION_REASONS:
            reason = "unspecified"
        done = await self._certificates.request_revocation(_member(visitor), request.match_info["serial"], reason)
        return see_other(f"/account/certificates/{done['serial']}?notice=revocation_requested")

    # -- assurance and support ---------------------------------------------------------------

    async def assurance(
        self, request: web.Request, visitor: Visitor, form: Form, *, error: str | None = None, status: int = 200
    ) -> web.StreamResponse:
        member = _member(visitor)
        listing = await self._assurances.listing(member.id)
        total = sum(int(a["points"]) for a in listing["received"])
        return render(
            visitor,
            "assurance.html",
            title="Assurance",
            section="assurance",
            listing=listing,
            total=total,
            assured=total >= ASSURED_POINTS,
            assured_points=ASSURED_POINTS,
            assurer_points=ASSURER_POINTS,
            max_points=MAX_POINTS,
            error=error,
            status=status,
            today=self._ctx.clock().date().isoformat(),
            notice=NOTICES.get(request.query.get("notice", "")),
        )

    async def _target(self, reference: str) -> Member:
        reference = reference.strip()
        found = (
            await self._members.by_address(email_field(reference, "member"))
            if "@" in reference
            else await self._members.get(reference)
            if reference
            else None
        )
        if found is None:
            raise ApiError(404, "not_found", "There is no member with this address or id.")
        return found

    async def assure(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        assurer = _member(visitor)
        if not assurer.is_assurer:
            raise ApiError(403, "not_an_assurer", "Only Assurers may record assurances.")
        try:
            points = int(_text(form, "points", 4))
            met_on = date.fromisoformat(_text(form, "date", 10))
        except ValueError:
            return await self.assurance(
                request,
                visitor,
                form,
                status=422,
                error=f"Enter points as a number 0..{MAX_POINTS} and the date as YYYY-MM-DD.",
            )
        location = " ".join(_text(form, "location", 200).split())
        if not location:
            return await self.assurance(request, visitor, form, error="Enter where you met.", status=422)
        try:
            target = await self._target(_text(form, "member", 320))
            await self._assurances.record(assurer, target, points=points, location=location, met_on=met_on)
        except ApiError as exc:
            return await self.assurance(request, visitor, form, error=exc.message, status=exc.status)
        return see_other("/account/assurance?notice=assured")

    async def admin(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        admin = _member(visitor)
        reference = request.query.get("member", "")[:320]
        found = None
        error = None
        if reference:
            try:
                target = await self._target(reference)
            except ApiError as exc:
                error = exc.message
            else:
                await self._members.audit(admin.id, "admin.member_viewed", target.id)
                found = await member_view(target, self._assurances)
        return render(
            visitor,
            "admin.html",
            title="Support",
            section="admin",
            reference=reference,
            found=found,
            error=error,
            reasons=REVOCATION_REASONS,
            assurer_points=ASSURER_POINTS,
            notice=NOTICES.get(request.query.get("notice", "")),
        )

    async def admin_grant_assurer(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        member = await self._target(request.match_info["member_id"])
        await StaffActions(self._members, self._assurances).grant_assurer(
            _member(visitor), member, test_passed=_text(form, "assurer_test_passed") == "yes"
        )
        return see_other(f"/account/admin?member={quote(member.id)}&notice=roles_changed")

    async def admin_codesign(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        member = await self._target(request.match_info["member_id"])
        await StaffActions(self._members, self._assurances).set_codesign(
            _member(visitor), member, enabled=_text(form, "enabled") == "yes"
        )
        return see_other(f"/account/admin?member={quote(member.id)}&notice=roles_changed")

    async def admin_revoke(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        reason = _text(form, "reason", 64)
        if reason not in REVOCATION_REASONS:
            reason = "unspecified"
        serial = _text(form, "serial", 80).strip().lower().replace(":", "")
        if not re.fullmatch(r"[0-9a-f]{1,64}", serial):
            raise ApiError(422, "invalid_serial", "Enter the certificate's serial number in hexadecimal.")
        done = await self._certificates.request_revocation(_member(visitor), serial, reason)
        return see_other(f"/account/certificates/{done['serial']}?notice=revocation_requested")


def _member(visitor: Visitor) -> Member:
    assert visitor.member is not None  # guaranteed by the access check in WebPortal._run
    return visitor.member


def signup_error_line(problem: SignupProblem) -> str:
    """The portal's wording of a refused sign-up field; the JSON API answers the same problem as `problem.error`."""
    if problem.rule == "blank_name":
        return "Enter your name as it appears on your identity documents."
    if problem.rule == "unusable_email":
        return f"Email: {'; '.join(_detail_lines(problem.error.details)) or problem.error.message}"
    if problem.rule == "not_a_date":
        return "Date of birth: use the form YYYY-MM-DD."
    if problem.rule == "implausible_date":
        return f"Date of birth: it {problem.problem}."
    return f"Password: {problem.problem}"


def _detail_lines(details: Any) -> list[str]:
    if isinstance(details, list):
        return [str(d.get("problem", d)) if isinstance(d, dict) else str(d) for d in details][:20]
    if isinstance(details, dict) and isinstance(details.get("reasons"), list):
        return [str(r) for r in details["reasons"]][:20]
    return []
