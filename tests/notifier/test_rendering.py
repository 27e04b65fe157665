"""Every template renders into a message that parses back with the expected recipient, subject, files."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509

from services.notifier.addresses import mailbox, parse_mailbox
from services.notifier.message import build_message
from services.notifier.notices import Notice, notice_for, opened_context
from services.notifier.rendering import MailRenderer, TemplateMissing
from shared.events import CloudEvent, make_event
from shared.server_snippets import root_advice, server_snippets
from tests.mail_keys import NOTIFIER, seal
from tests.notifier.certs import CertFactory, issued_payload
from tests.notifier.mailparse import attachments, body_text, parse

SENDER = parse_mailbox("CAcert Community CA <noreply@cacert.test>")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REGISTRATION_URL = "https://ca.cacert.test"  # registration's public URL (CACERT_NOTIFIER_ACCOUNT_URL)
renderer = MailRenderer(account_url=REGISTRATION_URL)


@pytest.fixture(scope="module")
def ca() -> CertFactory:
    return CertFactory()


def mail_notice(ev: CloudEvent) -> Notice:
    """The notice an event becomes, a command's sealed params opened as the sender opens them to render."""
    ev = seal(ev)
    notice = notice_for(ev, NOTIFIER)
    context = opened_context(ev.id, ev.type, notice.to, notice.template, notice.context, notice.sealed, NOTIFIER)
    return dataclasses.replace(notice, context=context)


def rendered(notice: Notice, *, to: str = "ada@example.org", name: str | None = "Ada Lovelace") -> Any:
    context = {"name": name, **{k: v for k, v in notice.context.items() if v is not None or k != "name"}}
    content = renderer.render(notice.template, context)
    message = build_message(
        content,
        sender=SENDER,
        recipient=mailbox(notice.to_name or name, notice.to or to),
        mail_id="mail-1",
        date=NOW,
    )
    return parse(message.as_bytes()), content


def event(name: str, data: dict[str, Any]) -> Any:
    return make_event(name, data, source="test")


def test_password_reset_mail_goes_to_the_member_with_the_link_and_its_lifetime() -> None:
    cmd = event("mail.send_requested", {
        "to": "ada@example.org", "template": "password_reset",
        "params": {"link": "https://ca.test/reset-password#token=SECRET", "name": "Ada", "hours": 1},
        "member_id": "m-1", "requested_at": "2026-03-01T12:00:00Z"})
    message, _ = rendered(mail_notice(cmd))
    assert message["To"].addresses[0].addr_spec == "ada@example.org"
    assert message["Subject"] == "Reset your CAcert password"
    text = body_text(message)
    assert "https://ca.test/reset-password#token=SECRET" in text and "within 1 hour:" in text
    assert "enter this code" not in text, "without code and page the mail names the link alone"
    assert "ends every session" in text


def test_email_confirmation_has_link_recipient_and_html_alternative() -> None:
    cmd = event(
        "mail.send_requested",
        {
            "to": "new@example.org",
            "template": "email_confirmation",
            "params": {"link": "https://ca.test/confirm-email#token=SECRET", "code": "SECRET",
                       "page": "https://ca.test/confirm-email", "name": "Ada"},
            "member_id": "m-1",
            "requested_at": "2026-03-01T12:00:00Z",
        },
    )
    message, _ = rendered(mail_notice(cmd))
    assert message["To"].addresses[0].addr_spec == "new@example.org"
    assert message["To"].addresses[0].display_name == "Ada"
    assert message["Subject"] == "Confirm your email address"
    assert message["From"].addresses[0].addr_spec == "noreply@cacert.test"
    assert message["Message-ID"] == "<mail-1@cacert.test>" and message["Auto-Submitted"] == "auto-generated"
    text = body_text(message)
    assert "https://ca.test/confirm-email#token=SECRET" in text and text.startswith("Hello Ada,")
    assert "go to https://ca.test/confirm-email\nand enter this code:\n\n  SECRET\n" in text  # no script, no link
    html = message.get_body(preferencelist=("html",))
    assert html is not None and 'href="https://ca.test/confirm-email#token=SECRET"' in html.get_content()
    assert "<code>SECRET</code>" in html.get_content()


