"""The event catalogue: which types exist, which topic carries them, how they are keyed.

This module and the JSON Schemas beside it are the contract with downstream
consumers (docs/events.md describes it for humans). Topic names are logical
here (`cert`); `Topics` adds the deployment's prefix (`cacert.cert`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from importlib import resources
from typing import Any

import jsonschema_rs

from shared.events.envelope import TYPE_PREFIX, CloudEvent, new_event_id

DLQ_SUFFIX = ".dlq"


class SchemaError(ValueError):
    """A payload does not match its type's schema; the message says where."""


@dataclasses.dataclass(frozen=True)
class EventType:
    name: str  # e.g. "cert.issued"
    version: int
    topic: str  # logical topic, without the deployment prefix
    key_field: str  # payload field whose value is the Kafka key (the aggregate id)

    @property
    def type(self) -> str:
        return f"{TYPE_PREFIX}{self.name}.v{self.version}"


# Topics per aggregate. Mail commands carry secrets (confirmation links) and get their own
# topic that only the notifier may read; mail outcomes are ordinary events.
# `perspective` is internal to domain_verify: the primary asks remote network perspectives to repeat a
# check and they answer (BR 3.2.2.9).
# `acme` carries what the ACME service asks of the RA (CSR submissions, revocations); `acme.bindings` carries
# External Account Bindings from registration to the ACME service, which alone may read it (their HMAC keys
# are sealed to its key besides).
TOPICS = ("member", "domain", "csr", "cert", "mail.commands", "mail", "perspective", "acme", "acme.bindings")

EVENT_TYPES: tuple[EventType, ...] = (
    EventType("member.registered", 1, "member", "member_id"),
    EventType("member.email_added", 1, "member", "member_id"),
    EventType("member.email_verified", 1, "member", "member_id"),
    EventType("member.assurance_recorded", 1, "member", "member_id"),
    EventType("member.role_changed", 1, "member", "member_id"),
    EventType("domain.verification_requested", 1, "domain", "request_id"),
    EventType("domain.verified", 1, "domain", "request_id"),
    EventType("domain.verification_failed", 1, "domain", "request_id"),
    EventType("domain.caa_check_requested", 1, "domain", "request_id"),
    EventType("domain.caa_checked", 1, "domain", "request_id"),
    EventType("csr.approved", 1, "csr", "request_id"),
    EventType("csr.rejected", 1, "csr", "request_id"),
    EventType("cert.issued", 1, "cert", "serial"),
    EventType("cert.rejected", 1, "cert", "request_id"),
    EventType("cert.revoke_requested", 1, "cert", "serial"),
    EventType("cert.revoked", 1, "cert", "serial"),
    EventType("cert.key_compromised", 1, "cert", "spki_sha256"),
    EventType("mail.send_requested", 1, "mail.commands", "to"),
    EventType("mail.sent", 1, "mail", "source_event_id"),
    EventType("mail.failed", 1, "mail", "source_event_id"),
    EventType("perspective.check_requested", 1, "perspective", "check_id"),
    EventType("perspective.check_answered", 1, "perspective", "check_id"),
    EventType("acme.csr_submitted", 1, "acme", "request_id"),
    EventType("acme.revocation_requested", 1, "acme", "serial"),
    EventType("acme.binding_created", 1, "acme.bindings", "key_id"),
    EventType("acme.binding_revoked", 1, "acme.bindings", "key_id"),
)
BY_TYPE: dict[str, EventType] = {e.type: e for e in EVENT_TYPES}
BY_NAME: dict[str, EventType] = {e.name: e for e in EVENT_TYPES}


@dataclasses.dataclass(frozen=True)
class Topics:
    """Physical topic names for one deployment."""

    prefix: str = "cacert."

    def of(self, logical: str) -> str:
        if logical not in TOPICS:
            raise KeyError(f"unknown topic {logical!r}")
        return self.prefix + logical

    def dlq(self, logical: str) -> str:
        return self.of(logical) + DLQ_SUFFIX

    def all(self) -> list[str]:
        return [self.of(t) for t in TOPICS] + [self.dlq(t) for t in TOPICS]


def load_schema(type_: str) -> dict[str, Any]:
    text = resources.files("shared.events").joinpath("schemas", f"{type_}.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator(type_: str) -> Any:
    """A compiled Draft 2020-12 validator, formats (date, date-time) checked.

    jsonschema-rs rather than the pure-Python `jsonschema`: every event is validated when it is
    built and again when it is consumed, and at the signer's rates the Python validator (about
    130 us per payload) was the largest single cost per certificate; the compiled one takes ~2 us.
    """
    return jsonschema_rs.validator_for(load_schema(type_), validate_formats=True)


def validate(type_: str, data: dict[str, Any]) -> None:
    """Raise SchemaError if `data` is not a valid payload of `type_` (or the type is unknown)."""
    if type_ not in BY_TYPE:
        raise SchemaError(f"unknown event type {type_!r}")
    validator = _validator(type_)
    if validator.is_valid(data):
        return
    first = min(validator.iter_errors(data), key=lambda e: [str(p) for p in e.instance_path])
    where = "/".join(str(p) for p in first.instance_path) or "(root)"
    raise SchemaError(f"{type_} payload invalid at {where}: {first.message}")


def make_event(name: str, data: dict[str, Any], *, source: str, event_id: str | None = None,
               subject: str | None = None) -> CloudEvent:
    """Build a schema-valid CloudEvent of a catalogued type; the key comes from the catalogue."""
    event_type = BY_NAME[name]
    validate(event_type.type, data)
    key = str(data[event_type.key_field])
    return CloudEvent(
        type=event_type.type,
        source=source,
        subject=subject or key,
        data=data,
        id=event_id or new_event_id(),
        key=key,
    )
