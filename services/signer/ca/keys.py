"""Private keys of the CA: generation, passphrase-encrypted storage and loading.

CA keys only ever touch the disk as encrypted PKCS#8 (``BestAvailableEncryption``) in files
readable by the owner alone, and no error raised here ever carries key material or the
passphrase: exceptions end up in logs and dead-letter reasons, and both leave the signer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

_RSA_BITS: Final = {"rsa4096": 4096, "rsa2048": 2048}
_CURVES: Final[dict[str, type[ec.EllipticCurve]]] = {"p256": ec.SECP256R1, "p384": ec.SECP384R1}
ALGORITHMS: Final = (*_RSA_BITS, *_CURVES)
"""The CA key algorithms (``CACERT_CA_ALGORITHM``, ``init-ca --algorithm``); the first is the default."""
_KEY_FILE_MODE: Final = 0o600


class KeyFileError(Exception):
    """A key file cannot be written or read. The message names the file, never its content."""


class KeyFileExists(KeyFileError):
    """Refusing to replace an existing key: losing a CA key cannot be undone."""


class KeyDecryptionFailed(KeyFileError):
    """The passphrase is wrong or the file is not an encrypted private key we support."""


def generate_private_key(algorithm: str) -> PrivateKey:
    """A fresh key for one of ``ALGORITHMS``; RSA keys use the public exponent 65537."""
    if algorithm in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[algorithm])
    if algorithm in _CURVES:
        return ec.generate_private_key(_CURVES[algorithm]())
    raise ValueError(f"unsupported key algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")


def algorithm_of(key: object) -> str:
    """The ``ALGORITHMS`` name of a key, so a throw-away key of the same kind can be made."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        name = f"rsa{key.key_size}"
        if name in _RSA_BITS:
            return name
    elif isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        for name, curve in _CURVES.items():
            if isinstance(key.curve, curve):
                return name
    raise ValueError("key is not of a supported algorithm")


def signature_hash(key: object) -> hashes.SHA256 | hashes.SHA384:
    """The digest a key signs with: SHA-384 for P-384 (matching strength), SHA-256 otherwise.

    CA/B Forum BR 7.1.3.2 pairs P-384 with ecdsa-with-SHA384; RSA and P-256 use SHA-256.
    """
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP384R1
    ):
        return hashes.SHA384()
    return hashes.SHA256()


def encrypt_private_key(key: PrivateKey, passphrase: bytes) -> bytes:
    """PKCS#8 PEM encrypted with the passphrase (the strongest scheme cryptography offers)."""
    if not passphrase:
        raise ValueError("a non-empty passphrase is required to store a CA key")
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.BestAvailableEncryption(passphrase),
    )


def decrypt_private_key(pem: bytes, passphrase: bytes) -> PrivateKey:
    """The key inside an encrypted PKCS#8 PEM; unencrypted keys are refused (they should not exist)."""
    if not passphrase:
        raise KeyDecryptionFailed("a passphrase is required to load a CA key")
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase)
    except (ValueError, TypeError):
        # The library's message may mention the PEM structure; ours says only what went wrong.
        raise KeyDecryptionFailed(
            "cannot decrypt private key: wrong passphrase or not an encrypted key"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyDecryptionFailed("private key is of an unsupported type")
    return key


def write_private_key(path: Path, key: PrivateKey, passphrase: bytes) -> None:
    """Create ``path`` (mode 0600) holding the encrypted key; an existing file is never replaced."""
    pem = encrypt_private_key(key, passphrase)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _KEY_FILE_MODE)
    except FileExistsError:
        raise KeyFileExists(f"refusing to overwrite existing key file {path}") from None
    try:
        os.fchmod(fd, _KEY_FILE_MODE)  # the umask may only remove bits, but be explicit
        with os.fdopen(fd, "wb") as out:
            fd = -1
            out.write(pem)
            out.flush()
            os.fsync(out.fileno())
    finally:
        if fd != -1:
            os.close(fd)


def replace_private_key(path: Path, key: PrivateKey, passphrase: bytes) -> None:
    """Atomically replace ``path`` with a new encrypted key (for renewable keys, e.g. OCSP signers).

    The new key is written to a sibling temporary file with mode 0600 and renamed over the old one,
    so a crash leaves either the old or the new key, never a half-written file.
    """
    tmp = path.with_name(f".{path.name}.new")
    tmp.unlink(missing_ok=True)
    write_private_key(tmp, key, passphrase)
    os.replace(tmp, path)


def read_private_key(path: Path, passphrase: bytes) -> PrivateKey:
    """Load an encrypted key file written by ``write_private_key``."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    try:
        return decrypt_private_key(pem, passphrase)
    except KeyDecryptionFailed as exc:
        raise KeyDecryptionFailed(f"{path}: {exc}") from None


def public_keys_equal(a: CertificatePublicKeyTypes, b: CertificatePublicKeyTypes) -> bool:
    """Whether two public keys are the same key (compares the DER SubjectPublicKeyInfo)."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(serialization.Encoding.DER, fmt) == b.public_bytes(serialization.Encoding.DER, fmt)
