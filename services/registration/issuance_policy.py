"""The RA decision: may this member get this certificate, and with exactly what content?

Pure logic (no I/O) so it can be property-tested. Inputs are the parsed CSR,
the profile asked for and the member's standing (verified domains and
addresses, assurance, roles); the output is either every reason to refuse
or the exact subject, names, class and validity the signer must issue.
Nothing from the CSR's subject reaches the approved subject except through
`subject_for`, which builds it from approved names or the member's record.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

from services.registration.csr import SubmittedCsr
from shared import certificate_validity, dns_names, domain_methods

PROFILES = ("server", "client", "codesign")
CLASSES = (1, 3)
ASSURED_POINTS = 50
MAX_CN_LENGTH = 64


@dataclasses.dataclass(frozen=True)
class MemberStanding:
    """What the policy needs to know about the member asking."""

    member_id: str
    real_name: str
    points: int
    is_assurer: bool
    codesign_enabled: bool
    verified_emails: frozenset[str]
    verified_domains: Mapping[str, str]
    """Each verified (and still valid) domain -> the method that verified it (which decides whether it
    covers the names below it: shared/domain_methods.authorizes)."""
    stale_emails: frozenset[str] = frozenset()
    """Verified once, but longer ago than the reuse period: confirmed again before they count."""

    @property
    def assured(self) -> bool:
        return self.points >= ASSURED_POINTS


@dataclasses.dataclass(frozen=True)
class Decision:
    profile: str
    reasons: tuple[str, ...]
    cert_class: int = 1
    subject: dict[str, str] = dataclasses.field(default_factory=dict)
    dns_names: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    validity_days: int = 0

    @property
    def approved(self) -> bool:
        return not self.reasons


@dataclasses.dataclass(frozen=True)
class IssuancePolicy:
    server_validity_days: int = 365
    client_validity_days: int = 365
    codesign_validity_days: int = 365

    def decide(
        self, profile: str, csr: SubmittedCsr, member: MemberStanding, requested_class: int | None = None,
        now: dt.datetime | None = None,
    ) -> Decision:
        """Approve with the exact certificate content, or refuse listing every reason.

        `requested_class` is the root the member asked for (None: the highest they may have). The
        validity is the configured one capped by the profile's maximum for a certificate signed at
        `now` (shared/certificate_validity.py, the rule the signer applies), so the request shows
        the days the certificate will get, not a setting the signer would cut (TLS BR 6.3.2).
        """
        if profile not in PROFILES:
            return Decision(profile, (f"unknown profile {profile!r}: use one of {', '.join(PROFILES)}",))
        reasons = [*csr.key_problems, *csr.san_problems]
        cert_class = self.class_for(profile, member, requested_class, reasons)
        if profile == "server":
            names = self._server_names(csr, member, reasons)
            emails: tuple[str, ...] = ()
            if csr.emails:
                reasons.append("a server certificate cannot contain email addresses")
            validity = self.server_validity_days
        else:
            names = ()
            if csr.dns_names:
                reasons.append(f"a {profile} certificate cannot contain DNS names")
            emails = self._emails(csr, member, reasons, required=profile == "client")
            validity = self.client_validity_days if profile == "client" else self.codesign_validity_days
            if profile == "codesign":
                if not member.is_assurer:
                    reasons.append("code signing certificates are only issued to Assurers")
                elif not member.codesign_enabled:
                    reasons.append("code signing has not been activated for your account by support")
        subject = self.subject_for(profile, cert_class, member, names, emails, reasons)
        if reasons:
            return Decision(profile, tuple(dict.fromkeys(reasons)))
        not_before = certificate_validity.not_before_for(now or dt.datetime.now(dt.UTC))
        validity = min(validity, certificate_validity.max_validity_days(profile, not_before))
        return Decision(profile, (), cert_class, subject, names, emails, validity)

    @staticmethod
    def class_for(
        profile: str, member: MemberStanding, requested: int | None = None, reasons: list[str] | None = None
    ) -> int:
        """Class 3 (the Assured root) only for Assured members; everyone else gets Class 1.

        The seed: Assured members may still choose the Class 1 root (for relying parties that
        trust only Class 1), so a request may ask for 1 or 3; without a choice a member gets the
        highest class they may have. Asking for Class 3 without being Assured is refused (the
        reason goes into `reasons`), never silently downgraded.
        """
        highest = 3 if member.assured else 1
        if requested is None:
            return highest
        if requested not in CLASSES:
            if reasons is not None:
                reasons.append(f"class {requested!r} does not exist: ask for class 1 or 3")
            return highest
        if requested > highest:
            if reasons is not None:
                reasons.append(
                    f"Class 3 certificates are only issued to Assured members ({ASSURED_POINTS} assurance points "
                    "or more): ask for Class 1, or collect assurance points first"
                )
            return highest
        return requested

    @staticmethod
    def subject_for(
        profile: str,
        cert_class: int,
        member: MemberStanding,
        names: Sequence[str],
        emails: Sequence[str],
        reasons: list[str],
    ) -> dict[str, str]:
        """The one place that decides the subject: never anything copied from the CSR.

        server: CN = the first approved DNS name short enough for a CN (none if all are longer);
        client: Class 1 carries no subject at all (the address is in the SAN only, so no personal
        name), Class 3 names the member, in CN with givenName/surname beside it, because the S/MIME
        Baseline Requirements (and the signer's lint) refuse a personal name in CN alone;
        codesign: CN = the member's real name.
        """
        if profile == "server":
            short = [n for n in names if len(n) <= MAX_CN_LENGTH]
            return {"CN": short[0]} if short else {}
        if profile == "client" and cert_class == 1:
            return {}
        name = " ".join(member.real_name.split())
        if not name or len(name) > MAX_CN_LENGTH:
            reasons.append(f"your name must have 1..{MAX_CN_LENGTH} characters to appear in a certificate")
            return {}
        if profile == "client":
            given, _, surname = name.rpartition(" ")
            return {"CN": name, "GN": given, "SN": surname} if given else {"CN": name, "SN": surname}
        return {"CN": name}

    @staticmethod
    def _server_names(csr: SubmittedCsr, member: MemberStanding, reasons: list[str]) -> tuple[str, ...]:
        approved: list[str] = []
        for raw in (*csr.common_names, *csr.dns_names):
            try:
                name = dns_names.normalise_dns_name(raw)
            except ValueError as exc:
                reasons.append(f"{raw!r} is not a valid DNS name: {exc}")
                continue
            if not domain_methods.authorizes(name, member.verified_domains.items()):
                reasons.append(f"{name} is not within a domain you have verified")
                continue
            if name not in approved:
                approved.append(name)
        if not approved and not reasons:
            reasons.append("the CSR names no domain: put the names in subjectAltName (DNS) or the CN")
        return tuple(approved)

    @staticmethod
    def _emails(
        csr: SubmittedCsr, member: MemberStanding, reasons: list[str], *, required: bool
    ) -> tuple[str, ...]:
        # Modern CSRs put the address in subjectAltName; legacy S/MIME CSRs only in the subject.
        requested: Iterable[str] = csr.emails or csr.subject_emails
        approved: list[str] = []
        for raw in requested:
            try:
                address = dns_names.normalise_email(raw)
            except ValueError as exc:
                reasons.append(f"{raw!r} is not a valid email address: {exc}")
                continue
            if address in member.stale_emails:
                reasons.append(f"{address} was confirmed too long ago to be used again: confirm it again "
                               "(resend its confirmation link), then ask anew")
                continue
            if address not in member.verified_emails:
                reasons.append(f"{address} is not one of your verified email addresses")
                continue
            if address not in approved:
                approved.append(address)
        if required and not approved and not reasons:
            reasons.append("a client certificate needs an email address (subjectAltName rfc822Name)")
        return tuple(approved)
