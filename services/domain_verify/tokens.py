"""Challenge tokens: the secret in the mailed link, and the only form of it this service keeps.

The token is 256 random bits (well above the 112/128 bits the Baseline
Requirements' "Random Value" needs). Only its SHA-256 digest is stored, so
a copy of the database does not let anyone confirm a domain. A plain hash
(no salt, no slow KDF) is right here: the input is a uniformly random
256-bit value, so there is nothing to brute-force, and the digest doubles as
the lookup key of the confirm endpoint.
"""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_BYTES = 32
# token_urlsafe(32) yields 43 characters of the URL-safe base64 alphabet; anything else is not ours.
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def new_token() -> str:
    """A fresh random token for one challenge (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """The stored form of a token: hex SHA-256 of its text."""
    return hashlib.sha256(token.encode("ascii", errors="strict")).hexdigest()


def looks_like_token(candidate: str) -> bool:
    """Cheap shape check, so junk in the URL never reaches the database."""
    return bool(_TOKEN_SHAPE.match(candidate))
