"""The OCSP responder (RFC 6960) for one issuing CA, answering through its delegated signer.

A request may ask about several certificates at once. ``cryptography.x509.ocsp`` parses only
single-certificate requests and builds only single-certificate responses, so requests are
decoded, and the signed ResponseData is encoded, with the RFC 6960 ASN.1 module of
pyasn1-alt-modules (already installed with pkilint); ``cryptography.x509.ocsp`` still builds the
unsuccessful responses. Per RFC 6960:

* every requested certificate gets a SingleResponse (4.2.2.3), so a request is answered only if
  all its certificates belong to this responder's CA: a delegated signer may vouch for its own
  CA's certificates only (4.2.2.2), and clients such as openssl reject a response that mixes
  issuers. Anything else is ``unauthorized`` (2.3);
* an undecodable request, an empty or over-long request list, or a bad nonce is
  ``malformedRequest``; a failing status lookup is ``internalError``;
* the response is signed by the CA's delegated OCSP signer, whose certificate travels in
  ``certs``, and names it by key hash (responderID byKey);
* a nonce (RFC 8954: 1..32 octets) is echoed, so each response is fresh and signed on demand.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc5280, rfc6960

from services.signer.ca import keys
from services.signer.ca.hierarchy import IssuingCA
from services.signer.ca.revocation import CertificateStatus, Good, Revoked, StatusLookup, Unknown

log = logging.getLogger(__name__)

DEFAULT_VALIDITY: Final = dt.timedelta(hours=24)
"""nextUpdate - thisUpdate. TLS BR 4.9.10: at least 8 hours, at most 10 days."""
MAX_REQUEST_BYTES: Final = 65536
MAX_CERTS_PER_REQUEST: Final = 64
MAX_NONCE_BYTES: Final = 32

_HASHES_BY_OID: Final = {
    univ.ObjectIdentifier("1.3.14.3.2.26"): "sha1",
    univ.ObjectIdentifier("2.16.840.1.101.3.4.2.1"): "sha256",
    univ.ObjectIdentifier("2.16.840.1.101.3.4.2.2"): "sha384",
    univ.ObjectIdentifier("2.16.840.1.101.3.4.2.3"): "sha512",
}
_DER_NULL: Final = b"\x05\x00"
_SHA256_WITH_RSA: Final = univ.ObjectIdentifier("1.2.840.113549.1.1.11")
_SHA384_WITH_RSA: Final = univ.ObjectIdentifier("1.2.840.113549.1.1.12")
_ECDSA_WITH_SHA256: Final = univ.ObjectIdentifier("1.2.840.10045.4.3.2")
_ECDSA_WITH_SHA384: Final = univ.ObjectIdentifier("1.2.840.10045.4.3.3")
_CRL_REASON_CODES: Final = {  # RFC 5280 5.3.1 CRLReason values
    x509.ReasonFlags.key_compromise: 1,
    x509.ReasonFlags.ca_compromise: 2,
    x509.ReasonFlags.affiliation_changed: 3,
    x509.ReasonFlags.superseded: 4,
    x509.ReasonFlags.cessation_of_operation: 5,
    x509.ReasonFlags.certificate_hold: 6,
    x509.ReasonFlags.privilege_withdrawn: 9,
    x509.ReasonFlags.aa_compromise: 10,
}


class MalformedRequest(Exception):
    """The bytes are not an OCSP request this responder will read (message is for logs only)."""


@dataclass(frozen=True)
class ParsedRequest:
    """The parts of an OCSPRequest the responder uses; CertIDs stay ASN.1 so they echo exactly."""

    cert_ids: tuple[rfc6960.CertID, ...]
    nonce_extension: rfc5280.Extension | None


def parse_request(request_der: bytes) -> ParsedRequest:
    """Decode a DER OCSPRequest; raises ``MalformedRequest``. Request signatures are ignored
    (RFC 6960 4.1.2 makes them optional and this responder answers anyone)."""
    if not request_der or len(request_der) > MAX_REQUEST_BYTES:
        raise MalformedRequest("empty or oversized request")
    try:
        return _parse(request_der)
    except MalformedRequest:
        raise
    except Exception as exc:  # pyasn1 signals bad input with assorted exception types
        raise MalformedRequest(f"undecodable request: {type(exc).__name__}") from None


def _parse(request_der: bytes) -> ParsedRequest:
    request, rest = der_decoder.decode(request_der, asn1Spec=rfc6960.OCSPRequest())
    if rest:
        raise MalformedRequest("trailing bytes after the request")
    tbs = request["tbsRequest"]
    if int(tbs["version"]) != 0:
        raise MalformedRequest("unsupported request version")
    request_list = tbs["requestList"]
    if not 1 <= len(request_list) <= MAX_CERTS_PER_REQUEST:
        raise MalformedRequest(f"request list has {len(request_list)} entries")
    for entry in request_list:
        parameters = entry["reqCert"]["hashAlgorithm"]["parameters"]
        # RFC 5754 2: hash AlgorithmIdentifiers carry no parameters (NULL tolerated); anything else
        # would be echoed into a response that clients cannot parse.
        if parameters.isValue and bytes(parameters) != _DER_NULL:
            raise MalformedRequest("CertID hash algorithm has parameters")
    nonce = None
    if tbs["requestExtensions"].isValue:
        for extension in tbs["requestExtensions"]:
            if extension["extnID"] == rfc6960.id_pkix_ocsp_nonce:
                nonce = extension
    if nonce is not None:
        value, rest = der_decoder.decode(bytes(nonce["extnValue"]), asn1Spec=univ.OctetString())
        if rest or not 1 <= len(value) <= MAX_NONCE_BYTES:
            raise MalformedRequest("nonce length outside 1..32 octets")  # RFC 8954 2.1
    return ParsedRequest(tuple(r["reqCert"] for r in request_list), nonce)


def unsuccessful_response(status: ocsp.OCSPResponseStatus) -> bytes:
    """A DER OCSPResponse carrying only an error status (no signature, per RFC 6960 4.2.1)."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)


