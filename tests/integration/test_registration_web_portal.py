"""The member web portal over HTTP (no browser): CSRF, cookie flags, security headers, 404 isolation, preview.

Registration runs in-process against the real stack (tests/registration/harness.py); a cookie-keeping
aiohttp client plays the browser.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from services.registration.web.settings import WebSettings
from shared.config import KafkaSettings, MongoSettings
from shared.events import isoformat
from tests.registration.csrs import build_csr, self_signed
from tests.registration.harness import PASSWORD, Stack, running, second_factor_code

pytestmark = pytest.mark.usefixtures("topics")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def stack(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Stack]:
    async with running(kafka_settings, mongo_settings) as s:
        yield s


class Browser:
    """Keeps cookies like a browser (also for 127.0.0.1) and never follows redirects."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def close(self) -> None:
        await self.http.close()

    async def get(self, path: str) -> tuple[int, str, Any]:
        async with self.http.get(self.base + path, allow_redirects=False) as response:
            return response.status, await response.text(), response.headers

    async def csrf(self, path: str) -> str:
        status, text, _ = await self.get(path)
        assert status == 200, (path, status)
        match = CSRF.search(text)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    async def post(self, path: str, data: dict[str, str]) -> tuple[int, str, Any]:
        async with self.http.post(self.base + path, data=data, allow_redirects=False) as response:
            return response.status, await response.text(), response.headers

    async def login(self, address: str) -> None:
        token = await self.csrf("/login")
        status, _, headers = await self.post("/login", {"csrf": token, "email": address, "password": PASSWORD,
                                                        "totp": second_factor_code(address) or ""})
        assert status == 303 and headers["Location"] == "/account", status


@pytest.fixture
async def browsers(stack: Stack) -> AsyncIterator[list[Browser]]:
    made = [Browser(stack.api.base) for _ in range(2)]
    yield made
    for b in made:
        await b.close()


async def _verified_domain(stack: Stack, member_id: str, token: str, domain: str) -> None:
    """Add a domain and answer for domain_verify (its events), as tests/integration do."""
    added = await stack.api.call(
        "POST", "/v1/domains", token=token, json_body={"domain": domain, "contact": f"hostmaster@{domain}"}
    )
    assert added.status == 201, added.body
    (request,) = [e for e in await stack.events("domain", "domain.verification_requested")
                  if e.data["domain"] == domain]
    now = datetime.now(UTC)
    await stack.publish("domain.verified", {
        "request_id": request.data["request_id"], "member_id": member_id, "domain": domain, "method": "email",
        "contact": request.data["contact"], "verified_at": isoformat(now),
        "valid_until": isoformat(now + timedelta(days=390)),
    }, source="domain_verify")
    for _ in range(200):
        if (await stack.api.call("GET", f"/v1/domains/{added.body['id']}", token=token)).body["status"] == "verified":
            return
        await asyncio.sleep(0.1)
    raise AssertionError("domain not verified")


def test_a_csrf_key_shared_by_every_replica_is_required_outside_the_local_system() -> None:
    """A key invented per process fails every form posted to another replica (two in three with three)."""
    from shared.config import ConfigError

    WebSettings().check_shared_secrets("http://127.0.0.1:8081")  # the local system: random per process is fine
    WebSettings(csrf_secret="k").check_shared_secrets("https://ra.cacert.example")
    for public in ("https://ra.cacert.example", "http://ra.cacert-dev.localtest.me"):
        with pytest.raises(ConfigError, match=r"^CACERT_WEB_CSRF_SECRET is required"):
            WebSettings().check_shared_secrets(public)


def test_secure_cookie_setting() -> None:
    auto = WebSettings()
    assert not auto.secure_cookies("http://127.0.0.1:8081") and not auto.secure_cookies("http://localhost:8081")
    assert auto.secure_cookies("https://ca.example.org") and auto.secure_cookies("http://ca.example.org")
    assert WebSettings(cookie_secure="true").secure_cookies("http://127.0.0.1:8081")
    assert not WebSettings(cookie_secure="false").secure_cookies("https://ca.example.org")


async def test_security_headers_and_cookie_flags(stack: Stack, browsers: list[Browser]) -> None:
    browser = browsers[0]
    await stack.member("Ada Headers", "ada@example.org")
    for path in ("/", "/login", "/signup", "/roots", "/confirm-email", "/reset-password"):
        status, text, headers = await browser.get(path)
        assert headers["Content-Type"].startswith("text/html"), path
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp, (path, csp)
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer" and headers["X-Frame-Options"] == "DENY"
        assert " style=" not in text and "<style" not in text
        if path in ("/confirm-email", "/reset-password"):
            # Opened from mailed links: default-src 'none' and one static script from this origin, which moves
            # the token from the link's fragment into the form (shared/mailed_links.py); nothing inline.
            assert csp.startswith("default-src 'none'; script-src 'self';"), csp
            assert re.findall(r"<script[^>]*>", text) == ['<script src="/static/mailed-link.js" defer>'], path
        else:
            assert _no_script(csp) and csp.startswith("default-src 'self'; script-src 'none';"), csp
            assert "<script" not in text.lower()
    status, script, headers = await browser.get("/static/mailed-link.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript") and "location.hash" in script
    async with aiohttp.ClientSession() as fresh, fresh.get(browser.base + "/login") as first:
        anonymous = _set_cookies(first)["cacert_csrf"]
    assert anonymous["httponly"] and anonymous["samesite"] == "Strict" and not anonymous["secure"]
    token = await browser.csrf("/login")
    async with browser.http.post(browser.base + "/login", allow_redirects=False,
                                 data={"csrf": token, "email": "ada@example.org", "password": PASSWORD}) as reply:
        session = _set_cookies(reply)["cacert_session"]
    assert session["httponly"] and session["samesite"] == "Strict" and session["path"] == "/"
    assert int(session["max-age"]) == 12 * 3600
    # The cookie carries the registration's own session token: the bearer API accepts it.
    me = await stack.api.call("GET", "/v1/me", token=session.value)
    assert me.status == 200 and me.body["primary_email"] == "ada@example.org"
    status, text, headers = await browser.get("/account")
    assert status == 200 and "Ada Headers" in text and headers["Cache-Control"] == "no-store"


