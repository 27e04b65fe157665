"""CA keys on a PKCS#11 token (SoftHSM2): the URI and setting, keys that sign through cryptography's builders
(RSA and P-384 here; P-256 is the parametrized issuance/CRL/OCSP suite), signing workers that open the token
themselves, and the refusals: wrong module, token, object or PIN stop the issuing mode with one line."""

from __future__ import annotations

import datetime as dt
import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding
from cryptography.x509.oid import NameOID

from services.signer.ca import hsm, keys
from services.signer.ca.hsm import PKCS11URI, CAKeySource, HSMKeyError, HSMSigningError
from services.signer.settings import SignerSettings
from services.signer.signing import SigningConfig, SigningPool
from shared.config import ConfigError, load
from shared.events import isoformat, utcnow

ROOT = Path(__file__).resolve().parents[2]
SECRET_PIN = b"4711"  # a PIN given in settings: it must never show up in a message


# ------------------------------------------------------------------------------------ URI, setting


def test_uri_names_token_object_id_module_and_pin_file() -> None:
    uri = PKCS11URI.parse(
        "pkcs11:token=CAcert%20HSM;object=class1-ca;id=%01%02;type=private"
        "?module-path=/opt/hsm/lib.so&pin-source=file:/run/secrets/pin"
    )
    assert uri == PKCS11URI(token="CAcert HSM", object="class1-ca", id=b"\x01\x02",
                            module_path=Path("/opt/hsm/lib.so"), pin_source=Path("/run/secrets/pin"))
    assert PKCS11URI.parse("pkcs11:token=t;id=%ff").describe() == "id ff on token 't'"


@pytest.mark.parametrize(("uri", "reason"), [
    ("file:/etc/key.pem", "starts with 'pkcs11:'"),
    ("pkcs11:object=class1-ca", "must name the token"),
    ("pkcs11:token=t", "must name the key"),
    ("pkcs11:token=t;object=k;type=cert", "does not name a private key"),
    ("pkcs11:token=t;object", "has no value"),
])
def test_unusable_uris_are_refused_with_the_reason(uri: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        PKCS11URI.parse(uri)


def settings_environ(ca_dir: Path, **extra: str) -> dict[str, str]:
    return {"CACERT_CA_DIR": str(ca_dir), "CACERT_CA_PASSPHRASE": "x", "CACERT_KAFKA_BOOTSTRAP": "127.0.0.1:9",
            "CACERT_MONGO_URL": "mongodb://127.0.0.1:9", "CACERT_MONGO_DATABASE": "signer", **extra}


def test_setting_maps_ca_labels_to_token_keys_and_leaves_the_others_in_files(ca_dir: Path, tmp_path: Path) -> None:
    pin_file = tmp_path / "class3.pin"
    pin_file.write_bytes(b"9876\n")
    settings = load(SignerSettings, settings_environ(
        ca_dir,
        CACERT_CA_HSM_KEYS="class1=pkcs11:token=root;object=class1-ca\n"
                           f"  class3=pkcs11:token=c3;object=class3-ca?pin-source={pin_file}&module-path=/x.so",
        CACERT_PKCS11_PIN=SECRET_PIN.decode(),
    ))
    source = settings.ca_key_source()
    assert set(source.hsm) == {"class1", "class3"}
    assert source.hsm["class1"].module == hsm.SOFTHSM2_MODULE and source.hsm["class1"].pin == SECRET_PIN
    assert source.hsm["class3"].module == Path("/x.so") and source.hsm["class3"].pin == b"9876"
    assert SECRET_PIN.decode() not in repr(source) and "9876" not in repr(source)
    assert load(SignerSettings, settings_environ(ca_dir)).ca_key_source() == hsm.FILE_KEYS


@pytest.mark.parametrize(("value", "pin", "message"), [
    ("class1", "1", "is not label=pkcs11:URI"),
    ("class1=pkcs11:token=t", "1", "class1: the URI must name the key"),
    ("class1=pkcs11:token=t;object=a class1=pkcs11:token=t;object=b", "1", "'class1' appears twice"),
    ("class1=pkcs11:token=t;object=a", "", "class1: no PIN"),
    ("class1=pkcs11:token=t;object=a?pin-source=/nonexistent/pin", "1", "cannot read the pin-source"),
])
def test_a_bad_setting_is_a_configuration_error_naming_it(ca_dir: Path, value: str, pin: str, message: str) -> None:
    settings = load(SignerSettings, settings_environ(ca_dir, CACERT_CA_HSM_KEYS=value, CACERT_PKCS11_PIN=pin))
    with pytest.raises(ConfigError, match=f"CACERT_CA_HSM_KEYS .*{message}"):
        settings.ca_key_source()


# ------------------------------------------------------------------------------------ signing


@pytest.fixture(scope="module")
def token(softhsm: Any) -> str:
    return str(softhsm.test_token)


def on_token(softhsm: Any, token: str, label: str, algorithm: str) -> tuple[keys.PrivateKey, hsm.HSMKeyReference]:
    """A fresh software key of ``algorithm`` put on the token as object ``label``."""
    key = keys.generate_private_key(algorithm)
    reference = softhsm.reference(token, label)
    hsm.import_private_key(reference, key, label.encode())
    return key, reference


@pytest.mark.parametrize("algorithm", ["rsa2048", "p384"])
def test_token_keys_sign_certificates_and_crls_through_the_builders(softhsm: Any, token: str, algorithm: str) -> None:
    software, reference = on_token(softhsm, token, f"sign-{algorithm}", algorithm)
    key = CAKeySource({"class1": reference}).private_key("class1", Path("/no/such/file"), b"")
    assert keys.algorithm_of(key) == algorithm
    assert keys.public_keys_equal(key.public_key(), software.public_key())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"HSM {algorithm}")])
    now = dt.datetime.now(dt.UTC)
    digest = keys.signature_hash(key)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, digest))
    cert.verify_directly_issued_by(cert)  # raises InvalidSignature if the token signed anything else
    assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == digest.name
    crl = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(now)
           .next_update(now + dt.timedelta(hours=1)).sign(key, digest))
    assert crl.is_signature_valid(software.public_key())


