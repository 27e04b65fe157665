"""CA keys in a hardware security module, through PKCS#11 (RFC 7512 URIs, ``python-pkcs11``).

Where each CA key lives is a ``CAKeySource``: a CA label (``class1``, ``class3``, later issuing CAs such as
``class1-issuing``) maps either to a token object, named by a PKCS#11 URI, or, by default, to the encrypted
key file in the CA directory. ``hierarchy.load_hierarchy`` asks it for the key of each label.

A token key is an ``HSMPrivateKey``: an ``rsa.RSAPrivateKey`` or ``ec.EllipticCurvePrivateKey`` whose
``sign()`` asks the token for the signature. cryptography's certificate, CRL and OCSP response builders call
exactly that method (checked against cryptography 50 in ``tests/signer/test_signer_hsm.py``), so issuance,
CRLs and OCSP sign with a token key through the same code as with a file key; the private key never leaves
the token (it cannot be exported: ``private_bytes`` and ``private_numbers`` refuse).

Errors (``HSMKeyError``) name the CA label and what is wrong (module, token, object, PIN), never the PIN.
"""

from __future__ import annotations

import dataclasses
import threading
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Self

import pkcs11
import pkcs11.exceptions as pkcs11_errors
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.utils import Buffer

from services.signer.ca import keys
from services.signer.ca.keys import PrivateKey, PublicKey

SOFTHSM2_MODULE: Final = Path("/usr/lib/softhsm/libsofthsm2.so")
"""Where Debian's ``softhsm2`` package installs the SoftHSM2 PKCS#11 module: the default module."""

_DIGEST_INFO: Final[dict[str, bytes]] = {
    # DER of DigestInfo { AlgorithmIdentifier(hash, NULL), OCTET STRING(...) } up to the digest (RFC 8017 9.2).
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


class HSMKeyError(Exception):
    """A CA key on a token cannot be used; the message names the CA label and the cause, never the PIN."""


class HSMSigningError(HSMKeyError):
    """The token failed a signature of a key that opened fine (HSM restarted, session lost): an outage, not a
    bad request. The key's next signature opens a new session."""


# ------------------------------------------------------------------------------------------- URIs


@dataclasses.dataclass(frozen=True)
class PKCS11URI:
    """The parts of an RFC 7512 ``pkcs11:`` URI that find a private key: the token, the object (by label
    and/or id), and optionally the module (``module-path``) and a file holding the PIN (``pin-source``)."""

    token: str | None = None
    object: str | None = None
    id: bytes | None = None
    module_path: Path | None = None
    pin_source: Path | None = None

    @classmethod
    def parse(cls, uri: str) -> PKCS11URI:
        """``ValueError`` with a short reason when ``uri`` is not a usable key URI."""
        if not uri.startswith("pkcs11:"):
            raise ValueError("a PKCS#11 URI starts with 'pkcs11:'")
        path, _, query = uri[len("pkcs11:"):].partition("?")
        values: dict[str, bytes] = {}
        for part in (p for p in path.split(";") if p):
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"URI attribute {name!r} has no value")
            values[name] = urllib.parse.unquote_to_bytes(value)
        for part in (p for p in query.split("&") if p):
            name, sep, value = part.partition("=")
            if name in ("module-path", "pin-source"):
                values[name] = urllib.parse.unquote_to_bytes(value)
        object_type = values.get("type", b"private").decode()
        if object_type != "private":
            raise ValueError(f"type={object_type} does not name a private key")
        if "token" not in values:
            raise ValueError("the URI must name the token (token=...)")
        if "object" not in values and "id" not in values:
            raise ValueError("the URI must name the key (object=... or id=...)")
        pin_source = values["pin-source"].decode() if "pin-source" in values else None
        if pin_source is not None and pin_source.startswith("file:"):
            pin_source = urllib.parse.urlparse(pin_source).path
        return cls(
            token=values["token"].decode(),
            object=values["object"].decode() if "object" in values else None,
            id=values.get("id"),
            module_path=Path(values["module-path"].decode()) if "module-path" in values else None,
            pin_source=Path(pin_source) if pin_source else None,
        )

    def describe(self) -> str:
        """The key's place for messages: token and object, never a PIN."""
        name = f"object {self.object!r}" if self.object is not None else f"id {self.id.hex() if self.id else ''}"
        return f"{name} on token {self.token!r}"