async def test_cookies_are_secure_host_cookies_outside_development(
    kafka_settings: KafkaSettings, mongo_settings: MongoSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACERT_WEB_COOKIE_SECURE", "true")
    async with running(kafka_settings, mongo_settings) as stack, aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar()
    ) as http:
        await stack.member("Bo Secure", "bo@example.org")
        async with http.get(stack.api.base + "/login") as page:
            anonymous = _set_cookies(page)["__Host-cacert_csrf"]
            token = CSRF.search(await page.text()).group(1)  # type: ignore[union-attr]
        assert anonymous["secure"] and anonymous["httponly"] and anonymous["samesite"] == "Strict"
        async with http.post(stack.api.base + "/login", allow_redirects=False,
                             headers={"Cookie": f"__Host-cacert_csrf={anonymous.value}"},
                             data={"csrf": token, "email": "bo@example.org", "password": PASSWORD}) as reply:
            assert reply.status == 303
            session = _set_cookies(reply)["__Host-cacert_session"]
        assert session["secure"] and session["httponly"] and session["samesite"] == "Strict"


def _no_script(csp: str) -> bool:
    directives = {}
    for directive in filter(None, (d.strip() for d in csp.split(";"))):
        name, _, value = directive.partition(" ")
        directives[name] = value
    return directives.get("script-src", directives.get("default-src")) == "'none'"


def _set_cookies(response: aiohttp.ClientResponse) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        jar.load(header)
    return jar


async def test_forms_without_a_valid_csrf_token_are_refused(stack: Stack, browsers: list[Browser]) -> None:
    alice, mallory = browsers
    member_id, api_token = await stack.member("Alice Csrf", "alice@example.org")
    await stack.member("Mallory Csrf", "mallory@example.org")
    # Anonymous forms: no token, a forged token, or a token without the cookie it is bound to.
    login = {"email": "alice@example.org", "password": PASSWORD}
    assert (await alice.post("/login", login))[0] == 403
    assert (await alice.post("/login", {**login, "csrf": "forged"}))[0] == 403
    anonymous_token = await alice.csrf("/login")
    async with aiohttp.ClientSession() as cookieless:
        async with cookieless.post(stack.api.base + "/login", data={**login, "csrf": anonymous_token},
                                   allow_redirects=False) as reply:
            assert reply.status == 403
    signup = {"name": "Eve", "date_of_birth": "1990-01-01", "email": "eve@example.org",
              "password": PASSWORD, "password_again": PASSWORD}
    status, text, _ = await alice.post("/signup", signup)
    assert status == 403 and "security token" in text
    assert await stack.service.db["addresses"].find_one({"_id": "eve@example.org"}) is None  # type: ignore[index]

    await alice.login("alice@example.org")
    await mallory.login("mallory@example.org")
    # Logged in: the token is bound to the session; the pre-login token and another member's are refused.
    assert (await alice.post("/account/domains", {"domain": "alice.example"}))[0] == 403
    assert (await alice.post("/account/domains", {"domain": "alice.example", "csrf": anonymous_token}))[0] == 403
    malloys = await mallory.csrf("/account/domains")
    assert (await alice.post("/account/domains", {"domain": "alice.example", "csrf": malloys}))[0] == 403
    assert (await alice.post("/logout", {}))[0] == 403
    assert (await stack.api.call("GET", "/v1/domains", token=api_token)).body["domains"] == []
    token = await alice.csrf("/account/domains")
    status, _, headers = await alice.post("/account/domains", {"domain": "alice.example", "csrf": token})
    assert status == 303 and headers["Location"].startswith("/account/domains/")
    (claim,) = (await stack.api.call("GET", "/v1/domains", token=api_token)).body["domains"]
    assert claim["domain"] == "alice.example" and headers["Location"] == f"/account/domains/{claim['id']}"
    # Logging out with the token ends the session (the cookie no longer opens member pages).
    status, _, headers = await alice.post("/logout", {"csrf": await alice.csrf("/account")})
    assert status == 303 and headers["Location"] == "/login?notice=logged_out"
    status, _, headers = await alice.get("/account")
    assert status == 303 and headers["Location"] == "/login?next=/account"
    assert member_id