def test_a_token_key_never_leaves_the_token(softhsm: Any, token: str) -> None:
    _, reference = on_token(softhsm, token, "kept", "p256")
    key = reference.open("class1")
    with pytest.raises(TypeError, match="cannot be exported"):
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(TypeError, match="cannot be exported"):
        key.private_numbers()
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(key)
    source = CAKeySource({"class1": reference})
    assert pickle.loads(pickle.dumps(source)) == source  # noqa: S301 (our own bytes): what a worker receives


def test_rsa_token_keys_refuse_pss(softhsm: Any, token: str) -> None:
    _, reference = on_token(softhsm, token, "pkcs1-only", "rsa2048")
    key = reference.open("class1")
    assert isinstance(key, hsm.HSMRSAPrivateKey)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    with pytest.raises(TypeError, match=r"PKCS#1 v1\.5 padding only"):
        key.sign(b"data", pss, hashes.SHA256())


def test_a_lost_session_fails_one_signature_as_an_outage_and_the_next_logs_in_again(softhsm: Any, token: str) -> None:
    _, reference = on_token(softhsm, token, "session-lost", "p256")
    key = reference.open("class1")
    assert isinstance(key, hsm.HSMECPrivateKey)
    ecdsa = ec.ECDSA(hashes.SHA256())
    key.sign(b"before", ecdsa)
    hsm._sessions[(reference.module, reference.uri.token, reference.pin)].session.close()  # as an HSM restart does
    with pytest.raises(HSMSigningError, match=r"CA key class1 .*the token failed to sign"):
        key.sign(b"during", ecdsa)
    key.public_key().verify(key.sign(b"after", ecdsa), b"after", ecdsa)


# ------------------------------------------------------------------------------------ refusals


def refusal(reference: hsm.HSMKeyReference, label: str = "class1-issuing") -> str:
    with pytest.raises(HSMKeyError) as caught:
        CAKeySource({label: reference}).check()
    message = str(caught.value)
    assert message.startswith(f"CA key {label} (") and "\n" not in message
    assert reference.pin.decode() not in message
    return message


def test_wrong_token_object_pin_or_module_is_refused_naming_the_key(softhsm: Any, token: str) -> None:
    on_token(softhsm, token, "present", "p256")
    assert "no token labelled 'no-such-token'" in refusal(softhsm.reference("no-such-token", "present"))
    assert "no such private key on the token" in refusal(softhsm.reference(token, "absent"))
    assert "the token refused the PIN" in refusal(softhsm.reference(softhsm.unopened_token, "x", pin=b"000000"))
    missing_module = hsm.HSMKeyReference(
        PKCS11URI(token=token, object="present"), Path("/nonexistent/p11.so"), SECRET_PIN
    )
    assert "PKCS#11 module /nonexistent/p11.so does not exist" in refusal(missing_module)


