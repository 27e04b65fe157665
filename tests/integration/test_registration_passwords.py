"""Changing a password and resetting a forgotten one, over the member API with the real outbox and mail
commands: the right current password is needed, other sessions end, a reset link works once and only for
an account's verified address, and the answer to "reset" never tells whether an address is a member."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from shared.config import KafkaSettings, MongoSettings
from tests.integration.test_registration_web_portal import CSRF
from tests.mail_keys import link_parts, params_of
from tests.registration.harness import PASSWORD, Stack, running

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("topics")]
NEW = "a brand new passphrase"


async def reset_link(stack: Stack, address: str, expected: int = 1) -> str:
    mails = [m for m in await stack.events("mail.commands", "mail.send_requested", expected=expected + 1)
             if m.data["template"] == "password_reset" and m.data["to"] == address]
    assert mails, f"no reset mail to {address}"
    return str(params_of(mails[-1])["link"])


async def test_a_member_changes_the_password_with_the_current_one_and_other_sessions_end(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    async with running(kafka_settings, mongo_settings) as stack:
        api = stack.api
        _, token = await stack.member("Pat Word", "pat@example.org")
        other = await stack.login("pat@example.org")
        wrong = await api.call("POST", "/v1/me/password", token=token,
                               json_body={"current_password": "not the password", "new_password": NEW})
        assert wrong.status == 403 and wrong.body["error"]["code"] == "wrong_password"
        weak = await api.call("POST", "/v1/me/password", token=token,
                              json_body={"current_password": PASSWORD, "new_password": "short"})
        assert weak.status == 422
        changed = await api.call("POST", "/v1/me/password", token=token,
                                 json_body={"current_password": PASSWORD, "new_password": NEW})
        assert changed.status == 204, changed.body
        assert (await api.call("GET", "/v1/me", token=token)).status == 200, "the session in use stays"
        assert (await api.call("GET", "/v1/me", token=other)).status == 401, "every other session ends"
        old = await api.call("POST", "/v1/sessions", json_body={"email": "pat@example.org", "password": PASSWORD})
        assert old.status == 401
        new = await api.call("POST", "/v1/sessions", json_body={"email": "pat@example.org", "password": NEW})
        assert new.status == 201


async def test_a_forgotten_password_is_reset_once_by_the_mailed_link(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    async with running(kafka_settings, mongo_settings) as stack:
        api = stack.api
        _, session = await stack.member("Rosa Reset", "rosa@example.org")
        asked = await api.call("POST", "/v1/password-resets", json_body={"email": "rosa@example.org"})
        unknown = await api.call("POST", "/v1/password-resets", json_body={"email": "nobody@example.org"})
        assert asked.status == unknown.status == 202
        assert asked.body["message"].replace("rosa", "X") == unknown.body["message"].replace("nobody", "X"), (
            "the answer must not tell who is a member")
        link = await reset_link(stack, "rosa@example.org")
        page, token = link_parts(link)
        assert urlsplit(page).path == "/reset-password"
        # the confirm-email endpoint cannot spend a reset token
        assert (await api.call("POST", "/v1/emails/confirm", json_body={"token": token})).status == 404
        done = await api.call("POST", "/v1/password-resets/confirm", json_body={"token": token, "new_password": NEW})
        assert done.status == 200, done.body
        again = await api.call("POST", "/v1/password-resets/confirm",
                               json_body={"token": token, "new_password": "yet another passphrase"})
        assert again.status == 404 and again.body["error"]["code"] == "token_unknown"
        assert (await api.call("GET", "/v1/me", token=session)).status == 401, "a reset ends every session"
        login = await api.call("POST", "/v1/sessions", json_body={"email": "rosa@example.org", "password": NEW})
        assert login.status == 201
        mails = await stack.events("mail.commands", "mail.send_requested", expected=10, timeout=2)
        assert not [m for m in mails if m.data["to"] == "nobody@example.org"]
        audit = [e["action"] async for e in stack.service.db["audit"].find({})]  # type: ignore[index]
        assert "member.password_reset_requested" in audit and "member.password_reset" in audit


async def test_the_portal_resets_a_forgotten_password_and_changes_one(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    from tests.integration.test_registration_web_portal import Browser

    async with running(kafka_settings, mongo_settings) as stack:
        await stack.member("Gwen Portal", "gwen@example.org")
        browser = Browser(stack.api.base)
        try:
            status, text, _ = await browser.get("/login")
            assert 'href="/forgot-password"' in text
            csrf = await browser.csrf("/forgot-password")
            status, text, _ = await browser.post("/forgot-password", {"csrf": csrf, "email": "gwen@example.org"})
            assert status == 200 and 'id="reset-sent"' in text and "gwen@example.org" in text
            link = await reset_link(stack, "gwen@example.org")
            page, token = link_parts(link)
            status, text, _ = await browser.get(urlsplit(page).path)  # what a browser sends: no fragment
            assert status == 200 and 'name="token"' in text and 'src="/static/mailed-link.js"' in text
            assert token not in text
            csrf = CSRF.search(text).group(1)  # type: ignore[union-attr]
            differ = {"csrf": csrf, "token": token, "new_password": NEW, "new_password_again": NEW + "!"}
            status, text, _ = await browser.post("/reset-password", differ)
            assert status == 422 and "differ" in text
            assert text.count('class="error"') == 1, "the page says what is wrong once"
            status, _, headers = await browser.post("/reset-password", {**differ, "new_password_again": NEW})
            assert status == 303 and headers["Location"] == "/login?notice=password_reset"
            status, text, _ = await browser.post("/reset-password", {**differ, "new_password_again": NEW})
            assert status == 404 and "unknown or was already used" in text

            csrf = await browser.csrf("/login")
            status, _, headers = await browser.post("/login", {"csrf": csrf, "email": "gwen@example.org",
                                                               "password": NEW})
            assert status == 303
            csrf = await browser.csrf("/account/password")
            wrong = {"csrf": csrf, "current_password": PASSWORD, "new_password": "third passphrase here",
                     "new_password_again": "third passphrase here"}
            status, text, _ = await browser.post("/account/password", wrong)
            assert status == 403 and "The current password is not right." in text
            assert text.count("The current password is not right.") == 1
            status, _, headers = await browser.post("/account/password", {**wrong, "current_password": NEW})
            assert status == 303 and headers["Location"] == "/account?notice=password_changed"
            status, text, _ = await browser.get("/account?notice=password_changed")
            assert status == 200 and "Your password was changed" in text
        finally:
            await browser.close()

