"""What every part of the registration service shares: its store, clock and settings.

The store (services/registration/store.py) owns persistence, the outbox and the audit log; the
domain classes reach it as `context.store`, so a unit test hands them an in-memory store instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any

from services.registration.settings import RegistrationSettings
from services.registration.store import Document, RegistrationStore
from shared.events import CloudEvent, make_event

SOURCE = "registration"
__all__ = ["SOURCE", "Context", "Document"]


@dataclasses.dataclass
class Context:
    store: RegistrationStore
    settings: RegistrationSettings
    clock: Callable[[], datetime]

    def event(self, name: str, data: dict[str, Any], *, event_id: str | None = None) -> CloudEvent:
        return make_event(name, data, source=SOURCE, event_id=event_id)

    async def audit(self, actor: str, action: str, subject: str, **details: Any) -> None:
        """Append one entry to the hash-chained audit log (collection `audit`, see shared/audit.py)."""
        await self.store.append_audit(actor, action, subject, details)
