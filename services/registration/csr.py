"""Reading a member's PEM CSR into the facts the issuance policy judges.

Everything that can be wrong with the file itself is found here and
reported as a list of reasons (never an exception escaping to HTTP): not
PEM, not a CSR, a bad self-signature, a weak or unsupported key, SAN types
the CA never issues, more than MAX_SUBJECT_ALT_NAMES subjectAltNames. Names
are returned raw; the policy normalises and judges them against the member's
verified domains and addresses.
"""

from __future__ import annotations

import dataclasses

from cryptography import x509
from cryptography.x509.oid import NameOID

from shared.key_compromise import spki_sha256
from shared.key_policy import check_public_key, csr_signature_problem

MAX_PEM_CHARS = 65536
PEM_MARKERS = ("-----BEGIN CERTIFICATE REQUEST-----", "-----BEGIN NEW CERTIFICATE REQUEST-----")
# At most this many subjectAltNames per request, counting every entry together (DNS names, IP addresses,
# email addresses, and the types refused anyway).
# Why: it keeps certificates, and the records kept about them for OCSP and CRLs, small, and it bounds the
# work one request can cost (every name is normalised and checked against the member's domains);
# capping at 100 is common CA practice.
MAX_SUBJECT_ALT_NAMES = 100


class CsrProblem(Exception):
    """The CSR cannot be judged at all; `reasons` says why (each a sentence for the member)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


class TooManySubjectAltNames(CsrProblem):
    """More subjectAltNames than MAX_SUBJECT_ALT_NAMES: refused before any name is looked at.

    A separate class so that the RA can refuse it without storing or announcing anything.
    """

    def __init__(self, count: int) -> None:
        super().__init__(
            [f"the CSR carries {count} subjectAltNames; at most {MAX_SUBJECT_ALT_NAMES} are allowed per request"]
        )
        self.count = count


@dataclasses.dataclass(frozen=True)
class SubmittedCsr:
    """What the member asked for. Subject attributes other than CN are kept only to be ignored."""

    pem: str
    common_names: tuple[str, ...]
    dns_names: tuple[str, ...]
    emails: tuple[str, ...]  # rfc822Name SANs
    subject_emails: tuple[str, ...]  # emailAddress attributes in the subject (legacy S/MIME CSRs)
    key_description: str
    key_problems: tuple[str, ...]  # messages of shared.key_policy, in the order of key_problem_codes
    san_problems: tuple[str, ...]
    key_problem_codes: tuple[str, ...] = ()
    spki_sha256: str = ""  # the key's name (shared/key_compromise.py): blocked keys are refused by it


def _attribute_values(name: x509.Name, oid: x509.ObjectIdentifier) -> tuple[str, ...]:
    return tuple(str(a.value) for a in name.get_attributes_for_oid(oid))


def parse_csr(pem: str) -> SubmittedCsr:
    """Parse and check a PEM CSR; raise CsrProblem listing what makes it unusable."""
    if len(pem) > MAX_PEM_CHARS:
        raise CsrProblem([f"csr_pem is larger than {MAX_PEM_CHARS} characters"])
    text = pem.strip()
    if not any(marker in text for marker in PEM_MARKERS):
        raise CsrProblem(["csr_pem is not PEM: expected a '-----BEGIN CERTIFICATE REQUEST-----' block"])
    try:
        csr = x509.load_pem_x509_csr(text.encode("utf-8", "replace"))
    except (ValueError, TypeError) as exc:
        raise CsrProblem([f"csr_pem is not a readable certificate request: {exc}"]) from None
    hash_problem = csr_signature_problem(csr)  # the one policy, shared with the signer
    if hash_problem is not None:
        raise CsrProblem([hash_problem])
    try:
        signature_ok = csr.is_signature_valid
    except Exception as exc:  # unusual algorithms surface as UnsupportedAlgorithm and friends
        raise CsrProblem([f"the CSR signature cannot be checked: {exc}"]) from None
    if not signature_ok:
        raise CsrProblem(["the CSR signature is invalid (the request was altered or not signed by its key)"])
    try:
        public_key = csr.public_key()
    except Exception as exc:
        raise CsrProblem([f"the CSR public key cannot be read: {exc}"]) from None
    verdict = check_public_key(public_key)  # the one key policy, shared with the signer
    try:
        subject = csr.subject
        common_names = _attribute_values(subject, NameOID.COMMON_NAME)
        subject_emails = _attribute_values(subject, NameOID.EMAIL_ADDRESS)
    except ValueError as exc:
        raise CsrProblem([f"the CSR subject cannot be read: {exc}"]) from None
    dns_names: list[str] = []
    emails: list[str] = []
    san_problems: list[str] = []
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    except x509.DuplicateExtension as exc:  # not a ValueError: it would otherwise escape as a 500
        raise CsrProblem([f"the CSR contains extension {exc.oid.dotted_string} more than once"]) from None
    except ValueError as exc:
        raise CsrProblem([f"the CSR extensions cannot be read: {exc}"]) from None
    if san is not None and len(san) > MAX_SUBJECT_ALT_NAMES:
        raise TooManySubjectAltNames(len(san))
    if san is not None:
        for general_name in san:
            if isinstance(general_name, x509.DNSName):
                dns_names.append(general_name.value)
            elif isinstance(general_name, x509.RFC822Name):
                emails.append(general_name.value)
            elif isinstance(general_name, x509.IPAddress):
                san_problems.append(f"IP address {general_name.value} cannot be validated: only domain names")
            else:
                san_problems.append(f"subjectAltName of type {type(general_name).__name__} is not supported")
    return SubmittedCsr(
        pem=text + "\n",
        common_names=common_names,
        dns_names=tuple(dns_names),
        emails=tuple(emails),
        subject_emails=subject_emails,
        key_description=verdict.description,
        key_problems=verdict.messages,
        key_problem_codes=verdict.codes,
        san_problems=tuple(san_problems),
        spki_sha256=spki_sha256(public_key),
    )