def test_domain_challenge_goes_to_the_contact_not_greeting_the_member() -> None:
    cmd = event(
        "mail.send_requested",
        {
            "to": "hostmaster@example.org",
            "template": "domain_challenge",
            "params": {
                "link": "https://v.test/confirm#token=TOKEN", "code": "TOKEN", "page": "https://v.test/confirm",
                "domain": "example.org",
                "expires_at": "2026-03-04T12:00:00Z",
                "member_name": "Ada Lovelace",
            },
            "member_id": "m-1",
            "requested_at": "2026-03-01T12:00:00Z",
        },
    )
    notice = mail_notice(cmd)
    assert notice.to_name is None and notice.context["name"] is None
    message, _ = rendered(notice, name=None)
    assert message["To"].addresses[0].addr_spec == "hostmaster@example.org"
    assert message["Subject"] == "Confirm control of example.org"
    text = body_text(message)
    assert text.startswith("Hello,") and '"Ada Lovelace"' in text
    assert "https://v.test/confirm#token=TOKEN" in text and "2026-03-04T12:00:00Z" in text
    assert "go to https://v.test/confirm\nand enter this code:\n\n  TOKEN\n" in text


def test_domain_challenge_without_optional_params_renders() -> None:
    cmd = event(
        "mail.send_requested",
        {
            "to": "admin@example.org",
            "template": "domain_challenge",
            "params": {"link": "https://v.test/confirm/T", "domain": "example.org"},
            "requested_at": "2026-03-01T12:00:00Z",
        },
    )
    message, _ = rendered(mail_notice(cmd), name=None)
    assert "a CAcert member asked" in body_text(message)


@pytest.mark.parametrize("cert_class", [3, 1])
def test_cert_issued_attaches_the_same_certificate_and_names_the_root(
    ca: CertFactory, cert_class: int
) -> None:
    issued = ca.issue(cert_class=cert_class, dns_names=("www.example.org", "example.org"))
    data = issued_payload(issued, cert_class=cert_class, dns_names=["www.example.org", "example.org"])
    message, _ = rendered(mail_notice(event("cert.issued", data)))
    assert message["Subject"] == "Your server certificate for www.example.org was issued"
    files = attachments(message)
    assert x509.load_pem_x509_certificate(files["certificate.pem"]) == issued.certificate
    full = x509.load_pem_x509_certificates(files["fullchain.pem"])
    assert full == [issued.certificate, *issued.chain]
    text = body_text(message)
    if cert_class == 3:
        assert x509.load_pem_x509_certificates(files["chain.pem"]) == [ca.class3]
        assert "must trust the CAcert Class 3 root" in text and "signed by\nthe Class 1 root" in text
        assert "SSLCertificateChainFile /etc/ssl/certs/www.example.org-chain.pem" in text
    else:
        assert "chain.pem" not in files  # a Class 1 leaf has no intermediate
        assert "must trust the CAcert Class 1 root" in text and "SSLCertificateChainFile" not in text
    assert "SSLCertificateFile    /etc/ssl/certs/www.example.org-fullchain.pem" in text
    assert "SSLCertificateKeyFile /etc/ssl/private/www.example.org.key" in text
    assert "ssl_certificate     /etc/ssl/certs/www.example.org-fullchain.pem;" in text
    assert "ssl_certificate_key /etc/ssl/private/www.example.org.key;" in text
    assert data["serial"] in text and data["not_after"] in text


