"""The status mode tells operators when an OCSP signer needs `renew-ocsp`: a gauge and a readiness warning,
never a readiness failure."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from services.signer.ca import ceremony
from services.signer.status import OCSPSignerExpiry

PASSPHRASE = b"correct horse battery staple"


def due_gauge(issuer: str) -> float | None:
    return REGISTRY.get_sample_value("cacert_ocsp_signer_renewal_due", {"issuer": issuer})


def test_a_signer_ending_within_30_days_is_due_warns_once_an_hour_and_stays_ready(tmp_path: Path, h) -> None:
    created = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    pki = ceremony.bootstrap(tmp_path / "ca", PASSPHRASE, "p256", class1_urls=h.urls_for(1), now=created)
    ends = pki.issuing_ca(3).ocsp_signer.certificate.not_valid_after_utc
    now = [ends - dt.timedelta(days=31)]
    expiry = OCSPSignerExpiry(pki, clock=lambda: now[0])
    expiry.export_metrics()
    assert expiry.due() == [] and due_gauge("class3") == 0.0
    assert REGISTRY.get_sample_value("cacert_ocsp_signer_not_after_seconds", {"issuer": "class3"}) == ends.timestamp()

    now[0] = ends - dt.timedelta(days=29)
    assert sorted(expiry.due()) == ["class1", "class3"]
    assert due_gauge("class1") == 1.0 and due_gauge("class3") == 1.0
    with capture_logs() as logs:
        assert asyncio.run(expiry.readiness()) is True
        assert asyncio.run(expiry.readiness()) is True  # the next probe, seconds later: no second line
        now[0] += dt.timedelta(hours=1)
        assert asyncio.run(expiry.readiness()) is True
    warnings = [(e["issuer"], e["log_level"]) for e in logs if "renew-ocsp" in e["event"]]
    assert sorted(warnings) == [("class1", "warning"), ("class1", "warning"), ("class3", "warning"),
                                ("class3", "warning")]
