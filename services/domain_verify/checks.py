"""ValidationChecks: one check (a validation method or a CAA check) run from this process's network view.

The primary and every remote perspective run exactly this code with their
own resolver and HTTP client (BR 3.2.2.9: perspectives must not share a DNS
cache), so "the same check" means the same thing everywhere. A check's
kind and params travel in `perspective.check_requested`; its result is a
`CheckOutcome` that fits in `perspective.check_answered`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from prometheus_client import Counter

from services.domain_verify.settings import DomainVerifySettings
from services.domain_verify.va import caa, methods
from services.domain_verify.va.http_fetch import Fetcher
from services.domain_verify.va.resolver import Resolver
from shared.logging import get_logger

log = get_logger("domain_verify.checks")

KINDS = ("dns_change", "website_change", "acme_http_01", "acme_dns_01", "caa")

CHECKS = Counter("cacert_domain_verify_checks_total", "Checks run from this perspective, by kind and result",
                 ["perspective", "kind", "result"])
CHECK_FAILURES = Counter("cacert_domain_verify_check_failures_total",
                         "Failed checks by kind and reason (dnssec_bogus, not_found, caa not_permitted, ...)",
                         ["perspective", "kind", "reason"])
DNSSEC_BOGUS = Counter("cacert_domain_verify_dnssec_bogus_total",
                       "Checks that met a DNSSEC-bogus answer (never treated as 'no record')", ["perspective"])
CAA_REFUSALS = Counter("cacert_domain_verify_caa_refusals_total", "Names CAA did not allow, by reason",
                       ["perspective", "reason"])


@dataclasses.dataclass(frozen=True)
class CheckOutcome:
    ok: bool
    reason: str
    found: list[str] = dataclasses.field(default_factory=list)
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_document(self) -> dict[str, Any]:
        return {"ok": self.ok, "reason": self.reason, "found": self.found, "details": self.details}

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> CheckOutcome:
        return cls(ok=bool(doc["ok"]), reason=str(doc["reason"]), found=list(doc.get("found") or []),
                   details=dict(doc.get("details") or {}))


class ValidationChecks:
    """Runs checks with one resolver view; `perspective` names that view in metrics and answers."""

    def __init__(self, settings: DomainVerifySettings, *, perspective: str = "primary",
                 resolver: Resolver | None = None, fetcher: Fetcher | None = None) -> None:
        self.perspective = perspective
        self._settings = settings
        self.resolver = resolver or Resolver(settings.nameservers, source=settings.dns_source_address or None,
                                             timeout=settings.dns_timeout_seconds)
        self.fetcher = fetcher or Fetcher(self.resolver, http_port=settings.http_port,
                                          allow_private=settings.private_networks,
                                          timeout=settings.http_timeout_seconds)

    async def run(self, kind: str, params: dict[str, Any]) -> CheckOutcome:
        try:
            outcome = await self._run(kind, params)
        except (KeyError, TypeError, ValueError) as exc:
            # A malformed request (the schema leaves params open): a failure with its reason, never a crash.
            outcome = CheckOutcome(False, f"invalid_check: {type(exc).__name__}: {exc}")
        CHECKS.labels(self.perspective, kind, "ok" if outcome.ok else "failed").inc()
        if not outcome.ok:
            CHECK_FAILURES.labels(self.perspective, kind, outcome.reason.split(":")[0]).inc()
            if "dnssec_bogus" in outcome.reason:
                DNSSEC_BOGUS.labels(self.perspective).inc()
        log.info("check run", perspective=self.perspective, kind=kind, ok=outcome.ok, reason=outcome.reason)
        return outcome

    async def _run(self, kind: str, params: dict[str, Any]) -> CheckOutcome:
        domain = str(params.get("domain", ""))
        if kind == "dns_change":
            result = await methods.check_dns_change(self.resolver, domain, str(params["random_value"]))
        elif kind == "website_change":
            result = await methods.check_website_change(self.fetcher, domain, str(params["random_value"]),
                                                        str(params["file_name"]))
        elif kind == "acme_http_01":
            result = await methods.check_acme_http_01(self.fetcher, domain, str(params["token"]),
                                                      str(params["key_authorization"]))
        elif kind == "acme_dns_01":
            result = await methods.check_acme_dns_01(self.resolver, domain, str(params["key_authorization"]))
        elif kind == "caa":
            return await self._caa(params)
        else:
            return CheckOutcome(False, f"invalid_check: unknown kind {kind!r}")
        return CheckOutcome(result.ok, result.reason, list(result.found),
                            {"br_section": result.br_section, **result.evidence})

    async def _caa(self, params: dict[str, Any]) -> CheckOutcome:
        """Every name must be allowed (BR 3.2.2.8); the outcome lists each name's verdict and record."""
        names: list[dict[str, Any]] = []
        methods_by_name = {str(v["name"]): str(v["method"]) for v in params.get("validation_methods") or []}
        account_uri = params.get("account_uri")
        for raw in params["names"]:
            name = str(raw)
            wildcard = name.startswith("*.")
            base = name[2:] if wildcard else name
            verdict = await caa.check_caa(
                self.resolver, base, identities=list(self._settings.caa_identities), wildcard=wildcard,
                account_uri=str(account_uri) if account_uri else None,
                validation_method=methods_by_name.get(name) or methods_by_name.get(base),
            )
            if not verdict.allowed:
                CAA_REFUSALS.labels(self.perspective, verdict.reason.split(":")[0]).inc()
            names.append({"name": name, "allowed": verdict.allowed, "reason": verdict.reason,
                          "relevant_name": verdict.relevant_name, "records": list(verdict.records),
                          "dnssec": verdict.dnssec})
        refused = [n for n in names if not n["allowed"]]
        if refused:
            first = refused[0]
            return CheckOutcome(False, first["reason"], [f"{n['name']}: {' '.join(n['records']) or n['reason']}"
                                                         for n in refused], {"names": names})
        return CheckOutcome(True, "permitted", [], {"names": names})