def test_a_uri_matching_two_keys_is_refused(softhsm: Any, token: str) -> None:
    on_token(softhsm, token, "twin", "p256")
    on_token(softhsm, token, "twin", "p256")
    assert "more than one private key matches; add id= to the URI" in refusal(softhsm.reference(token, "twin"))


def test_a_private_key_beside_another_keys_public_object_is_refused(softhsm: Any, token: str) -> None:
    """The start-up test signature catches a token whose public object does not belong to the private key
    (a botched import): the CA would otherwise sign with a key its certificate does not name."""
    import pkcs11

    _, mine = on_token(softhsm, token, "mine", "p256")
    on_token(softhsm, token, "theirs", "p256")
    with pkcs11.lib(str(mine.module)).get_token(token_label=token).open(rw=True) as session:
        session.get_key(object_class=pkcs11.ObjectClass.PUBLIC_KEY, label="mine").destroy()
        session.get_key(object_class=pkcs11.ObjectClass.PUBLIC_KEY, label="theirs")[pkcs11.Attribute.LABEL] = "mine"
    assert "a test signature failed (InvalidSignature)" in refusal(mine)


def ra_public_key_pem() -> str:
    return ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.mark.parametrize(("keys_setting", "line"), [
    ("class3=pkcs11:token={token};object=class3-not-here",
     "signer refused to start: CA key class3 (object 'class3-not-here' on token '{token}'): "
     "no such private key on the token"),
    ("class3=pkcs11:token={token}",
     "configuration error: CACERT_CA_HSM_KEYS class3: the URI must name the key (object=... or id=...)"),
])
def test_the_issuing_mode_refuses_to_start_with_one_line(
    softhsm: Any, token: str, ca_dir: Path, keys_setting: str, line: str
) -> None:
    pin_file = softhsm.conf.parent / "pin"
    pin_file.write_bytes(softhsm.pin)
    base = {k: v for k, v in os.environ.items() if not k.startswith("CACERT_")}
    env = {**base, **settings_environ(ca_dir), **softhsm.environ(),
           "CACERT_SIGNER_RA_PUBLIC_KEYS": ra_public_key_pem(), "CACERT_PKCS11_PIN_FILE": str(pin_file),
           "CACERT_CA_HSM_KEYS": keys_setting.format(token=token)}
    proc = subprocess.run([sys.executable, "-m", "services.signer", "issuing"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [line.format(token=token)]


# ------------------------------------------------------------------------------------ workers


async def test_signing_workers_open_the_token_themselves(
    softhsm_ca_keys: CAKeySource, ca_dir: Path, passphrase: bytes, make_csr: Callable[..., str], tmp_path: Path
) -> None:
    """The key source crosses into the spawned workers as references; each worker logs in on its own."""
    without_keys = tmp_path / "ca"
    without_keys.mkdir()
    for path in ca_dir.iterdir():
        if not path.name.startswith("class") or not path.name.endswith(".key.pem"):
            (without_keys / path.name).write_bytes(path.read_bytes())
    config = SigningConfig(ca_dir=without_keys, passphrase=passphrase, public_base_url="http://pki.example.net",
                           lint_profiles=frozenset(), lint=False, log_level="WARNING", key_source=softhsm_ca_keys)
    pool = SigningPool(config, workers=1)
    await pool.start()
    try:
        request = {
            "request_id": str(uuid.uuid4()), "member_id": "member-1", "cert_class": 3, "profile": "server",
            "csr_pem": make_csr(ec.generate_private_key(ec.SECP256R1())), "subject": {"CN": "hsm.example.org"},
            "dns_names": ["hsm.example.org"], "ip_addresses": [], "emails": [], "validity_days": 30,
            "approved_at": isoformat(utcnow()),
        }
        (outcome,) = await pool.decide_all([(str(uuid.uuid4()), request)], utcnow())
        assert outcome["kind"] == "issued", outcome
        cert = x509.load_der_x509_certificate(outcome["der"])
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate((ca_dir / "class3.crt.pem").read_bytes()))
    finally:
        pool.close()


async def test_a_token_failing_in_a_worker_fails_the_batch_as_an_outage_not_a_bad_request(
    softhsm: Any, token: str, ca_dir: Path, passphrase: bytes, make_csr: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The consumer retries a TransientError without limit and never dead-letters it: an HSM that restarts
    must not send approved requests to the DLQ. (The worker runs on a thread here, to reach its session.)"""
    from concurrent.futures import ThreadPoolExecutor

    from services.signer import signing
    from services.signer.ca.hierarchy import CertClass, key_path
    from shared.kafka import TransientError

    references = {}
    for cls in CertClass:  # on this module's token: the session it closes is not the hierarchy fixture's
        references[cls.label] = softhsm.reference(token, f"worker-{cls.label}")
        hsm.import_private_key(references[cls.label], keys.read_private_key(key_path(ca_dir, cls), passphrase),
                               f"worker-{cls.label}".encode())
    config = SigningConfig(ca_dir=ca_dir, passphrase=passphrase, public_base_url="http://pki.example.net",
                           lint_profiles=frozenset(), lint=False, key_source=CAKeySource(references))
    monkeypatch.setattr(signing, "_signatory", config.signatory())
    pool = SigningPool(config, workers=1)
    pool._pool = ThreadPoolExecutor(1)  # type: ignore[assignment]
    reference = references["class3"]
    request = {
        "request_id": str(uuid.uuid4()), "member_id": "member-1", "cert_class": 3, "profile": "server",
        "csr_pem": make_csr(ec.generate_private_key(ec.SECP256R1())), "subject": {"CN": "hsm.example.org"},
        "dns_names": ["hsm.example.org"], "ip_addresses": [], "emails": [], "validity_days": 30,
        "approved_at": isoformat(utcnow()),
    }
    try:
        hsm._sessions[(reference.module, reference.uri.token, reference.pin)].session.close()
        with pytest.raises(TransientError, match="HSM signature failed"):
            await pool.decide_all([(str(uuid.uuid4()), request)], utcnow())
        (outcome,) = await pool.decide_all([(str(uuid.uuid4()), request)], utcnow())  # logged in again
        assert outcome["kind"] == "issued", outcome
    finally:
        pool.close()


def test_an_issuing_ca_key_on_a_token_signs_the_leaves_of_its_class(softhsm: Any, token: str, tmp_path: Path) -> None:
    """The key source is keyed by CA label, so init-ca's layout (issuing CAs under offline roots) needs nothing
    more: both issuing CAs' keys on the token, no key file for them in the CA directory and no CA passphrase
    (a key left in a file still needs it), and their leaves verify."""
    from services.signer.ca import ceremony
    from services.signer.ca.hierarchy import HierarchyError, issuing_label, key_path, load_hierarchy

    ca_dir, passphrase = tmp_path / "ca", b"issuing passphrase"
    made = ceremony.create_hierarchy(ca_dir, tmp_path / "roots", passphrase, "p256",
                                     public_base_url="http://pki.example.net")
    references = {}
    for label in (issuing_label(1), issuing_label(3)):
        references[label] = softhsm.reference(token, label)
        hsm.import_private_key(references[label], made.cas[label].signing_key, label.encode())
        key_path(ca_dir, label).unlink()
    source = CAKeySource(references)
    label = issuing_label(3)
    assert source.holds(label, key_path(ca_dir, label)) and not source.holds("class3", key_path(ca_dir, "class3"))
    with pytest.raises(HierarchyError, match="class1-issuing CA key needs the CA passphrase"):
        load_hierarchy(ca_dir, None, ocsp_passphrase=passphrase, key_source=CAKeySource({label: references[label]}))
    loaded = load_hierarchy(ca_dir, None, ocsp_passphrase=passphrase, key_source=source)  # no CA passphrase needed
    ca = loaded.issuing_ca(3)
    assert ca.label == label and isinstance(ca.signing_key, hsm.HSMECPrivateKey)
    assert loaded.class_ca(3).private_key is None  # the root's key stays offline: not loaded from anywhere
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")])
    now = dt.datetime.now(dt.UTC)
    leaf = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.certificate.subject)
            .public_key(ec.generate_private_key(ec.SECP256R1()).public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(ca.signing_key, hashes.SHA256()))
    leaf.verify_directly_issued_by(ca.certificate)
