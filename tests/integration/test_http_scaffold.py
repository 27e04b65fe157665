"""The aiohttp scaffold: health, readiness with real dependencies, metrics, JSON errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from pymongo.errors import NetworkTimeout

from shared.config import KafkaSettings, MongoSettings
from shared.http import ApiError, create_app, read_json
from shared.kafka import EventProducer
from shared.mongo import connect, ping
from shared.service import start_http

SCHEMA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "maxLength": 5}}}


@pytest.fixture
async def base_url(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[str]:
    client, _ = connect(mongo_settings, service="test")
    producer = EventProducer(kafka_settings, client_id="test")
    await producer.start()

    async def echo(request: web.Request) -> web.Response:
        body = await read_json(request, SCHEMA)
        if body["name"] == "boom":
            raise RuntimeError("secret internals")
        if body["name"] == "nodb":
            raise NetworkTimeout("db.example:27017: timed out")
        if body["name"] == "nope":
            raise ApiError(409, "conflict", "already exists", {"name": "nope"})
        return web.json_response(body)

    app = create_app("test", readiness={"kafka": producer.ping, "mongodb": lambda: ping(client)},
                     client_max_size=1024)
    app.router.add_post("/echo", echo)
    runner = await start_http(app, "127.0.0.1", 0)
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()
    await producer.stop()
    await client.close()


async def test_health_readiness_and_metrics(base_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base_url}/healthz") as r:
            assert r.status == 200
        async with http.get(f"{base_url}/readyz") as r:
            assert r.status == 200
            assert (await r.json())["checks"] == {"kafka": True, "mongodb": True}
        async with http.post(f"{base_url}/echo", json={"name": "ok"}) as r:
            assert r.status == 200 and r.headers["X-Request-ID"]
        async with http.get(f"{base_url}/metrics") as r:
            text = await r.text()
            assert 'cacert_http_requests_total{route="/echo",service="test",status="200"}' in text


@pytest.mark.parametrize("body, headers, status, code", [
    (b"{nope", {"Content-Type": "application/json"}, 400, "invalid_json"),
    (b'{"name": 5}', {"Content-Type": "application/json"}, 422, "validation_failed"),
    (b'{"name": "x"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
    (b'{"name": "' + b"x" * 5000 + b'"}', {"Content-Type": "application/json"}, 413, "body_too_large"),
    (b'{"name": "nope"}', {"Content-Type": "application/json"}, 409, "conflict"),
    (b'{"name": "boom"}', {"Content-Type": "application/json"}, 500, "internal_error"),
    (b'{"name": "nodb"}', {"Content-Type": "application/json"}, 503, "database_unavailable"),
])
async def test_errors_are_json_with_code_and_request_id(base_url: str, body: bytes, headers: dict[str, str],
                                                         status: int, code: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(f"{base_url}/echo", data=body, headers=headers) as r:
        assert r.status == status
        error = (await r.json())["error"]
        assert error["code"] == code and error["message"] and error["request_id"]
        assert "secret internals" not in await r.text() and "db.example" not in await r.text()
        if status == 503:
            assert r.headers["Retry-After"] == "5"


async def test_unknown_route_is_a_json_404(base_url: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/nowhere") as r:
        assert r.status == 404
        assert (await r.json())["error"]["code"] == "not_found"
