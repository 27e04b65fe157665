"""The confirm endpoint's pages against an in-memory store: escaping, headers, GET is read-only, limits."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.domain_verify.challenge import ChallengeState, DomainChallenge
from services.domain_verify.confirm import ConfirmEndpoint
from services.domain_verify.settings import DomainVerifySettings
from services.domain_verify.tokens import new_token, token_hash
from shared.config import HttpSettings, KafkaSettings, MongoSettings
from shared.events import CloudEvent
from shared.http import create_app
from shared.settings import CommonSettings

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class MemoryStore:
    """Just enough of ChallengeStore for the endpoint (the real one is covered by integration tests)."""

    collection = settlements = None

    def __init__(self) -> None:
        self.docs: dict[str, DomainChallenge] = {}
        self.events: list[CloudEvent] = []

    async def by_token_hash(self, digest: str) -> DomainChallenge | None:
        return next((c for c in self.docs.values() if c.token_hash == digest), None)

    async def get(self, request_id: str) -> DomainChallenge | None:
        return self.docs.get(request_id)

    async def settle(self, request_id: str, state: ChallengeState, now: datetime, event: CloudEvent,
                     changes: dict[str, Any] | None = None) -> bool:
        current = self.docs[request_id]
        if current.state is not ChallengeState.PENDING:
            return False
        self.docs[request_id] = dataclasses.replace(current, state=state, **(changes or {}))
        self.events.append(event)
        return True


class NullOutbox:
    async def flush(self, *_: Any) -> None:
        return None


def settings(attempts: int = 50) -> DomainVerifySettings:
    common = CommonSettings(kafka=KafkaSettings(bootstrap="unused"), mongo=MongoSettings(url="unused"),
                            http=HttpSettings())
    return DomainVerifySettings(common=common, rate_limit_attempts=attempts)


def pending(token: str, **changes: Any) -> DomainChallenge:
    base = DomainChallenge(
        request_id="r-1", member_id="m-42", domain="xn--bcher-kva.de", contact="admin@xn--bcher-kva.de",
        state=ChallengeState.PENDING, requested_at=NOW, created_at=NOW, expires_at=NOW + timedelta(hours=72),
        token_hash=token_hash(token), member_name="<script>alert(1)</script> Ada",
    )
    return dataclasses.replace(base, **changes)


async def client_for(store: MemoryStore, attempts: int = 50) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app("domain_verify")
    ConfirmEndpoint(store, NullOutbox(), settings(attempts), clock=lambda: NOW).install(app)  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
async def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def client(store: MemoryStore) -> AsyncIterator[TestClient[Any, Any]]:
    async for c in client_for(store):
        yield c


def assert_locked_down(headers: Any) -> None:
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "style-src 'self'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"


async def test_the_link_opens_a_static_page_whose_script_is_the_only_one_allowed(
        store: MemoryStore, client: TestClient[Any, Any]) -> None:
    """The mailed link is /confirm#token=...: the browser asks for /confirm only; the page's script does the rest."""
    token = new_token()
    store.docs["r-1"] = pending(token)
    page = await client.get("/confirm")
    assert page.status == 200
    assert_locked_down(page.headers)
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    html = await page.text()
    assert '<form method="post" action="/confirm/review" data-mailed-token data-submit>' in html
    assert '<script src="/static/mailed-link.js" defer></script>' in html and html.count("<script") == 1
    assert 'name="token"' in html and "style=" not in html
    script = await client.get("/static/mailed-link.js")
    assert script.status == 200 and script.content_type == "text/javascript"
    assert "location.hash" in await script.text()
    assert store.docs["r-1"].state is ChallengeState.PENDING and store.events == []


