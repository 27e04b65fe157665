"""DomainChallenge: expiry, what can be confirmed, which request supersedes which, storage round trip."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from services.domain_verify.challenge import ChallengeState, DomainChallenge, expiry, valid_until

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def challenge(**changes: object) -> DomainChallenge:
    base = DomainChallenge(
        request_id="r-1", member_id="m-1", domain="example.org", contact="admin@example.org",
        state=ChallengeState.PENDING, requested_at=T0, created_at=T0, expires_at=expiry(T0, 72),
        token_hash="ab" * 32,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_expiry_defaults_to_the_configured_hours_and_validity_to_days() -> None:
    assert expiry(T0, 72) == T0 + timedelta(hours=72)
    assert expiry(T0, 0.5) == T0 + timedelta(minutes=30)
    assert valid_until(T0, 398) == T0 + timedelta(days=398)


def test_pending_challenge_is_usable_until_exactly_its_expiry() -> None:
    c = challenge()
    assert c.expires_at is not None
    assert c.can_confirm(T0)
    assert c.can_confirm(c.expires_at - timedelta(microseconds=1))
    assert not c.can_confirm(c.expires_at)
    assert c.effective_state(T0 + timedelta(days=4)) is ChallengeState.EXPIRED


@pytest.mark.parametrize("state", [ChallengeState.CONFIRMED, ChallengeState.EXPIRED,
                                   ChallengeState.SUPERSEDED, ChallengeState.REFUSED])
def test_final_states_stay_final(state: ChallengeState) -> None:
    c = challenge(state=state)
    assert not c.can_confirm(T0)
    assert c.effective_state(T0 + timedelta(days=10)) is state  # "used" stays "used" after expiry


def test_newer_request_supersedes_older_whatever_the_arrival_order() -> None:
    old = challenge(request_id="r-b", requested_at=T0)
    new = challenge(request_id="r-a", requested_at=T0 + timedelta(seconds=1))
    assert new.supersedes(old) and not old.supersedes(new)
    # Same instant: the request id breaks the tie, so every replica picks the same survivor.
    twin = challenge(request_id="r-c", requested_at=T0)
    assert twin.supersedes(old) != old.supersedes(twin)


def test_document_round_trip_keeps_every_field_and_never_a_token() -> None:
    c = challenge(member_name="Ada")
    doc = c.to_document()
    assert doc["_id"] == "r-1" and doc["state"] == "pending" and "token" not in doc
    assert DomainChallenge.from_document(doc) == c
    refused = challenge(state=ChallengeState.REFUSED, expires_at=None, token_hash=None)
    assert "token_hash" not in refused.to_document() and "expires_at" not in refused.to_document()