# ------------------------------------------------------------------------------------------- keys


@dataclasses.dataclass(frozen=True)
class HSMKeyReference:
    """One CA key on a token: how to reach it. Picklable, so signing worker processes open their own."""

    uri: PKCS11URI
    module: Path
    pin: bytes = dataclasses.field(repr=False)

    def open(self, label: str) -> HSMPrivateKey:
        """Log in and find the key; ``HSMKeyError`` naming ``label`` when the module, token, PIN or object is
        wrong, or when the key does not sign (a test signature is made and checked)."""
        where = f"CA key {label} ({self.uri.describe()})"
        if not self.module.is_file():
            raise HSMKeyError(f"{where}: the PKCS#11 module {self.module} does not exist")
        try:
            lib = pkcs11.lib(str(self.module))
        except (RuntimeError, OSError, pkcs11_errors.PKCS11Error) as exc:
            raise HSMKeyError(f"{where}: cannot load the PKCS#11 module {self.module}: {exc}") from None
        session, private = self.private_object(lib, where)
        public = _public_key_of(session.session, self.uri, private)
        if public is None:
            raise HSMKeyError(f"{where}: the token holds no public key object for it (same label or id)")
        signer = _TokenSigner(self, where, session, private)
        key: HSMPrivateKey
        if isinstance(public, rsa.RSAPublicKey):
            key = HSMRSAPrivateKey(signer, public)
        else:
            key = HSMECPrivateKey(signer, public)
        try:
            _check_signs(key)
        except (InvalidSignature, pkcs11_errors.PKCS11Error) as exc:
            raise HSMKeyError(f"{where}: a test signature failed ({type(exc).__name__}); "
                              "the private and public key objects do not match or the key may not sign") from None
        return key


    def private_object(self, lib: Any, where: str) -> tuple[_Session, Any]:
        """The logged-in session and the one private key object the URI names in it."""
        session = _logged_in(lib, self, where)
        found = _find_key(session.session, self.uri, pkcs11.ObjectClass.PRIVATE_KEY)
        if not found:
            raise HSMKeyError(f"{where}: no such private key on the token")
        if len(found) > 1:
            raise HSMKeyError(f"{where}: more than one private key matches; add id= to the URI")
        return session, found[0]


@dataclasses.dataclass(frozen=True)
class _Session:
    session: Any
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    """A PKCS#11 session runs one operation at a time: every key found through it signs under this lock."""


_sessions: dict[tuple[Path, str | None, bytes], _Session] = {}
_sessions_lock = threading.Lock()


def _logged_in(lib: Any, reference: HSMKeyReference, where: str) -> _Session:
    """This process's logged-in session to the reference's token. PKCS#11 logs in per application and token,
    not per session (a second login is refused), so the CA keys of one token share one session."""
    cache_key = (reference.module, reference.uri.token, reference.pin)
    with _sessions_lock:
        if cache_key in _sessions:
            return _sessions[cache_key]
        try:
            token = lib.get_token(token_label=reference.uri.token)
        except pkcs11_errors.NoSuchToken:
            raise HSMKeyError(f"{where}: no token labelled {reference.uri.token!r} in {reference.module}") from None
        except pkcs11_errors.MultipleTokensReturned:
            raise HSMKeyError(
                f"{where}: more than one token labelled {reference.uri.token!r} in {reference.module}"
            ) from None
        try:
            session = token.open(user_pin=reference.pin.decode())
        except (pkcs11_errors.PinIncorrect, pkcs11_errors.PinLenRange, pkcs11_errors.PinInvalid):
            raise HSMKeyError(f"{where}: the token refused the PIN") from None
        except pkcs11_errors.PinLocked:
            raise HSMKeyError(f"{where}: the token's user PIN is locked") from None
        except pkcs11_errors.UserAlreadyLoggedIn:
            raise HSMKeyError(
                f"{where}: the token is already open in this process with another PIN; give its keys one PIN"
            ) from None
        except pkcs11_errors.PKCS11Error as exc:
            raise HSMKeyError(f"{where}: cannot open a session: {type(exc).__name__}") from None
        _sessions[cache_key] = opened = _Session(session)
        return opened


