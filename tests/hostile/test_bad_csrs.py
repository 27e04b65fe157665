"""A corpus of hostile CSRs against the running registration service over HTTP.

Each one must be refused with a precise reason (the text is asserted), never a 500, and the service
must keep serving. The member owns the verified domain example.org; another member owns other.org.
Property tests of the RA policy itself live in tests/registration/test_issuance_policy.py.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import idna
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc2986, rfc5280

from shared.config import KafkaSettings, MongoSettings
from tests.integration.test_registration_certificates import verify_domain
from tests.registration.csrs import build_csr, ec_key, fermat_key, weak_hash_csr
from tests.registration.harness import Stack, running

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("topics")]
CYRILLIC_A = "\u0430"


def _pem(der: bytes) -> str:
    return "-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(der).decode() \
        + "-----END CERTIFICATE REQUEST-----\n"


def keyed(key: Any, names: list[str]) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).add_extension(
        x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode()


def wrong_signature() -> str:
    der = bytearray(x509.load_pem_x509_csr(build_csr(dns=["www.example.org"]).encode())
                    .public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return _pem(bytes(der))


def duplicate_extensions() -> str:
    """A correctly signed CSR whose extensionRequest lists subjectAltName twice (builders refuse this)."""
    key = ec_key()
    csr = x509.load_pem_x509_csr(build_csr(dns=["www.example.org"]).encode())
    request, _ = decoder.decode(csr.public_bytes(serialization.Encoding.DER),
                                asn1Spec=rfc2986.CertificationRequest())
    info = request["certificationRequestInfo"]
    attribute = info["attributes"][0]
    extensions, _ = decoder.decode(attribute["values"][0], asn1Spec=rfc5280.Extensions())
    doubled = rfc5280.Extensions()
    for extension in [*extensions, *extensions]:
        doubled.append(extension)
    attribute["values"][0] = univ.Any(encoder.encode(doubled))
    request["signature"] = univ.BitString.fromOctetString(
        key.sign(encoder.encode(info), ec.ECDSA(hashes.SHA256())))
    return _pem(encoder.encode(request))


def with_names(names: list[x509.GeneralName], cn: str | None = None) -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ec_key(), hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def many_sans(count: int) -> str:
    return with_names([x509.DNSName(f"h{i}.example.org") for i in range(count)])


CONFUSABLE = f"ex{CYRILLIC_A}mple.org"  # looks like example.org
CONFUSABLE_A_LABEL = idna.encode(CONFUSABLE, uts46=True).decode()

# (name, CSR factory, profile, expected status, expected error code, expected reason fragment)
CORPUS: list[tuple[str, Callable[[], str], str, int, str, str]] = [
    ("wrong signature", wrong_signature, "server", 422, "csr_rejected",
     "the CSR signature is invalid (the request was altered or not signed by its key)"),
    # signed validly, but with a hash the CA does not accept: refused for that, not as "invalid"
    ("SHA-1 self-signature", lambda: weak_hash_csr("sha1", dns=["www.example.org"]), "server", 422,
     "csr_rejected", "the CSR is signed with SHA-1, which this CA does not accept"),
    ("MD5 self-signature", lambda: weak_hash_csr("md5", dns=["www.example.org"]), "server", 422,
     "csr_rejected", "the CSR is signed with MD5, which this CA does not accept"),
    ("RSA key with Fermat-close primes", lambda: build_csr(dns=["www.example.org"], key=fermat_key()), "server",
     422, "csr_rejected", "this RSA key has a known weakness: its two primes are so close that Fermat's method"),
    ("RSA 1024", lambda: keyed(rsa.generate_private_key(65537, 1024), ["www.example.org"]), "server", 422,
     "csr_rejected", "RSA key of 1024 bits is too weak: at least 2048 bits are required"),
    ("exponent 3", lambda: keyed(rsa.generate_private_key(3, 2048), ["www.example.org"]), "server", 422,
     "csr_rejected", "RSA public exponent 3 is not allowed: it must be 65537"),
    ("P-521", lambda: keyed(ec.generate_private_key(ec.SECP521R1()), ["www.example.org"]), "server", 422,
     "csr_rejected", "elliptic curve secp521r1 is not allowed: use P-256 or P-384"),
    ("secp256k1", lambda: keyed(ec.generate_private_key(ec.SECP256K1()), ["www.example.org"]), "server", 422,
     "csr_rejected", "elliptic curve secp256k1 is not allowed: use P-256 or P-384"),
    ("Ed25519", lambda: keyed(ed25519.Ed25519PrivateKey.generate(), ["www.example.org"]), "server", 422,
     "csr_rejected", "EdDSA keys are not supported"),
    ("duplicate extensions", duplicate_extensions, "server", 422, "csr_rejected",
     "the CSR contains extension 2.5.29.17 more than once"),
    # ~216 kB of PEM: under the 256 kB body limit, over the 64 kB csr_pem limit of the request schema.
    ("10,000 SANs", lambda: many_sans(10_000), "server", 422, "validation_failed",
     "csr_pem: is longer than 65536 characters"),
    ("NUL in a DNS name", lambda: with_names([x509.DNSName("www.example.org\x00.evil.com")]), "server", 422,
     "csr_rejected", "'www.example.org\\x00.evil.com' is not a valid DNS name"),
    ("control character in a DNS name", lambda: with_names([x509.DNSName("www\x07.example.org")]), "server",
     422, "csr_rejected", "'www\\x07.example.org' is not a valid DNS name"),
    ("NUL in the CN", lambda: with_names([x509.DNSName("www.example.org")], cn="www.example.org\x00.evil.com"),
     "server", 422, "csr_rejected", "'www.example.org\\x00.evil.com' is not a valid DNS name"),
    ("Cyrillic confusable in the CN", lambda: with_names([], cn=CONFUSABLE), "server", 422, "csr_rejected",
     f"{CONFUSABLE_A_LABEL} is not within a domain you have verified"),
    ("Cyrillic confusable as an A-label SAN", lambda: with_names([x509.DNSName(f"www.{CONFUSABLE_A_LABEL}")]),
     "server", 422, "csr_rejected", f"www.{CONFUSABLE_A_LABEL} is not within a domain you have verified"),
    ("wildcard on a public suffix", lambda: with_names([x509.DNSName("*.com")]), "server", 422,
     "csr_rejected", "*.com is not within a domain you have verified"),
    ("double wildcard", lambda: with_names([x509.DNSName("*.*.example.org")]), "server", 422, "csr_rejected",
     "'*.*.example.org' is not a valid DNS name: '*.example.org': a wildcard is not a domain name"),
    ("IP address SAN", lambda: with_names([x509.DNSName("www.example.org"),
                                           x509.IPAddress(__import__("ipaddress").ip_address("192.0.2.1"))]),
     "server", 422, "csr_rejected", "IP address 192.0.2.1 cannot be validated: only domain names"),
    ("IP address as a DNS name", lambda: with_names([x509.DNSName("192.0.2.1")]), "server", 422,
     "csr_rejected", "'192.0.2.1' is not a valid DNS name: '192.0.2.1' looks like an IP address"),
    ("a domain verified by someone else", lambda: build_csr(dns=["www.other.org"]), "server", 422,
     "csr_rejected", "www.other.org is not within a domain you have verified"),
    ("1 MB PEM", lambda: "-----BEGIN CERTIFICATE REQUEST-----\n" + "A" * 1_000_000
     + "\n-----END CERTIFICATE REQUEST-----\n", "server", 413, "body_too_large", ""),
]


@pytest.fixture
async def stack(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Stack]:
    async with running(kafka_settings, mongo_settings) as s:
        yield s


async def test_every_hostile_csr_is_refused_with_its_reason_and_no_500(stack: Stack) -> None:
    api = stack.api
    member_id, token = await stack.member("Mallory Member", "mallory@example.org")
    other_id, other = await stack.member("Olga Other", "olga@other.org")
    await verify_domain(stack, member_id, token, "example.org")
    await verify_domain(stack, other_id, other, "other.org")
    # The control: a good CSR for the member's own domain is approved.
    ok = await api.call("POST", "/v1/requests", token=token,
                        json_body={"csr_pem": build_csr(dns=["www.example.org"]), "profile": "server"})
    assert ok.status == 202, ok.body

    failures = []
    for name, factory, profile, status, code, reason in CORPUS:
        reply = await api.call("POST", "/v1/requests", token=token,
                               json_body={"csr_pem": factory(), "profile": profile})
        body = reply.body if isinstance(reply.body, dict) else {}
        error = body.get("error", {})
        details = error.get("details")
        texts = [error.get("message", "")]
        if isinstance(details, dict):
            texts += details.get("reasons", [])
        elif isinstance(details, list):
            texts += [f"{d.get('field')}: {d.get('problem')}" for d in details]
        if reply.status >= 500 or reply.status != status or error.get("code") != code \
                or not any(reason in text for text in texts):
            failures.append(f"{name}: {reply.status} {error.get('code')} {texts}")
    assert not failures, "\n".join(failures)
    assert (await api.call("GET", "/healthz")).status == 200
    # Nothing hostile was approved: exactly one csr.approved (the control, once CAA allows it).
    await stack.answer_caa(ok.body["id"])
    approved = await stack.events("csr", "csr.approved")
    assert [e.data["request_id"] for e in approved] == [ok.body["id"]]
