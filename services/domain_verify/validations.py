"""DomainValidations: the DNS, website and ACME methods of proving control of a domain.

Email (BR 3.2.2.4.4) is a mailed link the contact clicks (issuer.py and
confirm.py). Every other method is a check the CA runs itself: a random
value in a TXT record at `_cacert-challenge.<domain>` (3.2.2.4.7), a random
value in a file under `/.well-known/pki-validation/` (3.2.2.4.18), or the
ACME http-01 (3.2.2.4.19) and dns-01 (3.2.2.4.7) challenges with a key
authorization. One request is one check: the member (or ACME client) asks
again, with a new request id, after fixing what the failure reported.

The requester supplies the expected value: registration draws the random
value and shows it to the member (it is published in DNS or on the web, so
it is no secret); the ACME service supplies the key authorization. A random
value is usable for 30 days after it was drawn (BR 3.2.2.4.7, .18); a
request with an older one is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from services.domain_verify import events
from services.domain_verify.checks import CheckOutcome, ValidationChecks
from services.domain_verify.corroboration import Corroboration
from services.domain_verify.settings import DomainVerifySettings
from services.domain_verify.va.reuse import reuse_days
from shared import dns_names
from shared.domain_methods import CHECKED_METHODS, RANDOM_VALUE_DAYS
from shared.events import CloudEvent, utcnow
from shared.logging import get_logger

log = get_logger("domain_verify.validations")

PURPOSE = "validation"
PARAMS = {
    "dns_change": ("random_value",),
    "website_change": ("random_value", "file_name"),
    "acme_http_01": ("token", "key_authorization"),
    "acme_dns_01": ("key_authorization", "wildcard"),
}


class DomainValidations:
    def __init__(self, checks: ValidationChecks, corroboration: Corroboration, settings: DomainVerifySettings,
                 *, clock: Callable[[], datetime] = utcnow) -> None:
        self._checks = checks
        self._corroboration = corroboration
        self._settings = settings
        self._clock = clock

    async def handle(self, event: CloudEvent) -> None:
        """Handler for a `domain.verification_requested` whose method is not email."""
        data = event.data
        request_id: str = data["request_id"]
        if await self._corroboration.known(request_id):
            log.info("request already handled; re-flushed its events", request_id=request_id)
            return
        method: str = data["method"]
        subject = {"request_id": request_id, "member_id": data["member_id"], "domain": data["domain"],
                   "method": method}
        params: dict[str, Any] = {"domain": data["domain"]}
        params.update({k: data[k] for k in PARAMS.get(method, ()) if k in data})
        refusal = self._refusal(data)
        if refusal is not None:
            primary = CheckOutcome(False, refusal)
        else:
            params["domain"] = dns_names.normalise_domain(data["domain"])
            subject["domain"] = params["domain"]
            primary = await self._checks.run(method, params)
        await self._corroboration.begin(check_id=request_id, purpose=PURPOSE, kind=method, params=params,
                                        subject=subject, primary=primary)

    def _refusal(self, data: dict[str, Any]) -> str | None:
        method = data["method"]
        if method not in CHECKED_METHODS:
            return f"verification method {method!r} is not offered"
        try:
            name = dns_names.normalise_domain(data["domain"])
        except ValueError as exc:
            return f"invalid domain: {exc}"
        if dns_names.is_public_suffix(name):
            return f"{name} is a public suffix; only names below a public suffix can be verified"
        created = data.get("random_value_created_at")
        if method in ("dns_change", "website_change") and created is not None:
            drawn = datetime.fromisoformat(created.replace("Z", "+00:00"))
            if self._clock() - drawn > timedelta(days=RANDOM_VALUE_DAYS):
                return (f"random value older than {RANDOM_VALUE_DAYS} days (BR 3.2.2.4.7); "
                        "ask for a new one")
        return None

    def announce(self, doc: dict[str, Any], ok: bool, reason: str, found: list[str],
                 perspectives: dict[str, bool | None], now: datetime) -> CloudEvent:
        """The outcome event of a decided validation (the Corroboration's announcer for validations)."""
        subject = doc["subject"]
        if ok:
            primary = doc["primary"]
            evidence = {"found": primary.get("found", []), "perspectives": perspectives,
                        **primary.get("details", {})}
            return events.verified(
                request_id=subject["request_id"], member_id=subject["member_id"], domain=subject["domain"],
                method=subject["method"], verified_at=now,
                valid_until=now + timedelta(days=reuse_days(now, self._settings.validity_days or None)),
                evidence=evidence)
        return events.verification_failed(
            request_id=subject["request_id"], member_id=subject["member_id"], domain=subject["domain"],
            reason=reason, failed_at=now, method=subject["method"], found=found)
