"""Both front ends refuse the same bad sign-ups, over HTTP, with their usual messages (the rules: signup.py,
their wording: tests/registration/test_signup.py)."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator

import pytest

from shared.config import KafkaSettings, MongoSettings
from tests.integration.test_registration_web_portal import Browser
from tests.registration.harness import Stack, running
from tests.registration.test_signup import GOOD


@pytest.fixture
async def stack(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Stack]:
    async with running(kafka_settings, mongo_settings) as s:
        yield s


@pytest.mark.usefixtures("topics")
async def test_both_front_ends_refuse_the_same_bad_signups_with_their_usual_messages(stack: Stack) -> None:
    browser = Browser(stack.api.base)
    try:
        # (changed field, the API's error message, the portal's line)
        cases = [
            ({"name": "  "}, "name must not be blank", "Enter your name as it appears on your identity documents."),
            ({"date_of_birth": "1990-02-31"}, "date_of_birth must be a date YYYY-MM-DD",
             "Date of birth: use the form YYYY-MM-DD."),
            ({"date_of_birth": "1899-12-31"}, "date_of_birth is not plausible",
             "Date of birth: it must be after 1900 and in the past."),
        ]  # a short password or a plain "not-an-address" never reaches the API's rules: the request schema
        # (NewPassword, EmailAddress) refuses them first
        for changed, api_message, portal_line in cases:
            body = {**GOOD, "email": "eve@example.org", **changed}
            reply = await stack.api.call("POST", "/v1/members", json_body=body)
            assert reply.status == 422 and reply.body["error"]["message"] == api_message, (changed, reply.body)
            form = {**body, "password_again": body["password"], "csrf": await browser.csrf("/signup")}
            status, text, _ = await browser.post("/signup", form)
            assert status == 422 and f"<li>{portal_line}</li>" in html.unescape(text), (changed, status)
        assert await stack.service.db["addresses"].find_one({"_id": "eve@example.org"}) is None  # type: ignore[index]
    finally:
        await browser.close()
