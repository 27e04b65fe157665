"""shared/certificate_validity.py: the one validity rule of the signer and the portal's preview."""

from __future__ import annotations

import datetime as dt

import pytest

from shared import certificate_validity as cv

NOW = dt.datetime(2026, 12, 3, 12, 0, 30, 123456, tzinfo=dt.UTC)


def test_the_profile_maxima_follow_sc081_and_the_cas_own_limits() -> None:
    assert [cv.max_validity_days("server", dt.datetime(y, m, d, tzinfo=dt.UTC))
            for y, m, d in ((2026, 3, 14), (2026, 3, 15), (2027, 3, 15), (2029, 3, 15))] == [397, 199, 99, 46]
    assert cv.max_validity_days("client", NOW) == cv.max_validity_days("codesign", NOW) == 365
    assert cv.max_validity_days("client", NOW, 900) == cv.SMIME_MAX_VALIDITY_DAYS
    assert cv.max_validity_days("codesign", NOW, 900) == cv.CODESIGN_MAX_VALIDITY_DAYS


def test_the_period_is_the_ras_days_within_the_maximum_and_never_beyond_the_issuer() -> None:
    period = cv.validity_period(365, cv.max_validity_days("server", NOW), NOW, None)
    assert period.not_before == dt.datetime(2026, 12, 3, 11, 59, 30, tzinfo=dt.UTC)
    assert period.days == 199 and not period.capped_by_issuer
    assert period.not_after == period.not_before + dt.timedelta(days=199, seconds=-1)
    assert cv.validity_period(30, 199, NOW, None).days == 30
    issuer_end = NOW + dt.timedelta(days=10, hours=3)
    capped = cv.validity_period(365, 199, NOW, issuer_end)
    assert capped.not_after == issuer_end and capped.capped_by_issuer and capped.days == 10
    with pytest.raises(cv.IssuerExpiresTooSoon):
        cv.validity_period(365, 199, NOW, NOW - dt.timedelta(seconds=1))
    with pytest.raises(ValueError, match="timezone-aware"):
        cv.validity_period(365, 199, NOW.replace(tzinfo=None), None)
