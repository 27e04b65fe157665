"""notifier over real Kafka, FerretDB and SMTP: every event type becomes the expected mail.

The service runs in-process; a producer plays registration, domain_verify
and the signer; an aiosmtpd server on loopback receives the mail, which is
parsed back with the `email` package.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography import x509

from shared.config import KafkaSettings, MongoSettings
from shared.events import isoformat, utcnow
from shared.server_snippets import root_advice
from tests.notifier.certs import CertFactory, issued_payload
from tests.notifier.harness import Harness, running
from tests.notifier.mailparse import attachments, body_text

pytestmark = pytest.mark.usefixtures("topics")
NOW = isoformat(utcnow())


@pytest.fixture
async def notifier(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Harness]:
    async with running(kafka_settings, mongo_settings) as harness:
        yield harness


async def test_every_event_type_mails_the_member(notifier: Harness) -> None:
    registered = await notifier.register("m-ada", "Ada Lovelace", "ada@example.org")
    (welcome,) = await notifier.wait_received(1)
    assert welcome.to == "ada@example.org" and welcome.message["Subject"] == "Welcome to CAcert"
    assert welcome.mail_from == "noreply@cacert.test"

    ca = CertFactory()
    issued = ca.issue(cert_class=3, dns_names=("www.example.org",))
    cert_data = issued_payload(issued, member_id="m-ada", request_id="req-cert")
    events: list[tuple[str, dict[str, Any], str]] = [
        ("cert.issued", cert_data, "Your server certificate for www.example.org was issued"),
        (
            "cert.rejected",
            {
                "request_id": "req-2",
                "member_id": "m-ada",
                "reason": "weak_key",
                "details": ["RSA key shorter than 2048 bits"],
                "rejected_at": NOW,
            },
            "Your certificate request req-2 was refused",
        ),
        (
            "cert.revoked",
            {
                "serial": cert_data["serial"],
                "member_id": "m-ada",
                "request_id": "req-cert",
                "issuer": "class3",
                "reason": "superseded",
                "revoked_at": NOW,
            },
            f"Certificate {cert_data['serial']} was revoked",
        ),
        (
            "csr.rejected",
            {
                "request_id": "req-3",
                "member_id": "m-ada",
                "reasons": ["CN is not verified"],
                "rejected_at": NOW,
            },
            "Your certificate request req-3 was refused",
        ),
        (
            "domain.verified",
            {
                "request_id": "req-4",
                "member_id": "m-ada",
                "domain": "example.org",
                "method": "email",
                "verified_at": NOW,
                "valid_until": NOW,
            },
            "Domain example.org verified",
        ),
        (
            "domain.verification_failed",
            {
                "request_id": "req-5",
                "member_id": "m-ada",
                "domain": "example.net",
                "reason": "superseded",
                "failed_at": NOW,
            },
            "Domain example.net could not be verified",
        ),
    ]
    published = [await notifier.publish(name, data) for name, data, _ in events]
    received = await notifier.wait_received(1 + len(events))
    by_subject = {r.message["Subject"]: r for r in received[1:]}
    assert len(received) == 1 + len(events)
    for _, _, subject in events:
        mail = by_subject[subject]
        assert mail.to == "ada@example.org"
        assert mail.message["To"].addresses[0].display_name == "Ada Lovelace"
        assert body_text(mail.message).startswith("Hello Ada Lovelace,")

    files = attachments(by_subject[events[0][2]].message)
    assert x509.load_pem_x509_certificate(files["certificate.pem"]) == issued.certificate
    assert x509.load_pem_x509_certificates(files["chain.pem"]) == [ca.class3]
    assert x509.load_pem_x509_certificates(files["fullchain.pem"]) == [issued.certificate, ca.class3]
    issued_text = body_text(by_subject[events[0][2]].message).splitlines()
    assert "Trust: relying parties must trust the CAcert Class 3 root." in issued_text
    # Through SMTP the client-certificate snippet arrives intact (quoted-printable, long lines and all).
    assert "  SSLCACertificateFile /etc/ssl/certs/cacert-class3-root.pem" in issued_text
    assert "  SSLVerifyClient require" in issued_text and "  ssl_verify_client      on;" in issued_text
    assert [f"  - {line}" for line in root_advice()] == [line for line in issued_text if line.startswith("  - ")]

    # One mail.sent per source event, keyed by it, naming recipient and subject.
    outcomes = await notifier.mail_events(1 + len(events))
    sent = {e.data["source_event_id"]: e for e in outcomes if e.type == "org.cacert.mail.sent.v1"}
    assert set(sent) == {registered.id, *(p.id for p in published)}
    cert_sent = sent[published[0].id]
    assert cert_sent.key == published[0].id and cert_sent.source == "notifier"
    assert cert_sent.data["to"] == "ada@example.org" and cert_sent.data["subject"] == events[0][2]
    assert cert_sent.data["source_type"] == "org.cacert.cert.issued.v1"

    # The sent-mail log keeps what was sent, not the certificate or template context.
    doc = await notifier.mail_doc(published[0].id)
    assert doc is not None and doc["state"] == "sent" and "context" not in doc and doc["_outbox"] == []


async def test_mail_commands_go_to_the_given_address_and_the_link_is_never_logged(notifier: Harness) -> None:
    secret = "tok-" + "S3CRET" * 4
    confirm = await notifier.publish(
        "mail.send_requested",
        {
            "to": "new-address@example.org",
            "template": "email_confirmation",
            "member_id": "m-1",
            "params": {"link": f"https://ca.test/confirm-email?token={secret}", "name": "Ada"},
            "requested_at": NOW,
        },
    )
    challenge = await notifier.publish(
        "mail.send_requested",
        {
            "to": "hostmaster@example.org",
            "template": "domain_challenge",
            "member_id": "m-1",
            "params": {
                "link": f"https://verify.test/confirm/{secret}",
                "domain": "example.org",
                "expires_at": NOW,
                "member_name": "Ada",
            },
            "requested_at": NOW,
        },
    )
    received = await notifier.wait_received(2)
    by_to = {r.to: r for r in received}
    mail = by_to["new-address@example.org"].message
    assert mail["Subject"] == "Confirm your email address"
    assert f"token={secret}" in body_text(mail)
    hostmaster = by_to["hostmaster@example.org"].message
    assert hostmaster["Subject"] == "Confirm control of example.org"
    assert f"/confirm/{secret}" in body_text(hostmaster) and body_text(hostmaster).startswith("Hello,")

    outcomes = await notifier.mail_events(2)
    assert {e.data["source_event_id"] for e in outcomes} == {confirm.id, challenge.id}
    for record_value in (e.data for e in outcomes):
        assert secret not in str(record_value)
    assert secret not in notifier.logs.getvalue() and "mail sent" in notifier.logs.getvalue()
    stored = await notifier.mail_doc(confirm.id)
    assert stored is not None and secret not in str(stored)  # the link is dropped once the mail is out


async def test_notice_for_an_unknown_member_waits_until_the_member_is_known(notifier: Harness) -> None:
    verified = await notifier.publish(
        "domain.verified",
        {
            "request_id": "req-early",
            "member_id": "m-late",
            "domain": "example.org",
            "method": "email",
            "verified_at": NOW,
            "valid_until": NOW,
        },
    )
    await notifier.settle(2.0)
    assert notifier.smtp.received == []
    doc = await notifier.mail_doc(verified.id)
    assert doc is not None and doc["state"] == "pending" and doc["last_error"] == "member address unknown yet"

    await notifier.register("m-late", "Grace Hopper", "grace@example.org")
    received = await notifier.wait_received(2)
    assert sorted(r.message["Subject"] for r in received) == [
        "Domain example.org verified",
        "Welcome to CAcert",
    ]
    assert all(r.to == "grace@example.org" for r in received)


async def test_verified_primary_address_replaces_the_registered_one(notifier: Harness) -> None:
    await notifier.register("m-2", "Zoë Ünlü", "old@example.org")
    await notifier.wait_received(1)
    await notifier.publish(
        "member.email_verified",
        {"member_id": "m-2", "email": "new@example.org", "primary": True, "verified_at": NOW},
    )
    await notifier.publish(
        "member.email_verified",
        {"member_id": "m-2", "email": "other@example.org", "primary": False, "verified_at": NOW},
    )
    await notifier.publish(
        "csr.rejected", {"request_id": "r", "member_id": "m-2", "reasons": ["bad"], "rejected_at": NOW}
    )
    received = await notifier.wait_received(2)
    assert received[1].to == "new@example.org"
    assert received[1].message["To"].addresses[0].display_name == "Zoë Ünlü"
