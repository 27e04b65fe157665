"""ACME External Account Bindings (RFC 8555 7.3.4): the one rule registration and the ACME service share.

A member creates a binding in registration and is shown its key id and HMAC key once. The ACME service
must learn the HMAC key to check the `externalAccountBinding` JWS of a newAccount request, and nobody
else may: the `acme.binding_created` event travels on the `acme.bindings` topic, which only the ACME
service may read, and the key in it is sealed to the ACME service's X25519 public key besides, so a copy
of the topic, its dead-letter twin or registration's outbox holds nothing usable. Registration holds only
the public key (`CACERT_ACME_SEALING_PUBLIC_KEY`), the ACME service the private one
(`CACERT_ACME_SEALING_KEY`).

The cipher is the one mail commands use (shared/sealed_mail.py: HPKE base mode, X25519, HKDF-SHA256,
ChaCha20-Poly1305); the HPKE `info` binds the blob to the binding's key id and member, so a sealed key
cannot be moved to another binding.

    data.hmac_key = {"alg": ALGORITHM, "key_id": <sealing key id>, "value": <base64url of enc || ct>}
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from shared.config import ConfigError
from shared.sealed_mail import (
    _SUITE,
    ALGORITHM,
    SealingKeyError,
    _b64,
    _public_pem,
    _unb64,
    key_id,
    private_keys_from_pem,
    private_pem,
    public_key_from_pem,
)

PUBLIC_KEY_SETTING = "CACERT_ACME_SEALING_PUBLIC_KEY"
PRIVATE_KEY_SETTING = "CACERT_ACME_SEALING_KEY"
HMAC_KEY_BYTES = 32
"""256-bit HMAC keys (HS256 wants at least the hash length, RFC 7518 3.2)."""


class UnopenableBinding(ValueError):
    """A sealed HMAC key that does not open here; the message is a reason, never key material."""


def new_key_id() -> str:
    """A fresh binding key id: 128 random bits, base64url (22 characters)."""
    return secrets.token_urlsafe(16)


def new_hmac_key() -> bytes:
    return secrets.token_bytes(HMAC_KEY_BYTES)


def encode_hmac_key(raw: bytes) -> str:
    """The form members paste into their client (`--eab-hmac-key`, cert-manager's Secret): base64url."""
    return _b64(raw)


def _info(binding_key_id: str, member_id: str) -> bytes:
    return json.dumps({"binding": binding_key_id, "member": member_id, "purpose": "acme-eab-hmac"},
                      sort_keys=True, separators=(",", ":")).encode()


class BindingSealer:
    """Registration's side: seals a new binding's HMAC key to the ACME service."""

    def __init__(self, public_key: X25519PublicKey) -> None:
        self._key = public_key
        self.key_id = key_id(public_key)

    @classmethod
    def from_pem(cls, pem: str) -> BindingSealer:
        return cls(public_key_from_pem(pem))

    def seal(self, binding_key_id: str, member_id: str, hmac_key: bytes) -> dict[str, str]:
        value = _SUITE.encrypt(hmac_key, self._key, info=_info(binding_key_id, member_id))
        return {"alg": ALGORITHM, "key_id": self.key_id, "value": _b64(value)}


class BindingOpener:
    """The ACME service's side: the private key(s) that open sealed HMAC keys (two during a rollover)."""

    def __init__(self, private_keys: Iterable[X25519PrivateKey]) -> None:
        self._keys = {key_id(k.public_key()): k for k in private_keys}
        if not self._keys:
            raise SealingKeyError("names no X25519 private key")
        self._first = next(iter(self._keys.values()))

    @classmethod
    def generate(cls) -> BindingOpener:
        return cls([X25519PrivateKey.generate()])

    @classmethod
    def from_pem(cls, pem_bundle: str) -> BindingOpener:
        """One or more private keys, concatenated (two during a rollover)."""
        return cls(private_keys_from_pem(pem_bundle))

    def private_pem(self) -> str:
        return private_pem(self._first)

    def public_pem(self) -> str:
        return _public_pem(self._first.public_key())

    def sealer(self) -> BindingSealer:
        return BindingSealer(self._first.public_key())

    def open(self, binding_key_id: str, member_id: str, sealed: Mapping[str, Any]) -> bytes:
        if sealed.get("alg") != ALGORITHM:
            raise UnopenableBinding(f"sealed with {str(sealed.get('alg'))[:60]!r}, not {ALGORITHM}")
        key = self._keys.get(str(sealed.get("key_id")))
        if key is None:
            raise UnopenableBinding(f"sealed to key {str(sealed.get('key_id'))[:40]!r}, which this ACME service "
                                    "does not hold")
        try:
            return _SUITE.decrypt(_unb64(str(sealed.get("value", ""))), key, info=_info(binding_key_id, member_id))
        except (InvalidTag, ValueError):
            raise UnopenableBinding("the sealed HMAC key does not open: altered, or moved from another "
                                    "binding") from None


def sealer_from_setting(pem: str) -> BindingSealer:
    """Registration's BindingSealer from its setting; ConfigError naming the setting (never the key)."""
    if not pem.strip():
        raise ConfigError(f"{PUBLIC_KEY_SETTING} is required to serve (nor {PUBLIC_KEY_SETTING}_FILE): ACME "
                          "binding keys are sealed to the ACME service's key")
    try:
        return BindingSealer.from_pem(pem)
    except SealingKeyError as exc:
        raise ConfigError(f"{PUBLIC_KEY_SETTING} {exc}") from None


def opener_from_setting(pem: str) -> BindingOpener:
    """The ACME service's BindingOpener from its setting; ConfigError naming the setting (never the key)."""
    if not pem.strip():
        raise ConfigError(f"{PRIVATE_KEY_SETTING} is required to serve (nor {PRIVATE_KEY_SETTING}_FILE): it "
                          "opens the HMAC keys of External Account Bindings")
    try:
        return BindingOpener.from_pem(pem)
    except SealingKeyError as exc:
        raise ConfigError(f"{PRIVATE_KEY_SETTING} {exc}") from None
