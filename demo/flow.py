"""The member's walk, step by step, against the running system (see demo/__init__.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from demo.clients import DemoError, Mail, follow_confirmation_link, wait_until
from demo.member_api import MemberApi
from shared.ca_certificates import ISSUING_LABELS, LABELS

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# Subject attributes a member's CSR may carry that the CA must drop (only CN, decided by the RA, stays).
EXTRA_SUBJECT = {
    "O": "Demo Widgets Ltd",
    "OU": "Web Team",
    "L": "Springfield",
}


@dataclasses.dataclass(frozen=True)
class Urls:
    api: str
    mailbox: str
    status: str
    confirm: str

    @property
    def ocsp(self) -> dict[str, str]:
        return {c: f"{self.status}/ocsp/{c}" for c in (*LABELS, *ISSUING_LABELS)}

    @property
    def crl(self) -> dict[str, str]:
        return {c: f"{self.status}/{c}.crl" for c in (*LABELS, *ISSUING_LABELS)}


@dataclasses.dataclass
class Issued:
    label: str
    profile: str
    request_id: str
    serial: str
    cert_class: int
    submitted_at: float
    mailed_at: float
    certificate_pem: str
    chain_pem: str

    @property
    def csr_to_mail(self) -> float:
        return self.mailed_at - self.submitted_at


def new_key(kind: str) -> PrivateKey:
    if kind == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_csr(key: PrivateKey, *, cn: str, dns: list[str] | None = None, emails: list[str] | None = None,
             email_attr: str) -> str:  # fmt: skip
    """A CSR with CN plus O, OU, L and emailAddress, which the CA must all drop (except CN for servers)."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, EXTRA_SUBJECT["O"]),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, EXTRA_SUBJECT["OU"]),
            x509.NameAttribute(NameOID.LOCALITY_NAME, EXTRA_SUBJECT["L"]),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, email_attr),
        ]
    )
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns or []]
    names += [x509.RFC822Name(e) for e in emails or []]
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def der_to_pem(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()


class MemberDemo:
    def __init__(self, urls: Urls, assurers: list[dict[str, str]], out: Path,
                 say: Callable[[str], None] = print, dns_env: dict[str, str] | None = None) -> None:  # fmt: skip
        if len(assurers) < 2:
            raise DemoError("the demo needs two Assurers (35 + 15 points): seed them with `./dev up`")
        self.urls = urls
        self.dns_env = dns_env  # CACERT_DNS_* of the local DNS server (None: this process's environment)
        self.assurers = assurers
        self.out = out
        self.say = say
        self.mail = Mail(urls.mailbox)
        tag = secrets.token_hex(4)
        self.email = f"ada-{tag}@example.org"
        self.domain = f"demo-{tag}.example.org"
        self.dns_domain = f"dns-{tag}.example.org"
        self.password = secrets.token_urlsafe(16)
        self.issued: dict[str, Issued] = {}
        self.steps: dict[str, float] = {}

    # -- helpers -----------------------------------------------------------------------------------

    def _write(self, name: str, data: str | bytes, *, secret: bool = False) -> None:
        path = self.out / name
        if isinstance(data, str):
            data = data.encode()
        path.unlink(missing_ok=True)
        path.touch(mode=0o600 if secret else 0o644)
        path.write_bytes(data)

    async def _step(self, name: str, coro: Any) -> Any:
        started = time.monotonic()
        result = await coro
        self.steps[name] = round(time.monotonic() - started, 3)
        return result

    async def _get_certificate(
        self, api: MemberApi, label: str, profile: str, csr_pem: str, subject_hint: str
    ) -> Issued:
        """Submit a CSR, wait for the certificate mail, fetch the certificate with its chain from the API."""
        submitted = time.time()
        request = await api.call("POST", "/v1/requests", {"csr_pem": csr_pem, "profile": profile})
        message = await self.mail.next(to=self.email, subject=f"certificate for {subject_hint} was issued")
        mailed = Mail.delivered_at(message)
        serial = _field(message.get("text") or "", "Serial:")

        async def view() -> Any:
            found = await api.call("GET", f"/v1/certificates/{serial}", ok=(404,))
            return found if isinstance(found, dict) and found.get("certificate_pem") else None

        cert = await wait_until(view, f"certificate {serial} in the member API")
        issued = Issued(label, profile, request["id"], serial, int(cert["cert_class"]), submitted, mailed,
                        cert["certificate_pem"], cert.get("chain_pem") or "")  # fmt: skip
        self.issued[label] = issued
        self.say(f"  {label}: serial {serial}, Class {issued.cert_class}, "
                 f"CSR -> mail {issued.csr_to_mail * 1000:.0f} ms")  # fmt: skip
        return issued

    # -- the walk ----------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await self._check_up(http)
            member = MemberApi(http, self.urls.api)
            await self._step("register_and_confirm_email", self._register(http, member))
            await self._step("verify_domain", self._verify_domain(http, member))
            await self._step("verify_domain_by_dns", self._verify_domain_by_dns(member))
            await self._step("class1_certificates", self._class1(member))
            await self._step("revoke", self._revoke(member))
            await self._step("assurance", self._assurance(http, member))
            await self._step("class3_certificate", self._class3(member))
            await self._step("roots", self._roots(http))
        received = await self.mail.client.list(to=self.email) + await self.mail.client.list(to=self.contact)
        self.received = sorted(received, key=lambda m: m["delivered"])
        summary = self._summary(time.monotonic() - started)
        self._write("summary.json", json.dumps(summary, indent=2) + "\n")
        return summary

    async def _check_up(self, http: aiohttp.ClientSession) -> None:
        for name, base in (("registration", self.urls.api), ("domain_verify", self.urls.confirm),
                           ("signer status", self.urls.status)):  # fmt: skip
            try:
                async with http.get(f"{base}/readyz") as response:
                    if response.status == 200:
                        continue
                    problem = f"answers /readyz with {response.status}"
            except aiohttp.ClientError as exc:
                problem = f"is not reachable ({exc})"
            raise DemoError(f"{name} at {base} {problem}: start the system with `./dev up`")

    async def _register(self, http: aiohttp.ClientSession, member: MemberApi) -> None:
        self.say(f"1. sign up as {self.email} and confirm the address from the mail")
        await member.call("POST", "/v1/members", {"name": "Ada Lovelace", "date_of_birth": "1990-12-10",
                                                  "email": self.email, "password": self.password})  # fmt: skip
        message = await self.mail.next(to=self.email, subject="Confirm your email address")
        page = await follow_confirmation_link(http, Mail.link(message, "/confirm-email#token="))
        if "onfirmed" not in page:
            raise DemoError(f"the email confirmation page did not confirm: {page[:300]}")
        await member.login(self.email, self.password)
        me = await member.call("GET", "/v1/me")
        self.member_id = me["id"]
        self.say(f"  member {me['id']}, address verified: {me['emails'][0]['verified']}")

    async def _verify_domain(self, http: aiohttp.ClientSession, member: MemberApi) -> None:
        self.say(f"2. add {self.domain} and verify it through hostmaster@")
        domain = await member.call("POST", "/v1/domains", {"domain": self.domain})
        contacts = (await member.call("GET", f"/v1/domains/{domain['id']}/contacts"))["contacts"]
        contact = next(c for c in contacts if c.startswith("hostmaster@") and c.endswith("@" + self.domain))
        await member.call("POST", f"/v1/domains/{domain['id']}/verify", {"contact": contact})
        message = await self.mail.next(to=contact, subject=f"Confirm control of {self.domain}")
        await follow_confirmation_link(http, Mail.link(message, "/confirm#token="))

        async def verified() -> bool:
            view = await member.call("GET", f"/v1/domains/{domain['id']}")
            return bool(view["status"] == "verified")

        await wait_until(verified, f"{self.domain} to be verified")
        self.contact = contact
        self.say(f"  {self.domain} verified by {contact}")

    async def _verify_domain_by_dns(self, member: MemberApi) -> None:
        """The DNS-change method (BR 3.2.2.4.7): publish the shown value as TXT, press "check now"."""
        from devstack.dns_zone import LocalZone

        self.say(f"2b. add {self.dns_domain} and verify it by a DNS TXT record")
        domain = await member.call("POST", "/v1/domains", {"domain": self.dns_domain, "method": "dns_change"})
        challenge = domain["challenge"]
        zone = LocalZone.from_env(self.dns_env)
        await zone.publish(challenge["record_name"], "TXT", f'"{challenge["random_value"]}"')
        self.say(f"  published {challenge['record']}")
        await member.call("POST", f"/v1/domains/{domain['id']}/check")

        async def verified() -> bool:
            view = await member.call("GET", f"/v1/domains/{domain['id']}")
            if view["status"] == "failed":
                raise DemoError(f"DNS check of {self.dns_domain} failed: {view['failure_reason']} "
                                f"(found {view['failure_found']})")
            return bool(view["status"] == "verified")

        await wait_until(verified, f"{self.dns_domain} to be verified by DNS")
        self.say(f"  {self.dns_domain} verified by DNS (three perspectives agreed)")

    async def _class1(self, member: MemberApi) -> None:
        self.say("3. Class 1 certificates (the member has 0 points)")
        key = new_key("rsa2048")
        csr = make_csr(key, cn=self.domain, dns=[self.domain, f"www.{self.domain}"], email_attr=self.email)
        issued = await self._get_certificate(member, "server_class1", "server", csr, self.domain)
        self._write("server_class1.key", key_pem(key), secret=True)
        self._write("server_class1.pem", issued.certificate_pem)
        self._write("chain_class1.pem", issued.chain_pem)  # the Class 1 issuing CA

        key = new_key("p256")
        csr = make_csr(key, cn=self.dns_domain, dns=[self.dns_domain], email_attr=self.email)
        issued = await self._get_certificate(member, "server_dns", "server", csr, self.dns_domain)
        self._write("server_dns.key", key_pem(key), secret=True)
        self._write("server_dns.pem", issued.certificate_pem)

        key = new_key("rsa2048")
        csr = make_csr(key, cn="Ada Lovelace", emails=[self.email], email_attr=self.email)
        issued = await self._get_certificate(member, "client_class1", "client", csr, self.email)
        self._write("client_class1.key", key_pem(key), secret=True)
        self._write("client_class1.pem", issued.certificate_pem)

        # A dedicated certificate to revoke, so the ones above stay good for the TLS and S/MIME checks.
        key = new_key("p256")
        name = f"old.{self.domain}"
        csr = make_csr(key, cn=name, dns=[name], email_attr=self.email)
        issued = await self._get_certificate(member, "revoked", "server", csr, name)
        self._write("revoked.pem", issued.certificate_pem)

    async def _revoke(self, member: MemberApi) -> None:
        serial = self.issued["revoked"].serial
        self.say(f"4. revoke {serial} (old.{self.domain})")
        await member.call("POST", f"/v1/certificates/{serial}/revoke", {"reason": "superseded"})
        await self.mail.next(to=self.email, subject=f"Certificate {serial} was revoked")

        async def revoked() -> bool:
            view = await member.call("GET", f"/v1/certificates/{serial}")
            return bool(view["status"] == "revoked")

        await wait_until(revoked, f"{serial} to show as revoked")
        self.say("  revoked (mail received, the API shows it revoked)")

    async def _assurance(self, http: aiohttp.ClientSession, member: MemberApi) -> None:
        self.say("5. meet two Assurers: 35 + 15 points")
        today = dt.date.today().isoformat()
        for assurer, points in zip(self.assurers, (35, 15), strict=False):
            session = MemberApi(http, self.urls.api)
            await session.login(assurer["email"], assurer["password"], assurer.get("totp_secret"))
            await session.call("POST", "/v1/assurances", {"member": self.email, "points": points,
                                                          "location": "Demo meetup", "date": today,
                                                          "documents_checked": True})  # fmt: skip
            await session.call("DELETE", "/v1/sessions/current")
        me = await member.call("GET", "/v1/me")
        if not me.get("assured"):
            raise DemoError(f"expected the member to be Assured after 50 points, got {me.get('points')}")
        self.points = me["points"]
        self.say(f"  {me['points']} points, assured: {me['assured']}")

    async def _class3(self, member: MemberApi) -> None:
        self.say("6. a Class 3 server certificate (now Assured)")
        key = new_key("p256")
        csr = make_csr(key, cn=self.domain, dns=[self.domain, f"www.{self.domain}"], email_attr=self.email)
        issued = await self._get_certificate(member, "server_class3", "server", csr, self.domain)
        if issued.cert_class != 3:
            raise DemoError(f"expected a Class 3 certificate, got Class {issued.cert_class}")
        self._write("server_class3.key", key_pem(key), secret=True)
        self._write("server_class3.pem", issued.certificate_pem)
        self._write("chain_class3.pem", issued.chain_pem)  # the Class 3 issuing CA, the Class 3 root

    async def _roots(self, http: aiohttp.ClientSession) -> None:
        self.say("7. the roots, from the signer's public status endpoints")
        # class3_root.pem is the Class 3 certificate signed by Class 1 (what chains carry);
        # class3_root_self_signed.pem its self-signed twin, the anchor for assured-only trust;
        # class1_issuing.pem / class3_issuing.pem the CAs that sign the leaves (in the chain files too).
        for label, file in (("class1", "class1_root"), ("class3", "class3_root"),
                            ("class3-root", "class3_root_self_signed"), ("class1-issuing", "class1_issuing"),
                            ("class3-issuing", "class3_issuing")):  # fmt: skip
            async with http.get(f"{self.urls.status}/{label}.crt") as response:
                if response.status != 200:
                    raise DemoError(f"GET {self.urls.status}/{label}.crt answered {response.status}")
                self._write(f"{file}.pem", der_to_pem(await response.read()))

    def _summary(self, total: float) -> dict[str, Any]:
        timings = [i.csr_to_mail for i in self.issued.values()]
        return {
            "urls": {
                "api": self.urls.api,
                "confirm": self.urls.confirm,
                "mailbox": self.urls.mailbox,
                "status": self.urls.status,
                "ocsp": self.urls.ocsp,
                "crl": self.urls.crl,
                "class1_crt": f"{self.urls.status}/class1.crt",
                "class3_crt": f"{self.urls.status}/class3.crt",
                "class3_root_crt": f"{self.urls.status}/class3-root.crt",
                "class1_issuing_crt": f"{self.urls.status}/class1-issuing.crt",
                "class3_issuing_crt": f"{self.urls.status}/class3-issuing.crt",
            },
            "member": {"id": self.member_id, "email": self.email, "points": self.points},
            "domain": self.domain,
            "domain_contact": self.contact,
            "dns_domain": self.dns_domain,
            "certificates": {
                label: {
                    "file": f"{label}.pem",
                    "serial": i.serial,
                    "profile": i.profile,
                    "class": i.cert_class,
                    "request_id": i.request_id,
                    "csr_to_mail_seconds": round(i.csr_to_mail, 4),
                    "revoked": label == "revoked",
                }
                for label, i in self.issued.items()
            },
            "serials": {label: i.serial for label, i in self.issued.items()},
            "revoked_serial": self.issued["revoked"].serial,
            "mail_subjects": [m["subject"] for m in self.received],
            "mails": [{"to": m["to"], "subject": m["subject"], "delivered": m["delivered"]} for m in self.received],
            "timings": {
                "csr_to_mail_seconds": {label: round(i.csr_to_mail, 4) for label, i in self.issued.items()},
                "csr_to_mail_p50_seconds": round(statistics.median(timings), 4),
                "csr_to_mail_max_seconds": round(max(timings), 4),
                "steps_seconds": self.steps,
                "total_seconds": round(total, 3),
            },
        }


def _field(text: str, label: str) -> str:
    for line in text.splitlines():
        if line.strip().startswith(label):
            return line.split(label, 1)[1].strip()
    raise DemoError(f"no {label!r} line in the certificate mail")
