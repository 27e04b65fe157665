"""Malformed input gets a 4xx JSON error naming the problem, never a 500, and the service keeps serving."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.config import KafkaSettings, MongoSettings
from tests.registration.harness import Stack, running

pytestmark = pytest.mark.usefixtures("topics")
UNREADABLE_PEM = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"


@pytest.fixture
async def stack(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Stack]:
    async with running(kafka_settings, mongo_settings) as s:
        yield s


async def test_malformed_bodies(stack: Stack) -> None:
    api = stack.api
    _, token = await stack.member("Kim", "kim@example.org")
    json_type = {"Content-Type": "application/json"}
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("POST", "/v1/members", {"data": "{not json", "headers": json_type}, 400, "invalid_json"),
        ("POST", "/v1/members", {"data": "[1, 2]", "headers": json_type}, 400, "invalid_json"),
        (
            "POST",
            "/v1/members",
            {"data": "name=x", "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            "/v1/members",
            {
                "json_body": {
                    "name": 5,
                    "date_of_birth": "1990-01-01",
                    "email": "x@example.org",
                    "password": "long enough pw",
                }
            },
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/v1/members",
            {
                "json_body": {
                    "name": "X",
                    "date_of_birth": "1990-02-31",
                    "email": "x@example.org",
                    "password": "long enough pw",
                }
            },
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/v1/members",
            {
                "json_body": {
                    "name": "X",
                    "date_of_birth": "1990-02-01",
                    "email": "not-an-address",
                    "password": "long enough pw",
                }
            },
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/v1/members",
            {
                "json_body": {
                    "name": "X",
                    "date_of_birth": "1990-02-01",
                    "email": "x@example.org",
                    "password": "short",
                }
            },
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/v1/assurances",
            {
                "json_body": {"member": "x", "points": "35", "location": "B", "date": "2026-01-01",
                              "documents_checked": True},
                "token": token,
            },
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/v1/domains",
            {"json_body": {"domain": "exa_mple..org"}, "token": token},
            422,
            "validation_failed",  # the request schema's DomainName pattern
        ),
        (
            "POST",
            "/v1/domains",
            {"json_body": {"domain": "xn--abc.org"}, "token": token},
            422,
            "invalid_domain",  # the shape of an A-label, but not one IDNA can decode
        ),
        (
            "POST",
            "/v1/requests",
            {"json_body": {"csr_pem": "garbage", "profile": "server"}, "token": token},
            422,
            "validation_failed",  # not a PEM block: the request schema's CsrPem pattern
        ),
        (
            "POST",
            "/v1/requests",
            {"json_body": {"csr_pem": UNREADABLE_PEM, "profile": "server"}, "token": token},
            422,
            "csr_rejected",
        ),
        (
            "POST",
            "/v1/requests",
            {"json_body": {"csr_pem": "x", "profile": "teapot"}, "token": token},
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/v1/requests",
            {"json_body": {"csr_pem": "A" * 100_000, "profile": "server"}, "token": token},
            422,
            "validation_failed",
        ),
        (
            "POST",
            "/v1/requests",
            {"json_body": {"csr_pem": "A" * 1_000_000, "profile": "server"}, "token": token},
            413,
            "body_too_large",
        ),
        (
            "POST",
            "/v1/members",
            {"data": "{" + " " * 300_000 + "}", "headers": json_type},
            413,
            "body_too_large",
        ),
        ("GET", "/v1/me", {"token": "not-a-real-token-at-all"}, 401, "unauthorized"),
        ("GET", "/v1/me", {"headers": {"Authorization": "Basic abc"}}, 401, "unauthorized"),
        ("GET", "/v1/nope", {}, 404, "not_found"),
        ("GET", "/v1/domain-contacts?domain=com", {"token": token}, 422, "validation_failed"),  # one label
        ("GET", "/v1/domain-contacts?domain=co.uk", {"token": token}, 422, "public_suffix"),
        ("POST", "/v1/emails/confirm", {"json_body": {"token": "../../etc/passwd"}}, 404, "token_unknown"),
    ]
    for method, path, kwargs, status, code in cases:
        reply = await api.call(method, path, **kwargs)
        assert reply.status == status, (path, kwargs.get("json_body"), reply.status, reply.body)
        assert reply.body["error"]["code"] == code, (path, reply.body)
        assert reply.body["error"]["message"]

    garbage = await api.call(
        "POST", "/v1/requests", token=token, json_body={"csr_pem": "garbage", "profile": "server"}
    )
    assert {"field": "csr_pem", "problem": "is not one PEM certificate request block (-----BEGIN CERTIFICATE "
            "REQUEST-----)"} in garbage.body["error"]["details"]
    unreadable = await api.call(
        "POST", "/v1/requests", token=token, json_body={"csr_pem": UNREADABLE_PEM, "profile": "server"}
    )
    assert "csr_pem is not a readable certificate request" in unreadable.body["error"]["details"]["reasons"][0]
    wrong_type = await api.call(
        "POST",
        "/v1/assurances",
        token=token,
        json_body={"member": "x", "points": "35", "location": "B", "date": "2026-01-01",
                              "documents_checked": True},
    )
    assert wrong_type.body["error"]["details"][0]["field"] == "points"
    assert (await api.call("GET", "/healthz")).status == 200
    assert (await api.call("GET", "/v1/me", token=token)).status == 200


async def test_openapi_document_is_served(stack: Stack) -> None:
    reply = await stack.api.call("GET", "/openapi.json")
    assert reply.status == 200 and reply.body["openapi"].startswith("3.1")
    assert "/v1/requests" in reply.body["paths"]
