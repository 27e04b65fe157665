"""What the signer tells Prometheus for the operator's alerts (deploy/k8s/components/monitoring/, runbooks in
docs/operations.md), beyond the request, event and stage metrics every service has:

* `cacert_signer_certificates_total{outcome, reason}`: every approved request answered for the first time
  (a redelivery that re-publishes a stored answer is not counted again). `outcome` is `issued`
  (`reason` empty), `rejected` (`reason` is the `cert.rejected` reason) or `sent_back` (`caa_stale`:
  not an answer, the RA checks CAA again). Issuing mode.
* `cacert_ca_certificate_expiry_seconds{ca, kind}`: notAfter (Unix time) of each loaded CA certificate
  (`kind="ca"`) and each CA's current delegated OCSP signer (`kind="ocsp_signer"`: the renewed one as soon
  as it is in use, see `ocsp_signers.py`). Both modes.
* `cacert_crl_next_update_seconds{issuer}`: the earliest nextUpdate (Unix time) among the stored CRLs of each
  CA (its shards `/<issuer>/<n>.crl` and its unsharded `/<issuer>.crl`): the one closest to going stale. Set by
  the issuing mode when it publishes a CRL and read back from the database every minute by the status mode.
  An empty sample means no CRL has been stored yet.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge

from services.signer import caa_freshness
from services.signer.ca.hierarchy import Hierarchy, OCSPSigner
from services.signer.store import CertificateStore
from shared.approvals import UNAUTHENTICATED
from shared.periodic import Periodic

CERTIFICATES = Counter(
    "cacert_signer_certificates_total",
    "Approved requests answered, by outcome (issued, rejected, sent_back) and cert.rejected reason",
    ["outcome", "reason"],
)
# The reasons of docs/events.md ("signer"); each starts at 0 so that an alert on increase() sees the first one.
REJECTION_REASONS = ("csr_invalid", "weak_key", "lint", "policy", "internal", "compromised_key", UNAUTHENTICATED)
CA_CERTIFICATE_EXPIRY = Gauge(
    "cacert_ca_certificate_expiry_seconds",
    "End (notAfter, Unix time) of each loaded CA and OCSP signer certificate",
    ["ca", "kind"],
)
CRL_NEXT_UPDATE = Gauge(
    "cacert_crl_next_update_seconds", "Earliest nextUpdate (Unix time) among the stored CRLs of each CA", ["issuer"]
)
CRL_CHECK_EVERY = 60.0

CERTIFICATES.labels("issued", "")
for _reason in REJECTION_REASONS:
    CERTIFICATES.labels("rejected", _reason)
CERTIFICATES.labels("sent_back", caa_freshness.REASON)


def count_answers(outcomes: Iterable[dict[str, Any]]) -> None:
    """Count stored outcome documents (`kind` issued or rejected, with the rejection's `reason`)."""
    for outcome in outcomes:
        if outcome["kind"] == "issued":
            CERTIFICATES.labels("issued", "").inc()
        else:
            CERTIFICATES.labels("rejected", outcome["reason"]).inc()


def count_refused(reason: str, count: int) -> None:
    """Count answers that are published but not stored: unauthenticated approvals (rejected) and stale CAA
    checks (sent back)."""
    CERTIFICATES.labels("sent_back" if reason == caa_freshness.REASON else "rejected", reason).inc(count)


def crl_next_update(issuer: str, next_update: dt.datetime) -> None:
    """Export a CRL's nextUpdate in whole seconds, as the CRL itself carries it."""
    CRL_NEXT_UPDATE.labels(issuer).set(math.floor(next_update.timestamp()))


def export_certificate_expiry(hierarchy: Hierarchy) -> None:
    for ca in hierarchy.cas.values():
        CA_CERTIFICATE_EXPIRY.labels(ca.label, "ca").set(ca.certificate.not_valid_after_utc.timestamp())
        ocsp_signer_expiry(ca.label, ca.ocsp_signer)


def ocsp_signer_expiry(ca: str, signer: OCSPSigner) -> None:
    """The current OCSP signer of ``ca`` (its delegate answering now)."""
    CA_CERTIFICATE_EXPIRY.labels(ca, "ocsp_signer").set(signer.certificate.not_valid_after_utc.timestamp())


class CRLFreshness:
    """Status mode: reads each CA's current CRL from the database every minute and exports its nextUpdate,
    so the alert sees what relying parties are served even when the issuing signer is down."""

    def __init__(self, hierarchy: Hierarchy, store: CertificateStore, *, every: float = CRL_CHECK_EVERY) -> None:
        self._issuers = [ca.label for ca in hierarchy.cas.values()]
        self._store = store
        self._periodic = Periodic("crl-freshness", self.check, every)

    async def check(self) -> None:
        for issuer in self._issuers:
            stored = await self._store.crl_scopes(issuer)
            if stored:
                crl_next_update(issuer, min(doc["next_update"] for doc in stored.values()))

    def start(self) -> None:
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
