"""Checking an ACME request's JWS (RFC 8555 6.2-6.5), before any handler sees its payload.

The envelope is the flattened JSON serialization with exactly `protected`, `payload` and `signature`
(no unprotected `header`, no general `signatures` form, RFC 8555 6.2). The protected header must carry
`alg`, `nonce` and `url`, and exactly one of `jwk` (newAccount, revokeCert by certificate key) or `kid`
(every other request). `url` must be the URL the request was sent to; the nonce must be one this service
issued and not yet used (checked in the shared store, so across replicas).

Key parsing, thumbprints (RFC 7638) and signature verification are josepy's; what is ours is the order of
the checks, which algorithm goes with which key (RS256 with RSA of at least 2048 bits, ES256 with P-256,
ES384 with P-384, ES512 with P-521) and the account key policy (shared/key_policy.py, the RA's). EdDSA is
refused as `badSignatureAlgorithm`: josepy does not verify it (docs/decisions.md).
"""

from __future__ import annotations

import binascii
import dataclasses
import json
from typing import Any

import josepy
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.acme.wfe.problems import Problem
from shared.key_policy import check_public_key

JOSE_JSON = "application/jose+json"
ALGORITHMS: dict[str, josepy.JWASignature] = {"RS256": josepy.RS256, "ES256": josepy.ES256,
                                              "ES384": josepy.ES384, "ES512": josepy.ES512}
_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
MAX_BODY = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Envelope:
    """A parsed but not yet verified JWS."""

    protected_b64: str
    payload_b64: str
    signature: bytes
    header: dict[str, Any]

    @property
    def alg(self) -> str:
        return str(self.header.get("alg", ""))

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None

    @property
    def jwk(self) -> dict[str, Any] | None:
        jwk = self.header.get("jwk")
        return jwk if isinstance(jwk, dict) else None

    def payload(self) -> bytes:
        return _unb64(self.payload_b64, "payload")

    def json_payload(self) -> dict[str, Any]:
        """The payload as a JSON object; POST-as-GET (empty payload) is refused here."""
        raw = self.payload()
        if raw == b"":
            raise Problem("malformed", "this request needs a JSON payload, not POST-as-GET")
        try:
            value = json.loads(raw)
        except ValueError:
            raise Problem("malformed", "the payload is not JSON") from None
        if not isinstance(value, dict):
            raise Problem("malformed", "the payload must be a JSON object")
        return value

    def is_post_as_get(self) -> bool:
        return self.payload_b64 == ""


def _unb64(text: str, what: str) -> bytes:
    if not isinstance(text, str) or "=" in text:
        raise Problem("malformed", f"the JWS {what} is not unpadded base64url")
    try:
        return josepy.b64.b64decode(text)
    except (ValueError, binascii.Error):
        raise Problem("malformed", f"the JWS {what} is not base64url") from None


async def read_envelope(request: web.Request) -> Envelope:
    if request.content_type != JOSE_JSON:
        raise Problem("malformed", f"Content-Type must be {JOSE_JSON} (RFC 8555 6.2)", status=415)
    body = await request.read()
    if len(body) > MAX_BODY:
        raise Problem("malformed", "the request is too large", status=413)
    return parse_envelope(body)


