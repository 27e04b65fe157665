"""Mail commands sealed to the notifier: the one rule its producers and the notifier share.

A `mail.send_requested` command carries a confirmation link, whose token is a credential (it confirms an
address, resets a password, verifies a domain). Topic ACLs let only the notifier read `mail.commands`, but
a copy of the topic, of its dead-letter topic or of a producer's outbox would otherwise hold usable
links (issue 19, item 5). So the producers (registration, domain_verify) move the secret parameters
(`SECRET_PARAMS`) out of the clear `params` into `sealed`, encrypted to the notifier's X25519 public key,
and only the notifier, holding the private key, opens them, at the moment it renders the mail. The
routing fields (`to`, `template`, `member_id`) and the other parameters stay clear, so a command can be
partitioned, de-duplicated and inspected in the dead-letter topic without the key.

The cipher is HPKE (RFC 9180) in base mode: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305;
each command gets a fresh ephemeral key. The HPKE `info` binds the blob to the event's type, id,
recipient and template (canonical JSON), so a sealed link cannot be moved to another event, nor
re-addressed to someone else: opening it under any other binding fails like a tampered blob.

    data.sealed = {"alg": ALGORITHM, "key_id": <hex of SHA-256 of the raw public key, 32 digits>,
                   "value": <base64url of enc || ciphertext>}

Rotation: the notifier may hold several private keys (PEM blocks, concatenated) and opens with the one
whose key id the command names; producers seal to one public key.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from shared.config import ConfigError
from shared.events import BY_NAME, CloudEvent

MAIL_COMMAND = BY_NAME["mail.send_requested"].type
SEALED_FIELD = "sealed"
SECRET_PARAMS = ("link", "code")
"""The parameters that hold a token (the link, and the code a member may type instead); never clear."""
ALGORITHM = "HPKE-base-X25519-SHA256-ChaCha20Poly1305"
_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
_PEM_PRIVATE_END = "-----END PRIVATE KEY-----"
PUBLIC_KEY_SETTING = "CACERT_MAIL_SEALING_PUBLIC_KEY"
"""The producers' setting (registration, domain_verify): the notifier's public key, PEM."""
PRIVATE_KEY_SETTING = "CACERT_NOTIFIER_SEALING_KEY"
"""The notifier's setting (a secret): its private key(s), PEM."""


class SealingKeyError(ValueError):
    """A sealing key (public or private) cannot be used; the message says why, never the key."""


class UnopenableMail(ValueError):
    """A mail command whose secret parameters cannot be opened; the message never quotes them."""


