"""CaaChecks: may this CA issue for these names? (BR 3.2.2.8, RFC 8659, RFC 8657)

The RA asks with `domain.caa_check_requested` before it approves a server
certificate (and again if the signer finds the result older than 8 hours at
signing time). Every name is checked from the primary perspective with tree
climbing and CNAME following; a lookup failure (SERVFAIL, timeout, a
DNSSEC-bogus answer) refuses, as the BR require. A permitted result is then
corroborated by the remote perspectives like a validation. The verdict,
`domain.caa_checked`, lists each name with the record that decided it, and
every check is written to the audit log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.domain_verify import events
from services.domain_verify.checks import ValidationChecks
from services.domain_verify.corroboration import Corroboration
from shared.events import CloudEvent
from shared.logging import get_logger

log = get_logger("domain_verify.caa")

PURPOSE = "caa"


class CaaChecks:
    def __init__(self, checks: ValidationChecks, corroboration: Corroboration) -> None:
        self._checks = checks
        self._corroboration = corroboration

    async def handle(self, event: CloudEvent) -> None:
        """Handler for `domain.caa_check_requested`."""
        data = event.data
        check_id: str = data["check_id"]
        if await self._corroboration.known(check_id):
            log.info("CAA check already handled; re-flushed its events", check_id=check_id)
            return
        params: dict[str, Any] = {"names": list(data["names"])}
        if data.get("validation_methods"):
            params["validation_methods"] = [{"name": v["name"], "method": v["method"]}
                                            for v in data["validation_methods"]]
        if data.get("account_uri"):
            params["account_uri"] = data["account_uri"]
        primary = await self._checks.run("caa", params)
        subject = {"check_id": check_id, "request_id": data["request_id"], "member_id": data["member_id"],
                   "domain": ",".join(params["names"])[:200]}
        await self._corroboration.begin(check_id=check_id, purpose=PURPOSE, kind="caa", params=params,
                                        subject=subject, primary=primary)

    def announce(self, doc: dict[str, Any], ok: bool, reason: str, found: list[str],
                 perspectives: dict[str, bool | None], now: datetime) -> CloudEvent:
        subject = doc["subject"]
        names = list(doc["primary"].get("details", {}).get("names", []))
        if not names:  # refused before any name was looked at (a malformed request)
            names = [{"name": n, "allowed": False, "reason": reason} for n in doc["params"].get("names", [])]
        return events.caa_checked(check_id=subject["check_id"], request_id=subject["request_id"],
                                  member_id=subject["member_id"], allowed=ok, reason=reason, names=names,
                                  perspectives=perspectives, checked_at=now)
