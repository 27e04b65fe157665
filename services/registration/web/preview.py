"""The "before you confirm" view of a CSR: exactly what the RA would put into the certificate.

It runs the registration's own CSR parsing (`csr.parse_csr`) and the same
`IssuancePolicy.decide` the submission uses, with the member's current
standing, so the preview and the decision cannot disagree; this module only
adds presentation: which subject attributes of the CSR are dropped, and a
hint on what to do for each refusal reason.

The validity comes from the rule the signer applies, `shared/certificate_validity.py` (the RA's
days for the profile, the CA/B Forum maximum at the time of signing, never beyond the issuing CA's
own notAfter), computed for a certificate signed now; the issuing CA is named from its certificate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from cryptography import x509

from services.registration.certificate_requests import CertificateRequests
from services.registration.csr import MAX_PEM_CHARS, MAX_SUBJECT_ALT_NAMES, CsrProblem, parse_csr
from services.registration.issuance_policy import Decision
from services.registration.members import Member
from services.registration.web.messages import plain
from services.registration.web.rendering import CA_NAMES
from shared import certificate_validity

SUBJECT_LABELS = {"CN": "commonName", "GN": "givenName", "SN": "surname"}
KEY_HINT = (
    "Generate a new key and CSR, e.g. "
    "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout site.key -out site.csr "
    "(or -newkey rsa:3072)."
)
# (text that occurs in a policy reason, what the member can do about it, a page that helps)
HINTS: tuple[tuple[str, str, str | None], ...] = (
    (
        "subjectAltNames; at most",
        f"Split the names over several CSRs of at most {MAX_SUBJECT_ALT_NAMES} names each.",
        None,
    ),
    (
        "not within a domain you have verified",
        "Add the domain under Domains and confirm the mail sent to one of its official contacts, "
        "then submit the CSR again.",
        "/account/domains",
    ),
    ("is not a valid DNS name", "Fix the name in the CSR: letters, digits, hyphens and dots only.", None),
    ("names no domain", "Put the host names in subjectAltName (DNS) or the CommonName of the CSR.", None),
    (
        "not one of your verified email addresses",
        "Only addresses you confirmed can go into a certificate; see My account.",
        "/account",
    ),
    ("needs an email address", "Put your address in subjectAltName (rfc822Name / email:) of the CSR.", None),
    ("cannot contain email addresses", "Server certificates carry host names only; make a new CSR.", None),
    ("cannot contain DNS names", "Client certificates carry email addresses only; make a new CSR.", None),
    ("IP address", "The CA only validates domain names; remove IP addresses from subjectAltName.", None),
    ("subjectAltName of type", "Only DNS names (server) and email addresses (client) can be validated.", None),
    ("RSA key", KEY_HINT, None),
    ("RSA public exponent", KEY_HINT, None),
    ("elliptic curve", KEY_HINT, None),
    ("EdDSA", KEY_HINT, None),
    ("DSA keys", KEY_HINT, None),
    ("unsupported key type", KEY_HINT, None),
    ("not PEM", "Paste the whole request including the BEGIN and END lines, or upload the .csr file.", None),
    ("not a readable certificate request", "The text is not a CSR; upload the .csr file openssl wrote.", None),
    ("signature", "The request was altered after it was made; create it again.", None),
    ("larger than", "This is not a single CSR; upload only the .csr file.", None),
    ("only issued to Assurers", "Code signing needs Assurer status (see Assurance).", "/account/assurance"),
    ("not been activated", "Ask support to activate code signing for your account.", None),
    ("your name must have", "Support can correct the name on your account.", None),
)


@dataclasses.dataclass(frozen=True)
class Refusal:
    reason: str
    hint: str | None
    link: str | None


@dataclasses.dataclass(frozen=True)
class Preview:
    profile: str
    csr_pem: str
    refusals: tuple[Refusal, ...]
    key: str = ""
    cert_class: int = 1
    validity_days: int = 0
    not_after: dt.datetime | None = None
    """notAfter of a certificate signed now (None when refused)."""
    issuer: str = ""
    """The issuing CA: its name here and, when its certificate is known, its common name."""
    names: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    subject: tuple[tuple[str, str], ...] = ()
    kept: tuple[tuple[str, str], ...] = ()
    dropped: tuple[tuple[str, str], ...] = ()

    @property
    def approved(self) -> bool:
        return not self.refusals


def refusal(reason: str) -> Refusal:
    """A refusal reason in the member's words (web/messages.py), with what to do about it."""
    for needle, hint, link in HINTS:
        if needle in reason:
            return Refusal(plain(reason), hint, link)
    return Refusal(plain(reason), None, None)


def _requested_subject(pem: str) -> list[tuple[str, str]]:
    csr = x509.load_pem_x509_csr(pem.encode())
    return [(attr.oid._name, str(attr.value)) for attr in csr.subject]


@dataclasses.dataclass(frozen=True)
class IssuingCa:
    """What the preview needs of the issuing CA's certificate."""

    common_name: str
    not_after: dt.datetime


def _issuer(cert_class: int, ca: IssuingCa | None) -> str:
    return f"{CA_NAMES[cert_class]} ({ca.common_name})" if ca else CA_NAMES[cert_class]


async def preview(
    requests: CertificateRequests,
    member: Member,
    pem: str,
    profile: str,
    cert_class: int | None = None,
    *,
    now: dt.datetime,
    issuing_cas: dict[int, IssuingCa] | None = None,
) -> Preview:
    """What submitting `pem` for `profile` would give this member now (or every reason it would not).

    `issuing_cas` are the CA certificates by class (None or missing: not known, e.g. the signer's
    status endpoint is down; the validity is then not capped by the CA's own expiry).
    """
    pem = pem.strip()
    if len(pem) > MAX_PEM_CHARS:
        return Preview(profile, "", (refusal(f"the CSR is larger than {MAX_PEM_CHARS} characters"),))
    try:
        csr = parse_csr(pem)
    except CsrProblem as exc:
        return Preview(profile, pem, tuple(refusal(r) for r in exc.reasons))
    decision: Decision = requests.policy.decide(profile, csr, await requests.standing(member), cert_class, now)
    if decision.reasons:
        return Preview(profile, csr.pem, tuple(refusal(r) for r in decision.reasons), key=csr.key_description)
    ca = (issuing_cas or {}).get(decision.cert_class)
    maximum = certificate_validity.max_validity_days(profile, certificate_validity.not_before_for(now))
    try:
        period = certificate_validity.validity_period(
            decision.validity_days, maximum, now, ca.not_after if ca else None
        )
    except certificate_validity.IssuerExpiresTooSoon:
        return Preview(
            profile, csr.pem, (refusal(f"the {CA_NAMES[decision.cert_class]} expires too soon to issue"),)
        )
    requested = _requested_subject(csr.pem)
    final = [(SUBJECT_LABELS.get(k, k), v) for k, v in decision.subject.items()]
    kept = [(k, v) for k, v in requested if (k, v) in final]
    dropped = [(k, v) for k, v in requested if (k, v) not in final]
    return Preview(
        profile=profile,
        csr_pem=csr.pem,
        refusals=tuple(refusal(r) for r in decision.reasons),
        key=csr.key_description,
        cert_class=decision.cert_class,
        validity_days=period.days,
        not_after=period.not_after,
        issuer=_issuer(decision.cert_class, ca),
        names=decision.dns_names,
        emails=decision.emails,
        subject=tuple(final),
        kept=tuple(kept),
        dropped=tuple(dropped),
    )
