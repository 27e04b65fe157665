"""The shared domain-name rules: IDNA normalisation, public suffixes, official contacts, coverage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import dns_names

label = st.from_regex(r"[a-z0-9]([a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)
registrable = st.builds(
    lambda name, tld: f"{name}.{tld}", label, st.sampled_from(["org", "com", "co.uk", "de"])
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Example.ORG", "example.org"),
        ("example.org.", "example.org"),
        ("  www.example.org ", "www.example.org"),
        ("Bücher.Example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
    ],
)
def test_normalise_domain_gives_lower_case_a_labels(raw: str, expected: str) -> None:
    assert dns_names.normalise_domain(raw) == expected


def test_unicode_and_punycode_forms_are_the_same_domain() -> None:
    assert dns_names.normalise_domain("bücher.example") == dns_names.normalise_domain("xn--bcher-kva.example")


@pytest.mark.parametrize(
    "raw",
    [
        "",
        ".",
        "a..b",
        "-a.example",
        "a_b.example",
        "*.example.org",
        "192.168.0.1",
        "a" * 64 + ".org",
        ".".join(["abcdefghi"] * 30),
        "exa mple.org",
        "ab--cd.org",
    ],
)
def test_normalise_domain_refuses_non_names(raw: str) -> None:
    with pytest.raises(ValueError):
        dns_names.normalise_domain(raw)


def test_wildcards_only_through_normalise_dns_name() -> None:
    assert dns_names.normalise_dns_name("*.Example.org") == "*.example.org"
    for bad in ("*.*.example.org", "www.*.example.org", "*example.org"):
        with pytest.raises(ValueError):
            dns_names.normalise_dns_name(bad)


@pytest.mark.parametrize("name", ["com", "co.uk", "github.io", "xn--p1ai", "example"])
def test_bare_public_suffixes_are_not_registrable(name: str) -> None:
    assert dns_names.is_public_suffix(name)
    assert not dns_names.is_registrable(name)
    with pytest.raises(ValueError):
        dns_names.official_contacts(name)


def test_registrable_domains() -> None:
    assert dns_names.registrable_domain("www.example.co.uk") == "example.co.uk"
    assert dns_names.is_registrable("example.co.uk")
    assert dns_names.is_registrable("xn--e1afmkfd.xn--p1ai")


def test_official_contacts_are_br_3_2_2_4_4_addresses_up_to_the_registrable_domain() -> None:
    contacts = dns_names.official_contacts("www.example.co.uk")
    assert contacts[:5] == [
        f"{p}@www.example.co.uk" for p in ("admin", "administrator", "webmaster", "hostmaster", "postmaster")
    ]
    assert contacts[5:] == [
        f"{p}@example.co.uk" for p in ("admin", "administrator", "webmaster", "hostmaster", "postmaster")
    ]
    assert not any(c.startswith("root@") for c in contacts)
    assert not any(c.endswith("@co.uk") for c in contacts)


def test_contact_is_official_normalises_the_address() -> None:
    assert dns_names.contact_is_official("xn--bcher-kva.example", "Hostmaster@Bücher.Example")
    assert not dns_names.contact_is_official("example.org", "root@example.org")
    assert not dns_names.contact_is_official("example.org", "admin@other.org")
    assert not dns_names.contact_is_official("example.org", "not an address")


def test_normalise_email() -> None:
    assert dns_names.normalise_email("Ada@Bücher.Example") == "ada@xn--bcher-kva.example"
    for bad in ("ada", "@example.org", "ada@", "a b@example.org", "ada@exa_mple.org", "a<b@example.org"):
        with pytest.raises(ValueError):
            dns_names.normalise_email(bad)


def test_coverage_and_the_wildcard_rule() -> None:
    assert dns_names.covers("example.org", "example.org")
    assert dns_names.covers("example.org", "www.example.org")
    assert dns_names.covers("example.org", "*.example.org")
    assert dns_names.covers("example.org", "*.www.example.org")
    assert not dns_names.covers("www.example.org", "*.example.org")
    assert not dns_names.covers("www.example.org", "example.org")
    assert not dns_names.covers("example.org", "badexample.org")
    assert not dns_names.covers("example.org", "example.org.evil.com")
    assert not dns_names.is_covered("*.co.uk", ["co.uk"])


@given(registrable, st.lists(label, max_size=3))
def test_every_subdomain_of_a_verified_domain_is_covered(domain: str, prefix: list[str]) -> None:
    name = ".".join([*prefix, domain])
    assert dns_names.is_covered(name, [domain])
    assert dns_names.is_covered("*." + name, [domain])


@given(registrable, registrable)
def test_a_different_domain_is_never_covered(verified: str, other: str) -> None:
    if other == verified or other.endswith("." + verified):
        return
    assert not dns_names.is_covered(other, [verified])
    assert not dns_names.is_covered("*." + other, [verified])


@given(registrable)
def test_a_verified_domain_never_covers_its_parent_or_its_suffix_wildcard(domain: str) -> None:
    parent = domain.split(".", 1)[1]
    assert not dns_names.is_covered(parent, [domain])
    assert not dns_names.is_covered("*." + parent, [domain])


@given(st.text(max_size=80))
def test_normalise_domain_either_answers_a_valid_name_or_raises_value_error(raw: str) -> None:
    try:
        name = dns_names.normalise_domain(raw)
    except ValueError:
        return
    assert name == name.lower() and name.isascii() and len(name) <= 253
    assert dns_names.normalise_domain(name) == name  # idempotent


@given(registrable, st.lists(label, max_size=2))
def test_every_official_contact_is_recognised(domain: str, prefix: list[str]) -> None:
    name = ".".join([*prefix, domain])
    for contact in dns_names.official_contacts(name):
        assert dns_names.contact_is_official(name, contact.upper())
