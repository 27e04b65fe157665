"""Mail commands sealed to the notifier (shared/sealed_mail.py), without servers."""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from shared.events import CloudEvent, isoformat, make_event, utcnow, validate
from shared.sealed_mail import SEALED_FIELD, MailOpener, MailSealer, SealingKeyError, UnopenableMail

NOTIFIER = MailOpener.generate()
SEALER = MailSealer.from_pem(NOTIFIER.public_pem())
TOKEN = "tok-" + "x" * 39
LINK = f"https://ra.test/confirm-email#token={TOKEN}"


def command(**overrides: object) -> CloudEvent:
    data = {"to": "ada@example.org", "template": "email_confirmation",
            "params": {"link": LINK, "code": TOKEN, "name": "Ada"}, "member_id": "m-1",
            "requested_at": isoformat(utcnow()), **overrides}
    return make_event("mail.send_requested", data, source="registration")


def opened(event: CloudEvent, opener: MailOpener = NOTIFIER) -> dict[str, object]:
    return opener.open(event.type, event.id, event.data)


def test_round_trip_keeps_only_the_routing_and_harmless_params_clear() -> None:
    plain = command()
    sealed = SEALER.seal(plain)
    validate(sealed.type, sealed.data)  # the sealed form is schema-valid v1
    assert sealed.id == plain.id and sealed.data["to"] == "ada@example.org"
    assert sealed.data["params"] == {"name": "Ada"}
    assert TOKEN not in json.dumps(sealed.data) and TOKEN not in repr(sealed)
    assert sealed.data[SEALED_FIELD]["key_id"] == SEALER.key_id == NOTIFIER.key_ids[0]
    assert opened(sealed) == {"link": LINK, "code": TOKEN}
    assert SEALER.seal(plain).data[SEALED_FIELD]["value"] != sealed.data[SEALED_FIELD]["value"], \
        "a fresh ephemeral key per seal"


def test_other_events_pass_untouched() -> None:
    event = make_event("member.email_added", {"member_id": "m-1", "email": "a@example.org",
                                              "added_at": isoformat(utcnow())}, source="registration")
    assert SEALER.seal(event) is event


def test_the_wrong_private_key_cannot_open() -> None:
    sealed = SEALER.seal(command())
    with pytest.raises(UnopenableMail, match="which this notifier does not hold"):
        opened(sealed, MailOpener.generate())
    # Even one claiming the right key id finds only a failed open, and never the secret in the reason.
    stranger = MailOpener.generate()
    forged = dataclasses.replace(sealed, data={**sealed.data, SEALED_FIELD: {
        **sealed.data[SEALED_FIELD], "key_id": stranger.key_ids[0]}})
    with pytest.raises(UnopenableMail, match="do not open") as refused:
        opened(forged, stranger)
    assert TOKEN not in str(refused.value)


@pytest.mark.parametrize("position", [0, 10, 40, -1])  # in the encapsulated key, and in the ciphertext and tag
def test_a_tampered_blob_does_not_open(position: int) -> None:
    sealed = SEALER.seal(command())
    encoded = sealed.data[SEALED_FIELD]["value"]
    raw = bytearray(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    raw[position] ^= 0x01
    value = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    tampered = dataclasses.replace(sealed, data={**sealed.data, SEALED_FIELD: {**sealed.data[SEALED_FIELD],
                                                                                "value": value}})
    with pytest.raises(UnopenableMail, match="do not open"):
        opened(tampered)


@pytest.mark.parametrize("change", ["id", "type", "to", "template"])
def test_a_sealed_blob_moved_to_another_event_or_recipient_does_not_open(change: str) -> None:
    sealed = SEALER.seal(command())
    event_type, event_id, data = sealed.type, sealed.id, dict(sealed.data)
    if change == "id":
        event_id = command().id  # the same blob under a fresh event id
    elif change == "type":
        event_type = "org.cacert.mail.send_requested.v2"
    elif change == "to":
        data["to"] = "mallory@example.net"  # re-addressed to someone else
    else:
        data["template"] = "password_reset"
    with pytest.raises(UnopenableMail, match="do not open"):
        NOTIFIER.open(event_type, event_id, data)


def test_unsealed_or_clear_secrets_are_refused() -> None:
    plain = command()
    with pytest.raises(UnopenableMail, match="link, code must be sealed"):
        opened(plain)
    without = command(params={"name": "Ada"})
    with pytest.raises(UnopenableMail, match="not sealed"):
        opened(without)
    odd = SEALER.seal(command())
    odd = dataclasses.replace(odd, data={**odd.data, SEALED_FIELD: {**odd.data[SEALED_FIELD], "alg": "none"}})
    with pytest.raises(UnopenableMail, match="not HPKE"):
        opened(odd)


def test_keys_load_from_pem_and_name_no_key_in_errors() -> None:
    assert MailOpener.from_pem(NOTIFIER.private_pem()).key_ids == NOTIFIER.key_ids
    rollover = MailOpener.from_pem(MailOpener.generate().private_pem() + NOTIFIER.private_pem())
    assert len(rollover.key_ids) == 2 and opened(SEALER.seal(command()), rollover)["code"] == TOKEN
    ed = Ed25519PrivateKey.generate()
    ed_private = ed.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    ed_public = ed.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    for bad, reason in ((ed_private, "not an X25519 private key"), ("nonsense", "not an unencrypted PEM")):
        with pytest.raises(SealingKeyError, match=reason) as refused:
            MailOpener.from_pem(bad)
        assert "PRIVATE KEY" not in str(refused.value)
    for bad, reason in ((ed_public, "not an X25519 public key"), ("nonsense", "not a PEM public key"),
                        (NOTIFIER.private_pem(), "not a PEM public key")):
        with pytest.raises(SealingKeyError, match=reason) as refused:
            MailSealer.from_pem(bad)
        assert "PRIVATE KEY" not in str(refused.value)
