"""The signer's signals for the operator's alerts: CA and OCSP-signer certificate ends, and the served CRL's
nextUpdate as the status mode reads it from the database."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from services.signer import monitoring
from services.signer.ca import ceremony
from services.signer.ca.crl import CRLScope

PASSPHRASE = b"correct horse battery staple"


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_every_ca_and_ocsp_signer_certificate_end_is_exported(tmp_path: Path, h) -> None:
    pki = ceremony.bootstrap(tmp_path / "ca", PASSPHRASE, "p256", class1_urls=h.urls_for(1))
    monitoring.export_certificate_expiry(pki)
    for ca in pki.cas.values():
        assert sample("cacert_ca_certificate_expiry_seconds", ca=ca.label, kind="ca") == (
            ca.certificate.not_valid_after_utc.timestamp())
        assert sample("cacert_ca_certificate_expiry_seconds", ca=ca.label, kind="ocsp_signer") == (
            ca.ocsp_signer.certificate.not_valid_after_utc.timestamp())


class _Crls:
    def __init__(self) -> None:
        self.current: dict[CRLScope, dict[str, Any]] = {}

    async def crl_scopes(self, issuer: str) -> dict[CRLScope, dict[str, Any]]:
        return {scope: doc for scope, doc in self.current.items() if scope.issuer == issuer}


def test_status_mode_exports_the_stored_crls_next_update(tmp_path: Path, h) -> None:
    pki = ceremony.bootstrap(tmp_path / "ca", PASSPHRASE, "p256", class1_urls=h.urls_for(1))
    store = _Crls()
    freshness = monitoring.CRLFreshness(pki, store)  # type: ignore[arg-type]
    next_update = dt.datetime(2031, 5, 1, 12, tzinfo=dt.UTC)
    store.current[CRLScope("class1")] = {"next_update": next_update}
    asyncio.run(freshness.check())
    assert sample("cacert_crl_next_update_seconds", issuer="class1") == next_update.timestamp()
    later = next_update + dt.timedelta(hours=24)
    store.current[CRLScope("class1")] = {"next_update": later}  # the issuing signer published a new one
    asyncio.run(freshness.check())
    assert sample("cacert_crl_next_update_seconds", issuer="class1") == later.timestamp()
    # With shards, the CA's metric is its CRL closest to going stale.
    store.current[CRLScope("class1", 3)] = {"next_update": next_update + dt.timedelta(hours=2)}
    store.current[CRLScope("class3", 0)] = {"next_update": next_update}
    asyncio.run(freshness.check())
    assert sample("cacert_crl_next_update_seconds", issuer="class1") == (
        next_update + dt.timedelta(hours=2)).timestamp()


def test_every_rejection_reason_is_counted_from_zero() -> None:
    for reason in monitoring.REJECTION_REASONS:
        assert sample("cacert_signer_certificates_total", outcome="rejected", reason=reason) is not None
    before = sample("cacert_signer_certificates_total", outcome="rejected", reason="lint") or 0
    monitoring.count_answers([{"kind": "rejected", "reason": "lint"}, {"kind": "issued"}])
    assert sample("cacert_signer_certificates_total", outcome="rejected", reason="lint") == before + 1
