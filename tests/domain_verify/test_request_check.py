"""The re-check before any mail goes out: registrable domain, BR 3.2.2.4.4 contact, IDN forms agree."""

from __future__ import annotations

import pytest

from services.domain_verify.request_check import (
    CheckedRequest,
    RequestRefused,
    check_request,
    normalise_contact,
)


@pytest.mark.parametrize("local", ["admin", "administrator", "webmaster", "hostmaster", "postmaster"])
def test_every_constructed_address_at_the_domain_is_accepted(local: str) -> None:
    assert check_request("example.org", f"{local}@example.org") == CheckedRequest(
        "example.org", f"{local}@example.org")


def test_a_parent_below_the_public_suffix_is_accepted_but_not_the_other_way_round() -> None:
    assert check_request("shop.example.org", "hostmaster@example.org").contact == "hostmaster@example.org"
    assert check_request("a.b.example.co.uk", "admin@example.co.uk").domain == "a.b.example.co.uk"
    with pytest.raises(RequestRefused, match="not an official contact"):
        check_request("example.org", "admin@shop.example.org")


@pytest.mark.parametrize("contact", [
    "root@example.org",  # CAcert offered it; the Baseline Requirements do not
    "info@example.org",
    "admin@example.net",
    "admin@notexample.org",
    "admin@co.uk",  # the public suffix itself is never a parent to verify through
    "admin@org",
])
def test_contacts_outside_the_constructed_list_are_refused_with_the_allowed_ones(contact: str) -> None:
    domain = "example.co.uk" if contact.endswith("co.uk") else "example.org"
    with pytest.raises(RequestRefused, match="not an official contact") as refused:
        check_request(domain, contact)
    assert "hostmaster@" in str(refused.value)


@pytest.mark.parametrize("domain", ["com", "co.uk", "org", "github.io"])
def test_public_suffixes_are_refused(domain: str) -> None:
    with pytest.raises(RequestRefused, match="public suffix"):
        check_request(domain, f"admin@{domain}")


@pytest.mark.parametrize("domain", ["exa mple.org", "-bad.example.org", "a..b.org", "x" * 64 + ".org", ""])
def test_malformed_names_are_refused_as_invalid(domain: str) -> None:
    with pytest.raises(RequestRefused, match="invalid domain"):
        check_request(domain, f"admin@{domain}")


def test_idn_contact_in_unicode_and_punycode_normalise_to_the_same_address() -> None:
    a_label = "xn--bcher-kva.de"
    unicode_form = check_request(a_label, "admin@bücher.de")
    punycode_form = check_request(a_label, f"admin@{a_label}")
    mixed_case = check_request("BÜCHER.de", "Admin@Bücher.DE")
    assert unicode_form == punycode_form == mixed_case == CheckedRequest(a_label, f"admin@{a_label}")


def test_contact_normalisation_refuses_non_addresses() -> None:
    assert normalise_contact(" Webmaster@Example.ORG ") == "webmaster@example.org"
    for junk in ("example.org", "@example.org", "admin@"):
        with pytest.raises(ValueError):
            normalise_contact(junk)
    with pytest.raises(RequestRefused, match="invalid contact"):
        check_request("example.org", "admin@")