async def test_another_members_certificate_page_is_404(stack: Stack, browsers: list[Browser]) -> None:
    owner, other = browsers
    owner_id, owner_token = await stack.member("Owen Owner", "owen@example.org")
    await stack.member("Olga Other", "olga@example.org")
    leaf_pem, leaf = self_signed("www.example.org", serial=0x5EC0DE)
    serial = format(leaf.serial_number, "x")
    now = datetime.now(UTC)
    await stack.publish("cert.issued", {
        "request_id": "req-owen", "member_id": owner_id, "serial": serial, "issuer": "class1", "cert_class": 1,
        "profile": "server", "subject": "CN=www.example.org", "dns_names": ["www.example.org"],
        "ip_addresses": [], "emails": [], "not_before": isoformat(leaf.not_valid_before_utc),
        "not_after": isoformat(leaf.not_valid_after_utc),
        "fingerprint_sha256": hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest(),
        "certificate_pem": leaf_pem, "chain_pem": "", "trust_anchors": ["class1"], "issued_at": isoformat(now),
    }, source="signer")
    for _ in range(200):
        if (await stack.api.call("GET", "/v1/certificates", token=owner_token)).body["certificates"]:
            break
        await asyncio.sleep(0.1)
    await owner.login("owen@example.org")
    await other.login("olga@example.org")
    status, text, _ = await owner.get(f"/account/certificates/{serial}")
    assert status == 200 and serial in text and "ssl_certificate " in text and "SSLCertificateFile" in text
    status, body, headers = await owner.get(f"/account/certificates/{serial}/download/pem")
    assert status == 200 and body.startswith("-----BEGIN CERTIFICATE-----")
    assert headers["Content-Disposition"] == f'attachment; filename="{serial}.pem"'
    for path in (f"/account/certificates/{serial}", f"/account/certificates/{serial}/download/pem",
                 f"/account/certificates/{serial}/download/der", "/account/certificates/ffff"):
        status, text, _ = await other.get(path)
        assert status == 404 and "No such certificate" in text and "www.example.org" not in text, path
    token = await other.csrf("/account")
    assert (await other.post(f"/account/certificates/{serial}/revoke", {"csrf": token}))[0] == 404
    owners_view = (await stack.api.call("GET", f"/v1/certificates/{serial}", token=owner_token)).body
    assert owners_view["status"] == "valid"
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{stack.api.base}/account/certificates/{serial}", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == f"/login?next=/account/certificates/{serial}"


async def test_preview_shows_names_and_dropped_attributes_before_anything_is_submitted(
    stack: Stack, browsers: list[Browser]
) -> None:
    browser = browsers[0]
    member_id, token = await stack.member("Pia Preview", "pia@example.org")
    await _verified_domain(stack, member_id, token, "pia.example")
    await browser.login("pia@example.org")
    csr = build_csr(subject=[("CN", "www.pia.example"), ("O", "Injected Org"), ("L", "Nowhere")],
                    dns=["www.pia.example", "pia.example"])
    form = {"csrf": await browser.csrf("/account/server-certs/new"), "profile": "server", "csr_pem": csr}
    status, text, _ = await browser.post("/account/server-certs/new", form)
    assert status == 200, text
    names = re.search(r'<ul id="names">(.*?)</ul>', text, re.S).group(1)  # type: ignore[union-attr]
    dropped = re.search(r'<ul id="dropped">(.*?)</ul>', text, re.S).group(1)  # type: ignore[union-attr]
    assert "www.pia.example" in names and "pia.example" in names
    assert "organizationName = <code>Injected Org</code>" in dropped and "localityName" in dropped
    assert "commonName" not in dropped  # the CN is kept: it is the first approved name
    assert (await stack.api.call("GET", "/v1/requests", token=token)).body["requests"] == []

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    bad = build_csr(subject=[("CN", "www.pia.example")], dns=["www.pia.example", "evil.example.com"], key=weak)
    status, text, _ = await browser.post("/account/server-certs/new", {**form, "csr_pem": bad})
    assert status == 422
    assert "evil.example.com is not within a domain you have verified" in text and 'href="/account/domains"' in text
    assert "RSA key of 1024 bits is too weak" in text and "openssl req -new" in text
    assert "Confirm and request" not in text
    status, text, _ = await browser.post("/account/server-certs/new", {**form, "csr_pem": "hello"})
    assert status == 422 and "not PEM" in text and "BEGIN and END lines" in text
    assert (await stack.api.call("GET", "/v1/requests", token=token)).body["requests"] == []

    # Confirming submits exactly the previewed CSR; the request page waits for the signer.
    submit = {"csrf": form["csrf"], "profile": "server", "csr_pem": csr}
    status, _, headers = await browser.post("/account/server-certs/submit", submit)
    assert status == 303 and headers["Location"].startswith("/account/requests/")
    (request,) = (await stack.api.call("GET", "/v1/requests", token=token)).body["requests"]
    assert request["status"] == "caa_pending" and request["dns_names"] == ["www.pia.example", "pia.example"]
    assert request["subject"] == {"CN": "www.pia.example"}
    status, text, _ = await browser.get(headers["Location"])
    assert status == 200 and "checking the names' CAA records" in text
    assert '<meta http-equiv="refresh"' not in text, "no timed reload (WCAG 2.2.1): the member asks again"
    assert f'href="{headers["Location"]}">Show the status again<' in text
    await stack.answer_caa(request["id"])
    for _ in range(100):
        status, text, _ = await browser.get(headers["Location"])
        if "the signer is issuing" in text:
            break
        await asyncio.sleep(0.1)
    assert "the signer is issuing" in text and ">Show the status again<" in text
    assert ">Approved, being issued<" in text