def _subject_public_key_bits(certificate: x509.Certificate) -> bytes:
    spki_der = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    spki, _ = der_decoder.decode(spki_der, asn1Spec=rfc5280.SubjectPublicKeyInfo())
    return bytes(spki["subjectPublicKey"].asOctets())


def _generalized_time(moment: dt.datetime) -> str:
    # A plain value: pyasn1 clones it into the (possibly tagged) schema type it is assigned to.
    return moment.astimezone(dt.UTC).strftime("%Y%m%d%H%M%SZ")


def _signature_algorithm(key: keys.PrivateKey) -> rfc5280.AlgorithmIdentifier:
    algorithm = rfc5280.AlgorithmIdentifier()
    sha384 = keys.signature_hash(key).name == "sha384"
    if isinstance(key, rsa.RSAPrivateKey):
        algorithm["algorithm"] = _SHA384_WITH_RSA if sha384 else _SHA256_WITH_RSA
        algorithm["parameters"] = _DER_NULL  # RFC 4055: NULL parameters for RSA
    else:
        algorithm["algorithm"] = _ECDSA_WITH_SHA384 if sha384 else _ECDSA_WITH_SHA256
    return algorithm


def _sign(key: keys.PrivateKey, data: bytes) -> bytes:
    digest = keys.signature_hash(key)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), digest)
    return key.sign(data, ec.ECDSA(digest))


