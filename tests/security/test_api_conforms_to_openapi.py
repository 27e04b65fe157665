"""The published OpenAPI document says what the registration API accepts and answers (issue 19, item 7).

Two halves:

* the request schemas refuse what the server refuses: the samples that used to pass the schema and get
  a 422 from the server (`"email": "000"`, `"domain": "¹"`, `"csr_pem": "0"`) are refused by the
  schema itself, and for ASCII names the schema and the server's own rules (shared/dns_names.py)
  agree on every name (checked with hypothesis, derandomized);
* schemathesis drives the real service (in-process, on the devstack Kafka and FerretDB) with data
  generated from the document, signed in as a real member (an admin for `/v1/admin/...`, an Assurer
  for recording assurances), and checks every answer: no 5xx, a documented status code, the documented
  content type, a body that satisfies the documented schema. Bounded: derandomized (a fixed seed), a
  few examples per operation, no shrinking.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.registration.api.common import openapi_document, schema
from shared import dns_names
from shared.config import KafkaSettings, MongoSettings
from tests.integration.test_registration_certificates import verify_domain
from tests.registration.csrs import build_csr
from tests.registration.harness import Stack, running
from tests.security.test_authorization_matrix import owned_certificate

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 6
"""Per operation and strategy (generated path ids, and the member's real ones): ~280 requests in all."""


def refusals(component: str, body: dict[str, Any]) -> list[str]:
    """The fields of `body` the published request schema refuses (exactly the server's first check)."""
    validator = jsonschema.Draft202012Validator(schema(component))
    return sorted("/".join(str(p) for p in e.absolute_path) for e in validator.iter_errors(body))


@pytest.mark.parametrize(("component", "body", "field"), [
    ("AddEmailRequest", {"email": "000"}, "email"),
    ("SignupRequest", {"name": "N", "date_of_birth": "1990-01-01", "email": "000", "password": "a passphrase"},
     "email"),
    ("LoginRequest", {"email": "000", "password": "a passphrase"}, "email"),
    ("PasswordResetRequest", {"email": "000"}, "email"),
    ("AddDomainRequest", {"domain": "¹"}, "domain"),
    ("AddDomainRequest", {"domain": "a.¹"}, "domain"),  # ¹ is 1 to IDNA: an all-digit top-level label
    ("CsrRequest", {"csr_pem": "0", "profile": "server"}, "csr_pem"),
])
def test_the_request_schemas_refuse_what_the_server_refuses(component: str, body: dict[str, Any], field: str
                                                            ) -> None:
    assert field in refusals(component, body)


def test_the_samples_refused_by_the_schema_are_refused_by_the_server_rules_too() -> None:
    with pytest.raises(ValueError):
        dns_names.normalise_email("000")
    with pytest.raises(ValueError):
        dns_names.normalise_domain("¹")


@pytest.mark.parametrize(("component", "body"), [
    ("AddEmailRequest", {"email": "ada@example.org"}),
    ("AddEmailRequest", {"email": "Ada.O'Neil+ca@Bücher.Example"}),
    ("AddDomainRequest", {"domain": "Shop.Bücher.Example", "contact": "Webmaster@Bücher.Example"}),
    ("AddDomainRequest", {"domain": "xn--bcher-kva.example."}),
    ("CsrRequest", {"csr_pem": build_csr(dns=["www.example.org"]), "profile": "server"}),
    ("CsrRequest", {"csr_pem": "\r\n" + build_csr(dns=["www.example.org"]).replace("\n", "\r\n"),
                    "profile": "client", "cert_class": 1}),
])
def test_the_request_schemas_accept_what_members_send(component: str, body: dict[str, Any]) -> None:
    assert refusals(component, body) == []


ASCII_NAMES = st.text(alphabet="aZ09-.", min_size=1, max_size=70).filter(lambda s: "xn--" not in s.lower())
ASCII_ADDRESSES = st.builds(lambda local, host: f"{local}@{host}",
                            st.text(alphabet="a.+_-!'~\"(@ ", min_size=0, max_size=66), ASCII_NAMES)
BOUNDED = settings(max_examples=400, derandomize=True, database=None, deadline=None)


def _accepted(normalise: Any, value: str) -> bool:
    try:
        normalise(value)
    except ValueError:
        return False
    return True


@BOUNDED
@given(name=ASCII_NAMES)
def test_for_ascii_names_the_domain_schema_and_the_server_agree(name: str) -> None:
    """Outside IDNA (no Unicode, no A-labels) the pattern is exact: same answer as normalise_domain for
    every name of two or more labels (a single label is never claimable: a bare public suffix)."""
    by_schema = refusals("AddDomainRequest", {"domain": name}) == []
    by_server = _accepted(dns_names.normalise_domain, name) and "." in name.rstrip(".")
    assert by_schema == by_server, (name, by_schema, by_server)


@BOUNDED
@given(address=ASCII_ADDRESSES)
def test_for_ascii_addresses_the_email_schema_and_the_server_agree(address: str) -> None:
    by_schema = refusals("AddEmailRequest", {"email": address}) == []
    by_server = _accepted(dns_names.normalise_email, address) and address == address.strip()
    assert by_schema == by_server, (address, by_schema, by_server)


# ---- schemathesis against the running service ----

@pytest.fixture
async def stack(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Stack]:
    async with running(kafka_settings, mongo_settings) as s:
        yield s


def conforms(operation: Any, strategies: list[Any], base: str, token: str, statuses: dict[int, int]) -> int:
    """Run one operation's examples with every check; the number of calls (a failed check raises)."""
    calls = 0

    @settings(max_examples=EXAMPLES_PER_OPERATION * len(strategies), derandomize=True, database=None,
              deadline=None, phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(strategies))
    def run(case: schemathesis.Case) -> None:
        nonlocal calls
        calls += 1
        response = case.call_and_validate(base_url=base, headers={"Authorization": f"Bearer {token}"},
                                          checks=CHECKS, timeout=30)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    run()
    return calls


def fuzz(base: str, tokens: dict[str, str], ids: dict[str, str]) -> tuple[list[str], dict[int, int], int]:
    """Run schemathesis over every operation (blocking: the service answers on the test's event loop)."""
    document = schemathesis.openapi.from_dict(openapi_document())
    failures: list[str] = []
    statuses: dict[int, int] = {}
    calls = 0
    for result in document.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an operation schemathesis cannot read fails here
        method, path = operation.method.upper(), operation.path
        # admin operations as an admin, recording an assurance as an Assurer, logging out with a session
        # of its own (the member's stays), everything else as the member
        token = tokens["admin"] if path.startswith("/v1/admin/") else (
            tokens["assurer"] if (method, path) == ("POST", "/v1/assurances") else (
                tokens["leaving"] if (method, path) == ("DELETE", "/v1/sessions/current") else tokens["member"]))
        names = re.findall(r"{(\w+)}", path)
        strategies = [operation.as_strategy()]
        if names:  # the member's own resources too, so the 2xx bodies are checked, not only the 404s
            strategies.append(operation.as_strategy(path_parameters={n: ids[n] for n in names}))
        try:
            calls += conforms(operation, strategies, base, token, statuses)
        except (Exception, FailureGroup) as exc:  # a failed check: note it, go on with the other operations
            failures.append(f"{method} {path}: {exc}"[:3000])
    return failures, statuses, calls


@pytest.mark.integration
@pytest.mark.usefixtures("topics")
async def test_every_answer_conforms_to_the_openapi_document(stack: Stack) -> None:
    member_id, member = await stack.member("Mia Member", "mia@example.org")
    _, admin = await stack.founder("Ada Admin", "ada@example.net", ("member", "admin"))
    _, assurer = await stack.founder("Asa Assurer", "asa@example.net", ("member", "assurer"))
    leaving = await stack.login("mia@example.org")  # DELETE /v1/sessions/current ends this one
    await verify_domain(stack, member_id, member, "example.org")
    extra = await stack.api.call("POST", "/v1/emails", token=member, json_body={"email": "mia2@example.org"})
    domain = await stack.api.call("POST", "/v1/domains", token=member, json_body={"domain": "shop.example.com"})
    request = await stack.api.call("POST", "/v1/requests", token=member,
                                   json_body={"csr_pem": build_csr(dns=["www.example.org"]), "profile": "server"})
    binding = await stack.api.call("POST", "/v1/acme-bindings", token=member, json_body={"label": "fuzz"})
    assert extra.status == 201 and domain.status == 201 and request.status == 202 and binding.status == 201
    ids = {"email_id": extra.body["id"], "domain_id": domain.body["id"], "request_id": request.body["id"],
           "serial": await owned_certificate(stack, member_id, member), "member_id": member_id,
           "key_id": binding.body["key_id"]}
    tokens = {"member": member, "admin": admin, "assurer": assurer, "leaving": leaving}

    failures, statuses, calls = await asyncio.to_thread(fuzz, stack.api.base, tokens, ids)

    assert not failures, "\n\n".join(failures)
    assert 200 <= calls <= 600, calls  # bounded, and not trivially small
    assert sum(n for status, n in statuses.items() if 200 <= status < 300) >= 30, statuses  # past validation
    assert (await stack.api.call("GET", "/v1/me", token=member)).status == 200
