"""Bearer secrets (session tokens, email confirmation tokens) that are stored only as hashes.

The raw token goes to the member once (login answer, confirmation mail);
the database keeps its SHA-256 digest, so a database leak yields no usable
token. 32 random bytes make a digest lookup safe without a salt or KDF.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from datetime import datetime, timedelta

TOKEN_BYTES = 32


@dataclasses.dataclass(frozen=True)
class IssuedToken:
    raw: str  # handed to the member, never stored
    digest: str  # stored and looked up
    expires_at: datetime


def digest(raw: str) -> str:
    """The stored form of a token: lower-case hex SHA-256."""
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def issue(lifetime: timedelta, now: datetime) -> IssuedToken:
    """A fresh random token valid for `lifetime` from `now`."""
    raw = secrets.token_urlsafe(TOKEN_BYTES)
    return IssuedToken(raw=raw, digest=digest(raw), expires_at=now + lifetime)


def is_live(expires_at: datetime, now: datetime) -> bool:
    """A token is usable strictly before its expiry instant."""
    return now < expires_at


def looks_like_token(raw: str) -> bool:
    """Cheap shape check before touching the database (token_urlsafe alphabet, sane length)."""
    return 16 <= len(raw) <= 128 and all(c.isalnum() or c in "-_" for c in raw) and raw.isascii()
