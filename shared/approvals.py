"""The RA's signature on what it asks the signer to do: `csr.approved`, `cert.revoke_requested` and
`cert.key_compromised`.

The signer issues and revokes only on the RA's word, and its only input is Kafka. Topic ACLs keep
other producers out, but a compromised producer or a mis-set ACL would otherwise let anyone issue
for any name. So registration signs each such event with an Ed25519 key (from a mounted secret)
and the signer verifies it against the RA public keys it is configured with, refusing anything
unsigned, signed by an unknown key, or altered (issue 19; Boulder's RA and CA likewise only trust
each other over an authenticated channel).

What is signed: the event's type, its id and its data without the signature, as canonical JSON
(sorted keys, no spaces, UTF-8). Binding the id means a signed payload cannot be re-sent under a
new event id to look like a new approval; the exact event re-sent is a replay the signer answers
idempotently (one certificate per request id, ever). The signature travels in the data, as
`ra_signature` = {key_id, alg, value}, so it survives outboxes, redelivery and the dead-letter topic.

Rotation: the signer accepts every key it is given (two during a rollover); the key id is the first
16 bytes of the SHA-256 of the raw public key, in hex, so a configuration names no ids by hand.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.events import BY_NAME, CloudEvent

SIGNATURE_FIELD = "ra_signature"
ALGORITHM = "Ed25519"
SIGNED_EVENTS = ("csr.approved", "cert.revoke_requested", "cert.key_compromised")
SIGNED_TYPES = frozenset(BY_NAME[name].type for name in SIGNED_EVENTS)
UNAUTHENTICATED = "unauthenticated_approval"
"""The `cert.rejected` reason for an approval the signer cannot attribute to the RA."""


class ApprovalKeyError(ValueError):
    """An RA key (private or public) cannot be used; the message says why, never the key."""


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def signing_input(event_type: str, event_id: str, data: Mapping[str, Any]) -> bytes:
    unsigned = {k: v for k, v in data.items() if k != SIGNATURE_FIELD}
    document = {"type": event_type, "id": event_id, "data": unsigned}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ApprovalSigner:
    """The RA's side: signs the events in SIGNED_TYPES (others pass through untouched)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.key_id = key_id(private_key.public_key())

    @classmethod
    def from_pem(cls, pem: str) -> ApprovalSigner:
        try:
            key = serialization.load_pem_private_key(pem.encode(), password=None)
        except (ValueError, TypeError):
            raise ApprovalKeyError("is not an unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ApprovalKeyError("is not an Ed25519 private key")
        return cls(key)

    @classmethod
    def generate(cls) -> ApprovalSigner:
        """A new RA key (a key ceremony, a test, a benchmark that plays the RA)."""
        return cls(Ed25519PrivateKey.generate())

    def private_pem(self) -> str:
        """The private key as unencrypted PKCS#8 PEM, for a Secret or a 0600 file (never for a log)."""
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()).decode()

    def public_pem(self) -> str:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, event: CloudEvent) -> CloudEvent:
        if event.type not in SIGNED_TYPES:
            return event
        signature = self._key.sign(signing_input(event.type, event.id, event.data))
        data = {**event.data, SIGNATURE_FIELD: {"key_id": self.key_id, "alg": ALGORITHM, "value": _b64(signature)}}
        return dataclasses.replace(event, data=data)


class ApprovalVerifier:
    """The signer's side: which RA keys it trusts, and whether an event carries a good signature."""

    def __init__(self, public_keys: Iterable[Ed25519PublicKey]) -> None:
        self._keys = {key_id(k): k for k in public_keys}
        if not self._keys:
            raise ApprovalKeyError("names no Ed25519 public key")

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    @classmethod
    def from_pem(cls, pem_bundle: str) -> ApprovalVerifier:
        """One or more PEM public keys (SubjectPublicKeyInfo), concatenated."""
        blocks = [b for b in pem_bundle.split("-----END PUBLIC KEY-----") if "-----BEGIN PUBLIC KEY-----" in b]
        keys = []
        for number, block in enumerate(blocks, 1):
            try:
                key = serialization.load_pem_public_key((block + "-----END PUBLIC KEY-----\n").strip().encode())
            except ValueError:
                raise ApprovalKeyError(f"key {number} is not a PEM public key") from None
            if not isinstance(key, Ed25519PublicKey):
                raise ApprovalKeyError(f"key {number} is not an Ed25519 public key")
            keys.append(key)
        return cls(keys)

    def problem(self, event: CloudEvent) -> str | None:
        """Why `event` is not the RA's (None: it is, or it is of a type the RA does not sign)."""
        if event.type not in SIGNED_TYPES:
            return None
        signature = event.data.get(SIGNATURE_FIELD)
        if not isinstance(signature, Mapping):
            return "not signed by the RA"
        if signature.get("alg") != ALGORITHM:
            return f"signature algorithm {str(signature.get('alg'))[:20]!r} is not {ALGORITHM}"
        key = self._keys.get(str(signature.get("key_id")))
        if key is None:
            return f"signed with RA key {str(signature.get('key_id'))[:40]!r}, which this signer does not trust"
        try:
            key.verify(_unb64(str(signature.get("value", ""))),
                       signing_input(event.type, event.id, event.data))
        except (InvalidSignature, ValueError):
            return "the RA signature does not verify (the event was altered or forged)"
        return None
