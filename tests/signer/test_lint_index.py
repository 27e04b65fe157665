"""The linter's indexed walk (`_ValidatorIndex`) finds exactly what pkilint's own walk finds.

The index skips asking validators that cannot match a node; if a pkilint upgrade adds a `match` that
widens rather than narrows `NodeVisitor.match`, these comparisons are what notice it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.signer.ca import issuance, lint, profiles
from services.signer.ca.hierarchy import Hierarchy
from services.signer.ca.issuance import ApprovedRequest
from services.signer.ca.profiles import LinterKind

# (profile, class, fields): good ones, and ones pkilint finds fault with (internal names, no name rule).
CASES: list[tuple[str, int, dict[str, Any]]] = [
    ("server", 1, {"dns_names": ["www.example.org"]}),
    ("server", 3, {"subject": {"CN": "a.example.org"}, "dns_names": ["a.example.org", "b.example.org"]}),
    ("server", 3, {"dns_names": ["intranet.local"], "ip_addresses": ["10.0.0.1"]}),
    ("server", 1, {"dns_names": ["*.example.org", "example.org"], "ip_addresses": ["192.0.2.7"]}),
    ("client", 1, {"emails": ["alice@example.org"]}),
    ("client", 3, {"subject": {"CN": "Alice Example", "GN": "Alice", "SN": "Example"},
                   "emails": ["alice@example.org", "a@example.net"]}),
    ("codesign", 3, {"subject": {"CN": "Alice Example"}}),
]


def _certificate(pki: Hierarchy, h: Any, key: Any, profile: str, cert_class: int,
                 fields: dict[str, Any]) -> x509.Certificate:
    request = ApprovedRequest("r", "m", cert_class, profile, h.csr(key), validity_days=30, **fields)
    tbs = issuance.prepare_certificate(
        request, pki.issuing_ca(cert_class), profiles.get_profile(profile), h.urls_for(cert_class),
        dt.datetime.now(dt.UTC), issuance.new_serial_number(),
    )
    return issuance.sign_certificate(tbs, pki.issuing_ca(cert_class))


@pytest.fixture(scope="module")
def corpus(pki: Hierarchy, h: Any) -> list[tuple[x509.Certificate, LinterKind]]:
    keys = [ec.generate_private_key(ec.SECP256R1()), rsa.generate_private_key(65537, 2048)]
    certs = [(_certificate(pki, h, key, profile, cert_class, fields), profiles.get_profile(profile).linter)
             for key in keys for profile, cert_class, fields in CASES]
    # The CA certificates have other extensions (basic constraints CA, key usage for signing certificates).
    certs += [(ca.certificate, LinterKind.RFC5280) for ca in pki.cas.values()]
    return certs


def test_the_indexed_walk_reports_the_same_findings_in_the_same_order_as_pkilints(corpus) -> None:
    indexed, stock = lint.PreIssuanceLinter(), lint.PreIssuanceLinter(indexed=False)
    for _ in range(2):  # the second pass answers from the index's cache
        for cert, kind in corpus:
            assert indexed.lint_certificate(cert, kind) == stock.lint_certificate(cert, kind), cert.subject


def test_the_corpus_has_errors_warnings_and_clean_certificates(corpus) -> None:
    """Otherwise the comparison above would prove little."""
    results = [lint.PreIssuanceLinter(indexed=False).lint_certificate(cert, kind) for cert, kind in corpus]
    assert any(r.errors for r in results)
    assert any(r.warnings for r in results)
    assert any(r.ok and not r.warnings for r in results)
    assert {kind for _, kind in corpus} == set(LinterKind)


def test_an_index_that_skipped_a_matching_validator_would_be_noticed(corpus, monkeypatch) -> None:
    """The comparison can fail: an index that drops the validators declared by ASN.1 class (the
    extension checks among them) loses findings."""
    real = lint._declared_fit
    monkeypatch.setattr(lint, "_declared_fit", lambda v, node: v._pdu_class is None and real(v, node))
    broken, stock = lint.PreIssuanceLinter(), lint.PreIssuanceLinter(indexed=False)
    assert any(broken.lint_certificate(cert, kind) != stock.lint_certificate(cert, kind) for cert, kind in corpus)
