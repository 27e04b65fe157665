"""The RA's signature on approvals and revocation requests (shared/approvals.py), without servers."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.approvals import SIGNATURE_FIELD, ApprovalKeyError, ApprovalSigner, ApprovalVerifier
from shared.events import isoformat, make_event, utcnow, validate
from tests.registration.csrs import build_csr

RA = ApprovalSigner(Ed25519PrivateKey.generate())
OTHER = ApprovalSigner(Ed25519PrivateKey.generate())
TRUSTING_RA = ApprovalVerifier.from_pem(RA.public_pem())


def approval(request_id: str = "req-1"):  # type: ignore[no-untyped-def]
    return make_event("csr.approved", {
        "request_id": request_id, "member_id": "m-1", "cert_class": 1, "profile": "server",
        "csr_pem": build_csr(dns=["www.example.org"]), "subject": {"CN": "www.example.org"},
        "dns_names": ["www.example.org"], "ip_addresses": [], "emails": [], "validity_days": 90,
        "approved_at": isoformat(utcnow())}, source="registration")


def revocation():  # type: ignore[no-untyped-def]
    return make_event("cert.revoke_requested", {"serial": "0a1b", "member_id": "m-1", "reason": "superseded",
                                                "requested_by": "m-1", "requested_at": isoformat(utcnow())},
                      source="registration")


def test_a_signed_approval_and_revocation_verify_and_stay_schema_valid() -> None:
    for event in (approval(), revocation()):
        signed = RA.sign(event)
        validate(signed.type, signed.data)
        assert signed.data[SIGNATURE_FIELD]["key_id"] == RA.key_id and len(RA.key_id) == 32
        assert TRUSTING_RA.problem(signed) is None


def test_unsigned_foreign_key_and_altered_events_are_refused_each_with_its_reason() -> None:
    signed = RA.sign(approval())
    assert TRUSTING_RA.problem(approval()) == "not signed by the RA"
    assert "does not trust" in (TRUSTING_RA.problem(OTHER.sign(approval())) or "")
    widened = dataclasses.replace(signed, data={**signed.data, "dns_names": ["www.example.org", "victim.example"]})
    assert "does not verify" in (TRUSTING_RA.problem(widened) or "")
    other_class = dataclasses.replace(signed, data={**signed.data, "cert_class": 3})
    assert "does not verify" in (TRUSTING_RA.problem(other_class) or "")


def test_a_signed_payload_under_a_new_event_id_or_type_is_refused() -> None:
    """The id is signed, so an approval cannot be re-sent as a new one with the same signature."""
    signed = RA.sign(approval())
    assert "does not verify" in (TRUSTING_RA.problem(dataclasses.replace(signed, id="another-id")) or "")
    revoke = RA.sign(revocation())
    as_other_type = dataclasses.replace(revoke, type="org.cacert.csr.approved.v1")
    assert "does not verify" in (TRUSTING_RA.problem(as_other_type) or "")


def test_two_keys_are_trusted_at_once_during_a_rollover() -> None:
    both = ApprovalVerifier.from_pem(RA.public_pem() + OTHER.public_pem())
    assert both.key_ids == sorted([RA.key_id, OTHER.key_id])
    assert both.problem(RA.sign(approval())) is None and both.problem(OTHER.sign(approval())) is None


def test_events_the_ra_does_not_sign_pass_through_untouched() -> None:
    other = make_event("member.registered", {"member_id": "m-1", "name": "Ada", "email": "ada@example.org",
                                             "registered_at": isoformat(utcnow())}, source="registration")
    assert RA.sign(other) is other and TRUSTING_RA.problem(other) is None


def test_unusable_keys_are_refused_without_echoing_them() -> None:
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    with pytest.raises(ApprovalKeyError, match="not an Ed25519 private key") as caught:
        ApprovalSigner.from_pem(ec_pem)
    assert ec_pem.splitlines()[1] not in str(caught.value)
    with pytest.raises(ApprovalKeyError, match="not an unencrypted PEM private key"):
        ApprovalSigner.from_pem("garbage")
    with pytest.raises(ApprovalKeyError, match="names no Ed25519 public key"):
        ApprovalVerifier.from_pem("")
    ec_public = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with pytest.raises(ApprovalKeyError, match="key 2 is not an Ed25519 public key"):
        ApprovalVerifier.from_pem(RA.public_pem() + ec_public)
