"""Real ACME clients against the whole system: certbot obtains, renews and revokes certificates.

A member signs up, proves one domain by a DNS TXT record, and creates an ACME binding in the member API.
certbot (from PyPI, as an operator runs it) then gets certificates with `--eab-kid/--eab-hmac-key`:

* http-01 with its standalone server on 127.0.0.1:5002, the port the local domain_verify fetches
  challenges from (production: 80), for a name whose A record points at 127.0.0.1;
* dns-01 with certbot-dns-rfc2136 against the local Knot (TSIG), for a name and for a wildcard;
* a name under the DNS-verified domain, which needs no challenge at all (the auth hook that would answer
  one fails).

Each certificate passes pkilint's CA/B Forum server profile and `openssl verify` to the Class 1 root.
Renewal gets a new certificate; revocation makes OCSP say `revoked` and ACME Renewal Information say
"now". Orders for a name nobody proved and for a name whose CAA forbids this CA end `invalid` with a
problem document naming the reason (the `acme` library shows the documents).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import josepy
import pytest
from acme import client as acme_client
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from demo.clients import Mail, follow_confirmation_link, wait_until
from demo.member_api import MemberApi
from devstack import endpoints
from devstack.dns_zone import LocalZone

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

CHALLENGE_PORT = 5002  # devstack.system.VALIDATION_HTTP_PORT: where the local domain_verify fetches http-01
CERTBOT = [str(Path(sys.executable).with_name("certbot"))]  # the console script pip installed beside python


class Member:
    def __init__(self, api: MemberApi, member_id: str, domain: str, kid: str, hmac_key: str) -> None:
        self.api = api
        self.member_id = member_id
        self.domain = domain
        self.kid = kid
        self.hmac_key = hmac_key


@pytest.fixture(scope="module")
def zone(system: dict[str, str]) -> LocalZone:
    return LocalZone.from_env(endpoints.current().env())


@pytest.fixture(scope="module")
async def member(system: dict[str, str], zone: LocalZone) -> Any:
    """A member with a DNS-verified domain and an ACME binding (key id + HMAC key, shown once)."""
    tag = secrets.token_hex(4)
    email, password = f"acme-{tag}@example.org", secrets.token_urlsafe(16)
    domain = f"acme-{tag}.example.org"
    mail = Mail(system["mailbox"])
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        api = MemberApi(http, system["api"])
        await api.call("POST", "/v1/members", {"name": "Grace Hopper", "date_of_birth": "1990-12-09",
                                               "email": email, "password": password})
        message = await mail.next(to=email, subject="Confirm your email address")
        await follow_confirmation_link(http, Mail.link(message, "/confirm-email#token="))
        await api.login(email, password)
        member_id = (await api.call("GET", "/v1/me"))["id"]
        claimed = await api.call("POST", "/v1/domains", {"domain": domain, "method": "dns_change"})
        challenge = claimed["challenge"]
        await zone.publish(challenge["record_name"], "TXT", f'"{challenge["random_value"]}"')
        await api.call("POST", f"/v1/domains/{claimed['id']}/check")

        async def verified() -> bool:
            return bool((await api.call("GET", f"/v1/domains/{claimed['id']}"))["status"] == "verified")

        await wait_until(verified, f"{domain} to be verified", timeout=60)
        binding = await api.call("POST", "/v1/acme-bindings", {"label": "e2e"})
        assert binding["directory_url"] == system["acme_directory"]
        yield Member(api, member_id, domain, binding["key_id"], binding["hmac_key"])


def certbot(workdir: Path, system: dict[str, str], member: Member, *args: str,
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
    base = ["--config-dir", str(workdir / "config"), "--work-dir", str(workdir / "work"),
            "--logs-dir", str(workdir / "logs"), "--non-interactive", "--no-random-sleep-on-renew"]
    result = subprocess.run([*CERTBOT, *args, *base], capture_output=True, text=True, timeout=timeout, check=False,
                            env={**os.environ, "PYTHONPATH": ""})
    return result


def certonly(workdir: Path, system: dict[str, str], member: Member, name: str, *args: str) -> Path:
    result = certbot(workdir, system, member, "certonly", "--server", system["acme_directory"],
                     f"--eab-kid={member.kid}", f"--eab-hmac-key={member.hmac_key}", "--agree-tos",
                     "-m", "ops@example.org", "--cert-name", name.removeprefix("*."), "-d", name, *args)
    assert result.returncode == 0, f"certbot failed:\n{result.stdout}\n{result.stderr}"
    return workdir / "config" / "live" / name.removeprefix("*.")


def rfc2136_credentials(workdir: Path) -> Path:
    env = endpoints.current().env()
    host, _, port = env["CACERT_DNS_AUTH"].rpartition(":")
    path = workdir / "rfc2136.ini"
    path.write_text(f"dns_rfc2136_server = {host}\ndns_rfc2136_port = {port}\n"
                    f"dns_rfc2136_name = {env['CACERT_DNS_TSIG_NAME']}\n"
                    f"dns_rfc2136_secret = {env['CACERT_DNS_TSIG_SECRET']}\n"
                    f"dns_rfc2136_algorithm = {env['CACERT_DNS_TSIG_ALGORITHM'].upper()}\n")
    path.chmod(0o600)
    return path


def dns01(workdir: Path) -> list[str]:
    return ["--authenticator", "dns-rfc2136", "--dns-rfc2136-credentials", str(rfc2136_credentials(workdir)),
            "--dns-rfc2136-propagation-seconds", "6"]  # the local resolver caches at most 5 s


def check_certificate(live: Path, system: dict[str, str], names: list[str], tmp: Path) -> x509.Certificate:
    leaf = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    assert sorted(sans) == sorted(names)
    lint = subprocess.run([sys.executable, "-m", "pkilint.bin.lint_cabf_serverauth_cert", "lint", "-d", "-s",
                           "ERROR", str(live / "cert.pem")], capture_output=True, text=True, timeout=120,
                          check=False)
    assert lint.returncode == 0, f"pkilint found errors:\n{lint.stdout}{lint.stderr}"
    root = tmp / "class1-root.pem"
    if not root.exists():
        der = urllib_get(system["class1_crt"])
        root.write_text(x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode())
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(root), "-untrusted", str(live / "chain.pem"),
                             "-purpose", "sslserver", str(live / "cert.pem")], capture_output=True, text=True,
                            timeout=30, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    return leaf


def urllib_get(url: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (a loopback URL of the stack)
        return bytes(response.read())


def ocsp_status(system: dict[str, str], leaf: x509.Certificate, issuer: x509.Certificate) -> str:
    import urllib.request

    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA256()).build()
    # /ocsp answers for whichever CA the request names (the issuing CA that signed the leaf).
    http = urllib.request.Request(system["status"] + "/ocsp", data=request.public_bytes(serialization.Encoding.DER),  # noqa: S310
                                  headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(http, timeout=10) as response:  # noqa: S310
        answer = ocsp.load_der_ocsp_response(response.read())
    return str(answer.certificate_status.name).lower()


async def test_certbot_http01_obtains_renews_and_revokes(system: dict[str, str], member: Member, zone: LocalZone,
                                                         tmp_path: Path) -> None:
    name = f"web-{secrets.token_hex(4)}.example.org"  # not under the member's verified domain
    await zone.publish(name, "A", "127.0.0.1")
    live = await asyncio.to_thread(certonly, tmp_path, system, member, name, "--standalone",
                                   "--http-01-address", "127.0.0.1", "--http-01-port", str(CHALLENGE_PORT))
    first = check_certificate(live, system, [name], tmp_path)

    renewed = await asyncio.to_thread(certbot, tmp_path, system, member, "renew", "--cert-name", name,
                                      "--force-renewal", "--standalone", "--http-01-address", "127.0.0.1",
                                      "--http-01-port", str(CHALLENGE_PORT))
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    second = check_certificate(live, system, [name], tmp_path)
    assert second.serial_number != first.serial_number

    issuer = x509.load_pem_x509_certificate((live / "chain.pem").read_bytes()) if (
        live / "chain.pem").read_text().strip() else x509.load_der_x509_certificate(urllib_get(system["class1_crt"]))
    assert ocsp_status(system, second, issuer) == "good"
    revoked = await asyncio.to_thread(certbot, tmp_path, system, member, "revoke", "--cert-name", name,
                                      "--reason", "superseded", "--no-delete-after-revoke",
                                      "--server", system["acme_directory"])
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr

    async def ocsp_revoked() -> bool:
        return await asyncio.to_thread(ocsp_status, system, second, issuer) == "revoked"

    await wait_until(ocsp_revoked, "OCSP to answer revoked", timeout=60)
    acme, _ = await acme_library_client(system)
    pem = second.public_bytes(serialization.Encoding.PEM)

    async def ari_says_now() -> bool:
        renew_at, _ = await asyncio.to_thread(acme.renewal_time, pem)
        return renew_at is not None and renew_at <= datetime.now(UTC)

    await wait_until(ari_says_now, "ARI to suggest renewing now", timeout=30)


async def test_certbot_dns01_for_a_name_and_a_wildcard(system: dict[str, str], member: Member,
                                                       tmp_path: Path) -> None:
    name = f"dns-{secrets.token_hex(4)}.example.org"
    live = await asyncio.to_thread(certonly, tmp_path, system, member, name, *dns01(tmp_path))
    check_certificate(live, system, [name], tmp_path)
    wildcard = f"*.wild-{secrets.token_hex(4)}.example.org"
    live = await asyncio.to_thread(certonly, tmp_path, system, member, wildcard, *dns01(tmp_path))
    check_certificate(live, system, [wildcard], tmp_path)


async def test_a_name_under_a_verified_domain_needs_no_challenge(system: dict[str, str], member: Member,
                                                                tmp_path: Path) -> None:
    name = f"www.{member.domain}"
    live = await asyncio.to_thread(certonly, tmp_path, system, member, name, "--manual",
                                   "--manual-auth-hook", "false", "--preferred-challenges", "http")
    check_certificate(live, system, [name], tmp_path)


# -- refusals, seen through the acme library (certbot only prints them) --------------------------------


async def acme_library_client(system: dict[str, str], member: Member | None = None) -> tuple[Any, josepy.JWK]:
    key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = acme_client.ClientNetwork(key, user_agent="cacert-e2e", alg=josepy.ES256)
    response = await asyncio.to_thread(net.get, system["acme_directory"])
    acme = acme_client.ClientV2(messages.Directory.from_json(response.json()), net)
    if member is not None:
        eab = messages.ExternalAccountBinding.from_data(account_public_key=key.public_key(), kid=member.kid,
                                                        hmac_key=member.hmac_key, directory=acme.directory)
        await asyncio.to_thread(acme.new_account, messages.NewRegistration.from_data(
            terms_of_service_agreed=True, external_account_binding=eab))
    return acme, key


def csr_pem(*names: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


async def final_order(acme: Any, url: str, timeout: float = 90) -> messages.Order:
    deadline = time.monotonic() + timeout
    while True:
        body = messages.Order.from_json((await asyncio.to_thread(acme._post_as_get, url)).json())
        if body.status.name in ("valid", "invalid") or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.5)


async def test_an_unproven_name_ends_in_an_invalid_order_that_says_what_was_found(
        system: dict[str, str], member: Member, zone: LocalZone) -> None:
    name = f"nobody-{secrets.token_hex(4)}.example.org"
    await zone.publish(name, "A", "127.0.0.1")  # but nothing serves the challenge on port 5002
    acme, key = await acme_library_client(system, member)
    order = await asyncio.to_thread(acme.new_order, csr_pem(name))
    http01 = next(c for c in order.authorizations[0].body.challenges if c.chall.typ == "http-01")
    await asyncio.to_thread(acme.answer_challenge, http01, http01.response(key))
    body = await final_order(acme, order.uri)
    assert body.status.name == "invalid" and body.error is not None
    assert body.error.code in ("connection", "incorrectResponse", "dns"), body.error
    assert body.error.detail


async def test_caa_forbidding_this_ca_ends_in_an_invalid_order_with_a_caa_problem(
        system: dict[str, str], member: Member, zone: LocalZone) -> None:
    name = f"caa-{secrets.token_hex(4)}.{member.domain}"  # authorized at once: under the verified domain
    await zone.publish(name, "CAA", '0 issue "other-ca.example"')
    acme, _ = await acme_library_client(system, member)
    order = await asyncio.to_thread(acme.new_order, csr_pem(name))
    assert order.body.status.name == "ready"
    await asyncio.to_thread(acme.begin_finalization, order)
    body = await final_order(acme, order.uri)
    assert body.status.name == "invalid" and body.error is not None, body
    assert body.error.code == "caa" and "other-ca.example" in str(body.error.detail), body.error
    assert urllib.parse.urlsplit(order.uri).path.startswith("/order/")


async def test_the_acme_service_killed_between_finalize_and_issuance_loses_nothing(
        system: dict[str, str], member: Member) -> None:
    """SIGKILL the system's ACME process right after finalize; the RA and the signer issue meanwhile; after
    the restart the order is `valid` with exactly one certificate."""
    from devstack import process
    from devstack import system as local_system

    name = f"crash-{secrets.token_hex(4)}.{member.domain}"
    acme, _ = await acme_library_client(system, member)
    order = await asyncio.to_thread(acme.new_order, csr_pem(name))
    pid = process.running_pid("acme")
    assert pid is not None, "the system's ACME service is not running"
    await asyncio.to_thread(acme.begin_finalization, order)
    os.kill(pid, signal.SIGKILL)
    assert await asyncio.to_thread(process.wait_for_exit, pid, 10)

    async def issued() -> list[dict[str, Any]]:
        listing = await member.api.call("GET", "/v1/certificates")
        return [c for c in listing["certificates"] if c["dns_names"] == [name]]

    await wait_until(issued, f"the CA to issue {name} while the ACME service is down", timeout=60)
    await asyncio.to_thread(local_system.up, lambda line: None)  # restarts what is not running
    body = await final_order(acme, order.uri)
    assert body.status.name == "valid", body
    certificates = await issued()
    assert len(certificates) == 1, certificates
    download = await asyncio.to_thread(acme._post_as_get, body.certificate)
    leaf = x509.load_pem_x509_certificate(download.text.encode())
    assert format(leaf.serial_number, "x") == certificates[0]["serial"]