def _forget(reference: HSMKeyReference, session: _Session) -> None:
    """Drop a session that failed, so the next use of its token logs in anew (and close it, if it still can)."""
    with _sessions_lock:
        cache_key = (reference.module, reference.uri.token, reference.pin)
        if _sessions.get(cache_key) is session:
            del _sessions[cache_key]
    try:
        session.session.close()
    except pkcs11_errors.PKCS11Error:
        pass  # already gone with the token


def _check_signs(key: HSMPrivateKey) -> None:
    """Sign a probe and verify it with the public key (``InvalidSignature`` when they do not match)."""
    probe = b"cacert pkcs11 start-up probe"
    algorithm = keys.signature_hash(key)
    if isinstance(key, HSMRSAPrivateKey):
        key.public_key().verify(key.sign(probe, padding.PKCS1v15(), algorithm), probe, padding.PKCS1v15(), algorithm)
    else:
        key.public_key().verify(key.sign(probe, ec.ECDSA(algorithm)), probe, ec.ECDSA(algorithm))


def _find_key(session: Any, uri: PKCS11URI, object_class: pkcs11.ObjectClass) -> list[Any]:
    attrs: dict[Any, Any] = {pkcs11.Attribute.CLASS: object_class}
    if uri.object is not None:
        attrs[pkcs11.Attribute.LABEL] = uri.object
    if uri.id is not None:
        attrs[pkcs11.Attribute.ID] = uri.id
    return list(session.get_objects(attrs))


def _public_key_of(session: Any, uri: PKCS11URI, private: Any) -> PublicKey | None:
    """The key's public half: the public key object of the same label/id (or, for RSA, the modulus and
    exponent of the private object itself)."""
    from pkcs11.util.ec import encode_ec_public_key
    from pkcs11.util.rsa import encode_rsa_public_key

    found = _find_key(session, uri, pkcs11.ObjectClass.PUBLIC_KEY)
    if len(found) == 1:
        obj = found[0]
        der = encode_rsa_public_key(obj) if obj.key_type == pkcs11.KeyType.RSA else encode_ec_public_key(obj)
        public = serialization.load_der_public_key(der)
        return public if isinstance(public, keys.PublicKey) else None
    if private.key_type == pkcs11.KeyType.RSA:
        return rsa.RSAPublicNumbers(
            int.from_bytes(private[pkcs11.Attribute.PUBLIC_EXPONENT], "big"),
            int.from_bytes(private[pkcs11.Attribute.MODULUS], "big"),
        ).public_key()
    return None


def _digest(data: Buffer, algorithm: hashes.HashAlgorithm | utils.Prehashed) -> tuple[str, bytes]:
    if isinstance(algorithm, utils.Prehashed):
        return algorithm._algorithm.name, bytes(data)
    digest = hashes.Hash(algorithm)
    digest.update(data)
    return algorithm.name, digest.finalize()


