"""AcmeBindings over the in-memory store: what is stored (never the HMAC key), what is sealed to the ACME
service, who sees and revokes what, the class and the cap; and that the key reaches no log or audit entry."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import structlog

from services.registration.acme_bindings import AcmeBindings
from services.registration.assurance import Assurances
from services.registration.context import Context
from services.registration.members import Member, Members
from services.registration.service import RegistrationService
from shared.acme_binding import BindingOpener, UnopenableBinding
from shared.config import ConfigError
from shared.events import BY_NAME
from shared.http import ApiError
from shared.logging import configure
from tests.acme_keys import ACME_SEALER, OPENER
from tests.approval_keys import RA, RA_PRIVATE_PEM
from tests.mail_keys import SEALER, SEALING_PUBLIC_PEM
from tests.registration.memory_store import NOW, MemoryStore, settings, with_second_factor


class Registration:
    def __init__(self, **overrides: Any) -> None:
        self.store = MemoryStore()
        ctx = Context(self.store, dataclasses.replace(settings(), **overrides), lambda: NOW, RA, SEALER, ACME_SEALER)
        self.members = Members(ctx)
        self.assurances = Assurances(ctx)
        self.bindings = AcmeBindings(ctx, self.assurances)

    async def member(self, address: str, *, name: str = "Ada Lovelace", roles: tuple[str, ...] = ("member",)
                     ) -> Member:
        created = await self.members.create(name=name, date_of_birth=date(1990, 1, 1), address=address,
                                            password="correct horse battery staple", roles=roles, verified=True)
        return with_second_factor(self.store, created) if {"assurer", "admin"} & set(roles) else created

    async def assured(self, member: Member) -> None:
        for n in (1, 2):
            assurer = await self.member(f"assurer{n}@example.org", name=f"Assurer {n}", roles=("member", "assurer"))
            await self.assurances.record(assurer, member, points=25, location="Berlin", met_on=date(2026, 2, 1),
                                         documents_checked=True)

    def binding_events(self, name: str) -> list[dict[str, Any]]:
        return [e.data for e in self.store.events(name)]


@pytest.fixture
def reg() -> Registration:
    return Registration()


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Everything registration logs, as rendered JSON lines (DEBUG and up)."""
    stream = io.StringIO()
    configure("registration", "DEBUG", stream=stream)
    yield stream
    structlog.reset_defaults()


def _key_forms(hmac_key: str) -> list[str]:
    """The HMAC key as shown, and its raw bytes in the other encodings a careless log could use."""
    raw = base64.urlsafe_b64decode(hmac_key + "=")
    return [hmac_key, base64.b64encode(raw).decode().rstrip("="), raw.hex()]


async def test_a_new_binding_shows_its_key_once_and_seals_it_to_the_acme_service_only(
        reg: Registration, log_output: io.StringIO) -> None:
    ada = await reg.member("ada@example.org")
    created = await reg.bindings.create(ada, label="web server")

    assert created["cert_class"] == 1 and created["label"] == "web server" and created["status"] == "active"
    assert created["directory_url"] == "http://127.0.0.1:8089/directory"
    assert len(created["key_id"]) == 22 and len(created["hmac_key"]) == 43  # 128-bit id, 256-bit key
    raw = base64.urlsafe_b64decode(created["hmac_key"] + "=")
    # stored: the binding without its key
    [stored] = reg.store.collections["acme_bindings"].values()
    assert stored["_id"] == created["key_id"] and stored["member_id"] == ada.id and stored["cert_class"] == 1
    assert set(stored) == {"_id", "member_id", "cert_class", "label", "created_at", "revoked_at"}
    # announced: acme.binding_created on acme.bindings, keyed by the key id, the key sealed
    [event] = reg.store.events("acme.binding_created")
    assert BY_NAME["acme.binding_created"].topic == "acme.bindings" and event.key == created["key_id"]
    assert event.data["member_id"] == ada.id and event.data["cert_class"] == 1 and event.data["label"] == "web server"
    assert OPENER.open(created["key_id"], ada.id, event.data["hmac_key"]) == raw
    # ... only for that binding and member, and only with the ACME service's key
    with pytest.raises(UnopenableBinding):
        OPENER.open("A" * 22, ada.id, event.data["hmac_key"])
    with pytest.raises(UnopenableBinding):
        OPENER.open(created["key_id"], "someone-else", event.data["hmac_key"])
    with pytest.raises(UnopenableBinding):
        BindingOpener.generate().open(created["key_id"], ada.id, event.data["hmac_key"])
    # nowhere in clear: not in the event, the store, the audit log or the logs
    written = json.dumps([event.data, stored, reg.store.audit], default=str) + log_output.getvalue()
    assert '"acme_binding.created"' in json.dumps(reg.store.audit) and "ACME binding created" in log_output.getvalue()
    for form in _key_forms(created["hmac_key"]):
        assert form not in written


