"""Acceptance: the CSR preview shows what the signer then issues, field by field, per profile and class.

Registration (with the portal) and the signer's issuing service run in-process against the local
Kafka and FerretDB (as tests/integration/test_registration_class_choice.py); the portal reads the
issuing CAs from a small server publishing the signer's own CA certificates, as the signer's status
endpoint does. For each profile and class the test previews a CSR in the portal, confirms it, waits
for the certificate and compares: subject, subjectAltNames, validity (days and end date) and the
issuing CA. Both sides compute validity with shared/certificate_validity.py.
"""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from shared import certificate_validity
from shared.config import KafkaSettings, MongoSettings
from tests.integration.test_registration_class_choice import signer  # noqa: F401 (fixture)
from tests.integration.test_registration_web_portal import CSRF, Browser, _verified_domain, assured_member
from tests.registration.csrs import build_csr
from tests.registration.harness import Stack, running

pytestmark = pytest.mark.usefixtures("topics")
LABELS = {NameOID.COMMON_NAME: "commonName", NameOID.GIVEN_NAME: "givenName", NameOID.SURNAME: "surname"}


@pytest.fixture
async def ca_endpoint(signer: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Path]:  # noqa: F811
    """Serve the signer's CA certificates as its status endpoint does, for the portal (CACERT_CA_CERTS_URL)."""

    async def serve(request: web.Request) -> web.Response:
        label = request.match_info["label"]
        cert = x509.load_pem_x509_certificate((signer / f"{label}.crt.pem").read_bytes())
        return web.Response(body=cert.public_bytes(Encoding.DER), content_type="application/pkix-cert")

    app = web.Application()
    app.router.add_get("/{label:class[13]}.crt", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    monkeypatch.setenv("CACERT_CA_CERTS_URL", f"http://127.0.0.1:{runner.addresses[0][1]}")
    try:
        yield signer
    finally:
        await runner.cleanup()


def _shown(page: str) -> dict[str, object]:
    """The preview's facts, read from its HTML."""

    def items(list_id: str) -> list[str]:
        found = re.search(rf'<ul id="{list_id}">(.*?)</ul>', page, re.S)
        return [html.unescape(v) for v in re.findall(r"<code>(.*?)</code>", found.group(1))] if found else []

    subject = re.search(r'<ul id="subject">(.*?)</ul>', page, re.S)
    until = re.search(r'id="validity">.*?, until ([^<]+)</dd>', page, re.S)
    issuer = re.search(r'<dd id="issuer">([^<]+)</dd>', page)
    days = re.search(r'id="validity-days">(\d+) days<', page)
    assert until and issuer and days, page
    return {
        "subject": [(k, html.unescape(v)) for k, v in re.findall(r"<li>(\w+) = <code>(.*?)</code></li>",
                                                                  subject.group(1))] if subject else [],
        "names": items("names"),
        "emails": items("emails"),
        "days": int(days.group(1)),
        "until": until.group(1).strip(),
        "issuer": html.unescape(issuer.group(1)),
    }


def _actual(cert: x509.Certificate) -> dict[str, object]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names, emails = sans.get_values_for_type(x509.DNSName), sans.get_values_for_type(x509.RFC822Name)
    except x509.ExtensionNotFound:
        names, emails = [], []
    issuer_cn = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return {
        "subject": [(LABELS[a.oid], str(a.value)) for a in cert.subject],
        "names": names,
        "emails": emails,
        "days": (cert.not_valid_after_utc - cert.not_valid_before_utc + timedelta(seconds=1)).days,
        "until": cert.not_valid_after_utc.strftime("%-d %B %Y"),
        "issuer_cn": issuer_cn,
    }


async def _preview_then_issue(
    stack: Stack, browser: Browser, token: str, kind: str, form: dict[str, str]
) -> tuple[dict[str, object], x509.Certificate]:
    status, page, _ = await browser.get(f"/account/{kind}-certs/new")
    assert status == 200, page
    csrf = CSRF.search(page).group(1)  # type: ignore[union-attr]
    status, page, _ = await browser.post(f"/account/{kind}-certs/new", {"csrf": csrf, **form})
    assert status == 200, page
    shown = _shown(page)
    status, _, headers = await browser.post(f"/account/{kind}-certs/submit", {"csrf": csrf, **form})
    assert status == 303 and headers["Location"].startswith("/account/requests/"), status
    request_id = headers["Location"].rsplit("/", 1)[1]
    if form["profile"] == "server":
        await stack.answer_caa(request_id)  # the test plays domain_verify's CAA check
    for _ in range(300):
        found = (await stack.api.call("GET", f"/v1/requests/{request_id}", token=token)).body
        if found.get("status") == "issued" and found.get("serial"):
            pem = await stack.api.call("GET", f"/v1/certificates/{found['serial']}/download?format=pem", token=token)
            return shown, x509.load_pem_x509_certificates(pem.raw)[0]
        assert found.get("status") in ("caa_pending", "approved", "pending"), found
        await asyncio.sleep(0.1)
    raise AssertionError(f"request {request_id} was not issued")


async def test_the_preview_shows_exactly_what_the_signer_issues_for_every_profile_and_class(
    kafka_settings: KafkaSettings, mongo_settings: MongoSettings, ca_endpoint: Path
) -> None:
    common_names = {
        label: x509.load_pem_x509_certificate((ca_endpoint / f"{label}.crt.pem").read_bytes())
        .subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        for label in ("class1", "class3")
    }
    async with running(kafka_settings, mongo_settings) as stack:
        ada, cody = Browser(stack.api.base), Browser(stack.api.base)
        try:
            member_id, token = await assured_member(stack, "Ada Preview", "ada@example.org")
            await _verified_domain(stack, member_id, token, "ada.example.org")
            await ada.login("ada@example.org")
            cody_id, cody_token = await stack.founder("Cody Preview", "cody@example.org", ("member", "assurer"))
            for n in range(2):
                _, admin = await stack.founder(f"Admin {n}", f"admin{n}@example.org", ("member", "admin"))
                done = await stack.api.call("POST", f"/v1/admin/members/{cody_id}/codesign", token=admin,
                                            json_body={"enabled": True})
                assert done.status in (200, 202), done.body
            await cody.login("cody@example.org")
            server_csr = build_csr(subject=[("CN", "www.ada.example.org"), ("O", "Dropped Ltd")],
                                   dns=["www.ada.example.org", "ada.example.org"])
            client_csr = build_csr(subject=[("CN", "Ada")], emails=["ada@example.org"])
            cases = [
                ("server", 1, ada, token, "server", {"profile": "server", "cert_class": "1", "csr_pem": server_csr}),
                ("server", 3, ada, token, "server", {"profile": "server", "cert_class": "3", "csr_pem": server_csr}),
                ("client", 1, ada, token, "client", {"profile": "client", "cert_class": "1", "csr_pem": client_csr}),
                ("client", 3, ada, token, "client", {"profile": "client", "cert_class": "3", "csr_pem": client_csr}),
                ("codesign", 1, cody, cody_token, "client", {
                    "profile": "codesign", "csr_pem": build_csr(subject=[("CN", "C")], emails=["cody@example.org"]),
                }),
            ]
            results = []
            for profile, cert_class, browser, member_token, kind, form in cases:
                shown, cert = await _preview_then_issue(stack, browser, member_token, kind, form)
                results.append((profile, cert_class, shown, cert))
        finally:
            await ada.close()
            await cody.close()

    now = datetime.now(UTC)
    for profile, cert_class, shown, cert in results:
        actual = _actual(cert)
        where = (profile, cert_class)
        assert shown["subject"] == actual["subject"], where
        assert shown["names"] == actual["names"] and shown["emails"] == actual["emails"], where
        assert shown["days"] == actual["days"], (where, shown["days"], actual["days"])
        assert shown["until"] == actual["until"], where
        name = "Class 1 root" if cert_class == 1 else "Class 3 root"
        assert shown["issuer"] == f"{name} ({actual['issuer_cn']})", where
        assert actual["issuer_cn"] == common_names[f"class{cert_class}"], where
        expected = min(365, certificate_validity.max_validity_days(profile, now))
        assert actual["days"] == expected, where
    server_days = results[0][2]["days"]
    assert server_days == certificate_validity.tls_max_validity_days(now) < 365, "SC-081, not the RA's 365"
