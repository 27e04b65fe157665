"""The published OpenAPI document says what the registration API accepts (issue 19, item 7).

The request schemas refuse what the server refuses: the samples that used to pass the schema and get a
422 from the server (`"email": "000"`, `"domain": "¹"`, `"csr_pem": "0"`) are refused by the schema
itself, and for ASCII names the schema and the server's own rules (shared/dns_names.py) agree on every
name (checked with hypothesis, derandomized).
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from services.registration.api.common import schema
from shared import dns_names
from tests.registration.csrs import build_csr


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