async def test_members_list_and_revoke_only_their_own_bindings(reg: Registration, log_output: io.StringIO) -> None:
    ada = await reg.member("ada@example.org")
    bob = await reg.member("bob@example.org", name="Bob Builder")
    first = await reg.bindings.create(ada, label="one")
    await reg.bindings.create(ada, label="two")
    bobs = await reg.bindings.create(bob)

    assert sorted(b["label"] for b in await reg.bindings.listing(ada)) == ["one", "two"]
    assert [b["key_id"] for b in await reg.bindings.listing(bob)] == [bobs["key_id"]]
    assert all("hmac_key" not in b for b in await reg.bindings.listing(ada))
    for key_id in (bobs["key_id"], "no-such-binding-id-00"):
        with pytest.raises(ApiError) as refused:
            await reg.bindings.revoke(ada, key_id)
        assert refused.value.status == 404
    assert reg.store.events("acme.binding_revoked") == []

    revoked = await reg.bindings.revoke(ada, first["key_id"])
    again = await reg.bindings.revoke(ada, first["key_id"])  # idempotent: the same answer, no second event

    assert revoked["status"] == "revoked" and revoked["revoked_at"] and again == revoked
    [event] = reg.store.events("acme.binding_revoked")
    assert event.key == first["key_id"] and event.data["member_id"] == ada.id and event.data["revoked_by"] == ada.id
    assert {b["key_id"]: b["status"] for b in await reg.bindings.listing(ada)}[first["key_id"]] == "revoked"
    assert first["hmac_key"] not in log_output.getvalue()


async def test_class_3_bindings_only_for_members_assured_now(reg: Registration) -> None:
    ada = await reg.member("ada@example.org")
    with pytest.raises(ApiError) as refused:
        await reg.bindings.create(ada, cert_class=3)
    assert refused.value.status == 422 and refused.value.code == "not_assured"
    assert "Assured" in refused.value.message and "50" in refused.value.message
    assert reg.store.collections["acme_bindings"] == {} and reg.store.events("acme.binding_created") == []

    await reg.assured(ada)
    created = await reg.bindings.create(ada, cert_class=3)
    assert created["cert_class"] == 3
    assert reg.binding_events("acme.binding_created")[0]["cert_class"] == 3


async def test_a_member_holds_at_most_the_configured_number_of_active_bindings() -> None:
    reg = Registration(acme_bindings_per_member=2)
    ada = await reg.member("ada@example.org")
    first = await reg.bindings.create(ada)
    await reg.bindings.create(ada)
    with pytest.raises(ApiError) as refused:
        await reg.bindings.create(ada)
    assert refused.value.status == 409 and refused.value.code == "too_many_bindings"

    await reg.bindings.revoke(ada, first["key_id"])  # revoked ones do not count
    await reg.bindings.create(ada)
    assert len(reg.store.events("acme.binding_created")) == 3


async def test_labels_are_one_line_of_at_most_100_characters(reg: Registration) -> None:
    ada = await reg.member("ada@example.org")
    assert (await reg.bindings.create(ada, label="  cluster\n\tprod\x00 ")).get("label") == "cluster prod"
    with pytest.raises(ApiError) as refused:
        await reg.bindings.create(ada, label="x" * 101)
    assert refused.value.status == 422


def test_registration_does_not_serve_without_the_acme_services_key() -> None:
    base = dataclasses.replace(settings(), ra_signing_key=RA_PRIVATE_PEM, mail_sealing_public_key=SEALING_PUBLIC_PEM)
    for value in ("", OPENER.private_pem(), "not a key"):
        with pytest.raises(ConfigError) as refused:
            RegistrationService(dataclasses.replace(base, acme_sealing_public_key=value))
        assert str(refused.value).startswith("CACERT_ACME_SEALING_PUBLIC_KEY") and "PRIVATE" not in str(refused.value)
