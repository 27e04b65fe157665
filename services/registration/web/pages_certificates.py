"""Certificate pages: the lists, the CSR form → preview → confirm, a request, a certificate, downloads, revoke, renew.

The class choice (Class 3 or Class 1) is offered to Assured members only; the preview and the
submission pass it to the same `IssuancePolicy.decide` the API uses, which refuses what the
member may not have.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from services.registration.assurance import Assurances
from services.registration.certificate_requests import CertificateRequests
from services.registration.certificates import FORMATS, REVOCATION_REASONS, Certificates
from services.registration.issuance_policy import ASSURED_POINTS
from services.registration.members import Member
from services.registration.web import preview as previews
from services.registration.web.forms import Form, Route, notice_of, signed_in, text
from services.registration.web.rendering import render, see_other
from services.registration.web.security import Visitor
from shared.ca_certificates import CaCertificates, CaUnavailable, signing_ca
from shared.http import ApiError
from shared.server_snippets import ROOT_CHOICES, server_snippets

KIND_TITLES = {"server": "Server Certificates", "client": "Client Certificates"}
KIND_PROFILES = {"server": ("server",), "client": ("client", "codesign")}
# What each root means to relying parties, in the words of the CSR form.
CLASS_CHOICES = {
    3: "Class 3: trusted by relying parties that accept assured members only",
    1: "Class 1: for relying parties that trust only the Class 1 root",
}
_SERIAL = re.compile(r"[0-9a-f]{1,64}")


def kind_of(profile: str | None) -> str:
    return "server" if profile == "server" else "client"


def profiles_for(kind: str, member: Member) -> tuple[str, ...]:
    if kind == "server":
        return ("server",)
    return ("client", "codesign") if member.is_assurer and member.codesign_enabled else ("client",)


def chosen_class(form: Form) -> int | None:
    """The class the form asks for (1 or 3), or None: the highest the member may have."""
    value = text(form, "cert_class", 2)
    return int(value) if value in ("1", "3") else None


def renewal_check(old: dict[str, Any], shown: previews.Preview) -> dict[str, Any]:
    """Whether the new CSR would certify the same names as the certificate being renewed."""
    before = list(old.get("dns_names") or old.get("emails") or [])
    after = list(shown.names or shown.emails)
    return {
        "serial": old["serial"],
        "same": set(before) == set(after),
        "added": [n for n in after if n not in before],
        "missing": [n for n in before if n not in after],
    }


class CertificatePages:
    def __init__(
        self,
        requests: CertificateRequests,
        certificates: Certificates,
        assurances: Assurances,
        ca: CaCertificates,
        clock: Callable[[], datetime],
    ) -> None:
        self._requests = requests
        self._certificates = certificates
        self._assurances = assurances
        self._ca = ca
        self._clock = clock

    async def _preview(
        self, member: Member, pem: str, profile: str, cert_class: int | None
    ) -> previews.Preview:
        """The preview for a certificate signed now, by the issuing CA whose certificate the signer publishes."""
        try:
            known = await self._ca.all()
        except CaUnavailable:
            known = {}
        issuing = {
            cert_class: previews.IssuingCa(ca.common_name, ca.certificate.not_valid_after_utc)
            for cert_class in (1, 3)
            if (ca := signing_ca(known, cert_class)) is not None
        }
        return await previews.preview(
            self._requests, member, pem, profile, cert_class, now=self._clock(), issuing_cas=issuing
        )

    def routes(self) -> list[Route]:
        return [
            ("GET", "/account/{kind:server|client}-certs", self.certificate_list, "member"),
            ("GET", "/account/{kind:server|client}-certs/new", self.csr_form, "member"),
            ("POST", "/account/{kind:server|client}-certs/new", self.csr_preview, "member"),
            ("POST", "/account/{kind:server|client}-certs/submit", self.csr_submit, "member"),
            ("GET", "/account/requests/{request_id}", self.request_page, "member"),
            ("GET", "/account/certificates/{serial}", self.certificate_page, "member"),
            ("GET", "/account/certificates/{serial}/renew", self.renew, "member"),
            ("GET", "/account/certificates/{serial}/download/{fmt}", self.certificate_download, "member"),
            ("GET", "/account/certificates/{serial}/revoke", self.revoke_confirm, "member"),
            ("POST", "/account/certificates/{serial}/revoke", self.certificate_revoke, "member"),
        ]

    async def classes_for(self, member: Member) -> tuple[int, ...]:
        """The classes the member may choose from, the default first (the highest they may have)."""
        return (3, 1) if await self._assurances.points_of(member.id) >= ASSURED_POINTS else (1,)

    async def certificate_list(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        member = signed_in(visitor)
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

    async def _form_page(
        self,
        visitor: Visitor,
        kind: str,
        *,
        profile: str | None = None,
        cert_class: int | None = None,
        renewing: dict[str, Any] | None = None,
        error: str | None = None,
        status: int = 200,
    ) -> web.Response:
        member = signed_in(visitor)
        profiles = profiles_for(kind, member)
        classes = await self.classes_for(member)
        return render(
            visitor,
            "csr_form.html",
            title="Renew a certificate" if renewing else f"New {KIND_TITLES[kind][:-1].lower()}",
            section=kind,
            kind=kind,
            profiles=profiles,
            chosen_profile=profile if profile in profiles else profiles[0],
            classes=[(c, CLASS_CHOICES[c]) for c in classes] if len(classes) > 1 else [],
            chosen_class=cert_class if cert_class in classes else classes[0],
            renewing=renewing,
            error=error,
            status=status,
        )

    async def csr_form(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        return await self._form_page(visitor, request.match_info["kind"])

    async def renew(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        """The new-request form pre-filled from a certificate (the link of the expiry reminders)."""
        cert = await self._certificates.get(signed_in(visitor), request.match_info["serial"])
        return await self._form_page(
            visitor, kind_of(cert.get("profile")), profile=cert.get("profile"), cert_class=cert.get("cert_class"),
            renewing=cert,
        )

    async def _renewing(self, member: Member, form: Form) -> dict[str, Any] | None:
        serial = text(form, "renew", 80).strip().lower()
        if not serial:
            return None
        if not _SERIAL.fullmatch(serial):
            raise ApiError(404, "not_found", "no such certificate")
        return await self._certificates.get(member, serial)

    @staticmethod
    def _chosen_profile(kind: str, member: Member, form: Form) -> str:
        profiles = profiles_for(kind, member)
        chosen = text(form, "profile", 16) or profiles[0]
        return chosen if chosen in profiles else profiles[0]

    async def csr_preview(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        member = signed_in(visitor)
        kind = request.match_info["kind"]
        renewing = await self._renewing(member, form)
        pem = text(form, "csr_pem", 70000)
        upload = form.get("csr_file")
        if isinstance(upload, web.FileField) and upload.filename:
            pem = upload.file.read(70001).decode("utf-8", "replace")
        profile = self._chosen_profile(kind, member, form)
        cert_class = chosen_class(form)
        if not pem.strip():
            return await self._form_page(
                visitor, kind, profile=profile, cert_class=cert_class, renewing=renewing,
                error="Paste a CSR or choose a .csr file.", status=422,
            )
        shown = await self._preview(member, pem, profile, cert_class)
        return render(
            visitor,
            "csr_preview.html",
            title="Check before you confirm" if shown.approved else "This CSR cannot be certified",
            section=kind,
            kind=kind,
            preview=shown,
            renewal=renewal_check(renewing, shown) if renewing and shown.approved else None,
            status=200 if shown.approved else 422,
        )

    async def csr_submit(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        member = signed_in(visitor)
        kind = request.match_info["kind"]
        pem = text(form, "csr_pem", 70000)
        profile = self._chosen_profile(kind, member, form)
        cert_class = chosen_class(form)
        try:
            submitted = await self._requests.submit(member, pem, profile, cert_class=cert_class)
        except ApiError as exc:
            if exc.code != "csr_rejected":
                raise
            shown = await self._preview(member, pem, profile, cert_class)
            if shown.approved:  # refused for a reason the preview no longer sees (cannot happen today)
                shown = previews.Preview(profile, pem, tuple(previews.refusal(r) for r in exc.details["reasons"]))
            return render(
                visitor,
                "csr_preview.html",
                title="The request was refused",
                section=kind,
                kind=kind,
                preview=shown,
                renewal=None,
                status=422,
            )
        return see_other(f"/account/requests/{submitted['id']}")

    async def request_page(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        found = await self._requests.get(signed_in(visitor), request.match_info["request_id"])
        if found.get("status") == "issued" and found.get("serial"):
            return see_other(f"/account/certificates/{found['serial']}")
        refusals = [previews.refusal(r) for r in found.get("reasons") or []]
        return render(
            visitor,
            "request.html",
            title="Certificate request",
            section=kind_of(found.get("profile")),
            req=found,
            refusals=refusals,
            waiting=found.get("status") in ("approved", "caa_pending"),
            caa_pending=found.get("status") == "caa_pending",
        )

    async def certificate_page(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        cert = await self._certificates.get(signed_in(visitor), request.match_info["serial"])
        client_root = 1 if request.query.get("client_root") == "1" else 3
        snippets = (
            server_snippets(cert.get("dns_names") or [], client_root_class=client_root)
            if cert.get("profile") == "server"
            else None
        )
        return render(
            visitor,
            "certificate.html",
            title="Certificate",
            section=kind_of(cert.get("profile")),
            cert=cert,
            snippets=snippets,
            client_root=client_root,
            root_choices=ROOT_CHOICES,
            reasons=REVOCATION_REASONS,
            notice=notice_of(request),
        )

    async def certificate_download(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        fmt = request.match_info["fmt"]
        if fmt not in FORMATS:
            raise ApiError(404, "not_found", "no such download format")
        body, content_type, filename = await self._certificates.download(
            signed_in(visitor), request.match_info["serial"], fmt
        )
        return web.Response(
            body=body,
            content_type=content_type,
            headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
        )

    async def revoke_confirm(
        self, request: web.Request, visitor: Visitor, form: Form, *, error: str | None = None, status: int = 200
    ) -> web.StreamResponse:
        """Confirm first: the certificate, the reasons in words, and the button that revokes."""
        cert = await self._certificates.get(signed_in(visitor), request.match_info["serial"])
        if cert.get("status") != "valid":
            return see_other(f"/account/certificates/{cert['serial']}")
        return render(
            visitor,
            "revoke.html",
            title="Revoke this certificate?",
            section=kind_of(cert.get("profile")),
            cert=cert,
            reasons=REVOCATION_REASONS,
            chosen=text(form, "reason", 64),
            error=error,
            status=status,
        )

    async def certificate_revoke(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        reason = text(form, "reason", 64)
        if reason not in REVOCATION_REASONS:
            return await self.revoke_confirm(
                request, visitor, form, error="Choose why you revoke the certificate.", status=422
            )
        done = await self._certificates.request_revocation(signed_in(visitor), request.match_info["serial"], reason)
        return see_other(f"/account/certificates/{done['serial']}?notice=revocation_requested")