def parse_envelope(body: bytes) -> Envelope:
    try:
        doc = json.loads(body)
    except ValueError:
        raise Problem("malformed", "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise Problem("malformed", "the body must be a flattened JWS object")
    if "signatures" in doc:
        raise Problem("malformed", "use the flattened JWS serialization, not the general one (RFC 8555 6.2)")
    if "header" in doc:
        raise Problem("malformed", "unprotected JWS headers are not allowed (RFC 8555 6.2)")
    missing = [k for k in ("protected", "payload", "signature") if not isinstance(doc.get(k), str)]
    if missing:
        raise Problem("malformed", f"the JWS lacks {', '.join(missing)}")
    extra = sorted(set(doc) - {"protected", "payload", "signature"})
    if extra:
        raise Problem("malformed", f"unexpected JWS members: {', '.join(extra)}")
    try:
        header = json.loads(_unb64(doc["protected"], "protected header"))
    except ValueError:
        raise Problem("malformed", "the protected header is not JSON") from None
    if not isinstance(header, dict):
        raise Problem("malformed", "the protected header must be a JSON object")
    return Envelope(doc["protected"], doc["payload"], _unb64(doc["signature"], "signature"), header)


def check_header(envelope: Envelope, expected_url: str, *, key_by: str) -> None:
    """The header rules that need no store: alg, url, and `kid` or `jwk` as the resource requires."""
    header = envelope.header
    if envelope.alg not in ALGORITHMS:
        raise Problem("badSignatureAlgorithm", f"alg {envelope.alg[:20]!r} is not accepted; use one of "
                                               f"{', '.join(ALGORITHMS)}")
    if header.get("url") != expected_url:
        raise Problem("unauthorized", f"the JWS url {str(header.get('url'))[:200]!r} is not this request's "
                                      f"URL {expected_url} (RFC 8555 6.4)")
    if not isinstance(header.get("nonce"), str) or not header["nonce"]:
        raise Problem("badNonce", "the JWS carries no nonce (RFC 8555 6.5)")
    has_jwk, has_kid = "jwk" in header, "kid" in header
    if has_jwk and has_kid:
        raise Problem("malformed", "the protected header has both jwk and kid; it must have exactly one")
    if key_by == "jwk" and not has_jwk:
        raise Problem("malformed", "this request must be signed with the key in a jwk header")
    if key_by == "kid" and not has_kid:
        raise Problem("malformed", "this request must name its account in a kid header")
    if key_by == "either" and not (has_jwk or has_kid):
        raise Problem("malformed", "the protected header needs a kid or a jwk")


def public_key(jwk: dict[str, Any]) -> josepy.JWK:
    """The account (or certificate) key of a `jwk` header: a public RSA or EC key the key policy accepts."""
    if any(k in jwk for k in ("d", "p", "q", "dp", "dq", "qi", "k")):
        raise Problem("badPublicKey", "the jwk holds private key material")
    try:
        key = josepy.JWK.from_json(jwk)
    except (josepy.errors.DeserializationError, ValueError, TypeError, KeyError):
        raise Problem("badPublicKey", "the jwk is not a usable RSA or EC public key") from None
    if not isinstance(key, josepy.JWKRSA | josepy.JWKEC):
        raise Problem("badPublicKey", "account keys must be RSA or EC")
    verdict = check_public_key(raw_key(key))
    if not verdict.acceptable:
        raise Problem("badPublicKey", "; ".join(verdict.messages))
    return key


def raw_key(key: josepy.JWK) -> Any:
    """The cryptography public key inside a josepy JWK."""
    raw = key.key
    return getattr(raw, "_wrapped", raw)


def verify_signature(envelope: Envelope, key: josepy.JWK) -> None:
    alg = envelope.alg
    raw = raw_key(key)
    if alg == "RS256":
        if not isinstance(raw, rsa.RSAPublicKey):
            raise Problem("badSignatureAlgorithm", "RS256 needs an RSA key")
    elif not isinstance(raw, ec.EllipticCurvePublicKey) or not isinstance(raw.curve, _CURVES[alg]):
        raise Problem("badSignatureAlgorithm", f"{alg} needs an EC key on {_CURVES[alg].name}")
    message = envelope.protected_b64.encode() + b"." + envelope.payload_b64.encode()
    try:
        good = ALGORITHMS[alg].verify(raw, message, envelope.signature)
    except (josepy.errors.Error, ValueError, TypeError):
        good = False
    if not good:
        raise Problem("malformed", "the JWS signature does not verify")


def thumbprint(key: josepy.JWK) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url: the account key's identity and the key authorization's tail."""
    return josepy.b64.b64encode(key.thumbprint()).decode()


def verify_hmac(envelope: Envelope, hmac_key: bytes) -> None:
    """An External Account Binding's inner JWS (RFC 8555 7.3.4): HS256/384/512 with the binding's key."""
    algs = {"HS256": josepy.HS256, "HS384": josepy.HS384, "HS512": josepy.HS512}
    alg = algs.get(envelope.alg)
    if alg is None:
        raise Problem("malformed", "the externalAccountBinding must use HS256, HS384 or HS512")
    message = envelope.protected_b64.encode() + b"." + envelope.payload_b64.encode()
    if not alg.verify(hmac_key, message, envelope.signature):
        raise Problem("unauthorized", "the externalAccountBinding signature does not verify with the "
                                      "binding's HMAC key")
