"""Password hashing with scrypt, a memory-hard KDF, and a per-user random salt.

Stored form: `scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>`, so the cost can
be raised later without invalidating existing hashes (`needs_rehash`).
Comparison is constant-time.
"""

from __future__ import annotations

import base64
import hmac
import secrets

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

SCHEME = "scrypt"
DEFAULT_LOG2_N = 15  # n = 32768, r = 8: 32 MiB of memory per hash
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
MIN_LENGTH = 10
MAX_LENGTH = 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=KEY_BYTES, n=2**log2_n, r=r, p=p).derive(password.encode())


def password_problem(password: str) -> str | None:
    """Why a new password is unacceptable, or None (length only: passphrases are welcome)."""
    if len(password) < MIN_LENGTH:
        return f"password must have at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"password must have at most {MAX_LENGTH} characters"
    return None


def hash_password(password: str, *, log2_n: int = DEFAULT_LOG2_N) -> str:
    """A salted scrypt hash in the self-describing stored form."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(password, salt, log2_n, DEFAULT_R, DEFAULT_P)
    return f"{SCHEME}${log2_n}${DEFAULT_R}${DEFAULT_P}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches `stored`; False for a mismatch or a malformed hash."""
    try:
        scheme, log2_n, r, p, salt, key = stored.split("$")
        if scheme != SCHEME:
            return False
        candidate = _derive(password, _unb64(salt), int(log2_n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate, _unb64(key))


def needs_rehash(stored: str, *, log2_n: int = DEFAULT_LOG2_N) -> bool:
    """True when the stored hash uses weaker parameters than the current default."""
    parts = stored.split("$")
    return len(parts) != 6 or parts[0] != SCHEME or int(parts[1]) < log2_n


# A hash of a random password, verified against when an account does not exist, so a login
# for an unknown address costs the same time as one for a known address.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16), log2_n=DEFAULT_LOG2_N)
