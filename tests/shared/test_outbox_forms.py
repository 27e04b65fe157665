"""The two stored forms of an event give back the same event, byte for byte on the wire."""

from __future__ import annotations

from shared import outbox
from shared.events import CloudEvent


def answer() -> CloudEvent:
    return CloudEvent(type="org.cacert.cert.issued.v1", source="signer", subject="req-1", key="req-1",
                      data={"serial": "0a1b", "dns_names": ["www.example.org"], "certificate_pem": "-----BEGIN"})


def test_a_sealed_event_is_published_exactly_as_it_was_sealed() -> None:
    event = answer()
    stored = outbox.sealed(event)
    assert set(stored) == {"id", "type", "source", "subject", "time", "key", "payload"}
    assert isinstance(stored["payload"], bytes)
    back = outbox.stored_event(stored)
    assert back == event
    assert back.to_kafka() == event.to_kafka()


def test_an_entry_stored_before_sealing_existed_still_comes_back() -> None:
    event = answer()
    assert outbox.stored_event(outbox.entry(event)) == event
