"""Building real CSRs and certificates for the registration tests."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

ATTRIBUTE_OIDS = {
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "serialNumber": NameOID.SERIAL_NUMBER,
}


@functools.cache
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def build_csr(
    *,
    subject: list[tuple[str, str]] | None = None,
    dns: list[str] | None = None,
    emails: list[str] | None = None,
    key: PrivateKey | None = None,
) -> str:
    key = key or ec_key()
    name = x509.Name([x509.NameAttribute(ATTRIBUTE_OIDS[k], v) for k, v in subject or []])
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    general: list[x509.GeneralName] = [x509.DNSName(d) for d in dns or []]
    general += [x509.RFC822Name(e) for e in emails or []]
    if general:
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def compromise_proof(key: PrivateKey) -> str:
    """A proof of possession of `key` for a key-compromise report (shared/key_compromise.py)."""
    return build_csr(subject=[("CN", "key compromise")], key=key)


def fermat_key() -> rsa.RSAPrivateKey:
    """A real, working RSA-2048 key whose primes are close: Fermat's method factors it at once."""
    import random

    import gmpy2

    draw = random.Random(8555)  # fixed: the same weak key every run
    p = int(gmpy2.next_prime(draw.getrandbits(1024) | (3 << 1022)))  # top two bits set: n has 2048 bits
    q = int(gmpy2.next_prime(p + draw.getrandbits(400)))
    e = 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    public = rsa.RSAPublicNumbers(e, p * q)
    return rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
                                 public).private_key()


# RSA PKCS#1 v1.5 signature algorithms by hash (RFC 8017 A.2.4): what a weak-hash CSR claims to use.
_RSA_SIGNATURE_OIDS = {"sha1": "1.2.840.113549.1.1.5", "md5": "1.2.840.113549.1.1.4"}


def weak_hash_csr(hash_name: str, *, dns: list[str]) -> str:
    """A CSR whose self-signature is made, validly, with SHA-1 or MD5. `cryptography` refuses to build
    one, so the request is signed by hand: the same CertificationRequestInfo, re-signed."""
    import base64

    from cryptography.hazmat.primitives.asymmetric import padding
    from pyasn1.codec.der import decoder, encoder
    from pyasn1.type import univ
    from pyasn1_alt_modules import rfc2986

    key = rsa.generate_private_key(65537, 2048)
    csr = x509.load_pem_x509_csr(build_csr(dns=dns, key=key).encode())
    request, _ = decoder.decode(csr.public_bytes(serialization.Encoding.DER), asn1Spec=rfc2986.CertificationRequest())
    algorithm = {"sha1": hashes.SHA1(), "md5": hashes.MD5()}[hash_name]  # noqa: S303 (the point of the test)
    request["signatureAlgorithm"]["algorithm"] = univ.ObjectIdentifier(_RSA_SIGNATURE_OIDS[hash_name])
    request["signature"] = univ.BitString.fromOctetString(
        key.sign(encoder.encode(request["certificationRequestInfo"]), padding.PKCS1v15(), algorithm))
    der = encoder.encode(request)
    return ("-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(der).decode()
            + "-----END CERTIFICATE REQUEST-----\n")


def self_signed(
    common_name: str, *, serial: int, key: PrivateKey | None = None
) -> tuple[str, x509.Certificate]:
    key = key or ec_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), cert
