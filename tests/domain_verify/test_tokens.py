"""Challenge tokens: enough entropy, URL-safe, stored only as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import math

from services.domain_verify.tokens import TOKEN_BYTES, looks_like_token, new_token, token_hash


def test_tokens_carry_at_least_128_bits_and_are_url_safe() -> None:
    token = new_token()
    assert TOKEN_BYTES * 8 >= 128
    # 43 base64url characters carry 6 bits each: 258 >= 256 bits of randomness behind them.
    assert len(token) * 6 >= 256
    assert looks_like_token(token)
    assert token == token.strip() and "/" not in token and "+" not in token and "=" not in token


def test_tokens_do_not_repeat() -> None:
    tokens = {new_token() for _ in range(2000)}
    assert len(tokens) == 2000
    # Characters are spread over the whole alphabet (a broken generator would show a tiny alphabet).
    alphabet = set("".join(tokens))
    assert len(alphabet) == 64 and math.log2(len(alphabet)) == 6


def test_hash_is_sha256_hex_and_never_the_token() -> None:
    token = new_token()
    digest = token_hash(token)
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert len(digest) == 64 and token not in digest
    assert token_hash(token) == digest  # deterministic: the digest is the lookup key
    assert token_hash(new_token()) != digest


def test_shape_check_refuses_junk_before_it_reaches_the_database() -> None:
    assert not looks_like_token("")
    assert not looks_like_token("short")
    assert not looks_like_token("a" * 42 + "!")
    assert not looks_like_token("a" * 44)
    assert not looks_like_token("../../etc/passwd" + "a" * 27)
