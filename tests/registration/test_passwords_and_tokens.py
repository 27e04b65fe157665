"""Password hashing (Argon2id, legacy scrypt verified and re-hashed) and bearer tokens (hashed, expiring)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher

from services.registration import passwords, tokens
from shared.http import ApiError


# A scrypt hash as the service stored them before Argon2id (n = 2^10 to keep the test fast).
def _legacy_scrypt(password: str) -> str:
    import base64
    import secrets

    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    salt = secrets.token_bytes(16)
    key = Scrypt(salt=salt, length=32, n=2**10, r=8, p=1).derive(password.encode())
    return f"scrypt$10$8$1${b64(salt)}${b64(key)}"


def test_hash_is_argon2id_with_owasp_parameters_and_verifies_only_the_right_password() -> None:
    stored = passwords.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify_password("correct horse battery", stored)
    assert not passwords.verify_password("correct horse batterY", stored)


def test_each_hash_has_its_own_salt() -> None:
    a = passwords.hash_password("same password")
    b = passwords.hash_password("same password")
    assert (
        a != b
        and passwords.verify_password("same password", a)
        and passwords.verify_password("same password", b)
    )


def test_malformed_stored_hashes_never_verify() -> None:
    for stored in ("", "plain", "md5$x$y", "scrypt$a$b$c$d$e", "scrypt$10$8$1$!!$!!", "$argon2id$v=19$nonsense"):
        assert not passwords.verify_password("anything", stored)


def test_legacy_scrypt_hashes_still_verify_and_need_rehash_while_argon2id_does_not() -> None:
    legacy = _legacy_scrypt("pw-0123456789")
    assert passwords.verify_password("pw-0123456789", legacy)
    assert not passwords.verify_password("pw-0123456780", legacy)
    assert passwords.needs_rehash(legacy)
    assert not passwords.needs_rehash(passwords.DUMMY_HASH)
    weaker = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash("pw-0123456789")
    assert passwords.verify_password("pw-0123456789", weaker) and passwords.needs_rehash(weaker)


async def test_async_hashing_runs_off_the_event_loop_and_is_bounded() -> None:
    """Twenty logins at once: the loop keeps ticking while they hash, and at most CONCURRENT_HASHES run."""
    running, peak, ticks = 0, 0, 0
    real = passwords.verify_password

    def counting(password: str, stored: str) -> bool:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            return real(password, stored)
        finally:
            running -= 1

    stored = passwords.hash_password("correct horse battery")
    passwords.verify_password = counting  # type: ignore[assignment]
    try:
        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        results = await asyncio.gather(*(passwords.verify_async("correct horse battery", stored) for _ in range(20)))
        task.cancel()
    finally:
        passwords.verify_password = real  # type: ignore[assignment]
    assert all(results)
    assert 1 <= peak <= passwords.CONCURRENT_HASHES
    assert ticks > 20, "the event loop ran other work while the hashes were computed"


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


async def test_a_login_with_a_legacy_scrypt_hash_succeeds_and_leaves_argon2id_behind() -> None:
    from datetime import date

    from services.registration.members import Members
    from services.registration.sessions import Sessions
    from tests.registration.memory_store import MemoryStore, context

    store = MemoryStore()
    ctx = context(store)
    members = Members(ctx)
    ada = await members.create(name="Ada Lovelace", date_of_birth=date(1990, 1, 1), address="ada@example.org",
                               password="correct horse battery", roles=("member",), verified=True)
    legacy = _legacy_scrypt("correct horse battery")
    store.collections["members"][ada.id]["password_hash"] = legacy
    sessions = Sessions(ctx, members)
    with pytest.raises(ApiError):
        await sessions.login("ada@example.org", "wrong horse battery")
    assert store.collections["members"][ada.id]["password_hash"] == legacy, "a failed login re-hashes nothing"
    assert (await sessions.login("ada@example.org", "correct horse battery"))["member_id"] == ada.id
    upgraded = store.collections["members"][ada.id]["password_hash"]
    assert upgraded.startswith("$argon2id$") and passwords.verify_password("correct horse battery", upgraded)
    assert (await sessions.login("ada@example.org", "correct horse battery"))["member_id"] == ada.id
