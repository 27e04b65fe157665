"""Brute-force limits on the login and token endpoints, and security headers on every HTML page.

A limited caller gets 429 with Retry-After, and while the window (or a login's backoff wait) lasts even
the *right* password or token is refused: otherwise a guesser would learn which guess was right from
the one 2xx. Failed logins back off per account, except for a client the member logged in from before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from shared.config import KafkaSettings, MongoSettings
from tests.mail_keys import params_of
from tests.registration.harness import PASSWORD, Reply, Stack, running

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("topics")]
LIMIT = 5
FREE_FAILURES = 3


@pytest.fixture
async def stack(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Stack]:
    async with running(kafka_settings, mongo_settings, login_free_failures=FREE_FAILURES, confirm_per_client=LIMIT,
                       trusted_proxies=["127.0.0.1/32"]) as s:
        yield s


async def _confirmed_never_logged_in(stack: Stack, address: str) -> None:
    signed_up = await stack.api.call("POST", "/v1/members", json_body={
        "name": "Bruno", "date_of_birth": "1990-01-01", "email": address, "password": PASSWORD})
    assert signed_up.status == 201, signed_up.body
    token = await stack.confirmation_token(address)
    assert (await stack.api.call("POST", "/v1/emails/confirm", json_body={"token": token})).status == 200


async def _login(stack: Stack, address: str, password: str, client: str | None = None) -> Reply:
    headers = {"X-Forwarded-For": client} if client else None
    return await stack.api.call("POST", "/v1/sessions", json_body={"email": address, "password": password},
                                headers=headers)


async def test_failed_logins_back_off_and_the_right_password_gets_in_after_the_wait(stack: Stack) -> None:
    address = "bruno@example.org"
    await _confirmed_never_logged_in(stack, address)
    for _ in range(FREE_FAILURES):
        wrong = await _login(stack, address, "nope" * 4)
        assert wrong.status == 401 and wrong.body["error"]["code"] == "invalid_credentials"
    waits = []
    for _ in range(4):  # each wrong guess after the wait doubles it: 1, 2, 4, 8 s
        limited = await _login(stack, address, "still wrong!!")
        assert limited.status == 429 and limited.body["error"]["code"] == "rate_limited"
        waits.append(int(limited.headers["Retry-After"]))
        right = await _login(stack, address, PASSWORD)
        assert right.status == 429, "during the wait nothing is checked, not even the right password"
        stack.clock.advance(timedelta(seconds=waits[-1]))
        assert (await _login(stack, address, "wrong again!!")).status == 401
    assert waits == [1, 2, 4, 8]
    stack.clock.advance(timedelta(seconds=16))
    assert (await _login(stack, address, PASSWORD)).status == 201, "the right password gets in after the wait"
    for _ in range(FREE_FAILURES):  # and the count starts again
        assert (await _login(stack, address, "nope" * 4)).status == 401


async def test_unknown_addresses_back_off_like_members(stack: Stack) -> None:
    for _ in range(FREE_FAILURES):
        assert (await _login(stack, "nobody@example.org", "nope" * 4)).status == 401
    assert (await _login(stack, "nobody@example.org", "nope" * 4)).status == 429


async def test_a_guesser_elsewhere_cannot_lock_a_member_out_of_their_usual_client(stack: Stack) -> None:
    """The member logged in before from 203.0.113.7; a guesser at 198.51.100.9 (both behind the
    trusted ingress) meets the backoff, the member does not, however long the guessing goes on."""
    address = "carla@example.org"
    await _confirmed_never_logged_in(stack, address)
    assert (await _login(stack, address, PASSWORD, client="203.0.113.7")).status == 201
    for _ in range(FREE_FAILURES):
        assert (await _login(stack, address, "nope" * 4, client="198.51.100.9")).status == 401
    for _ in range(3):
        assert (await _login(stack, address, "nope" * 4, client="198.51.100.9")).status == 429
        assert (await _login(stack, address, PASSWORD, client="203.0.113.7")).status == 201
    assert (await _login(stack, address, PASSWORD, client="192.0.2.50")).status == 429, \
        "a new client meets the wait, the right password too"


async def test_email_confirmation_tokens_are_limited_per_client(stack: Stack) -> None:
    api = stack.api
    signed_up = await api.call("POST", "/v1/members", json_body={
        "name": "Tess", "date_of_birth": "1990-01-01", "email": "tess@example.org", "password": PASSWORD})
    assert signed_up.status == 201
    token = await stack.confirmation_token("tess@example.org")
    for n in range(LIMIT):
        guess = await api.call("POST", "/v1/emails/confirm", json_body={"token": f"{n:043d}"})
        assert guess.status == 404, guess.body
    limited = await api.call("POST", "/v1/emails/confirm", json_body={"token": "0" * 43})
    assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
    form = await api.call("POST", "/confirm-email", data=f"token={token}",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status == 429, "the right token is refused while the window lasts (HTML form too)"
    right = await api.call("POST", "/v1/emails/confirm", json_body={"token": token})
    assert right.status == 429
    stack.clock.advance(timedelta(seconds=int(limited.headers["Retry-After"]) + 1))
    assert (await api.call("POST", "/v1/emails/confirm", json_body={"token": token})).status == 200


def assert_locked_down(headers: object, where: str) -> None:
    get = headers.get  # type: ignore[attr-defined]
    csp = get("Content-Security-Policy") or ""
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, (where, csp)
    assert "script-src" not in csp or "'unsafe-inline'" not in csp, (where, csp)
    assert get("X-Content-Type-Options") == "nosniff", where
    assert get("X-Frame-Options") == "DENY", where
    assert get("Referrer-Policy") == "no-referrer", where  # the URL holds a token
    assert "no-store" in (get("Cache-Control") or ""), where
    assert (get("Content-Type") or "").startswith("text/html"), where


async def test_registration_confirm_email_pages_carry_security_headers(stack: Stack) -> None:
    page = await stack.api.call("GET", "/confirm-email")
    assert page.status == 200
    assert_locked_down(page.headers, "GET /confirm-email")
    refused = await stack.api.call("POST", "/confirm-email", data="token=abc",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert refused.status == 404
    assert_locked_down(refused.headers, "POST /confirm-email (refused)")


async def test_domain_verify_limits_link_guessing_and_its_pages_carry_security_headers(
        kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> None:
    from tests.domain_verify.harness import running as domain_verify

    async with domain_verify(kafka_settings, mongo_settings, rate_limit_attempts=LIMIT,
                             rate_limit_window_seconds=2.0) as harness:
        await harness.request(domain="example.org", contact="hostmaster@example.org")
        (mail,) = await harness.mail_commands(1)
        link = params_of(mail)["link"]
        landing = await harness.http.get(harness.base_url + "/confirm")
        assert landing.status == 200
        assert_locked_down(landing.headers, "GET /confirm")
        page = await harness.review(link)
        assert page.status == 200 and "example.org" in await page.text()
        assert_locked_down(page.headers, "POST /confirm/review")
        for n in range(LIMIT - 2):
            guess = await harness.http.post(f"{harness.base_url}/confirm", data={"token": f"{n:043d}"})
            assert guess.status == 404
            assert_locked_down(guess.headers, "POST /confirm (wrong token)")
        limited = await harness.confirm(link)  # the right token, over the limit
        assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
        assert_locked_down(limited.headers, "429 page")
        await asyncio.sleep(2.5)
        confirmed = await harness.confirm(link)
        assert confirmed.status == 200
