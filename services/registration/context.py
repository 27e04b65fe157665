"""What every part of the registration service shares: its database, clock, settings and outbox.

`announce()` publishes a document's pending outbox events right after the
write that queued them. If Kafka is down the write still stands and the
outbox sweep publishes later, so an HTTP answer never depends on Kafka
being reachable at that instant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from services.registration.settings import RegistrationSettings
from shared import outbox
from shared.audit import AuditLog
from shared.events import CloudEvent, make_event
from shared.logging import get_logger
from shared.outbox import Outbox

SOURCE = "registration"
Document = dict[str, Any]
log = get_logger("registration.context")

INDEXES: dict[str, list[IndexModel]] = {
    "members": [outbox.INDEX],
    "addresses": [IndexModel([("member_id", ASCENDING)], name="member")],
    "email_tokens": [IndexModel([("expires_at", ASCENDING)], name="expiry")],
    "sessions": [
        IndexModel([("expires_at", ASCENDING)], name="expiry"),
        IndexModel([("member_id", ASCENDING)], name="member"),
    ],
    "rate_limits": [IndexModel([("expires_at", ASCENDING)], name="expiry")],
    "assurances": [
        IndexModel([("assurer_id", ASCENDING), ("member_id", ASCENDING)], unique=True, name="once_per_pair"),
        IndexModel([("member_id", ASCENDING)], name="member"),
        outbox.INDEX,
    ],
    "domains": [
        IndexModel([("member_id", ASCENDING), ("domain", ASCENDING)], unique=True, name="member_domain"),
        IndexModel([("request_ids", ASCENDING)], name="request"),
        outbox.INDEX,
    ],
    "requests": [IndexModel([("member_id", ASCENDING)], name="member"), outbox.INDEX],
    "certificates": [
        IndexModel([("member_id", ASCENDING)], name="member"),
        IndexModel([("request_id", ASCENDING)], name="request"),
        outbox.INDEX,
    ],
}
OUTBOX_COLLECTIONS = ("members", "assurances", "domains", "requests", "certificates")


@dataclasses.dataclass
class Context:
    db: AsyncDatabase[Document]
    settings: RegistrationSettings
    clock: Callable[[], datetime]
    outbox: Outbox | None = None
    audit_log: AuditLog | None = None

    def collection(self, name: str) -> AsyncCollection[Document]:
        return self.db[name]

    @property
    def members(self) -> AsyncCollection[Document]:
        return self.db["members"]

    def event(self, name: str, data: dict[str, Any], *, event_id: str | None = None) -> CloudEvent:
        return make_event(name, data, source=SOURCE, event_id=event_id)

    async def audit(self, actor: str, action: str, subject: str, **details: Any) -> None:
        """Append one entry to the hash-chained audit log (collection `audit`, see shared/audit.py)."""
        if self.audit_log is None:
            self.audit_log = AuditLog(self.db, clock=self.clock)
        await self.audit_log.append(actor=actor, action=action, subject=subject, details=details)

    async def announce(self, collection: AsyncCollection[Document], document_id: Any) -> None:
        """Publish what the last write queued; on failure leave it to the sweep."""
        if self.outbox is None:
            return
        try:
            await self.outbox.flush(collection, document_id)
        except Exception as exc:
            log.warning(
                "publishing deferred to the outbox sweep",
                collection=collection.name,
                error=f"{type(exc).__name__}: {exc}",
            )
