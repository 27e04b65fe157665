"""Every registration endpoint (from its OpenAPI document) x every kind of caller.

Callers: anonymous, the member who owns the resources in the path, another member, an Assurer and
an admin (support). Path parameters always name the *member's* resources (email id, domain id, request
id, certificate serial, member id, ACME binding key id). The expected answer per cell is in EXPECTED below: `2xx`, or an
exact status. 401 = not logged in; 404 = someone else's resource (never 403, so ids are not
confirmed to exist); 403 = a role the caller lacks. A new operation in openapi.json fails this test
until it gets a row.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from services.registration.api.common import openapi_document
from shared.config import KafkaSettings, MongoSettings
from shared.events import isoformat
from tests.integration.test_registration_certificates import verify_domain
from tests.registration.csrs import build_csr, compromise_proof, self_signed
from tests.registration.harness import PASSWORD, Stack, running

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("topics")]
ROLES = ("anonymous", "member", "other", "assurer", "admin")

# operation                                          anonymous member  other  assurer admin
EXPECTED: dict[str, tuple[str, str, str, str, str]] = {
    "POST /v1/members":                              ("2xx", "2xx", "2xx", "2xx", "2xx"),  # sign-up is public
    "POST /v1/sessions":                             ("2xx", "2xx", "2xx", "2xx", "2xx"),  # log-in is public
    "DELETE /v1/sessions/current":                   ("401", "2xx", "2xx", "2xx", "2xx"),
    "GET /v1/me":                                    ("401", "2xx", "2xx", "2xx", "2xx"),
    "GET /v1/emails":                                ("401", "2xx", "2xx", "2xx", "2xx"),
    "POST /v1/emails":                               ("401", "2xx", "2xx", "2xx", "2xx"),
    "POST /v1/emails/confirm":                       ("404", "404", "404", "404", "404"),  # the token is the key
    "POST /v1/emails/{email_id}/resend":             ("401", "2xx", "404", "404", "404"),
    "GET /confirm-email":                            ("2xx", "2xx", "2xx", "2xx", "2xx"),  # page only
    "POST /v1/me/password":                          ("401", "403", "403", "403", "403"),  # wrong current one
    "POST /v1/me/second-factor":                     ("401", "2xx", "2xx", "409", "409"),  # staff have it on
    "POST /v1/me/second-factor/confirm":             ("401", "422", "422", "409", "409"),  # wrong code / not begun
    "POST /v1/password-resets":                      ("2xx", "2xx", "2xx", "2xx", "2xx"),  # same answer for all
    "POST /v1/password-resets/confirm":              ("404", "404", "404", "404", "404"),  # the token is the key
    "POST /v1/key-compromise-reports":               ("2xx", "2xx", "2xx", "2xx", "2xx"),  # the key is the proof
    "POST /v1/blocked-keys":                         ("401", "403", "403", "403", "2xx"),
    "GET /v1/assurances":                            ("401", "2xx", "2xx", "2xx", "2xx"),
    "POST /v1/assurances":                           ("401", "403", "403", "2xx", "403"),  # Assurers only
    "GET /v1/domains":                               ("401", "2xx", "2xx", "2xx", "2xx"),
    "POST /v1/domains":                              ("401", "2xx", "2xx", "2xx", "2xx"),
    "GET /v1/domain-contacts":                       ("401", "2xx", "2xx", "2xx", "2xx"),
    "GET /v1/domains/{domain_id}":                   ("401", "2xx", "404", "404", "404"),
    "GET /v1/domains/{domain_id}/contacts":          ("401", "2xx", "404", "404", "404"),
    "POST /v1/domains/{domain_id}/verify":           ("401", "2xx", "404", "404", "404"),
    "POST /v1/domains/{domain_id}/check":            ("401", "409", "404", "404", "404"),  # no DNS/web value yet
    "GET /v1/requests":                              ("401", "2xx", "2xx", "2xx", "2xx"),
    "POST /v1/requests":                             ("401", "2xx", "422", "422", "422"),  # not their domain
    "GET /v1/requests/{request_id}":                 ("401", "2xx", "404", "404", "404"),
    "GET /v1/certificates":                          ("401", "2xx", "2xx", "2xx", "2xx"),
    "GET /v1/certificates/{serial}":                 ("401", "2xx", "404", "404", "2xx"),  # support sees all
    "GET /v1/certificates/{serial}/download":        ("401", "2xx", "404", "404", "2xx"),
    "POST /v1/certificates/{serial}/revoke":         ("401", "2xx", "404", "404", "2xx"),  # support may revoke
    "GET /v1/admin/members/{member_id}":             ("401", "403", "403", "403", "2xx"),
    "POST /v1/admin/members/{member_id}/assurer":    ("401", "403", "403", "403", "409"),  # allowed; < 100 points
    "POST /v1/admin/members/{member_id}/codesign":   ("401", "403", "403", "403", "2xx"),
    "GET /v1/acme-bindings":                         ("401", "2xx", "2xx", "2xx", "2xx"),
    "POST /v1/acme-bindings":                        ("401", "2xx", "2xx", "2xx", "2xx"),
    "DELETE /v1/acme-bindings/{key_id}":             ("401", "2xx", "404", "404", "404"),  # own only, even support
    "GET /healthz":                                  ("2xx", "2xx", "2xx", "2xx", "2xx"),
    "GET /readyz":                                   ("2xx", "2xx", "2xx", "2xx", "2xx"),
}


def operations() -> list[str]:
    return [f"{method.upper()} {path}" for path, item in openapi_document()["paths"].items()
            for method in item if method in ("get", "post", "put", "patch", "delete")]


def test_the_matrix_names_every_documented_operation() -> None:
    assert sorted(operations()) == sorted(EXPECTED)


@pytest.fixture
async def stack(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Stack]:
    async with running(kafka_settings, mongo_settings) as s:
        yield s


async def owned_certificate(stack: Stack, member_id: str, token: str) -> str:
    pem, _ = self_signed("www.example.org", serial=0x5EC0)
    now = datetime.now(UTC)
    await stack.publish("cert.issued", {
        "request_id": "r-matrix", "member_id": member_id, "serial": "5ec0", "issuer": "class1", "cert_class": 1,
        "profile": "server", "subject": "CN=www.example.org", "dns_names": ["www.example.org"],
        "ip_addresses": [], "emails": [], "not_before": isoformat(now),
        "not_after": isoformat(now + timedelta(days=90)), "fingerprint_sha256": "0" * 64,
        "certificate_pem": pem, "chain_pem": "", "trust_anchors": ["class1"], "issued_at": isoformat(now)},
        source="signer")
    for _ in range(200):
        if (await stack.api.call("GET", "/v1/certificates/5ec0", token=token)).status == 200:
            return "5ec0"
        await asyncio.sleep(0.1)
    raise AssertionError("certificate never appeared")


async def test_authorization_matrix(stack: Stack) -> None:
    api = stack.api
    member_id, member = await stack.member("Mia Member", "mia@example.org")
    _, other = await stack.member("Otto Other", "otto@example.net")
    _, assurer = await stack.founder("Asa Assurer", "asa@example.net", ("member", "assurer"))
    _, admin = await stack.founder("Ada Admin", "ada@example.net", ("member", "admin"))
    await verify_domain(stack, member_id, member, "example.org")
    extra = await api.call("POST", "/v1/emails", token=member, json_body={"email": "mia2@example.org"})
    domain = await api.call("POST", "/v1/domains", token=member, json_body={"domain": "shop.example.com"})
    request = await api.call("POST", "/v1/requests", token=member,
                             json_body={"csr_pem": build_csr(dns=["www.example.org"]), "profile": "server"})
    binding = await api.call("POST", "/v1/acme-bindings", token=member, json_body={"label": "matrix"})
    assert extra.status == 201 and domain.status == 201 and request.status == 202 and binding.status == 201
    serial = await owned_certificate(stack, member_id, member)
    ids = {"email_id": extra.body["id"], "domain_id": domain.body["id"], "request_id": request.body["id"],
           "serial": serial, "member_id": member_id, "key_id": binding.body["key_id"]}
    tokens: dict[str, str | None] = {"anonymous": None, "member": member, "other": other, "assurer": assurer,
                                     "admin": admin}
    logins = {"member": "mia@example.org", "other": "otto@example.net", "assurer": "asa@example.net",
              "admin": "ada@example.net"}

    def body(operation: str, role: str) -> Any:
        unique = uuid.uuid4().hex[:8]
        return {
            "POST /v1/members": {"name": "New Person", "date_of_birth": "1990-01-01",
                                 "email": f"new{unique}@example.org", "password": PASSWORD},
            "POST /v1/sessions": {"email": "mia@example.org", "password": PASSWORD},
            "POST /v1/emails": {"email": f"more{unique}@example.org"},
            "POST /v1/emails/confirm": {"token": "A" * 43},
            "POST /v1/me/password": {"current_password": "not the password", "new_password": "a new passphrase"},
            "POST /v1/me/second-factor/confirm": {"code": "000000"},
            "POST /v1/password-resets": {"email": f"{role}{unique}@example.org"},
            "POST /v1/password-resets/confirm": {"token": "A" * 43, "new_password": "a new passphrase"},
            "POST /v1/emails/{email_id}/resend": {},
            "POST /v1/assurances": {"member": member_id, "points": 10, "location": "Berlin",
                                    "date": "2026-01-10", "documents_checked": True},
            "POST /v1/domains": {"domain": f"{role}{unique}.example.com"},
            "POST /v1/domains/{domain_id}/verify": {"contact": "hostmaster@shop.example.com"},
            "POST /v1/requests": {"csr_pem": build_csr(dns=["www.example.org"]), "profile": "server"},
            "POST /v1/certificates/{serial}/revoke": {"reason": "superseded"},
            "POST /v1/admin/members/{member_id}/assurer": {"assurer_test_passed": True},
            "POST /v1/admin/members/{member_id}/codesign": {"enabled": False},
            "POST /v1/key-compromise-reports": {"proof_csr_pem": compromise_proof(ec.generate_private_key(
                ec.SECP256R1()))},
            "POST /v1/blocked-keys": {"spki_sha256": uuid.uuid4().hex * 2},
            "POST /v1/acme-bindings": {"label": f"{role} {unique}"},
        }.get(operation)

    query = {"/v1/domain-contacts": "?domain=example.org", "/v1/certificates/{serial}/download": "?format=pem",
             }
    mismatches = []
    for operation in operations():
        method, template = operation.split(" ", 1)
        path = template.format(**ids) + query.get(template, "")

        for role, expected in zip(ROLES, EXPECTED[operation], strict=True):
            token = tokens[role]
            if operation == "DELETE /v1/sessions/current" and role != "anonymous":
                token = await stack.login(logins[role])  # log out a throw-away session, not the matrix's
            payload = body(operation, role)
            reply = await api.call(method, path, token=token, json_body=payload)
            got = "2xx" if 200 <= reply.status < 300 else str(reply.status)
            if got != expected:
                mismatches.append(f"{operation} as {role}: expected {expected}, got {reply.status} {reply.body!r:.200}")
    assert not mismatches, "\n".join(mismatches)