def _ca_cert(name: str, serial: int) -> x509.Certificate:
    return self_signed(name, serial=serial)[1]


async def _status_server(route: str, handler: Any) -> web.AppRunner:
    """A stand-in for the signer's status endpoints on a loopback port, answering GET ``route``; cleaned up by
    the caller (``runner.cleanup()``)."""
    app = web.Application()
    app.router.add_get(route, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def test_relying_party_page_serves_the_ca_certificates_with_fingerprints(
    kafka_settings: KafkaSettings, mongo_settings: MongoSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    class1, class3 = _ca_cert("Test Class 1 Root", 1), _ca_cert("Test Class 3", 3)
    class3_root = _ca_cert("Test Class 3 self-signed", 33)
    fetched: list[str] = []
    publish_twin = True  # a signer whose CA directory has class3-root.crt.pem

    async def serve(request: web.Request) -> web.Response:
        fetched.append(request.path)
        cert = {"/class1.crt": class1, "/class3.crt": class3, "/class3-root.crt": class3_root}[request.path]
        if cert is class3_root and not publish_twin:
            return web.Response(status=404)
        return web.Response(body=cert.public_bytes(Encoding.DER), content_type="application/pkix-cert")

    runner = await _status_server("/{name:class1|class3|class3-root}.crt", serve)
    port = runner.addresses[0][1]
    monkeypatch.setenv("CACERT_CA_CERTS_URL", f"http://127.0.0.1:{port}")
    try:
        async with running(kafka_settings, mongo_settings) as stack, aiohttp.ClientSession() as http:
            async with http.get(stack.api.base + "/roots") as page:
                text = await page.text()
                assert page.status == 200
            for label, cert in (("class1", class1), ("class3", class3), ("class3-root", class3_root)):
                sha256 = ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))
                sha1 = ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA1()))  # noqa: S303
                assert f'id="{label}-sha256">{sha256}<' in text and f'id="{label}-sha1">{sha1}<' in text
                async with http.get(f"{stack.api.base}/roots/{label}.pem") as pem:
                    assert await pem.read() == cert.public_bytes(Encoding.PEM)
                    assert pem.headers["Content-Disposition"] == f'attachment; filename="cacert-{label}.pem"'
                async with http.get(f"{stack.api.base}/roots/{label}.der") as der:
                    assert await der.read() == cert.public_bytes(Encoding.DER)
            assert "update-ca-certificates" in text and "certutil -addstore" in text
            # a local system: the page names the status service that answers here, not the public addresses
            assert 'id="local-status"' in text and f"http://127.0.0.1:{port}/ocsp/class1" in text
            assert f"http://127.0.0.1:{port}/class3.crl" in text
            assert 'href="/roots/cacert-roots.p7b"' in text and 'href="/roots/cacert-roots.pem"' in text
            async with http.get(f"{stack.api.base}/roots/cacert-roots.p7b") as p7b:
                assert p7b.content_type == "application/pkcs7-mime"
                bundle = await p7b.read()
            printed = subprocess.run(["openssl", "pkcs7", "-inform", "DER", "-print_certs"], input=bundle,
                                     capture_output=True, check=True).stdout.decode()
            assert "subject=CN = Test Class 1 Root" in printed and "subject=CN = Test Class 3" in printed, printed
            async with http.get(f"{stack.api.base}/roots/cacert-roots.pem") as pem:
                assert await pem.read() == class1.public_bytes(Encoding.PEM) + class3.public_bytes(Encoding.PEM)
            assert fetched == ["/class1.crt", "/class3.crt", "/class3-root.crt"]  # cached after the first fetch
            # the advice: assured members only = the self-signed Class 3 root alone; everyone = the bundle
            assert text.index('id="class1"') < text.index('id="class3-root"') < text.index('id="class3"')
            assert "Class 3 root (self-signed)" in text and "Class 3 root signed by Class 1" in text
            assert 'id="no-class3-root"' not in text
            assert ('<code id="apache-client-auth-class3">SSLCACertificateFile /etc/ssl/certs/cacert-class3-root.pem\n'
                    "SSLVerifyClient require") in text
            assert "ssl_client_certificate /etc/ssl/certs/cacert-class3-root.pem;" in text
            assert "SSLCACertificateFile /etc/ssl/certs/cacert-roots.pem" in text
            assert 'href="/roots/class3-root.pem"' in text
            async with http.get(f"{stack.api.base}/roots/class3-root.pem") as pem:
                assert pem.headers["Content-Disposition"] == 'attachment; filename="cacert-class3-root.pem"'

        # a signer whose CA directory has no self-signed Class 3 root yet (404): the page says so
        publish_twin = False
        fetched.clear()
        async with running(kafka_settings, mongo_settings) as stack, aiohttp.ClientSession() as http:
            async with http.get(stack.api.base + "/roots") as page:
                text = await page.text()
                assert page.status == 200
            assert fetched == ["/class1.crt", "/class3.crt", "/class3-root.crt"]
            assert 'id="no-class3-root"' in text and 'id="class3-root"' not in text
            assert 'id="class1-sha256"' in text and 'id="class3-sha256"' in text
            async with http.get(f"{stack.api.base}/roots/class3-root.pem") as download:
                assert download.status == 404
            async with http.get(f"{stack.api.base}/roots/cacert-roots.pem") as pem:
                assert await pem.read() == class1.public_bytes(Encoding.PEM) + class3.public_bytes(Encoding.PEM)
    finally:
        await runner.cleanup()

    monkeypatch.setenv("CACERT_CA_CERTS_URL", "http://127.0.0.1:9")  # nothing listens there
    async with running(kafka_settings, mongo_settings) as stack, aiohttp.ClientSession() as http:
        async with http.get(stack.api.base + "/roots") as page:
            assert page.status == 503 and "cannot be fetched" in await page.text()
        async with http.get(stack.api.base + "/roots/class1.pem") as download:
            assert download.status == 503