class _TokenSigner:
    """A private key object on the token and the session it was found in; after the token fails a signature
    (``HSMSigningError``), the next one logs in again and finds the key anew."""

    def __init__(self, reference: HSMKeyReference, where: str, session: _Session, private: Any) -> None:
        self._reference = reference
        self._where = where
        self._found: tuple[_Session, Any] | None = (session, private)
        self._lock = threading.Lock()

    def sign(self, data: bytes, mechanism: pkcs11.Mechanism) -> bytes:
        with self._lock:
            found = self._found
            if found is None:
                try:
                    found = self._found = self._reference.private_object(
                        pkcs11.lib(str(self._reference.module)), self._where)
                except HSMKeyError as exc:
                    raise HSMSigningError(str(exc)) from None
        session, private = found
        try:
            with session.lock:
                return bytes(private.sign(data, mechanism=mechanism))
        except pkcs11_errors.PKCS11Error as exc:
            with self._lock:
                self._found = None
            _forget(self._reference, session)
            raise HSMSigningError(f"{self._where}: the token failed to sign ({type(exc).__name__}); "
                                  "the next signature opens a new session") from None


class _TokenKey:
    """What every key on a token refuses, whatever its algorithm: it never leaves the token (no export, no
    pickling: workers get its ``HSMKeyReference``), and a copy is the same handle."""

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        raise TypeError("a CA key in an HSM cannot be exported")

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        return self

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("a CA key in an HSM cannot be pickled; pass its HSMKeyReference instead")


class HSMECPrivateKey(_TokenKey, ec.EllipticCurvePrivateKey):
    """An EC CA key on a token: CKM_ECDSA over the digest, the r||s answer DER-encoded as X.509 wants."""

    def __init__(self, token: _TokenSigner, public: ec.EllipticCurvePublicKey) -> None:
        self._token = token
        self._public = public

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TypeError("an EC key in an HSM signs with ECDSA only")
        _, digest = _digest(data, signature_algorithm.algorithm)
        raw = self._token.sign(digest, pkcs11.Mechanism.ECDSA)
        half = len(raw) // 2
        return utils.encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise TypeError("a CA key in an HSM only signs")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise TypeError("a CA key in an HSM cannot be exported")



class HSMRSAPrivateKey(_TokenKey, rsa.RSAPrivateKey):
    """An RSA CA key on a token: PKCS#1 v1.5 (CKM_RSA_PKCS over the DigestInfo), the only padding the CA uses."""

    def __init__(self, token: _TokenSigner, public: rsa.RSAPublicKey) -> None:
        self._token = token
        self._public = public

    def sign(
        self,
        data: Buffer,
        padding: padding.AsymmetricPadding,
        algorithm: hashes.HashAlgorithm | utils.Prehashed | utils.NoDigestInfo,
    ) -> bytes:
        if not isinstance(padding, _PKCS1v15):
            raise TypeError("an RSA key in an HSM signs with PKCS#1 v1.5 padding only")
        if isinstance(algorithm, utils.NoDigestInfo):
            raise TypeError("an RSA key in an HSM signs a DigestInfo it builds itself")
        name, digest = _digest(data, algorithm)
        if name not in _DIGEST_INFO:
            raise TypeError(f"an RSA key in an HSM signs with {', '.join(_DIGEST_INFO)} only")
        return self._token.sign(_DIGEST_INFO[name] + digest, pkcs11.Mechanism.RSA_PKCS)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        raise TypeError("a CA key in an HSM only signs")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        raise TypeError("a CA key in an HSM cannot be exported")



_PKCS1v15 = padding.PKCS1v15
HSMPrivateKey = HSMRSAPrivateKey | HSMECPrivateKey


# ----------------------------------------------------------------------------------- key source


