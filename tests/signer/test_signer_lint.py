"""Pre-issuance linting: it catches what the BRs forbid, agrees with pkilint's command line,
reuses its validators and throw-away keys, and is cheap enough to run on every issuance."""

from __future__ import annotations

import datetime as dt
import statistics
import time

import pytest

from services.signer.ca import issuance, lint, profiles
from services.signer.ca.issuance import ApprovedRequest
from services.signer.ca.profiles import LinterKind


def _tbs(pki, h, ec_key, cert_class: int, profile: str, **fields):
    req = ApprovedRequest("r", "m", cert_class, profile, h.csr(ec_key), **fields)
    return issuance.prepare_certificate(
        req,
        pki.issuing_ca(cert_class),
        profiles.get_profile(profile),
        h.urls_for(cert_class),
        dt.datetime.now(dt.UTC),
        issuance.new_serial_number(),
    )


def test_lint_refuses_internal_names_and_agrees_with_the_cli(pki, linter, h, ec_key, tool) -> None:
    tbs = _tbs(pki, h, ec_key, 3, "server", dns_names=["intranet.local"], ip_addresses=["10.0.0.1"])
    result = linter.lint_tbs(tbs, profiles.get_profile("server"), pki.issuing_ca(3).key_algorithm)
    assert not result.ok
    assert any(e.startswith("cabf.internal_domain_name") for e in result.errors)
    assert any(e.startswith("cabf.internal_ip_address") for e in result.errors)
    assert {f.severity for f in result.findings if str(f) in result.errors} <= {"ERROR", "FATAL"}

    # Had it been signed, pkilint's CLI would have said the same about the real certificate.
    cert = issuance.sign_certificate(tbs, pki.issuing_ca(3))
    leaf = tool.write("bad.pem", h.pem(cert))
    out = tool.run(*h.pkilint("lint_cabf_serverauth_cert"), "lint", "-d", "-s", "ERROR", leaf)
    assert out.returncode == 2, out.stdout
    assert "cabf.internal_domain_name" in out.stdout and "cabf.internal_ip_address" in out.stdout
    assert linter.lint_certificate(cert, LinterKind.CABF_SERVERAUTH).errors == result.errors


def test_lint_reports_warnings_separately(pki, linter, h) -> None:
    """RSA server certificates carry keyEncipherment as the brief asks; the BR linter warns
    (discouraged, not forbidden), which does not stop issuance."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(65537, 2048)
    tbs = _tbs(pki, h, key, 1, "server", subject={"CN": "www.example.org"}, dns_names=["www.example.org"])
    result = linter.lint_tbs(tbs, profiles.get_profile("server"), pki.issuing_ca(1).key_algorithm)
    assert result.ok
    assert sorted(result.warnings) == [
        "cabf.serverauth.dv.common_name_attribute_present",
        "cabf.serverauth.subscriber_rsa_digitalsignature_and_keyencipherment_present",
    ]


def test_smime_lint_catches_a_bare_personal_name(pki, linter, h, ec_key) -> None:
    """What RequestRejected's "GN or SN beside CN" rule spares us: pkilint refuses it too."""
    prof = profiles.get_profile("client")
    req = ApprovedRequest(
        "r", "m", 3, "client", h.csr(ec_key), {"CN": "Alice Example"}, [], [], ["a@example.org"], 90
    )
    relaxed = profiles.CertificateProfile(
        **{
            **prof.__dict__,
            "subject_keys_by_class": {3: frozenset({"CN"})},
            "personal_name_policy_oid": None,
            "policy_oid": profiles.POLICY_SMIME_INDIVIDUAL_MULTIPURPOSE,
        }
    )
    tbs = issuance.prepare_certificate(
        req, pki.issuing_ca(3), relaxed, h.urls_for(3), dt.datetime.now(dt.UTC), 99
    )
    result = linter.lint_tbs(tbs, relaxed, "p256")
    assert any("cabf.smime.common_name_value_unknown_source" in e for e in result.errors)


def test_throwaway_keys_are_cached_per_algorithm_and_never_the_ca_key(pki, linter) -> None:
    first = linter.throwaway_key("p256")
    assert linter.throwaway_key("p256") is first
    assert linter.throwaway_key("p384") is not first
    ca_public = pki.issuing_ca(3).private_key.public_key()
    assert first.public_key() != ca_public


def test_warm_up_builds_what_the_profiles_use(pki, h, ec_key) -> None:
    fresh = lint.PreIssuanceLinter()
    fresh.warm_up(["p256"])
    for profile, fields in (
        ("server", {"dns_names": ["www.example.org"]}),
        ("client", {"emails": ["a@example.org"]}),
        ("client", {"subject": {"CN": "A B", "GN": "A", "SN": "B"}, "emails": ["a@example.org"]}),
        ("codesign", {"subject": {"CN": "A B"}}),
    ):
        tbs = _tbs(pki, h, ec_key, 3, profile, **fields)
        built = dict(fresh._validators), dict(fresh._throwaway_keys)
        assert fresh.lint_tbs(tbs, profiles.get_profile(profile), "p256").ok
        # Nothing new was built on the issuing path: warm-up made every validator and key it needed.
        assert (fresh._validators, fresh._throwaway_keys) == built, f"{profile} was not warmed up"


def test_lint_of_undecodable_bytes_is_an_error_not_a_crash(linter) -> None:
    result = linter.lint_certificate(b"\x30\x03\x02\x01\x01", LinterKind.RFC5280)
    assert not result.ok and result.errors[0].startswith("pkilint.decode_failed")


@pytest.mark.parametrize(
    ("profile", "fields"),
    [
        ("server", {"subject": {"CN": "www.example.org"}, "dns_names": ["www.example.org"]}),
        (
            "client",
            {"subject": {"CN": "Alice Example", "GN": "Alice", "SN": "Example"}, "emails": ["a@example.org"]},
        ),
        ("codesign", {"subject": {"CN": "Alice Example"}}),
    ],
)
def test_lint_cost_per_certificate(profile: str, fields, pki, linter, h, ec_key) -> None:
    """Validators are built once; after that a lint (throw-away signature included) is cheap."""
    prof = profiles.get_profile(profile)
    tbs = _tbs(pki, h, ec_key, 3, profile, **fields)
    started = time.perf_counter()
    linter.lint_tbs(tbs, prof, "p256")  # may build this profile's validators
    first = time.perf_counter() - started
    samples = []
    for _ in range(20):
        started = time.perf_counter()
        assert linter.lint_tbs(tbs, prof, "p256").ok
        samples.append(time.perf_counter() - started)
    median_ms = statistics.median(samples) * 1000
    print(f"lint {profile}: first {first * 1000:.0f} ms, then median {median_ms:.1f} ms")
    assert median_ms < 100
