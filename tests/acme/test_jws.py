"""The JWS rules of RFC 8555 6.2-6.4 as services/acme/wfe/jws.py applies them (no servers)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import josepy
import pytest
from acme import jws as acme_jws
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.acme import renewal
from services.acme.wfe import jws
from services.acme.wfe.problems import Problem
from tests.acme.harness import certificate_for, csr_for

URL = "https://ca.example.net/acme/new-order"


def signed(key: josepy.JWK, alg: josepy.JWASignature, *, url: str = URL, kid: str | None = "acct",
           payload: bytes = b"{}", nonce: bytes | None = b"nonce-1") -> bytes:
    return acme_jws.JWS.sign(payload, key, alg, nonce, url, kid).json_dumps().encode()


def problem(body: bytes, **check: Any) -> Problem:
    with pytest.raises(Problem) as raised:
        envelope = jws.parse_envelope(body)
        jws.check_header(envelope, check.get("url", URL), key_by=check.get("key_by", "kid"))
        if "key" in check:
            jws.verify_signature(envelope, check["key"])
    return raised.value


def ec_key(curve: ec.EllipticCurve) -> josepy.JWKEC:
    return josepy.JWKEC(key=ec.generate_private_key(curve))


@pytest.mark.parametrize(("curve", "alg"), [(ec.SECP256R1(), josepy.ES256), (ec.SECP384R1(), josepy.ES384)])
def test_es256_and_es384_signatures_verify_with_their_curves(curve: ec.EllipticCurve, alg: Any) -> None:
    key = ec_key(curve)
    envelope = jws.parse_envelope(signed(key, alg))
    jws.check_header(envelope, URL, key_by="kid")
    jws.verify_signature(envelope, jws.public_key(key.public_key().to_json()))


def test_rs256_verifies_with_an_rsa_key_and_a_small_rsa_key_is_refused() -> None:
    key = josepy.JWKRSA(key=rsa.generate_private_key(65537, 2048))
    envelope = jws.parse_envelope(signed(key, josepy.RS256))
    jws.verify_signature(envelope, jws.public_key(key.public_key().to_json()))
    small = josepy.JWKRSA(key=rsa.generate_private_key(65537, 1024)).public_key().to_json()
    with pytest.raises(Problem) as refused:
        jws.public_key(small)
    assert refused.value.kind == "badPublicKey"


def test_the_algorithm_must_match_the_key() -> None:
    p384 = ec_key(ec.SECP384R1())
    body = signed(p384, josepy.ES384)
    envelope = jws.parse_envelope(body)
    p256 = jws.public_key(ec_key(ec.SECP256R1()).public_key().to_json())
    with pytest.raises(Problem) as refused:
        jws.verify_signature(envelope, p256)
    assert refused.value.kind == "badSignatureAlgorithm"


def test_hmac_none_and_unknown_algorithms_are_refused() -> None:
    header = json.dumps({"alg": "none", "nonce": "n", "url": URL, "kid": "a"}).encode()
    body = json.dumps({"protected": josepy.b64.b64encode(header).decode(), "payload": "", "signature": ""}).encode()
    assert problem(body).kind == "badSignatureAlgorithm"


def test_a_signature_by_another_key_does_not_verify() -> None:
    problem_ = problem(signed(ec_key(ec.SECP256R1()), josepy.ES256),
                       key=jws.public_key(ec_key(ec.SECP256R1()).public_key().to_json()))
    assert problem_.kind == "malformed" and "signature" in problem_.detail


def test_url_nonce_and_key_header_rules() -> None:
    key = ec_key(ec.SECP256R1())
    assert problem(signed(key, josepy.ES256, url=URL + "x")).kind == "unauthorized"
    assert problem(signed(key, josepy.ES256, nonce=None)).kind == "badNonce"
    assert problem(signed(key, josepy.ES256, kid=None)).kind == "malformed"  # newOrder needs a kid
    assert problem(signed(key, josepy.ES256), key_by="jwk").kind == "malformed"  # newAccount needs a jwk
    both = json.loads(signed(key, josepy.ES256))
    header = json.loads(josepy.b64.b64decode(both["protected"]))
    header["jwk"] = key.public_key().to_json()
    both["protected"] = josepy.b64.b64encode(json.dumps(header).encode()).decode()
    assert "exactly one" in problem(json.dumps(both).encode()).detail


@pytest.mark.parametrize(("mutate", "says"), [
    (lambda d: d.update(header={"kid": "x"}), "unprotected"),
    (lambda d: d.update(signatures=[]), "flattened"),
    (lambda d: d.pop("signature"), "lacks signature"),
    (lambda d: d.update(protected=d["protected"] + "=="), "unpadded"),
    (lambda d: d.update(extra=1), "unexpected"),
])
def test_malformed_envelopes_are_refused_with_a_reason(mutate: Any, says: str) -> None:
    doc = json.loads(signed(ec_key(ec.SECP256R1()), josepy.ES256))
    mutate(doc)
    refused = problem(json.dumps(doc).encode())
    assert refused.kind == "malformed" and says in refused.detail


def test_a_jwk_with_private_material_is_refused() -> None:
    private = ec_key(ec.SECP256R1()).to_json()
    with pytest.raises(Problem) as refused:
        jws.public_key(private)
    assert refused.value.kind == "badPublicKey"


def test_eab_hmac_verifies_only_with_the_binding_key() -> None:
    account = ec_key(ec.SECP256R1())
    eab = acme_jws.JWS.sign(json.dumps(account.public_key().to_json()).encode(), josepy.JWKOct(key=b"k" * 32),
                            josepy.HS256, None, URL, "binding-1").json_dumps().encode()
    envelope = jws.parse_envelope(eab)
    jws.verify_hmac(envelope, b"k" * 32)
    with pytest.raises(Problem) as refused:
        jws.verify_hmac(envelope, b"x" * 32)
    assert refused.value.kind == "unauthorized"


def test_ari_identifier_matches_the_acme_clients_and_windows_follow_the_lifetime() -> None:
    from acme.client import _renewal_info_path_component

    for serial in (0x7F, 0x80, 0xFF, 0x1234ABCD, 2**158 + 5):
        _, cert = certificate_for(csr_for("ari.example.org")[0], serial=serial)
        assert renewal.certificate_id(cert) == _renewal_info_path_component(cert)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    begin, end = renewal.suggested_window(start, start + timedelta(days=90))
    assert (begin, end) == (start + timedelta(days=60), start + timedelta(days=67.5))
    revoked = start + timedelta(days=3)
    assert renewal.suggested_window(start, start + timedelta(days=90), revoked)[1] < start + timedelta(days=4)
