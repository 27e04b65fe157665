"""Member passwords: Argon2id with OWASP's parameters, hashed and checked off the event loop.

* New hashes are Argon2id (`argon2-cffi`), 19 MiB of memory, 2 iterations, 1 lane: the OWASP Password
  Storage Cheat Sheet's first recommendation. The stored form is the PHC string (`$argon2id$v=19$...`),
  which names its own parameters, so raising them later leaves existing hashes verifiable
  (`needs_rehash`).
* Hashes made before (`scrypt$<log2 n>$<r>$<p>$<salt>$<hash>`) still verify, and a successful login
  re-hashes the password with Argon2id (`Sessions.login`).
* Hashing costs tens of milliseconds of CPU and 19 MiB: `hash_async` / `verify_async` run it in worker
  threads (argon2 releases the GIL), at most `CONCURRENT_HASHES` at once, so twenty logins neither
  stall the event loop (every other request) nor take 20 x 19 MiB.
Comparison is constant-time in both schemes.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import secrets
import weakref

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MIN_LENGTH = 10
MAX_LENGTH = 1024
CONCURRENT_HASHES = 4
"""Hashes computed at once per process; more wait their turn (memory: 4 x 19 MiB)."""

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16, type=Type.ID)
LEGACY_SCHEME = "scrypt"
_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = weakref.WeakKeyDictionary()


def password_problem(password: str) -> str | None:
    """Why a new password is unacceptable, or None (length only: passphrases are welcome)."""
    if len(password) < MIN_LENGTH:
        return f"password must have at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"password must have at most {MAX_LENGTH} characters"
    return None


def hash_password(password: str) -> str:
    """An Argon2id hash in the PHC string form (blocking: prefer `hash_async` in the service)."""
    return HASHER.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches `stored` (Argon2id, or a legacy scrypt hash); False for a mismatch or
    a malformed hash (blocking: prefer `verify_async` in the service)."""
    if stored.startswith(LEGACY_SCHEME + "$"):
        return _verify_scrypt(password, stored)
    try:
        return HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """True for a legacy scheme, or an Argon2 hash with other parameters than today's."""
    if not stored.startswith("$argon2id$"):
        return True
    try:
        return HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def _semaphore() -> asyncio.Semaphore:
    """One per event loop (a semaphore belongs to the loop it was first used in)."""
    loop = asyncio.get_running_loop()
    if loop not in _slots:
        _slots[loop] = asyncio.Semaphore(CONCURRENT_HASHES)
    return _slots[loop]


async def hash_async(password: str) -> str:
    async with _semaphore():
        return await asyncio.to_thread(hash_password, password)


async def verify_async(password: str, stored: str) -> bool:
    async with _semaphore():
        return await asyncio.to_thread(verify_password, password, stored)


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        _, log2_n, r, p, salt, key = stored.split("$")
        candidate = Scrypt(salt=_unb64(salt), length=32, n=2 ** int(log2_n), r=int(r), p=int(p)).derive(
            password.encode())
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate, _unb64(key))


# A hash of a random password, verified against when an account does not exist, so a login for an
# unknown address costs the same time as one for a known address.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
