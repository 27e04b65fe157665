"""Password hashing (salted scrypt) and bearer tokens (hashed, expiring)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.registration import passwords, tokens


def test_hash_verifies_only_the_right_password() -> None:
    stored = passwords.hash_password("correct horse battery", log2_n=10)
    assert stored.startswith("scrypt$10$8$1$")
    assert passwords.verify_password("correct horse battery", stored)
    assert not passwords.verify_password("correct horse batterY", stored)


def test_each_hash_has_its_own_salt() -> None:
    a = passwords.hash_password("same password", log2_n=10)
    b = passwords.hash_password("same password", log2_n=10)
    assert (
        a != b
        and passwords.verify_password("same password", a)
        and passwords.verify_password("same password", b)
    )


def test_malformed_stored_hashes_never_verify() -> None:
    for stored in ("", "plain", "md5$x$y", "scrypt$a$b$c$d$e", "scrypt$10$8$1$!!$!!"):
        assert not passwords.verify_password("anything", stored)


def test_default_cost_is_memory_hard_and_weaker_hashes_need_rehash() -> None:
    assert passwords.DEFAULT_LOG2_N >= 14
    assert passwords.needs_rehash(passwords.hash_password("pw-0123456789", log2_n=10))
    assert not passwords.needs_rehash(passwords.DUMMY_HASH)


def test_password_policy() -> None:
    assert passwords.password_problem("short") is not None
    assert passwords.password_problem("x" * 2000) is not None
    assert passwords.password_problem("a long enough passphrase") is None


def test_tokens_are_random_and_stored_only_as_digests() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    first = tokens.issue(timedelta(hours=24), now)
    second = tokens.issue(timedelta(hours=24), now)
    assert first.raw != second.raw
    assert first.digest == tokens.digest(first.raw) and len(first.digest) == 64
    assert first.raw not in first.digest
    assert len(first.raw) >= 43  # 32 bytes, URL-safe base64
    assert tokens.looks_like_token(first.raw)


def test_token_expiry_is_exclusive() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    token = tokens.issue(timedelta(hours=24), now)
    assert token.expires_at == now + timedelta(hours=24)
    assert tokens.is_live(token.expires_at, now + timedelta(hours=23, minutes=59))
    assert not tokens.is_live(token.expires_at, now + timedelta(hours=24))
    assert not tokens.is_live(token.expires_at, now + timedelta(days=30))


def test_token_shape_check_refuses_junk() -> None:
    for junk in ("", "short", "x" * 500, "has spaces in it and is long", "ümlautümlautümlaut"):
        assert not tokens.looks_like_token(junk)
