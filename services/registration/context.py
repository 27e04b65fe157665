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
from shared.acme_binding import BindingSealer
from shared.approvals import SIGNED_EVENTS, ApprovalSigner
from shared.events import CloudEvent, make_event
from shared.sealed_mail import MAIL_COMMAND, MailSealer

SOURCE = "registration"
__all__ = ["SOURCE", "Context", "Document"]


@dataclasses.dataclass
class Context:
    store: RegistrationStore
    settings: RegistrationSettings
    clock: Callable[[], datetime]
    approvals: ApprovalSigner | None = None
    """Signs what the signer acts on; None only where no such event is ever made (the bootstrap commands)."""
    mail_sealer: MailSealer | None = None
    """Seals mail commands to the notifier; None only where no mail is ever sent (the bootstrap commands)."""
    acme_sealer: BindingSealer | None = None
    """Seals the HMAC keys of ACME bindings to the ACME service; None only where no binding is ever made."""

    def event(self, name: str, data: dict[str, Any], *, event_id: str | None = None) -> CloudEvent:
        event = make_event(name, data, source=SOURCE, event_id=event_id)
        if name in SIGNED_EVENTS:
            if self.approvals is None:
                raise RuntimeError(f"{name} must be signed by the RA, and this context has no RA key")
            return self.approvals.sign(event)
        if event.type == MAIL_COMMAND:
            if self.mail_sealer is None:
                raise RuntimeError(f"{name} must be sealed to the notifier, and this context has no sealing key")
            return self.mail_sealer.seal(event)
        return event

    async def audit(self, actor: str, action: str, subject: str, **details: Any) -> None:
        """Append one entry to the hash-chained audit log (collection `audit`, see shared/audit.py)."""
        await self.store.append_audit(actor, action, subject, details)
