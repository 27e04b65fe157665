"""Key generation and encrypted storage: keys on disk are encrypted, private to the owner, never
overwritten, and errors say nothing about the key or the passphrase."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.signer.ca import keys


@pytest.mark.parametrize(
    ("algorithm", "kind", "size", "hash_name"),
    [
        ("p256", ec.EllipticCurvePrivateKey, 256, "sha256"),
        ("p384", ec.EllipticCurvePrivateKey, 384, "sha384"),
        ("rsa2048", rsa.RSAPrivateKey, 2048, "sha256"),
    ],
)
def test_generates_each_algorithm(algorithm: str, kind: type, size: int, hash_name: str) -> None:
    key = keys.generate_private_key(algorithm)
    assert isinstance(key, kind)
    assert key.key_size == size
    assert keys.algorithm_of(key) == algorithm
    assert keys.algorithm_of(key.public_key()) == algorithm
    assert keys.signature_hash(key).name == hash_name
    if isinstance(key, rsa.RSAPrivateKey):
        assert key.public_key().public_numbers().e == 65537


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported key algorithm 'ed25519'"):
        keys.generate_private_key("ed25519")


def test_key_file_is_encrypted_pkcs8_mode_0600_and_round_trips(tmp_path: Path) -> None:
    key = keys.generate_private_key("p256")
    path = tmp_path / "ca.key.pem"
    keys.write_private_key(path, key, b"s3cret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    loaded = keys.read_private_key(path, b"s3cret")
    assert keys.public_keys_equal(loaded.public_key(), key.public_key())


def test_key_file_cannot_be_loaded_without_the_passphrase(tmp_path: Path, tool) -> None:
    path = tmp_path / "ca.key.pem"
    keys.write_private_key(path, keys.generate_private_key("p256"), b"s3cret")
    pem = path.read_bytes()
    for wrong in (b"wrong", b""):
        with pytest.raises(keys.KeyDecryptionFailed) as caught:
            keys.read_private_key(path, wrong)
        message = str(caught.value)
        assert "s3cret" not in message and "PRIVATE KEY" not in message
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(keys.KeyDecryptionFailed):
        keys.decrypt_private_key(pem, b"wrong")
    # openssl agrees that it is encrypted: wrong passphrase fails, the right one works.
    assert tool.openssl("pkey", "-in", path, "-passin", "pass:wrong", "-noout").returncode != 0
    assert tool.openssl("pkey", "-in", path, "-passin", "pass:s3cret", "-noout").returncode == 0


def test_unencrypted_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = keys.generate_private_key("p256")
    plain = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(keys.KeyDecryptionFailed):
        keys.decrypt_private_key(plain, b"anything")


def test_empty_passphrase_is_refused_when_storing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="non-empty passphrase"):
        keys.write_private_key(tmp_path / "k.pem", keys.generate_private_key("p256"), b"")
    assert not (tmp_path / "k.pem").exists()


def test_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "ca.key.pem"
    keys.write_private_key(path, keys.generate_private_key("p256"), b"one")
    before = path.read_bytes()
    with pytest.raises(keys.KeyFileExists, match="refusing to overwrite"):
        keys.write_private_key(path, keys.generate_private_key("p256"), b"two")
    assert path.read_bytes() == before


def test_replace_private_key_swaps_atomically_and_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "ocsp.key.pem"
    keys.write_private_key(path, keys.generate_private_key("p256"), b"pw")
    new = keys.generate_private_key("p256")
    keys.replace_private_key(path, new, b"pw")
    assert keys.public_keys_equal(keys.read_private_key(path, b"pw").public_key(), new.public_key())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["ocsp.key.pem"]


def test_missing_key_file_error_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(keys.KeyFileError, match=r"missing\.pem"):
        keys.read_private_key(tmp_path / "missing.pem", b"pw")
