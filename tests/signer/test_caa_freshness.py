"""The signer's CAA rule (BR 3.2.2.8): sign a certificate with DNS names only within 8 hours of its CAA check."""

from __future__ import annotations

import datetime as dt

from services.signer import caa_freshness
from shared.events import isoformat

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def approval(**changes: object) -> dict[str, object]:
    return {"request_id": "r-1", "member_id": "m-1", "dns_names": ["www.example.org"],
            "caa_checked_at": isoformat(NOW - dt.timedelta(hours=1)), **changes}


def test_a_check_within_8_hours_may_be_signed() -> None:
    assert caa_freshness.problem(approval(), NOW) is None
    assert caa_freshness.problem(approval(caa_checked_at=isoformat(NOW - dt.timedelta(hours=8))), NOW) is None


def test_a_check_older_than_8_hours_or_missing_is_sent_back() -> None:
    stale = caa_freshness.problem(approval(caa_checked_at=isoformat(NOW - dt.timedelta(hours=8, seconds=1))), NOW)
    assert stale is not None and "more than 8 hours" in stale
    missing = approval()
    del missing["caa_checked_at"]
    assert "no CAA check" in (caa_freshness.problem(missing, NOW) or "")


def test_certificates_without_dns_names_need_no_caa() -> None:
    assert caa_freshness.problem(approval(dns_names=[], caa_checked_at=None), NOW) is None


def test_the_stale_answer_is_a_schema_valid_cert_rejected_with_one_id_per_caa_time() -> None:
    first = caa_freshness.stale_answer(approval(), "too old", NOW)
    again = caa_freshness.stale_answer(approval(), "too old", NOW + dt.timedelta(seconds=5))
    newer = caa_freshness.stale_answer(approval(caa_checked_at=isoformat(NOW)), "too old", NOW)
    assert first.data["reason"] == "caa_stale" and first.data["details"] == ["too old"]
    assert first.id == again.id and first.id != newer.id