@pytest.mark.parametrize("cert_class", [3, 1])
def test_server_certificate_mail_shows_the_shared_client_certificate_snippets_and_root_advice(
    ca: CertFactory, cert_class: int
) -> None:
    names = ["www.example.org", "example.org"]
    issued = ca.issue(cert_class=cert_class, dns_names=tuple(names))
    message, _ = rendered(mail_notice(event("cert.issued", issued_payload(issued, cert_class=cert_class,
                                                                         dns_names=names))))
    text = body_text(message)
    shared = server_snippets(names, client_root_class=3)
    for snippet in (shared.apache_client_auth, shared.nginx_client_auth):
        for line in snippet.splitlines():
            assert f"  {line}\n" in text, line  # the shared text, indented, not a copy of it
    assert "SSLCACertificateFile /etc/ssl/certs/cacert-class3-root.pem\n  SSLVerifyClient require" in text
    assert "ssl_client_certificate /etc/ssl/certs/cacert-class3-root.pem;" in text
    for line in root_advice():
        assert f"  - {line}\n" in text
    class3_line, class1_line = root_advice()
    assert "assured members only" in class3_line and "cacert-class3-root.pem" in class3_line
    assert "self-signed Class 3 root" in class3_line
    assert "everyone" in class1_line and "cacert-roots.pem" in class1_line
    assert "They name the self-signed Class 3 root." in text


def test_client_and_code_signing_mails_get_no_server_snippets(ca: CertFactory) -> None:
    client = ca.issue(cert_class=1, dns_names=(), emails=("ada@example.org",))
    message, _ = rendered(mail_notice(event("cert.issued", issued_payload(
        client, profile="client", cert_class=1, dns_names=[], emails=["ada@example.org"]))))
    text = body_text(message)
    assert all(f"  - {line}\n" in text for line in root_advice())  # which sites admit it
    assert "SSLVerifyClient" not in text and "ssl_client_certificate" not in text

    signer = ca.issue(cert_class=3, dns_names=())
    message, _ = rendered(mail_notice(event("cert.issued", issued_payload(
        signer, profile="codesign", cert_class=3, dns_names=[]))))
    text = body_text(message)
    assert "Sign your code with it" in text
    assert "SSLVerifyClient" not in text and not any(line in text for line in root_advice())


def test_client_certificate_mail_explains_pkcs12_not_server_config(ca: CertFactory) -> None:
    issued = ca.issue(cert_class=1, dns_names=(), emails=("ada@example.org",))
    data = issued_payload(issued, profile="client", cert_class=1, dns_names=[], emails=["ada@example.org"])
    message, _ = rendered(mail_notice(event("cert.issued", data)))
    assert message["Subject"] == "Your client certificate for ada@example.org was issued"
    text = body_text(message)
    assert "openssl pkcs12 -export" in text and "ssl_certificate" not in text
    assert x509.load_pem_x509_certificate(attachments(message)["certificate.pem"]) == issued.certificate


