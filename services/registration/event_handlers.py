"""Handlers for the events registration consumes: domain outcomes, CAA verdicts, the signer's results, and
what the ACME service asks of the RA (acme_requests.py).

Each handler only sets state to what the event says (keyed by request id
or serial), so a redelivered event changes nothing.
"""

from __future__ import annotations

from typing import Any

from services.registration.acme_requests import AcmeRequests
from services.registration.certificate_requests import CertificateRequests
from services.registration.certificates import Certificates
from services.registration.domains import DomainClaims
from shared.events import BY_NAME, CloudEvent
from shared.kafka import Batch, Subscription


class SignerOutcomes:
    def __init__(self, requests: CertificateRequests, certificates: Certificates, acme: AcmeRequests) -> None:
        self._requests = requests
        self._certificates = certificates
        self._acme = acme

    async def issued(self, event: CloudEvent) -> None:
        await self._issued([event.data])

    async def issued_batch(self, batch: Batch) -> None:
        """Consecutive `cert.issued` events of a partition: three database commands for the batch, not for each
        event (issue 21). A batch that fails is handled again event by event (shared/kafka/consumer.py)."""
        await self._issued([event.data for event in batch.events])

    async def _issued(self, issued: list[dict[str, Any]]) -> None:
        await self._certificates.on_issued(issued)
        await self._requests.on_issued(issued)
        await self._acme.on_certificates_recorded([data["serial"] for data in issued])

    async def rejected(self, event: CloudEvent) -> None:
        await self._requests.on_signer_rejected(event.data)

    async def revoked(self, event: CloudEvent) -> None:
        await self._certificates.on_revoked(event.data)


def subscriptions(domains: DomainClaims, outcomes: SignerOutcomes,
                  requests: CertificateRequests, acme: AcmeRequests) -> list[Subscription]:
    async def caa_checked(event: CloudEvent) -> None:
        await requests.on_caa_checked(event.data)

    async def caa_checked_batch(batch: Batch) -> None:
        """Consecutive CAA verdicts of a partition: at most one read, one write, one publish (issue 21)."""
        await requests.on_caa_verdicts([event.data for event in batch.events])

    async def acme_csr_submitted(event: CloudEvent) -> None:
        await acme.on_csr_submitted(event.data)

    async def acme_revocation_requested(event: CloudEvent) -> None:
        await acme.on_revocation_requested(event.data)

    return [
        Subscription(
            "domain",
            {
                BY_NAME["domain.verified"].type: domains.on_verified,
                BY_NAME["domain.verification_failed"].type: domains.on_failed,
                BY_NAME["domain.caa_checked"].type: caa_checked,
            },
            batch_handlers={BY_NAME["domain.caa_checked"].type: caa_checked_batch},
        ),
        Subscription(
            "cert",
            {
                BY_NAME["cert.issued"].type: outcomes.issued,
                BY_NAME["cert.rejected"].type: outcomes.rejected,
                BY_NAME["cert.revoked"].type: outcomes.revoked,
            },
            batch_handlers={BY_NAME["cert.issued"].type: outcomes.issued_batch},
        ),
        Subscription(
            "acme",
            {
                BY_NAME["acme.csr_submitted"].type: acme_csr_submitted,
                BY_NAME["acme.revocation_requested"].type: acme_revocation_requested,
            },
        ),
    ]
