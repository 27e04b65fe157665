"""ACME page: a member's External Account Bindings for ACME clients (certbot, cert-manager, ...).

Creating a binding shows its key id and HMAC key once, in the answer to the form's POST (never in a URL or
a later page: registration does not keep the key), with a certbot command and a cert-manager ClusterIssuer
filled in. The list shows every binding (never a key) with a button to revoke it. The rules are
`AcmeBindings`' (acme_bindings.py), the ones the API applies.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.registration.acme_bindings import AcmeBindings
from services.registration.assurance import Assurances
from services.registration.issuance_policy import ASSURED_POINTS
from services.registration.web.forms import Form, Route, notice_of, sentence, signed_in, text
from services.registration.web.pages_certificates import CLASS_CHOICES, chosen_class
from services.registration.web.rendering import render, see_other
from services.registration.web.security import Visitor
from shared.http import ApiError

EAB_SECRET_NAME = "cacert-acme-eab"  # noqa: S105
"""The name of the Kubernetes Secret the cert-manager snippet keeps the HMAC key in (not a secret itself)."""


def certbot_command(created: dict[str, Any]) -> str:
    return (f"certbot certonly --server {created['directory_url']} \\\n"
            f"  --eab-kid {created['key_id']} \\\n"
            f"  --eab-hmac-key {created['hmac_key']} \\\n"
            "  --email you@example.org --agree-tos \\\n"
            "  --webroot -w /var/www/html -d www.example.org")


def cert_manager_snippet(created: dict[str, Any]) -> str:
    return f"""apiVersion: v1
kind: Secret
metadata:
  name: {EAB_SECRET_NAME}
  namespace: cert-manager
stringData:
  secret: {created['hmac_key']}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata:
  name: cacert
spec:
  acme:
    server: {created['directory_url']}
    email: you@example.org
    privateKeySecretRef:
      name: cacert-acme-account
    externalAccountBinding:
      keyID: {created['key_id']}
      keySecretRef:
        name: {EAB_SECRET_NAME}
        key: secret
    solvers:
      - http01:
          ingress:
            ingressClassName: nginx"""


class AcmePages:
    def __init__(self, bindings: AcmeBindings, assurances: Assurances) -> None:
        self._bindings = bindings
        self._assurances = assurances

    def routes(self) -> list[Route]:
        return [
            ("GET", "/account/acme", self.page, "member"),
            ("POST", "/account/acme", self.create, "member"),
            ("POST", "/account/acme/{key_id}/revoke", self.revoke, "member"),
        ]

    async def page(
        self,
        request: web.Request,
        visitor: Visitor,
        form: Form,
        *,
        created: dict[str, Any] | None = None,
        error: str | None = None,
        typed: str = "",
        status: int = 200,
    ) -> web.StreamResponse:
        member = signed_in(visitor)
        points = await self._assurances.points_of(member.id)
        return render(
            visitor,
            "acme.html",
            title="ACME clients",
            section="acme",
            bindings=await self._bindings.listing(member),
            directory_url=self._bindings.directory_url,
            assured=points >= ASSURED_POINTS,
            assured_points=ASSURED_POINTS,
            class_choices=CLASS_CHOICES,
            created=created,
            certbot=certbot_command(created) if created else "",
            cert_manager=cert_manager_snippet(created) if created else "",
            error=error,
            typed=typed,
            status=status,
            notice=notice_of(request),
        )

    async def create(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        """The key is shown in this answer (Cache-Control: no-store), never again: no redirect to a GET."""
        label = text(form, "label", 100)
        try:
            created = await self._bindings.create(signed_in(visitor), label=label, cert_class=chosen_class(form))
        except ApiError as exc:
            return await self.page(request, visitor, form, error=sentence(exc), typed=label, status=exc.status)
        return await self.page(request, visitor, form, created=created)

    async def revoke(self, request: web.Request, visitor: Visitor, form: Form) -> web.StreamResponse:
        await self._bindings.revoke(signed_in(visitor), request.match_info["key_id"])
        return see_other("/account/acme?notice=acme_binding_revoked")