MEMBER_EVENTS: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "member.registered",
        {
            "member_id": "m-1",
            "name": "Ada Lovelace",
            "email": "ada@example.org",
            "registered_at": "2026-03-01T12:00:00Z",
        },
        "Welcome to CAcert",
        "m-1",
    ),
    (
        "cert.rejected",
        {
            "request_id": "req-7",
            "member_id": "m-1",
            "reason": "lint",
            "details": ["e_subject_common_name_not_from_san"],
            "rejected_at": "2026-03-01T12:00:00Z",
        },
        "Your certificate request req-7 was refused",
        "e_subject_common_name_not_from_san",
    ),
    (
        "cert.revoked",
        {
            "serial": "0abc",
            "member_id": "m-1",
            "request_id": "req-1",
            "issuer": "class3",
            "reason": "key_compromise",
            "revoked_at": "2026-03-01T12:00:00Z",
        },
        "Certificate 0abc was revoked",
        "key compromise",
    ),
    (
        "csr.rejected",
        {
            "request_id": "req-8",
            "member_id": "m-1",
            "profile": "server",
            "reasons": ["evil.example is not a verified domain"],
            "rejected_at": "2026-03-01T12:00:00Z",
        },
        "Your certificate request req-8 was refused",
        "evil.example is not a verified domain",
    ),
    (
        "domain.verified",
        {
            "request_id": "req-9",
            "member_id": "m-1",
            "domain": "example.org",
            "method": "email",
            "verified_at": "2026-03-01T12:00:00Z",
            "valid_until": "2027-04-03T12:00:00Z",
        },
        "Domain example.org verified",
        "2027-04-03T12:00:00Z",
    ),
    (
        "member.assurance_recorded",
        {
            "member_id": "m-1",
            "assurer_id": "a-1",
            "assurer_name": "Alan Assurer",
            "points": 35,
            "total_points": 55,
            "assured": True,
            "location": "Berlin",
            "date": "2026-03-01",
            "recorded_at": "2026-03-01T12:00:00Z",
        },
        "Alan Assurer assured you with 35 points",
        "Alan Assurer recorded an assurance for you: 35 points, met in Berlin on 2026-03-01.\n"
        "You now have 55 assurance points and are Assured",
    ),
    (
        "member.assurance_recorded",
        {  # an event from before the Assurer's name was added
            "member_id": "m-1",
            "assurer_id": "a-1",
            "points": 10,
            "total_points": 10,
            "assured": False,
            "recorded_at": "2026-03-01T12:00:00Z",
        },
        "An Assurer assured you with 10 points",
        "An Assurer recorded an assurance for you: 10 points.\nYou now have 10 assurance points; with 50",
    ),
    (
        "domain.verification_failed",
        {
            "request_id": "req-10",
            "member_id": "m-1",
            "domain": "example.org",
            "reason": "expired",
            "failed_at": "2026-03-01T12:00:00Z",
        },
        "Domain example.org could not be verified",
        "not used in time",
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "subject", "snippet"), MEMBER_EVENTS, ids=[m[0] for m in MEMBER_EVENTS]
)
def test_member_notices(name: str, data: dict[str, Any], subject: str, snippet: str) -> None:
    notice = mail_notice(event(name, data))
    assert notice.member_id == "m-1"
    message, content = rendered(notice)
    assert message["To"].addresses[0].addr_spec == "ada@example.org"
    assert message["Subject"] == subject == content.subject
    text = body_text(message)
    assert snippet in text and text.startswith("Hello Ada Lovelace,")
    assert not list(message.iter_attachments())


def test_expiry_reminder_template() -> None:
    context = {
        "serial": "0abc",
        "subject": "CN=www.example.org",
        "profile": "server",
        "names": ["www.example.org"],
        "not_after": "2026-03-15T00:00:00Z",
        "days_left": 3,
    }
    content = renderer.render("expiry_reminder", {"name": "Ada", **context})
    assert content.subject == "Your certificate www.example.org expires in 3 days"
    assert "0abc" in content.text and "2026-03-15T00:00:00Z" in content.text
    assert renderer.render("expiry_reminder", {**context, "days_left": 1}).subject.endswith("in 1 day")


def test_expiry_reminder_links_to_renew_under_registrations_public_url() -> None:
    context = {"serial": "0abc", "subject": "CN=www.example.org", "profile": "server",
               "names": ["www.example.org"], "not_after": "2026-03-15T00:00:00Z", "days_left": 3}
    renew = "https://ca.cacert.test/account/certificates/0abc/renew"
    assert f"  {renew}\n" in renderer.render("expiry_reminder", context).text
    with_slash = MailRenderer(account_url="https://ca.cacert.test/")  # one slash between base and path
    assert renew in with_slash.render("expiry_reminder", context).text
    unconfigured = MailRenderer().render("expiry_reminder", context).text
    assert "/renew" not in unconfigured and "Request a new certificate for the same" in unconfigured


def test_unknown_or_path_like_template_is_refused() -> None:
    for name in ("nope", "../settings", "_layout"):
        with pytest.raises(TemplateMissing):
            renderer.render(name, {})
