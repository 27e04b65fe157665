"""The ACME API (RFC 8555 section 7, RFC 9773): one handler per resource, under the public URL's path.

Every response carries a fresh `Replay-Nonce` and `Link: <directory>;rel="index"` and is not cached;
every error is a problem document. Requests other than the directory, newNonce and renewalInfo are
JWS-signed POSTs (POST-as-GET for reads, RFC 8555 6.3) checked by `authenticate` before the handler runs.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client import Counter

from services.acme import renewal
from services.acme.orders import OrderBook, authorization_status, event, new_id, order_status
from services.acme.settings import AcmeSettings
from services.acme.store import AcmeStore, Document, KeyInUse
from services.acme.wfe import jws
from services.acme.wfe.problems import Problem, subproblem
from shared.acme_binding import BindingOpener, UnopenableBinding
from shared.ca_certificates import CLASS3_ROOT, LABELS, CaCertificates, CaUnavailable
from shared.dns_names import normalise_dns_name, registrable_domain
from shared.events import isoformat
from shared.key_compromise import spki_sha256
from shared.key_policy import check_public_key
from shared.logging import get_logger

PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
log = get_logger("acme.wfe")
ORDERS = Counter("cacert_acme_orders_total", "ACME orders by what happened to them", ["event"])
MAX_IDENTIFIERS = 100
# RFC 5280 CRLReason codes a subscriber may give (BR 7.2.2 / 4.9.1.1: not caCompromise, certificateHold,
# removeFromCRL, privilegeWithdrawn or aACompromise), and their names in cert.revoke_requested.
REVOCATION_REASONS = {0: "unspecified", 1: "key_compromise", 3: "affiliation_changed", 4: "superseded",
                      5: "cessation_of_operation"}
_MAILTO = re.compile(r"^mailto:[^@\s,;<>]{1,64}@[A-Za-z0-9.-]{1,253}$")
PEM_CHAIN = "application/pem-certificate-chain"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _b64decode(text: Any, what: str) -> bytes:
    if not isinstance(text, str) or "=" in text:
        raise Problem("malformed", f"{what} must be unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        raise Problem("malformed", f"{what} is not base64url") from None


class AcmeFrontEnd:
    def __init__(self, store: AcmeStore, book: OrderBook, settings: AcmeSettings, opener: BindingOpener,
                 clock: Callable[[], datetime]) -> None:
        self.store = store
        self.book = book
        self.settings = settings
        self.opener = opener
        self.clock = clock
        self.base = settings.base_path
        self.ca = CaCertificates(settings.ca_certs_url, settings.ca_certs_cache_seconds)

    # -- wiring -------------------------------------------------------------------------------------------

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self._envelope)
        b = self.base
        app.router.add_get(f"{b}/directory", self.directory)
        app.router.add_route("HEAD", f"{b}/new-nonce", self.new_nonce)
        app.router.add_get(f"{b}/new-nonce", self.new_nonce, allow_head=False)
        app.router.add_post(f"{b}/new-account", self.new_account)
        app.router.add_post(f"{b}/acct/{{id}}", self.account)
        app.router.add_post(f"{b}/acct/{{id}}/orders", self.orders)
        app.router.add_post(f"{b}/key-change", self.key_change)
        app.router.add_post(f"{b}/new-order", self.new_order)
        app.router.add_post(f"{b}/order/{{id}}", self.order)
        app.router.add_post(f"{b}/order/{{id}}/finalize", self.finalize)
        app.router.add_post(f"{b}/authz/{{id}}", self.authorization)
        app.router.add_post(f"{b}/chall/{{id}}", self.challenge)
        app.router.add_post(f"{b}/cert/{{serial}}", self.certificate)
        app.router.add_post(f"{b}/cert/{{serial}}/{{alternate}}", self.certificate)
        app.router.add_post(f"{b}/revoke-cert", self.revoke_certificate)
        app.router.add_get(f"{b}/renewal-info/{{id}}", self.renewal_info)

    def url(self, path: str) -> str:
        return self.settings.url(path)

    @web.middleware
    async def _envelope(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(self.base + "/") or request.path.startswith(("/healthz", "/readyz",
                                                                                     "/metrics")):
            return await handler(request)
        try:
            response = await handler(request)
        except Problem as problem:
            response = problem.response()
        except web.HTTPException as exc:
            if exc.status in (404, 405):
                response = Problem("malformed", f"no such ACME resource or method: {request.method} "
                                                f"{request.path[:200]}", status=exc.status).response()
            else:
                raise
        response.headers["Replay-Nonce"] = await self._nonce()
        response.headers.add("Link", f'<{self.url("/directory")}>;rel="index"')
        response.headers["Cache-Control"] = "no-store"
        return response

    async def _nonce(self) -> str:
        nonce = secrets.token_urlsafe(16)
        await self.store.add_nonce(nonce, self.clock() + timedelta(seconds=self.settings.nonce_seconds))
        return nonce

    def _expected_url(self, request: web.Request) -> str:
        public = self.settings.public_url.rstrip("/")
        return public[: len(public) - len(self.base)] + request.path if self.base else public + request.path

    async def authenticate(self, request: web.Request, *, key_by: str = "kid") -> tuple[jws.Envelope, Document]:
        """The checked JWS and the account that signed it (RFC 8555 6.2-6.5)."""
        envelope = await jws.read_envelope(request)
        jws.check_header(envelope, self._expected_url(request), key_by=key_by)
        return await self._authenticated(envelope)

    async def _signed_with_jwk(self, request: web.Request) -> tuple[jws.Envelope, Any]:
        envelope = await jws.read_envelope(request)
        jws.check_header(envelope, self._expected_url(request), key_by="jwk")
        if not await self.store.use_nonce(envelope.header["nonce"], self.clock()):
            raise Problem("badNonce", "the nonce is unknown, used or expired; get a new one")
        key = jws.public_key(envelope.jwk or {})
        jws.verify_signature(envelope, key)
        return envelope, key

    def _owned(self, doc: Document | None, account: Document, what: str) -> Document:
        if doc is None:
            raise Problem("malformed", f"no such {what}", status=404)
        if doc["account_id"] != account["_id"]:
            raise Problem("unauthorized", f"this {what} belongs to another account")
        return doc

    # -- directory and nonces -----------------------------------------------------------------------------

    async def directory(self, request: web.Request) -> web.Response:
        return web.json_response({
            "newNonce": self.url("/new-nonce"), "newAccount": self.url("/new-account"),
            "newOrder": self.url("/new-order"), "revokeCert": self.url("/revoke-cert"),
            "keyChange": self.url("/key-change"), "renewalInfo": self.url("/renewal-info"),
            "meta": {"termsOfService": self.settings.terms_of_service_url, "website": self.settings.website_url,
                     "caaIdentities": list(self.settings.caa_identities), "externalAccountRequired": True},
        })

    async def new_nonce(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if request.method == "HEAD" else 204)

    # -- accounts -----------------------------------------------------------------------------------------

    def _account_view(self, account: Document) -> dict[str, Any]:
        return {"status": account["status"], "contact": account.get("contact", []),
                "termsOfServiceAgreed": True, "orders": self.url(f"/acct/{account['_id']}/orders"),
                "createdAt": isoformat(account["created_at"])}

    def _account_response(self, account: Document, status: int) -> web.Response:
        return web.json_response(self._account_view(account), status=status,
                                 headers={"Location": self.url(f"/acct/{account['_id']}")})

    async def new_account(self, request: web.Request) -> web.Response:
        envelope, key = await self._signed_with_jwk(request)
        payload = envelope.json_payload()
        thumb = jws.thumbprint(key)
        existing = await self.store.account_by_thumbprint(thumb)
        if existing is not None:
            if existing["status"] != "valid":
                raise Problem("unauthorized", f"the account of this key is {existing['status']}")
            return self._account_response(existing, 200)
        if payload.get("onlyReturnExisting") is True:
            raise Problem("accountDoesNotExist", "no account has this key")
        if payload.get("termsOfServiceAgreed") is not True:
            raise Problem("malformed", f"agree to the terms of service ({self.settings.terms_of_service_url}) "
                                       "with termsOfServiceAgreed: true")
        contact = self._contacts(payload.get("contact", []))
        binding = await self._binding(payload.get("externalAccountBinding"), envelope, request)
        now = self.clock()
        account: Document = {
            "_id": new_id(), "jwk": envelope.jwk, "thumbprint": thumb, "binding_key_id": binding["_id"],
            "member_id": binding["member_id"], "cert_class": binding["cert_class"], "contact": contact,
            "status": "valid", "created_at": now,
        }
        if not await self.store.insert_account(account):  # the same key, concurrently
            again = await self.store.account_by_thumbprint(thumb)
            if again is None:
                raise Problem("serverInternal", "the account could not be stored; try again")
            return self._account_response(again, 200)
        log.info("acme account created", account_id=account["_id"], binding=binding["_id"],
                 member_id=binding["member_id"])
        return self._account_response(account, 201)

    def _contacts(self, contact: Any) -> list[str]:
        if not isinstance(contact, list) or len(contact) > 5:
            raise Problem("malformed", "contact must be a list of at most 5 mailto: URLs")
        for item in contact:
            if not isinstance(item, str) or not item.startswith("mailto:"):
                raise Problem("unsupportedContact", "only mailto: contacts are supported")
            if not _MAILTO.match(item):
                raise Problem("invalidContact", f"{item[:100]!r} is not a single mailto: address")
        return list(contact)

    async def _binding(self, eab: Any, outer: jws.Envelope, request: web.Request) -> Document:
        """The External Account Binding a newAccount request proves (RFC 8555 7.3.4)."""
        if eab is None:
            raise Problem("externalAccountRequired", "create an ACME binding in your account (portal: ACME, "
                                                     "or `cacert acme-binding create`) and pass its key id and "
                                                     "HMAC key (e.g. certbot --eab-kid --eab-hmac-key)")
        if not isinstance(eab, dict):
            raise Problem("malformed", "externalAccountBinding must be a flattened JWS")
        inner = jws.parse_envelope(json.dumps(eab).encode())
        if inner.header.get("url") != self._expected_url(request):
            raise Problem("unauthorized", "the externalAccountBinding url must be the newAccount URL")
        if "nonce" in inner.header:
            raise Problem("malformed", "the externalAccountBinding must not carry a nonce (RFC 8555 7.3.4)")
        try:
            bound = json.loads(inner.payload())
        except ValueError:
            raise Problem("malformed", "the externalAccountBinding payload is not a JWK") from None
        if bound != outer.jwk:
            raise Problem("unauthorized", "the externalAccountBinding binds another key than this request's")
        kid = inner.kid
        binding = await self.store.binding(kid) if kid else None
        if binding is None or binding.get("revoked_only"):
            raise Problem("unauthorized", "unknown ACME binding key id")
        if binding.get("revoked_at") is not None:
            raise Problem("unauthorized", "this ACME binding was revoked")
        try:
            hmac_key = self.opener.open(binding["_id"], binding["member_id"], binding["hmac_key"])
        except UnopenableBinding as exc:
            log.error("an ACME binding's key does not open", key_id=binding["_id"], reason=str(exc))
            raise Problem("serverInternal", "this binding cannot be checked; create a new one") from None
        jws.verify_hmac(inner, hmac_key)
        if await self.store.accounts_of_binding(binding["_id"]) >= self.settings.accounts_per_binding:
            raise Problem("rateLimited", f"this binding already has {self.settings.accounts_per_binding} "
                                         "accounts; create another binding")
        return binding

    async def account(self, request: web.Request) -> web.Response:
        envelope, account = await self.authenticate(request)
        if request.match_info["id"] != account["_id"]:
            raise Problem("unauthorized", "a request about an account must be signed by that account")
        if envelope.is_post_as_get():
            return self._account_response(account, 200)
        payload = envelope.json_payload()
        fields: Document = {}
        if "contact" in payload:
            fields["contact"] = self._contacts(payload["contact"])
        if payload.get("status") not in (None, account["status"]):  # clients may echo the current status
            if payload["status"] != "deactivated":
                raise Problem("malformed", "an account's status can only be changed to deactivated")
            fields.update(status="deactivated", deactivated_at=self.clock())
        if fields:
            updated = await self.store.update_account(account["_id"], {"status": "valid"}, fields)
            account = updated or account
        return self._account_response(account, 200)

    async def orders(self, request: web.Request) -> web.Response:
        _, account = await self.authenticate(request)
        if request.match_info["id"] != account["_id"]:
            raise Problem("unauthorized", "only the account itself may list its orders")
        docs = sorted(await self.store.orders_of(account["_id"]), key=lambda d: d["created_at"])
        return web.json_response({"orders": [self.url(f"/order/{d['_id']}") for d in docs]})

    async def key_change(self, request: web.Request) -> web.Response:
        envelope, account = await self.authenticate(request)
        inner = jws.parse_envelope(json.dumps(envelope.json_payload()).encode())
        if inner.jwk is None or inner.kid is not None:
            raise Problem("malformed", "the inner JWS of a keyChange must carry the new key as jwk")
        if "nonce" in inner.header:
            raise Problem("malformed", "the inner JWS of a keyChange must not carry a nonce (RFC 8555 7.3.5)")
        if inner.header.get("url") != self._expected_url(request):
            raise Problem("malformed", "the inner JWS url must equal the outer one (RFC 8555 7.3.5)")
        if inner.alg not in jws.ALGORITHMS:
            raise Problem("badSignatureAlgorithm", f"alg {inner.alg[:20]!r} is not accepted")
        new_key = jws.public_key(inner.jwk)
        jws.verify_signature(inner, new_key)
        try:
            body = json.loads(inner.payload())
        except ValueError:
            raise Problem("malformed", "the inner payload is not JSON") from None
        if not isinstance(body, dict) or body.get("account") != self.url(f"/acct/{account['_id']}"):
            raise Problem("malformed", "the inner payload must name this account")
        old = body.get("oldKey")
        if not isinstance(old, dict) or jws.thumbprint(jws.public_key(old)) != account["thumbprint"]:
            raise Problem("malformed", "oldKey is not this account's current key")
        thumb = jws.thumbprint(new_key)
        other = await self.store.account_by_thumbprint(thumb)
        if other is not None:
            raise Problem("conflict", "another account already uses the new key", status=409,
                          headers={"Location": self.url(f"/acct/{other['_id']}")})
        try:
            updated = await self.store.update_account(account["_id"], {"status": "valid",
                                                                       "thumbprint": account["thumbprint"]},
                                                      {"jwk": inner.jwk, "thumbprint": thumb})
        except KeyInUse:
            raise Problem("conflict", "another account already uses the new key", status=409) from None
        if updated is None:
            raise Problem("conflict", "the account changed meanwhile; try again", status=409)
        log.info("acme account key changed", account_id=account["_id"])
        return self._account_response(updated, 200)

    # -- orders -------------------------------------------------------------------------------------------

    def _order_view(self, order: Document) -> dict[str, Any]:
        now = self.clock()
        view: dict[str, Any] = {
            "status": order_status(order, now), "expires": isoformat(order["expires"]),
            "identifiers": order["identifiers"],
            "authorizations": [self.url(f"/authz/{a}") for a in order["authorization_ids"]],
            "finalize": self.url(f"/order/{order['_id']}/finalize"),
        }
        if order.get("error"):
            view["error"] = order["error"]
        if order.get("serial") and order["status"] == "valid":
            view["certificate"] = self.url(f"/cert/{order['serial']}")
        if order.get("replaces"):
            view["replaces"] = order["replaces"]
        return view

    def _order_response(self, order: Document, status: int = 200) -> web.Response:
        headers = {"Location": self.url(f"/order/{order['_id']}")}
        if order["status"] == "processing":
            headers["Retry-After"] = str(self.settings.retry_after_seconds)
        return web.json_response(self._order_view(order), status=status, headers=headers)

    async def new_order(self, request: web.Request) -> web.Response:
        envelope, account = await self.authenticate(request)
        payload = envelope.json_payload()
        if payload.get("notBefore") or payload.get("notAfter"):
            raise Problem("malformed", "notBefore and notAfter are not supported: the CA sets the validity")
        names = self._identifiers(payload.get("identifiers"))
        replaces = payload.get("replaces")
        if replaces is not None:
            await self._check_replaces(replaces, account)
        await self._limit(f"orders:account:{account['_id']}", self.settings.orders_per_account_per_hour,
                          "new orders from this account")
        for base in sorted({registrable_domain(n.removeprefix("*.")) or n for n in names}):
            await self._limit(f"orders:domain:{base}", self.settings.orders_per_domain_per_hour,
                              f"new orders for {base}")
        order = await self.book.new_order(account, names, replaces)
        ORDERS.labels("created").inc()
        log.info("acme order created", order_id=order["_id"], account_id=account["_id"], names=names,
                 status=order["status"])
        return self._order_response(order, 201)

    def _identifiers(self, identifiers: Any) -> list[str]:
        if not isinstance(identifiers, list) or not identifiers:
            raise Problem("malformed", "identifiers must be a non-empty list")
        if len(identifiers) > MAX_IDENTIFIERS:
            raise Problem("rejectedIdentifier", f"at most {MAX_IDENTIFIERS} identifiers per order")
        names: list[str] = []
        subs: list[dict[str, Any]] = []
        for item in identifiers:
            if not isinstance(item, dict) or not isinstance(item.get("value"), str):
                raise Problem("malformed", "each identifier needs a type and a value")
            if item.get("type") != "dns":
                subs.append(subproblem("unsupportedIdentifier", f"identifier type {str(item.get('type'))[:20]!r} "
                                       "is not supported; only dns", str(item["value"])[:253]))
                continue
            try:
                name = normalise_dns_name(item["value"])
            except ValueError as exc:
                subs.append(subproblem("rejectedIdentifier", str(exc), str(item["value"])[:253]))
                continue
            if name not in names:
                names.append(name)
        if subs:
            kind = "unsupportedIdentifier" if all("unsupported" in s["type"] for s in subs) else "rejectedIdentifier"
            raise Problem(kind, "some identifiers cannot be ordered; see subproblems", subproblems=subs)
        return names

    async def _check_replaces(self, replaces: Any, account: Document) -> None:
        if not isinstance(replaces, str):
            raise Problem("malformed", "replaces must be an ARI certificate identifier")
        old = await self.store.certificate_by_ari_id(replaces)
        if old is None or old["member_id"] != account["member_id"]:
            raise Problem("malformed", "replaces names no certificate of this account")
        if old.get("replaced_by"):
            raise Problem("conflict", "that certificate was already replaced", status=409)

    async def _limit(self, key: str, limit: int, what: str) -> None:
        now = self.clock()
        count, ends = await self.store.hit(key, timedelta(hours=1), now)
        if count > limit:
            wait = max(1, int((ends - now).total_seconds()) + 1)
            raise Problem("rateLimited", f"too many {what} ({limit} per hour); retry after {wait} s",
                          retry_after=wait)

    async def order(self, request: web.Request) -> web.Response:
        _, account = await self.authenticate(request)
        return self._order_response(self._owned(await self.store.order(request.match_info["id"]), account,
                                                "order"))

    async def finalize(self, request: web.Request) -> web.Response:
        envelope, account = await self.authenticate(request)
        order = self._owned(await self.store.order(request.match_info["id"]), account, "order")
        payload = envelope.json_payload()
        status = order_status(order, self.clock())
        if status != "ready":
            raise Problem("orderNotReady", f"the order is {status}, not ready")
        csr = self._csr(payload.get("csr"), order, account)
        csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode()
        names = [i["value"] for i in order["identifiers"]]
        if not await self.book.finalize(order, account, csr_pem, names):
            raise Problem("orderNotReady", "the order is no longer ready")
        ORDERS.labels("finalized").inc()
        log.info("acme order finalized", order_id=order["_id"], account_id=account["_id"])
        return self._order_response(await self.store.order(order["_id"]) or order)

    def _csr(self, encoded: Any, order: Document, account: Document) -> x509.CertificateSigningRequest:
        try:
            csr = x509.load_der_x509_csr(_b64decode(encoded, "csr"))
        except ValueError:
            raise Problem("badCSR", "the csr is not a DER PKCS#10 request") from None
        if not csr.is_signature_valid:
            raise Problem("badCSR", "the CSR's signature does not verify")
        try:
            cns = [str(a.value) for a in csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
            sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
                x509.DNSName)
        except x509.ExtensionNotFound:
            sans = []
        except ValueError:
            raise Problem("badCSR", "the CSR's names cannot be read") from None
        try:
            named = {normalise_dns_name(n) for n in [*cns, *sans]}
        except ValueError as exc:
            raise Problem("badCSR", f"the CSR names an invalid name: {exc}") from None
        ordered = {i["value"] for i in order["identifiers"]}
        if named != ordered:
            raise Problem("badCSR", f"the CSR names {', '.join(sorted(named)) or 'nothing'} but the order is for "
                                    f"{', '.join(sorted(ordered))} (RFC 8555 7.4)")
        key = csr.public_key()
        verdict = check_public_key(key)
        if not verdict.acceptable:
            raise Problem("badPublicKey", "; ".join(verdict.messages))
        if spki_sha256(key) == spki_sha256(jws.raw_key(jws.public_key(account["jwk"]))):
            raise Problem("badCSR", "the certificate key must not be the account key (RFC 8555 11.1)")
        return csr

    # -- authorizations and challenges ---------------------------------------------------------------------

    def _challenge_view(self, authz: Document, challenge: Document) -> dict[str, Any]:
        view: dict[str, Any] = {"type": challenge["type"], "url": self.url(f"/chall/{challenge['id']}"),
                                "token": challenge["token"], "status": challenge["status"]}
        if challenge.get("validated"):
            view["validated"] = isoformat(challenge["validated"])
        if challenge.get("error"):
            view["error"] = challenge["error"]
        return view

    def _authorization_view(self, authz: Document) -> dict[str, Any]:
        identifier = {"type": "dns", "value": authz["domain"]}
        view: dict[str, Any] = {"identifier": identifier, "status": authorization_status(authz, self.clock()),
                                "expires": isoformat(authz["expires"]),
                                "challenges": [self._challenge_view(authz, c) for c in authz["challenges"]]}
        if authz["wildcard"]:
            view["wildcard"] = True
        return view

    async def authorization(self, request: web.Request) -> web.Response:
        envelope, account = await self.authenticate(request)
        authz = self._owned(await self.store.authorization(request.match_info["id"]), account, "authorization")
        if not envelope.is_post_as_get():
            payload = envelope.json_payload()
            if payload.get("status") != "deactivated":
                raise Problem("malformed", "an authorization can only be updated to status deactivated")
            authz = await self.book.deactivate_authorization(authz) or authz
        headers = {}
        if any(c["status"] == "processing" for c in authz["challenges"]):
            headers["Retry-After"] = str(self.settings.retry_after_seconds)
        return web.json_response(self._authorization_view(authz), headers=headers)

    async def challenge(self, request: web.Request) -> web.Response:
        envelope, account = await self.authenticate(request)
        challenge_id = request.match_info["id"]
        authz = self._owned(await self.store.authorization_by_challenge(challenge_id), account, "challenge")
        challenge = next(c for c in authz["challenges"] if c["id"] == challenge_id)
        if not envelope.is_post_as_get():
            envelope.json_payload()  # RFC 8555 7.5.1: an empty object; its content is not used
            if challenge["status"] == "pending":
                key_authorization = f"{challenge['token']}.{account['thumbprint']}"
                if await self.book.start_challenge(authz, challenge, key_authorization):
                    log.info("acme challenge started", challenge_id=challenge_id, type=challenge["type"],
                             domain=authz["domain"])
                    challenge = {**challenge, "status": "processing"}
                elif (status := authorization_status(authz, self.clock())) != "pending":
                    raise Problem("malformed", f"the authorization is {status}; its challenges are closed")
        headers = {"Link": f'<{self.url("/authz/" + authz["_id"])}>;rel="up"'}
        if challenge["status"] == "processing":
            headers["Retry-After"] = str(self.settings.retry_after_seconds)
        return web.json_response(self._challenge_view(authz, challenge), headers=headers)

    # -- certificates -------------------------------------------------------------------------------------

    async def certificate(self, request: web.Request) -> web.Response:
        _, account = await self.authenticate(request)
        cert = await self.store.certificate(request.match_info["serial"])
        if cert is None or cert["member_id"] != account["member_id"]:
            raise Problem("malformed", "no such certificate on this account", status=404)
        alternate = request.match_info.get("alternate")
        chains = await self._chains(cert)
        if alternate is not None and (not alternate.isdigit() or not 0 < int(alternate) < len(chains)):
            raise Problem("malformed", "no such alternate chain", status=404)
        index = int(alternate or 0)
        response = web.Response(body=chains[index].encode(), content_type=PEM_CHAIN)
        for other in range(len(chains)):
            if other != index:
                path = f"/cert/{cert['_id']}" + (f"/{other}" if other else "")
                response.headers.add("Link", f'<{self.url(path)}>;rel="alternate"')
        return response

    async def _chains(self, cert: Document) -> list[str]:
        """The default chain, up to and including its root (ACME clients expect the issuer in it, and a Class 1
        certificate's issuer may be the root), then the alternates: each chain the signer named in
        ``cert.issued`` (``chains``: for a Class 3 certificate one ending in the self-signed Class 3 root, for
        relying parties who anchor there; after a root rollover those ending in the new roots). A certificate
        issued before the signer named them gets its chains from the CA certificates the status endpoint
        publishes."""
        leaf = cert["certificate_pem"].strip() + "\n"
        if cert.get("chains"):
            return [leaf + "".join(f"{pem.strip()}\n" for pem in (c["chain_pem"], c["anchor_pem"]) if pem.strip())
                    for c in cert["chains"]]
        try:
            roots = await self.ca.all()
        except CaUnavailable:
            raise Problem("serverInternal", "the CA certificates are unavailable just now; try again",
                          status=503, retry_after=self.settings.retry_after_seconds) from None
        chain = cert.get("chain_pem", "").strip()
        class1 = roots[LABELS[0]].pem.decode()
        default = leaf + (chain + "\n" if chain else "") + class1
        if cert.get("cert_class") == 3 and CLASS3_ROOT in roots:
            # The chain's certificates up to the Class 3 root signed by Class 1, which the self-signed one
            # replaces (compared as PEM text: the chain is the signer's, block by block).
            signed_by_class1 = roots[LABELS[1]].pem.decode().strip()
            blocks = [f"{block.strip()}\n" for block in re.findall(PEM_BLOCK, chain)]
            below = itertools.takewhile(lambda block: block.strip() != signed_by_class1, blocks)
            return [default, leaf + "".join(below) + roots[CLASS3_ROOT].pem.decode()]
        return [default]

    async def revoke_certificate(self, request: web.Request) -> web.Response:
        envelope = await jws.read_envelope(request)
        jws.check_header(envelope, self._expected_url(request), key_by="either")
        account: Document | None = None
        if envelope.kid is not None:
            _, account = await self._authenticated(envelope)
        else:
            if not await self.store.use_nonce(envelope.header["nonce"], self.clock()):
                raise Problem("badNonce", "the nonce is unknown, used or expired; get a new one")
            key = jws.public_key(envelope.jwk or {})
            jws.verify_signature(envelope, key)
        payload = envelope.json_payload()
        try:
            leaf = x509.load_der_x509_certificate(_b64decode(payload.get("certificate"), "certificate"))
        except ValueError:
            raise Problem("malformed", "certificate is not a DER X.509 certificate") from None
        reason_code = payload.get("reason", 0)
        if not isinstance(reason_code, int) or reason_code not in REVOCATION_REASONS:
            raise Problem("badRevocationReason", "allowed reasons: 0 unspecified, 1 keyCompromise, "
                                                 "3 affiliationChanged, 4 superseded, 5 cessationOfOperation")
        serial = format(leaf.serial_number, "x")
        cert = await self.store.certificate(serial)
        if cert is None or cert["certificate_pem"].strip() != leaf.public_bytes(
                serialization.Encoding.PEM).decode().strip():
            raise Problem("unauthorized", "this certificate was not issued through this ACME service")
        if account is not None:
            if cert["member_id"] != account["member_id"]:
                raise Problem("unauthorized", "this certificate belongs to another member's account")
            proof = "account"
        else:
            if spki_sha256(leaf.public_key()) != spki_sha256(jws.raw_key(jws.public_key(envelope.jwk or {}))):
                raise Problem("unauthorized", "the request is signed neither by the account nor by the "
                                              "certificate's own key")
            proof = "certificate_key"
        if cert["status"] != "valid":
            raise Problem("alreadyRevoked", "the certificate is already revoked or being revoked")
        now = self.clock()
        data: dict[str, Any] = {"request_id": new_id(), "serial": serial, "member_id": cert["member_id"],
                                "proof": proof, "reason": REVOCATION_REASONS[reason_code],
                                "requested_at": isoformat(now)}
        if account is not None:
            data["account_id"] = account["_id"]
        request_event = event("acme.revocation_requested", data, serial)
        written = await self.store.update_certificate(serial, {"status": "valid"},
                                                      {"status": "revocation_requested", "updated_at": now},
                                                      request_event)
        if written is None:
            raise Problem("alreadyRevoked", "the certificate is already revoked or being revoked")
        await self.book._flush(self.store.certificates, serial, written)
        log.info("acme revocation requested", serial=serial, proof=proof, reason=data["reason"])
        return web.Response(status=200)

    async def _authenticated(self, envelope: jws.Envelope) -> tuple[jws.Envelope, Document]:
        if not await self.store.use_nonce(envelope.header["nonce"], self.clock()):
            raise Problem("badNonce", "the nonce is unknown, used or expired; get a new one")
        prefix = self.url("/acct/")
        kid = envelope.kid or ""
        account = await self.store.account(kid[len(prefix):]) if kid.startswith(prefix) else None
        if account is None:
            raise Problem("accountDoesNotExist", "no such account")
        jws.verify_signature(envelope, jws.public_key(account["jwk"]))
        if account["status"] != "valid":
            raise Problem("unauthorized", f"the account is {account['status']}")
        return envelope, account

    async def renewal_info(self, request: web.Request) -> web.Response:
        cert = await self.store.certificate_by_ari_id(request.match_info["id"])
        if cert is None:
            raise Problem("malformed", "no certificate of this CA has that ARI identifier", status=404)
        start, end = renewal.suggested_window(cert["not_before"], cert["not_after"],
                                              cert.get("revoked_at") if cert["status"] == "revoked" else None)
        return web.json_response({"suggestedWindow": {"start": isoformat(start), "end": isoformat(end)}},
                                 headers={"Retry-After": str(renewal.RETRY_AFTER_SECONDS)})