def key_id(public_key: X25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def binding(event_type: str, event_id: str, to: str, template: str) -> bytes:
    """The HPKE info: what a sealed blob belongs to. Any other event, recipient or template cannot open it."""
    document = {"purpose": "cacert mail command secrets", "type": event_type, "id": event_id, "to": to,
                "template": template}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _public_pem(key: X25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def public_key_from_pem(pem: str) -> X25519PublicKey:
    """An X25519 public key from PEM; SealingKeyError saying what is wrong (never the key)."""
    try:
        key = serialization.load_pem_public_key(pem.strip().encode())
    except ValueError:
        raise SealingKeyError("is not a PEM public key") from None
    if not isinstance(key, X25519PublicKey):
        raise SealingKeyError("is not an X25519 public key")
    return key


def private_keys_from_pem(pem_bundle: str) -> list[X25519PrivateKey]:
    """One or more unencrypted PKCS#8 PEM X25519 private keys, concatenated; SealingKeyError otherwise."""
    blocks = [b for b in pem_bundle.split(_PEM_PRIVATE_END) if "-----BEGIN PRIVATE KEY-----" in b]
    if not blocks:
        raise SealingKeyError("is not an unencrypted PEM private key")
    keys = []
    for number, block in enumerate(blocks, 1):
        try:
            key = serialization.load_pem_private_key((block + _PEM_PRIVATE_END).strip().encode(), password=None)
        except (ValueError, TypeError):
            raise SealingKeyError(f"key {number} is not an unencrypted PEM private key") from None
        if not isinstance(key, X25519PrivateKey):
            raise SealingKeyError(f"key {number} is not an X25519 private key")
        keys.append(key)
    return keys


def private_pem(key: X25519PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


class MailSealer:
    """The producers' side: seals the secret parameters of every mail command (other events pass untouched)."""

    def __init__(self, public_key: X25519PublicKey) -> None:
        self._key = public_key
        self.key_id = key_id(public_key)

    @classmethod
    def from_pem(cls, pem: str) -> MailSealer:
        return cls(public_key_from_pem(pem))

    def public_pem(self) -> str:
        return _public_pem(self._key)

    def seal(self, event: CloudEvent) -> CloudEvent:
        if event.type != MAIL_COMMAND:
            return event
        params = dict(event.data.get("params") or {})
        secrets = {name: params.pop(name) for name in SECRET_PARAMS if name in params}
        plaintext = json.dumps(secrets, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        info = binding(event.type, event.id, event.data["to"], event.data["template"])
        value = _SUITE.encrypt(plaintext, self._key, info=info)
        sealed = {"alg": ALGORITHM, "key_id": self.key_id, "value": _b64(value)}
        return dataclasses.replace(event, data={**event.data, "params": params, SEALED_FIELD: sealed})


class MailOpener:
    """The notifier's side: the private key(s) that open what the producers sealed."""

    def __init__(self, private_keys: Iterable[X25519PrivateKey]) -> None:
        self._keys = {key_id(k.public_key()): k for k in private_keys}
        if not self._keys:
            raise SealingKeyError("names no X25519 private key")
        self._first = next(iter(self._keys.values()))

    @classmethod
    def generate(cls) -> MailOpener:
        """A new key pair (a key ceremony, the local system's state directory, a test)."""
        return cls([X25519PrivateKey.generate()])

    @classmethod
    def from_pem(cls, pem_bundle: str) -> MailOpener:
        """One or more unencrypted PKCS#8 PEM X25519 private keys, concatenated (two during a rollover)."""
        return cls(private_keys_from_pem(pem_bundle))

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def private_pem(self) -> str:
        """The (first) private key as unencrypted PKCS#8 PEM, for a Secret or a 0600 file (never for a log)."""
        return private_pem(self._first)

    def public_pem(self) -> str:
        """The public key producers seal to (the first key's)."""
        return _public_pem(self._first.public_key())

    def sealer(self) -> MailSealer:
        return MailSealer(self._first.public_key())

    def open(self, event_type: str, event_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        """The secret parameters of a mail command; UnopenableMail (a reason, never a secret) otherwise."""
        clear = [name for name in SECRET_PARAMS if name in (data.get("params") or {})]
        if clear:
            raise UnopenableMail(f"params {', '.join(clear)} must be sealed to the notifier, not sent in clear")
        sealed = data.get(SEALED_FIELD)
        if not isinstance(sealed, Mapping):
            raise UnopenableMail("the command is not sealed to the notifier (no 'sealed' field)")
        if sealed.get("alg") != ALGORITHM:
            raise UnopenableMail(f"sealed with {str(sealed.get('alg'))[:60]!r}, not {ALGORITHM}")
        key = self._keys.get(str(sealed.get("key_id")))
        if key is None:
            raise UnopenableMail(f"sealed to key {str(sealed.get('key_id'))[:40]!r}, which this notifier "
                                 "does not hold")
        try:
            info = binding(event_type, event_id, str(data.get("to")), str(data.get("template")))
            plaintext = _SUITE.decrypt(_unb64(str(sealed.get("value", ""))), key, info=info)
        except (InvalidTag, ValueError):
            raise UnopenableMail("the sealed parameters do not open: altered, or moved from another "
                                 "event, recipient or template") from None
        try:
            secrets = json.loads(plaintext)
        except ValueError:
            raise UnopenableMail("the sealed parameters are not a JSON object") from None
        if not isinstance(secrets, dict):
            raise UnopenableMail("the sealed parameters are not a JSON object")
        return {k: v for k, v in secrets.items() if k in SECRET_PARAMS}


def sealer_from_setting(pem: str) -> MailSealer:
    """The producers' MailSealer from their setting; ConfigError naming it (never the key) when unusable."""
    if not pem.strip():
        raise ConfigError(f"{PUBLIC_KEY_SETTING} is required to serve (nor {PUBLIC_KEY_SETTING}_FILE): mail "
                          "commands carry confirmation links and are sealed to the notifier's key")
    try:
        return MailSealer.from_pem(pem)
    except SealingKeyError as exc:
        raise ConfigError(f"{PUBLIC_KEY_SETTING} {exc}") from None


def opener_from_setting(pem: str) -> MailOpener:
    """The notifier's MailOpener from its setting; ConfigError naming it (never the key) when unusable."""
    if not pem.strip():
        raise ConfigError(f"{PRIVATE_KEY_SETTING} is required to serve (nor {PRIVATE_KEY_SETTING}_FILE): "
                          "mail commands are sealed to this key")
    try:
        return MailOpener.from_pem(pem)
    except SealingKeyError as exc:
        raise ConfigError(f"{PRIVATE_KEY_SETTING} {exc}") from None