class OCSPResponder:
    """Answers OCSP requests about the certificates of one issuing CA."""

    def __init__(
        self, ca: IssuingCA, lookup: StatusLookup, *, validity: dt.timedelta = DEFAULT_VALIDITY
    ) -> None:
        if not dt.timedelta(hours=8) <= validity <= dt.timedelta(days=10):
            raise ValueError("OCSP response validity must be between 8 hours and 10 days (BR 4.9.10)")
        self.ca = ca
        self._lookup = lookup
        self._validity = validity
        issuer_name_der = ca.certificate.subject.public_bytes()
        issuer_key_bits = _subject_public_key_bits(ca.certificate)
        # (issuerNameHash, issuerKeyHash) of our CA under every hash a CertID may use.
        self._issuer_hashes = {
            oid: (hashlib.new(name, issuer_name_der).digest(), hashlib.new(name, issuer_key_bits).digest())
            for oid, name in _HASHES_BY_OID.items()
        }
        signer = ca.ocsp_signer
        self._responder_key_hash = hashlib.sha1(_subject_public_key_bits(signer.certificate)).digest()  # noqa: S324 - RFC 6960 KeyHash is SHA-1
        self._signer_cert_asn1, _ = der_decoder.decode(
            signer.certificate.public_bytes(serialization.Encoding.DER), asn1Spec=rfc5280.Certificate()
        )

    def serves(self, cert_id: rfc6960.CertID) -> bool:
        """Whether a CertID names a certificate of this responder's CA."""
        hashes = self._issuer_hashes.get(cert_id["hashAlgorithm"]["algorithm"])
        return hashes is not None and hashes == (
            bytes(cert_id["issuerNameHash"]),
            bytes(cert_id["issuerKeyHash"]),
        )

    def respond(self, request_der: bytes, now: dt.datetime | None = None) -> bytes:
        """The DER OCSPResponse to a DER OCSPRequest (never raises for bad input)."""
        return respond([self], request_der, now)

    def answer(self, parsed: ParsedRequest, now: dt.datetime | None = None) -> bytes | None:
        """The signed response, or None unless every requested certificate belongs to this CA."""
        if not all(self.serves(cert_id) for cert_id in parsed.cert_ids):
            return None
        moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
        try:
            statuses: list[CertificateStatus] = [self._status(cert_id) for cert_id in parsed.cert_ids]
        except Exception:
            log.exception("ocsp status lookup failed for %s", self.ca.label)
            return unsuccessful_response(ocsp.OCSPResponseStatus.INTERNAL_ERROR)
        return self._signed_response(parsed, statuses, moment)

    # ------------------------------------------------------------------------ internals

    def _status(self, cert_id: rfc6960.CertID) -> CertificateStatus:
        serial = int(cert_id["serialNumber"])
        return self._lookup(serial) if serial > 0 else Unknown()

    def _single_response(
        self, cert_id: rfc6960.CertID, status: CertificateStatus, moment: dt.datetime
    ) -> rfc6960.SingleResponse:
        single = rfc6960.SingleResponse()
        single["certID"] = cert_id
        cert_status = single["certStatus"]
        if isinstance(status, Good):
            cert_status["good"] = ""
        elif isinstance(status, Revoked):
            revoked = cert_status["revoked"]
            revoked["revocationTime"] = _generalized_time(status.revoked_at)
            if status.reason is not None:
                revoked["revocationReason"] = _CRL_REASON_CODES[status.reason]
        else:
            cert_status["unknown"] = ""
        single["thisUpdate"] = _generalized_time(moment)
        single["nextUpdate"] = _generalized_time(moment + self._validity)
        return single

    def _signed_response(
        self, parsed: ParsedRequest, statuses: Iterable[CertificateStatus], moment: dt.datetime
    ) -> bytes:
        data = rfc6960.ResponseData()
        data["responderID"]["byKey"] = self._responder_key_hash
        data["producedAt"] = _generalized_time(moment)
        for cert_id, status in zip(parsed.cert_ids, statuses, strict=True):
            data["responses"].append(self._single_response(cert_id, status, moment))
        if parsed.nonce_extension is not None:
            nonce = rfc5280.Extension()
            nonce["extnID"] = rfc6960.id_pkix_ocsp_nonce
            nonce["extnValue"] = parsed.nonce_extension["extnValue"]
            data["responseExtensions"].append(nonce)
        tbs_der = der_encoder.encode(data)

        signer_key = self.ca.ocsp_signer.private_key
        basic = rfc6960.BasicOCSPResponse()
        basic["tbsResponseData"] = data
        basic["signatureAlgorithm"] = _signature_algorithm(signer_key)
        basic["signature"] = univ.BitString.fromOctetString(_sign(signer_key, tbs_der))
        basic["certs"].append(self._signer_cert_asn1)

        response = rfc6960.OCSPResponse()
        response["responseStatus"] = 0  # successful
        response["responseBytes"]["responseType"] = rfc6960.id_pkix_ocsp_basic
        response["responseBytes"]["response"] = der_encoder.encode(basic)
        return bytes(der_encoder.encode(response))


def respond(responders: Iterable[OCSPResponder], request_der: bytes, now: dt.datetime | None = None) -> bytes:
    """Answer with the responder whose CA issued the requested certificates (for a single OCSP URL in
    front of both CAs); ``unauthorized`` if no one responder serves them all."""
    try:
        parsed = parse_request(request_der)
    except MalformedRequest as exc:
        log.info("ocsp malformed request: %s", exc)
        return unsuccessful_response(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    try:
        for responder in responders:
            answer = responder.answer(parsed, now)
            if answer is not None:
                return answer
    except Exception:  # never let one odd request take the responder down
        log.exception("ocsp response could not be built")
        return unsuccessful_response(ocsp.OCSPResponseStatus.INTERNAL_ERROR)
    return unsuccessful_response(ocsp.OCSPResponseStatus.UNAUTHORIZED)