@dataclasses.dataclass(frozen=True)
class CAKeySource:
    """Where each CA key lives, by CA label: on a token (``hsm``), else in the CA directory's encrypted file.

    Picklable (references, not open keys): the issuing mode hands it to its signing worker processes, each
    of which opens its own PKCS#11 session."""

    hsm: Mapping[str, HSMKeyReference] = dataclasses.field(default_factory=dict)

    def private_key(self, label: str, path: Path, passphrase: bytes | None) -> PrivateKey:
        """The key of CA ``label``: from its token when one is configured, else from the file ``path`` (which
        needs the passphrase)."""
        reference = self.hsm.get(label)
        if reference is None:
            return keys.read_private_key(path, passphrase or b"")
        return reference.open(label)

    def on_token(self, label: str) -> bool:
        """Whether the key of CA ``label`` is on a token (so no passphrase is needed for it)."""
        return label in self.hsm

    def holds(self, label: str, path: Path) -> bool:
        """Whether the key of CA ``label`` is there to load: configured on a token, or its file exists."""
        return self.on_token(label) or path.exists()

    def check(self) -> None:
        """Open every token key once (``HSMKeyError`` on the first that cannot sign): the start-up refusal."""
        for label, reference in self.hsm.items():
            reference.open(label)

    @classmethod
    def from_setting(cls, spec: str, *, module: Path, pin: bytes) -> CAKeySource:
        """Parse ``label=pkcs11:...`` entries separated by white space (``CACERT_CA_HSM_KEYS``); a URI's
        ``module-path`` and ``pin-source`` override ``module`` and ``pin`` for that key. ``ValueError``
        naming the entry (never a PIN) when one is malformed or its PIN file unreadable or empty."""
        found: dict[str, HSMKeyReference] = {}
        for entry in spec.split():
            label, sep, uri_text = entry.partition("=")
            if not sep or not label:
                raise ValueError(f"entry {entry!r} is not label=pkcs11:URI")
            if label in found:
                raise ValueError(f"CA label {label!r} appears twice")
            try:
                uri = PKCS11URI.parse(uri_text)
            except ValueError as exc:
                raise ValueError(f"{label}: {exc}") from None
            key_pin = pin
            if uri.pin_source is not None:
                try:
                    key_pin = uri.pin_source.read_bytes().rstrip(b"\r\n")
                except OSError as exc:
                    raise ValueError(f"{label}: cannot read the pin-source {uri.pin_source}: {exc.strerror}") from None
            if not key_pin:
                raise ValueError(f"{label}: no PIN (set CACERT_PKCS11_PIN or CACERT_PKCS11_PIN_FILE, or "
                                 "pin-source in the URI)")
            found[label] = HSMKeyReference(uri, uri.module_path or module, key_pin)
        return cls(found)


FILE_KEYS: Final = CAKeySource()
"""Every CA key in its encrypted file: the default."""


def import_private_key(reference: HSMKeyReference, key: PrivateKey, key_id: bytes) -> None:
    """Put a software key on the token of ``reference`` as a sensitive, non-extractable signing key, with its
    public key beside it (the same label and id): moving a file key into an HSM, as ``pkcs11-tool`` or
    ``softhsm2-util --import`` do for an operator. The tests and the benchmark make their SoftHSM2 keys with it."""
    from pkcs11.util.ec import decode_ec_private_key, decode_ec_public_key
    from pkcs11.util.rsa import decode_rsa_private_key, decode_rsa_public_key

    der = serialization.Encoding.DER
    private_der = key.private_bytes(der, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    if isinstance(key, rsa.RSAPrivateKey):
        private = decode_rsa_private_key(private_der)
        public = decode_rsa_public_key(key.public_key().public_bytes(der, serialization.PublicFormat.PKCS1))
    else:
        private = decode_ec_private_key(private_der)
        public = decode_ec_public_key(
            key.public_key().public_bytes(der, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    common = {pkcs11.Attribute.TOKEN: True, pkcs11.Attribute.LABEL: reference.uri.object, pkcs11.Attribute.ID: key_id}
    private.update(common)
    private.update({pkcs11.Attribute.SIGN: True, pkcs11.Attribute.SENSITIVE: True,
                    pkcs11.Attribute.EXTRACTABLE: False, pkcs11.Attribute.PRIVATE: True})
    public.update(common)
    lib = pkcs11.lib(str(reference.module))
    token = lib.get_token(token_label=reference.uri.token)
    with token.open(rw=True) as session:  # logged in through this process's session (login is per token)
        _logged_in(lib, reference, f"importing {reference.uri.describe()}")
        session.create_object(private)
        session.create_object(public)