async def test_after_a_root_rollover_the_relying_party_page_lists_and_bundles_the_g2_certificates(
    kafka_settings: KafkaSettings, mongo_settings: MongoSettings, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The status endpoints of a rolled-over signer (their certificate URLs, served from a real CA directory after
    `new-generation`): the page shows the G2 roots and issuing CAs, they download, and the "everyone" bundle
    admits a G2 leaf sent alone."""
    from services.signer.ca import ceremony

    ceremony.create_hierarchy(tmp_path / "ca", tmp_path / "roots", b"pw", "p256", public_base_url="http://pki.test")
    rolled, _ = ceremony.create_generation(tmp_path / "ca", tmp_path / "roots", b"pw", public_base_url="http://pki.test")

    async def serve(request: web.Request) -> web.Response:
        path = tmp_path / "ca" / f"{request.match_info['name']}.crt.pem"
        if not path.exists():
            return web.Response(status=404)
        der = x509.load_pem_x509_certificate(path.read_bytes()).public_bytes(Encoding.DER)
        return web.Response(body=der, content_type="application/pkix-cert")

    runner = await _status_server("/{name}.crt", serve)
    monkeypatch.setenv("CACERT_CA_CERTS_URL", f"http://127.0.0.1:{runner.addresses[0][1]}")
    try:
        async with running(kafka_settings, mongo_settings) as stack, aiohttp.ClientSession() as http:
            async with http.get(stack.api.base + "/roots") as page:
                text = await page.text()
                assert page.status == 200
            for label in ("class1-g2", "class3-root-g2", "class3-g2", "class1-issuing-g2", "class3-issuing-g2"):
                assert f'id="{label}"' in text, label
                async with http.get(f"{stack.api.base}/roots/{label}.pem") as pem:
                    assert await pem.read() == (tmp_path / "ca" / f"{label}.crt.pem").read_bytes()
            assert "Class 1 root G2" in text
            async with http.get(f"{stack.api.base}/roots/cacert-roots.pem") as pem:
                (tmp_path / "bundle.pem").write_bytes(await pem.read())
        leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        issuing = rolled.issuing_ca(3)
        leaf = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=leaf"))
                .issuer_name(issuing.certificate.subject).public_key(leaf_key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(datetime.now(UTC) - timedelta(minutes=1))
                .not_valid_after(datetime.now(UTC) + timedelta(days=1))
                .sign(issuing.signing_key, hashes.SHA256()))
        (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(Encoding.PEM))
        verified = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "bundle.pem"),
                                   str(tmp_path / "leaf.pem")], capture_output=True, text=True, check=False)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        await runner.cleanup()


def _assurance(member: str, points: int) -> dict[str, object]:
    return {"member": member, "points": points, "location": "Berlin", "date": "2026-01-10",
            "documents_checked": True}


async def assured_member(stack: Stack, name: str, address: str) -> tuple[str, str]:
    """A member with 70 points from two bootstrapped Assurers (Assured: may have Class 3)."""
    member_id, token = await stack.member(name, address)
    for n in range(2):
        _, assurer = await stack.founder(f"Assurer {n} of {name}", f"a{n}.{address}", ("member", "assurer"))
        given = await stack.api.call("POST", "/v1/assurances", token=assurer, json_body=_assurance(address, 35))
        assert given.status == 201, given.body
    return member_id, token


async def issued_server_certificate(stack: Stack, member_id: str, token: str, names: list[str], cert_class: int) -> str:
    """A certificate of this member as the signer would announce it (cert.issued); its serial."""
    leaf_pem, leaf = self_signed(names[0], serial=0x5EC000 + cert_class)
    return await announced_certificate(stack, member_id, token, leaf_pem, leaf, cert_class=cert_class,
                                       profile="server", subject=f"CN={names[0]}", dns_names=names)


async def announced_certificate(stack: Stack, member_id: str, token: str, leaf_pem: str, leaf: x509.Certificate, *,
                                cert_class: int, profile: str, subject: str, dns_names: list[str] | None = None,
                                emails: list[str] | None = None) -> str:
    """Publish `leaf` as the signer's cert.issued for this member and wait until registration has it."""
    serial = format(leaf.serial_number, "x")
    await stack.publish("cert.issued", {
        "request_id": f"req-{serial}", "member_id": member_id, "serial": serial, "issuer": f"class{cert_class}",
        "cert_class": cert_class, "profile": profile, "subject": subject, "dns_names": dns_names or [],
        "ip_addresses": [], "emails": emails or [], "not_before": isoformat(leaf.not_valid_before_utc),
        "not_after": isoformat(leaf.not_valid_after_utc),
        "fingerprint_sha256": hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest(),
        "certificate_pem": leaf_pem, "chain_pem": "", "trust_anchors": ["class1"],
        "issued_at": isoformat(datetime.now(UTC)),
    }, source="signer")
    for _ in range(200):
        if (await stack.api.call("GET", f"/v1/certificates/{serial}", token=token)).status == 200:
            return serial
        await asyncio.sleep(0.1)
    raise AssertionError("certificate not recorded")


async def test_assured_members_choose_the_class_and_unassured_members_see_no_choice(
    stack: Stack, browsers: list[Browser]
) -> None:
    assured, unassured = browsers
    member_id, token = await assured_member(stack, "Ava Assured", "ava@example.org")
    await _verified_domain(stack, member_id, token, "ava.example")
    other_id, other_token = await stack.member("Una Unassured", "una@example.org")
    await _verified_domain(stack, other_id, other_token, "una.example")
    await assured.login("ava@example.org")
    await unassured.login("una@example.org")

    status, text, _ = await assured.get("/account/server-certs/new")
    assert status == 200 and 'id="cert-class"' in text
    assert "Class 3: trusted by relying parties that accept assured members only" in text
    assert "Class 1: for relying parties that trust only the Class 1 root" in text
    assert re.search(r'id="class-3" name="cert_class" value="3" checked', text), "the default is the highest"
    assert not re.search(r'id="class-1"[^>]* checked', text)
    csr = build_csr(subject=[("CN", "www.ava.example")], dns=["www.ava.example"])
    form = {"csrf": await assured.csrf("/account/server-certs/new"), "profile": "server", "csr_pem": csr}
    status, text, _ = await assured.post("/account/server-certs/new", {**form, "cert_class": "1"})
    assert status == 200 and "Server (TLS)</dd>" not in text and "Server (TLS), Class 1" in text
    assert 'name="cert_class" value="1"' in text  # the confirm form carries the choice
    status, text, _ = await assured.post("/account/server-certs/new", {**form, "cert_class": "3"})
    assert status == 200 and "Server (TLS), Class 3" in text
    status, _, headers = await assured.post("/account/server-certs/submit", {**form, "cert_class": "1"})
    assert status == 303, headers
    (request,) = (await stack.api.call("GET", "/v1/requests", token=token)).body["requests"]
    assert request["cert_class"] == 1
    await stack.answer_caa(request["id"])
    (approved,) = [e for e in await stack.events("csr", "csr.approved") if e.data["member_id"] == member_id]
    assert approved.data["cert_class"] == 1

    status, text, _ = await unassured.get("/account/server-certs/new")
    assert status == 200 and 'id="cert-class"' not in text and 'name="cert_class"' not in text
    csr = build_csr(subject=[("CN", "www.una.example")], dns=["www.una.example"])
    form = {"csrf": await unassured.csrf("/account/server-certs/new"), "profile": "server", "csr_pem": csr}
    status, text, _ = await unassured.post("/account/server-certs/new", form)
    assert status == 200 and "Server (TLS), Class 1" in text
    status, text, _ = await unassured.post("/account/server-certs/new", {**form, "cert_class": "3"})
    assert status == 422 and "Class 3 certificates are only issued to Assured members" in text


async def test_certificate_page_shows_server_and_client_certificate_snippets_and_renew(
    stack: Stack, browsers: list[Browser]
) -> None:
    owner, other = browsers
    member_id, token = await stack.member("Sam Snippet", "sam@example.org")
    await stack.member("Olga Other", "olga@example.org")
    await _verified_domain(stack, member_id, token, "sam.example")
    serial = await issued_server_certificate(stack, member_id, token, ["www.sam.example", "sam.example"], 1)
    await owner.login("sam@example.org")
    await other.login("olga@example.org")

    status, text, _ = await owner.get(f"/account/certificates/{serial}")
    assert status == 200
    assert "ServerName www.sam.example" in text and "ServerAlias sam.example" in text
    assert "server_name www.sam.example sam.example;" in text
    assert "SSLCACertificateFile /etc/ssl/certs/cacert-class3-root.pem" in text and "SSLVerifyClient require" in text
    assert "ssl_client_certificate /etc/ssl/certs/cacert-class3-root.pem;" in text and "ssl_verify_client" in text
    assert "assured members only" in text and "everyone with a certificate from this CA" in text
    assert f'href="/account/certificates/{serial}/renew"' in text
    status, text, _ = await owner.get(f"/account/certificates/{serial}?client_root=1")
    assert "SSLCACertificateFile /etc/ssl/certs/cacert-roots.pem" in text
    assert "ssl_client_certificate /etc/ssl/certs/cacert-roots.pem;" in text
    assert 'href="/roots/class3-root.pem"' in text and 'href="/roots/cacert-roots.pem"' in text

    status, text, _ = await owner.get(f"/account/certificates/{serial}/renew")
    assert status == 200 and f'name="renew" value="{serial}"' in text and "www.sam.example, sam.example" in text
    assert 'name="profile" value="server"' in text
    status, text, _ = await other.get(f"/account/certificates/{serial}/renew")
    assert status == 404 and "www.sam.example" not in text

    csrf = await owner.csrf(f"/account/certificates/{serial}/renew")
    same = build_csr(subject=[("CN", "sam.example")], dns=["sam.example", "www.sam.example"])
    form = {"csrf": csrf, "profile": "server", "renew": serial, "csr_pem": same}
    status, text, _ = await owner.post("/account/server-certs/new", form)
    assert status == 200 and "The names match the certificate you renew." in text
    fewer = build_csr(subject=[("CN", "www.sam.example")], dns=["www.sam.example", "new.sam.example"])
    status, text, _ = await owner.post("/account/server-certs/new", {**form, "csr_pem": fewer})
    assert status == 200 and "The names differ" in text
    assert "new: <code>new.sam.example</code>" in text and "missing: <code>sam.example</code>" in text
    other_csrf = await other.csrf("/account")
    status, _, _ = await other.post("/account/server-certs/new", {**form, "csrf": other_csrf})
    assert status == 404, "renewing another member's certificate shows nothing of it"
    assert (await stack.api.call("GET", "/v1/requests", token=token)).body["requests"] == []


async def test_member_adds_a_second_address_sees_it_pending_and_resends_the_link(
    stack: Stack, browsers: list[Browser]
) -> None:
    browser = browsers[0]
    await stack.member("Eve Emails", "eve@example.org")
    await browser.login("eve@example.org")
    assert (await browser.post("/account/emails", {"email": "eve@work.example"}))[0] == 403  # no CSRF token
    csrf = await browser.csrf("/account")
    status, _, headers = await browser.post("/account/emails", {"csrf": csrf, "email": "Eve@Work.Example"})
    assert status == 303 and headers["Location"] == "/account?notice=email_added"
    status, text, _ = await browser.get("/account?notice=email_added")
    assert "We sent a confirmation link to the new address" in text
    row = re.search(r"<tr><td>eve@work\.example</td>(.*?)</tr>", text, re.S)
    assert row and "pending" in row.group(1), text
    resend = re.search(r'action="(/account/emails/[^"]+/resend)"', text)
    assert resend, "a pending address offers to resend its link"
    status, text, _ = await browser.post("/account/emails", {"csrf": csrf, "email": "eve@work.example"})
    assert status == 409, "the same address twice"
    status, text, _ = await browser.post("/account/emails", {"csrf": csrf, "email": "not an address"})
    assert status == 422 and 'id="add-email"' in text

    status, _, headers = await browser.post(resend.group(1), {"csrf": csrf})
    assert status == 303 and headers["Location"] == "/account?notice=confirmation_resent"
    second = await stack.confirmation_token("eve@work.example", nth=2)
    confirmed = await stack.api.call("POST", "/v1/emails/confirm", json_body={"token": second})
    assert confirmed.status == 200
    status, text, _ = await browser.get("/account")
    row = re.search(r"<tr><td>eve@work\.example</td>(.*?)</tr>", text, re.S)
    assert row and "verified" in row.group(1) and "pending" not in row.group(1) and "resend" not in row.group(1)


async def test_code_signing_page_explains_the_rule_until_support_activates_it(
    stack: Stack, browsers: list[Browser]
) -> None:
    browser = browsers[0]
    member_id, _ = await stack.founder("Cody Signer", "cody@example.org", ("member", "assurer"))
    _, admin = await stack.founder("Sue Support", "sue@example.org", ("member", "admin"))
    await browser.login("cody@example.org")
    status, text, _ = await browser.get("/account/code-signing")
    assert status == 200 and 'id="codesign-rule"' in text and "ask support to activate" in text
    assert 'name="profile" value="codesign"' not in text
    status, text, _ = await browser.get("/account")
    assert 'href="/account/code-signing"' not in text, "the menu shows it only once activated"

    proposed = await stack.api.call(
        "POST", f"/v1/admin/members/{member_id}/codesign", token=admin, json_body={"enabled": True}
    )
    assert proposed.status == 202, proposed.body
    status, text, _ = await browser.get("/account")
    assert 'href="/account/code-signing"' not in text, "a proposal alone activates nothing"
    _, second = await stack.founder("Sam Second", "sam2@example.org", ("member", "admin"))
    enabled = await stack.api.call(
        "POST", f"/v1/admin/members/{member_id}/codesign", token=second, json_body={"enabled": True}
    )
    assert enabled.status == 200, enabled.body
    status, text, _ = await browser.get("/account")
    assert 'href="/account/code-signing"' in text
    status, text, _ = await browser.get("/account/code-signing")
    assert status == 200 and 'id="codesign-active"' in text and 'name="profile" value="codesign"' in text
    csrf = CSRF.search(text).group(1)  # type: ignore[union-attr]
    csr = build_csr(subject=[("CN", "Cody")], emails=["cody@example.org"])
    status, text, _ = await browser.post("/account/client-certs/new", {"csrf": csrf, "profile": "codesign",
                                                                        "csr_pem": csr})
    # a bootstrapped Assurer holds no assurance points yet, hence Class 1; the subject is the real name
    assert status == 200 and "Code signing, Class 1" in text and "commonName = <code>Cody Signer</code>" in text


async def test_an_assurer_checks_the_name_and_date_of_birth_confirms_the_documents_and_is_named(
    stack: Stack, browsers: list[Browser]
) -> None:
    """Issue 22 item 2: look the member up, compare name and date of birth, confirm two documents, record."""
    assurer, member = browsers
    member_id, _ = await stack.member("Grace Brewster Hopper", "grace@example.org", date_of_birth="1906-12-09")
    await stack.founder("Alan Assurer", "alan@example.org", ("member", "assurer"))
    await assurer.login("alan@example.org")
    await member.login("grace@example.org")

    # the Assurer's own page is truthful: an Assurer (founding, 0 points), not "not yet Assured"
    status, text, _ = await assurer.get("/account")
    assert status == 200 and "a founding Assurer appointed by the CA's operators" in " ".join(text.split())
    assert re.search(r'id="account-roles">Member, Assurer<', text)
    status, text, _ = await assurer.get("/account/assurance")
    assert "You are an <strong>Assurer</strong>" in text and 'action="/account/assurance/member"' in text
    assert "1906" not in text  # nothing about the member before the look-up

    # step 1: the name and date of birth, only after a look-up by the Assurer
    csrf = await assurer.csrf("/account/assurance")
    status, text, _ = await assurer.post("/account/assurance/member", {"csrf": csrf, "member": "grace@example.org"})
    assert status == 200
    assert "Grace Brewster Hopper" in text and "9 December 1906" in text and 'name="documents_checked"' in text
    status, text, _ = await assurer.post("/account/assurance/member", {"csrf": csrf, "member": "nobody@example.org"})
    assert status == 404 and "There is no member with this address or id." in text
    # a member who is no Assurer cannot look anyone up (nor learn whether an address has an account)
    member_csrf = await member.csrf("/account/assurance")
    status, text, _ = await member.post("/account/assurance/member",
                                        {"csrf": member_csrf, "member": "alan@example.org"})
    assert status == 403 and "Alan" not in text and "1970" not in text

    # step 2: without the documents confirmed, nothing is recorded and the details stay on the page
    form = {"csrf": csrf, "member": member_id, "points": "35", "location": "Berlin", "date": "2026-01-10"}
    status, text, _ = await assurer.post("/account/assurance", form)
    assert status == 422 and "two government-issued photo ID documents" in text and "9 December 1906" in text
    assert (await stack.api.call("GET", "/v1/assurances", token=None)).status == 401
    status, _, headers = await assurer.post("/account/assurance", {**form, "documents_checked": "yes"})
    assert status == 303 and headers["Location"] == f"/account/assurance?assured={member_id}"
    status, text, _ = await assurer.get(headers["Location"])
    assert re.search(r"You assured <strong>Grace Brewster Hopper</strong> with\s+<strong>35</strong> points", text)
    status, text, _ = await assurer.get(f"/account/assurance?assured={member_id}x")
    assert "You assured" not in text  # only names a member the Assurer assured

    # the member's received list names the Assurer
    status, text, _ = await member.get("/account/assurance")
    assert re.search(r"<td>Alan Assurer</td><td>10 January 2026</td><td>Berlin</td><td>35</td>", text)
    (event,) = [e for e in await stack.events("member", "member.assurance_recorded")
                if e.data["member_id"] == member_id]
    assert event.data["assurer_name"] == "Alan Assurer" and event.data["points"] == 35


async def test_the_api_refuses_an_assurance_without_the_documents_checked(stack: Stack) -> None:
    member_id, _ = await stack.member("Dora Docs", "dora.docs@example.org")
    _, assurer = await stack.founder("Ann Api", "ann.api@example.org", ("member", "assurer"))
    body = {**_assurance(member_id, 10), "documents_checked": False}
    refused = await stack.api.call("POST", "/v1/assurances", token=assurer, json_body=body)
    assert refused.status == 422 and refused.body["error"]["code"] == "documents_not_checked"
    missing = {k: v for k, v in body.items() if k != "documents_checked"}
    refused = await stack.api.call("POST", "/v1/assurances", token=assurer, json_body=missing)
    assert refused.status == 422 and "'documents_checked' is a required property" in str(refused.body["error"])
    assert (await stack.api.call("POST", "/v1/assurances", token=assurer, json_body=_assurance(member_id, 10))
            ).status == 201


async def test_client_certificate_page_names_the_attributes_and_explains_pkcs12_and_the_import(
    stack: Stack, browsers: list[Browser]
) -> None:
    """Issue 22 item 6: no raw OIDs, no server wording, and how to get the certificate into a mail client."""
    owner = browsers[0]
    member_id, token = await stack.member("Grace Hopper", "grace.client@example.org")
    leaf_pem, leaf = self_signed("Grace Hopper", serial=0xC11E47)
    serial = await announced_certificate(stack, member_id, token, leaf_pem, leaf, cert_class=3, profile="client",
                                         subject="2.5.4.4=Hopper,2.5.4.42=Grace,CN=Grace Hopper",
                                         emails=["grace.client@example.org"])
    await owner.login("grace.client@example.org")

    status, text, _ = await owner.get(f"/account/certificates/{serial}")
    assert status == 200
    assert "Common name: Grace Hopper<br>Given name: Grace<br>Surname: Hopper" in text
    assert "2.5.4." not in text
    assert "Apache" not in text and "IIS" not in text and "nginx" not in text
    assert (f'openssl pkcs12 -export -inkey your.key -in {serial}.pem -name "grace.client@example.org" '
            f"-out {serial}.p12") in text
    assert "never left it" in text and "Thunderbird" in text and "Keychain Access" in text