async def test_review_names_domain_and_account_escapes_them_and_changes_nothing(
        store: MemoryStore, client: TestClient[Any, Any]) -> None:
    token = new_token()
    store.docs["r-1"] = pending(token)
    for _ in range(3):  # a mail scanner that runs the page's script, repeatedly
        response = await client.post("/confirm/review", data={"token": f" {token}\n"})  # typed in: spaces forgiven
        assert response.status == 200
        assert_locked_down(response.headers)
    html = await response.text()
    assert "bücher.de" in html and "xn--bcher-kva.de" in html and "m-42" in html
    assert "&lt;script&gt;" in html and "<script>alert" not in html
    assert '<form method="post" action="/confirm">' in html and f'name="token" value="{token}"' in html
    assert "style=" not in html
    assert store.docs["r-1"].state is ChallengeState.PENDING and store.events == []


async def test_post_confirms_once_and_a_replay_gets_a_used_page(
        store: MemoryStore, client: TestClient[Any, Any]) -> None:
    token = new_token()
    store.docs["r-1"] = pending(token)
    first = await client.post("/confirm", data={"token": token})
    assert first.status == 200 and "Domain confirmed" in await first.text()
    assert_locked_down(first.headers)
    replay = await client.post("/confirm", data={"token": token})
    assert replay.status == 410 and "already been used" in await replay.text()
    (event,) = store.events
    assert event.type == "org.cacert.domain.verified.v1"
    assert event.data["member_id"] == "m-42" and event.data["method"] == "email"
    assert event.data["valid_until"] == "2027-04-03T12:00:00Z"  # 398 days after NOW


@pytest.mark.parametrize("state, status, text", [
    (ChallengeState.SUPERSEDED, 410, "newer verification request"),
    (ChallengeState.EXPIRED, 410, "expired"),
    (ChallengeState.CONFIRMED, 410, "already been used"),
])
async def test_dead_links_get_a_clear_page_and_change_nothing(
        store: MemoryStore, client: TestClient[Any, Any], state: ChallengeState, status: int, text: str,
) -> None:
    token = new_token()
    store.docs["r-1"] = pending(token, state=state)
    for path in ("/confirm/review", "/confirm"):
        response = await client.post(path, data={"token": token})
        assert response.status == status and text in await response.text()
        assert_locked_down(response.headers)
    assert store.docs["r-1"].state is state and store.events == []


async def test_a_pending_link_past_its_expiry_is_expired_before_the_sweep_runs(
        store: MemoryStore, client: TestClient[Any, Any]) -> None:
    token = new_token()
    store.docs["r-1"] = pending(token, expires_at=NOW)
    response = await client.post("/confirm", data={"token": token})
    assert response.status == 410 and "expired" in await response.text()
    assert store.events == []


@pytest.mark.parametrize("token", ["A" * 43, "nope", "<script>", ""])
async def test_unknown_or_malformed_tokens_get_404_pages(client: TestClient[Any, Any], token: str) -> None:
    for path in ("/confirm/review", "/confirm"):
        response = await client.post(path, data={"token": token})
        assert response.status == 404 and "not valid" in await response.text()
        assert response.content_type == "text/html"
        assert_locked_down(response.headers)


async def test_a_token_in_the_path_is_not_a_route(client: TestClient[Any, Any]) -> None:
    """Links of the old form (/confirm/<token>) put the token into access logs: nothing answers them."""
    token = new_token()
    for method in (client.get, client.post):
        assert (await method(f"/confirm/{token}")).status in (404, 405)


async def test_attempts_are_rate_limited_per_client(store: MemoryStore) -> None:
    async for client in client_for(store, attempts=3):
        statuses = [(await client.post("/confirm/review", data={"token": "nope"})).status for _ in range(4)]
        assert statuses == [404, 404, 404, 429]
        limited = await client.post("/confirm", data={"token": "nope"})
        assert int(limited.headers["Retry-After"]) >= 1 and "Too many attempts" in await limited.text()


async def test_the_stylesheet_is_served_from_our_origin(client: TestClient[Any, Any]) -> None:
    response = await client.get("/static/confirm.css")
    assert response.status == 200 and response.content_type == "text/css"
