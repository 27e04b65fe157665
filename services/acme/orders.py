"""Orders, authorizations and challenges (RFC 8555 7.1.3-7.1.6): how they are made and how they move.

The front end (wfe/) creates them and starts challenges and finalization; the answers from the rest of
the CA (answers.py: domain_verify's verdicts, the RA's decisions, the signer's certificates) move them on.
Both go through `OrderBook`, so each state change lives in one place:

    authorization: pending -> valid | invalid | deactivated        (expired is computed on read)
    challenge:     pending -> processing -> valid | invalid
    order:         pending -> ready -> processing -> valid, or -> invalid from any of them

An identifier is authorized at once when the member has a verification of a covering domain that is
still inside its reuse period (BR 4.2.1), by any method, as domain_verify announced it (a website or
http-01 validation covers its FQDN alone: shared/domain_methods.authorizes); otherwise its
authorization offers http-01 and dns-01 (a wildcard: dns-01 only, RFC 8555 7.1.3 and BR 3.2.2.4.19).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from services.acme.store import AcmeStore, Document
from services.acme.wfe.problems import problem_document
from shared import domain_methods
from shared.dns_names import WILDCARD_PREFIX
from shared.events import CloudEvent, isoformat, make_event
from shared.events.envelope import deterministic_event_id
from shared.logging import get_logger
from shared.outbox import Outbox

SOURCE = "acme"
HTTP_01, DNS_01 = "http-01", "dns-01"
METHOD_OF = {HTTP_01: domain_methods.ACME_HTTP_01, DNS_01: domain_methods.ACME_DNS_01}
VALID_AUTHZ_DAYS = 30
"""How long a challenge-validated authorization stays valid for new orders (at most the validation's own
reuse period, which domain_verify sends as valid_until)."""
log = get_logger("acme.orders")


def new_id() -> str:
    return secrets.token_urlsafe(16)


def event(name: str, data: dict[str, Any], *id_parts: str) -> CloudEvent:
    return make_event(name, data, source=SOURCE, event_id=deterministic_event_id(name, *id_parts))


def _aware(moment: datetime, like: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=like.tzinfo)


class OrderBook:
    def __init__(self, store: AcmeStore, outbox: Outbox, *, order_lifetime: timedelta,
                 clock: Callable[[], datetime]) -> None:
        self.store = store
        self.outbox = outbox
        self.order_lifetime = order_lifetime
        self.clock = clock

    # -- creation -----------------------------------------------------------------------------------------

    async def new_order(self, account: Document, names: list[str], replaces: str | None) -> Document:
        now = self.clock()
        expires = now + self.order_lifetime
        verified = await self.store.verified_domains_of(account["member_id"], now)
        authz_ids: list[str] = []
        fresh: list[Document] = []
        for name in names:
            identifier = {"type": "dns", "value": name}
            reusable = await self.store.reusable_authorization(account["_id"], identifier, now)
            if reusable is not None:
                authz_ids.append(reusable["_id"])
                continue
            authz = self._authorization(account, name, now, expires,
                                        covered=domain_methods.authorizes(name, verified))
            fresh.append(authz)
            authz_ids.append(authz["_id"])
        status = "ready" if all(a["status"] == "valid" for a in fresh) and await self._all_valid(
            [i for i in authz_ids if i not in {a["_id"] for a in fresh}], now) else "pending"
        order: Document = {
            "_id": new_id(), "account_id": account["_id"], "member_id": account["member_id"],
            "status": status, "identifiers": [{"type": "dns", "value": n} for n in names],
            "authorization_ids": authz_ids, "expires": expires, "created_at": now, "updated_at": now,
        }
        if replaces:
            order["replaces"] = replaces
        await self.store.insert_order(order, fresh)
        return order

    def _authorization(self, account: Document, name: str, now: datetime, expires: datetime, *,
                       covered: bool) -> Document:
        wildcard = name.startswith(WILDCARD_PREFIX)
        base = name[len(WILDCARD_PREFIX):] if wildcard else name
        doc: Document = {"_id": new_id(), "account_id": account["_id"], "member_id": account["member_id"],
                         "identifier": {"type": "dns", "value": name}, "domain": base, "wildcard": wildcard,
                         "created_at": now}
        if covered:
            # Authorized by a verification the member already holds: no challenge to answer.
            doc.update(status="valid", expires=now + timedelta(days=VALID_AUTHZ_DAYS), challenges=[],
                       authorized_by="verified_domain")
            return doc
        types = [DNS_01] if wildcard else [HTTP_01, DNS_01]
        doc.update(status="pending", expires=expires,
                   challenges=[{"id": new_id(), "type": t, "token": secrets.token_urlsafe(32), "status": "pending"}
                               for t in types])
        return doc

    async def _all_valid(self, authz_ids: list[str], now: datetime) -> bool:
        for authz_id in authz_ids:
            authz = await self.store.authorization(authz_id)
            if authz is None or authorization_status(authz, now) != "valid":
                return False
        return True

    # -- challenges ---------------------------------------------------------------------------------------

    async def start_challenge(self, authz: Document, challenge: Document, key_authorization: str,
                              member_name: str | None = None) -> bool:
        """Ask domain_verify to check `challenge` (once); False when the authorization is not pending."""
        now = self.clock()
        if authorization_status(authz, now) != "pending" or any(
                c["status"] == "processing" for c in authz["challenges"]):
            return False
        index = next(i for i, c in enumerate(authz["challenges"]) if c["id"] == challenge["id"])
        data: dict[str, Any] = {
            "request_id": challenge["id"], "member_id": authz["member_id"], "domain": authz["domain"],
            "method": METHOD_OF[challenge["type"]], "requested_at": isoformat(now),
            "key_authorization": key_authorization,
        }
        if challenge["type"] == HTTP_01:
            data["token"] = challenge["token"]
        if authz["wildcard"]:
            data["wildcard"] = True
        if member_name:
            data["member_name"] = member_name
        request = event("domain.verification_requested", data, challenge["id"])
        written = await self.store.update_authorization(
            authz["_id"], {"status": "pending", f"challenges.{index}.status": "pending"},
            {f"challenges.{index}.status": "processing", "updated_at": now}, request)
        if written is None:
            return False
        await self._flush(self.store.authorizations, authz["_id"], written)
        return True

    async def challenge_verified(self, challenge_id: str, verified_at: datetime, valid_until: datetime) -> None:
        authz = await self.store.authorization_by_challenge(challenge_id)
        if authz is None:
            return
        now = self.clock()
        index = next(i for i, c in enumerate(authz["challenges"]) if c["id"] == challenge_id)
        expires = min(_aware(valid_until, now), now + timedelta(days=VALID_AUTHZ_DAYS))
        moved = await self.store.update_authorization(
            authz["_id"], {"status": "pending"},
            {"status": "valid", "expires": expires, f"challenges.{index}.status": "valid",
             f"challenges.{index}.validated": verified_at, "updated_at": now})
        if moved is None:
            return
        for order in await self.store.orders_with_authz(authz["_id"]):
            if order["status"] == "pending" and await self._all_valid(order["authorization_ids"], now):
                await self.store.update_order(order["_id"], {"status": "pending"},
                                              {"status": "ready", "updated_at": now})

    async def challenge_failed(self, challenge_id: str, problem: dict[str, Any]) -> None:
        authz = await self.store.authorization_by_challenge(challenge_id)
        if authz is None:
            return
        now = self.clock()
        index = next(i for i, c in enumerate(authz["challenges"]) if c["id"] == challenge_id)
        moved = await self.store.update_authorization(
            authz["_id"], {"status": "pending"},
            {"status": "invalid", f"challenges.{index}.status": "invalid", f"challenges.{index}.error": problem,
             "updated_at": now})
        if moved is None:
            return
        for order in await self.store.orders_with_authz(authz["_id"]):
            if order["status"] in ("pending", "ready"):
                await self.store.update_order(order["_id"], {"status": order["status"]},
                                              {"status": "invalid", "error": problem, "updated_at": now})

    async def deactivate_authorization(self, authz: Document) -> Document | None:
        now = self.clock()
        if await self.store.update_authorization(authz["_id"], {"status": {"$in": ["pending", "valid"]}},
                                                 {"status": "deactivated", "updated_at": now}) is None:
            return None
        for order in await self.store.orders_with_authz(authz["_id"]):
            if order["status"] in ("pending", "ready"):
                await self.store.update_order(order["_id"], {"status": order["status"]}, {
                    "status": "invalid", "updated_at": now,
                    "error": problem_document("unauthorized", "an authorization of this order was deactivated")})
        return await self.store.authorization(authz["_id"])

    # -- finalization and its outcome ---------------------------------------------------------------------

    async def finalize(self, order: Document, account: Document, csr_pem: str, names: list[str]) -> bool:
        """Hand the CSR to the RA (acme.csr_submitted, request id = the order id); False if not ready."""
        now = self.clock()
        data: dict[str, Any] = {
            "request_id": order["_id"], "member_id": account["member_id"],
            "binding_key_id": account["binding_key_id"], "account_id": account["_id"], "order_id": order["_id"],
            "cert_class": account["cert_class"], "csr_pem": csr_pem, "dns_names": names,
            "submitted_at": isoformat(now),
        }
        if order.get("replaces"):
            data["replaces"] = order["replaces"]
        submitted = event("acme.csr_submitted", data, order["_id"])
        written = await self.store.update_order(order["_id"], {"status": "ready"},
                                                {"status": "processing", "finalized_at": now, "updated_at": now},
                                                submitted)
        if written is None:
            return False
        await self._flush(self.store.orders, order["_id"], written)
        return True

    async def order_refused(self, order_id: str, problem: dict[str, Any]) -> None:
        await self.store.update_order(order_id, {"status": "processing"},
                                      {"status": "invalid", "error": problem, "updated_at": self.clock()})

    async def order_issued(self, order_id: str, certificate: Document) -> None:
        order = await self.store.order(order_id)
        if order is None:
            return
        await self.store.insert_certificate({**certificate, "order_id": order_id, "account_id": order["account_id"],
                                             "member_id": order["member_id"]})
        await self.store.update_order(order_id, {"status": {"$in": ["processing", "invalid"]}},
                                      {"status": "valid", "serial": certificate["_id"], "updated_at": self.clock()})
        if order.get("replaces"):  # RFC 9773 5: a certificate is replaced once
            await self.store.mark_replaced(order["replaces"], order_id)

    async def _flush(self, collection: Any, document_id: str, written: list[dict[str, Any]]) -> None:
        try:
            await self.outbox.flush(collection, document_id, written)
        except Exception as exc:  # the outbox sweep publishes it; the client sees `processing` meanwhile
            log.warning("event left to the outbox sweep", document_id=document_id, error=type(exc).__name__)


def authorization_status(authz: Document, now: datetime) -> str:
    status = str(authz["status"])
    if status in ("pending", "valid") and _aware(authz["expires"], now) <= now:
        return "expired"
    return status


def order_status(order: Document, now: datetime) -> str:
    status = str(order["status"])
    if status in ("pending", "ready") and _aware(order["expires"], now) <= now:
        return "invalid"
    return status
