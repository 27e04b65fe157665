"""Accounts over real HTTP, Kafka and FerretDB: sign-up, confirmation, login/logout, rate limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from shared.config import KafkaSettings, MongoSettings
from tests.registration.harness import PASSWORD, Stack, running

pytestmark = pytest.mark.usefixtures("topics")


@pytest.fixture
async def stack(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Stack]:
    async with running(kafka_settings, mongo_settings) as s:
        yield s


async def test_signup_confirm_login_logout(stack: Stack) -> None:
    api = stack.api
    signup = await api.call(
        "POST",
        "/v1/members",
        json_body={
            "name": "Ada  Lovelace",
            "date_of_birth": "1990-12-10",
            "email": "Ada@Example.org",
            "password": PASSWORD,
        },
    )
    assert signup.status == 201 and signup.body["email"] == "ada@example.org"
    (registered,) = await stack.events("member", "member.registered")
    assert (
        registered.data["member_id"] == signup.body["member_id"] and registered.data["name"] == "Ada Lovelace"
    )

    early = await api.call(
        "POST", "/v1/sessions", json_body={"email": "ada@example.org", "password": PASSWORD}
    )
    assert early.status == 403 and early.body["error"]["code"] == "email_unverified"

    token = await stack.confirmation_token("ada@example.org")
    confirmed = await api.call("POST", "/v1/emails/confirm", json_body={"token": token})
    assert confirmed.status == 200 and confirmed.body["email"] == "ada@example.org"
    (verified,) = await stack.events("member", "member.email_verified")
    assert verified.data["primary"] is True

    wrong = await api.call(
        "POST", "/v1/sessions", json_body={"email": "ada@example.org", "password": "nope" * 3}
    )
    assert wrong.status == 401
    session = await stack.login("ada@example.org")
    me = await api.call("GET", "/v1/me", token=session)
    assert me.status == 200 and me.body["name"] == "Ada Lovelace" and me.body["roles"] == ["member"]
    assert me.body["emails"][0]["verified"] is True and me.body["points"] == 0 and me.body["assured"] is False

    assert (await api.call("DELETE", "/v1/sessions/current", token=session)).status == 204
    assert (await api.call("GET", "/v1/me", token=session)).status == 401

    duplicate = await api.call(
        "POST",
        "/v1/members",
        json_body={
            "name": "Eve",
            "date_of_birth": "1990-01-01",
            "email": "ADA@example.org",
            "password": PASSWORD,
        },
    )
    assert duplicate.status == 409


async def test_reused_and_expired_tokens_are_refused_and_change_nothing(stack: Stack) -> None:
    api = stack.api
    _, session = await stack.member("Bob", "bob@example.org")
    token = await stack.confirmation_token("bob@example.org")
    reused = await api.call("POST", "/v1/emails/confirm", json_body={"token": token})
    assert reused.status == 404 and reused.body["error"]["code"] == "token_unknown"

    added = await api.call("POST", "/v1/emails", token=session, json_body={"email": "bob@work.example.com"})
    assert added.status == 201 and added.body["verified"] is False
    second = await stack.confirmation_token("bob@work.example.com")
    stack.clock.advance(timedelta(hours=24, seconds=1))
    expired = await api.call("POST", "/v1/emails/confirm", json_body={"token": second})
    assert expired.status == 410 and expired.body["error"]["code"] == "token_expired"
    session = await stack.login("bob@example.org")  # the old session expired with the clock
    emails = (await api.call("GET", "/v1/emails", token=session)).body["emails"]
    assert {e["address"]: e["verified"] for e in emails} == {
        "bob@example.org": True,
        "bob@work.example.com": False,
    }
    assert len(await stack.events("member", "member.email_verified", expected=2, timeout=3)) == 1

    resent = await api.call("POST", f"/v1/emails/{added.body['id']}/resend", token=session)
    assert resent.status == 202
    fresh = await stack.confirmation_token("bob@work.example.com", nth=2)
    assert (await api.call("POST", "/v1/emails/confirm", json_body={"token": fresh})).status == 200
    assert (await stack.events("member", "member.email_added"))[0].data["email"] == "bob@work.example.com"


async def test_confirmation_page_does_not_confirm_on_get(stack: Stack) -> None:
    await stack.api.call(
        "POST",
        "/v1/members",
        json_body={
            "name": "Cy",
            "date_of_birth": "1980-02-02",
            "email": "cy@example.org",
            "password": PASSWORD,
        },
    )
    token = await stack.confirmation_token("cy@example.org")
    page = await stack.api.call("GET", "/confirm-email")  # the link's token is in its fragment: never sent
    assert page.status == 200 and b"<form" in page.raw and b'name="token"' in page.raw
    early = await stack.api.call(
        "POST", "/v1/sessions", json_body={"email": "cy@example.org", "password": PASSWORD}
    )
    assert early.status == 403
    posted = await stack.api.call(
        "POST",
        "/confirm-email",
        data=f"token={token}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert posted.status == 200 and b"is now verified" in posted.raw
    assert await stack.login("cy@example.org")


async def test_rate_limits_answer_429_with_retry_after(
    kafka_settings: KafkaSettings, mongo_settings: MongoSettings
) -> None:
    async with running(kafka_settings, mongo_settings, login_free_failures=2) as stack:
        body = {"email": "nobody@example.org", "password": "wrong password"}
        statuses = [(await stack.api.call("POST", "/v1/sessions", json_body=body)).status for _ in range(3)]
        assert statuses == [401, 401, 429]
        limited = await stack.api.call("POST", "/v1/sessions", json_body=body)
        assert limited.status == 429 and limited.body["error"]["code"] == "rate_limited"
        assert 0 < int(limited.headers["Retry-After"]) <= 900
