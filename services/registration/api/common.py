"""HTTP plumbing shared by the registration routes: request schemas, bearer auth, rate-limit answers.

Request-body schemas are read from the OpenAPI document (`services/registration/openapi.json`,
beside this package), so the document served at /openapi.json and the validation the
service applies can never disagree.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from datetime import date
from importlib import resources
from typing import Any

from aiohttp import web

from services.registration.members import Member
from services.registration.ratelimit import RateLimited
from services.registration.sessions import Sessions
from shared import dns_names
from shared.http import ApiError, error_response

SESSION_KEY = "registration.session"


@functools.cache
def openapi_document() -> dict[str, Any]:
    text = resources.files("services.registration").joinpath("openapi.json").read_text()
    document: dict[str, Any] = json.loads(text)
    return document


def schema(name: str) -> dict[str, Any]:
    """One request-body schema from the OpenAPI document's components, as a schema of its own: a
    reference to it beside the document's components, so the `$ref`s inside it (EmailAddress,
    DomainName, ...) resolve exactly as they do in the published document."""
    components = openapi_document()["components"]
    if name not in components["schemas"]:
        raise KeyError(name)
    return {"$ref": f"#/components/schemas/{name}", "components": components}


def parse_date(value: str, field: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(
            422,
            "validation_failed",
            f"{field} must be a date YYYY-MM-DD",
            [{"field": field, "problem": f"{value!r} is not a valid date"}],
        ) from None


def email_field(value: str, field: str = "email") -> str:
    try:
        return dns_names.normalise_email(value)
    except ValueError as exc:
        raise ApiError(
            422,
            "validation_failed",
            f"{field} is not a usable email address",
            [{"field": field, "problem": str(exc)}],
        ) from None




class Authenticator:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def member(self, request: web.Request) -> Member:
        """The logged-in member, or 401."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "log in and send 'Authorization: Bearer <token>'")
        found = await self._sessions.member_for(token.strip())
        if found is None:
            raise ApiError(401, "unauthorized", "the session token is unknown or expired; log in again")
        member, digest = found
        request[SESSION_KEY] = digest
        return member

    async def admin(self, request: web.Request) -> Member:
        member = await self.member(request)
        if not member.is_admin:
            raise ApiError(403, "forbidden", "this needs support (admin) rights")
        return member


@web.middleware
async def rate_limit_answers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn RateLimited into 429 with Retry-After, in the shared JSON error shape."""
    try:
        return await handler(request)
    except RateLimited as exc:
        response = error_response(
            429, "rate_limited", str(exc), {"retry_after": exc.retry_after}, request.get("request_id")
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        return response


def query_text(request: web.Request, name: str, *, default: str | None = None, max_length: int = 1024) -> str:
    value = request.query.get(name, default)
    if value is None:
        raise ApiError(
            422,
            "validation_failed",
            f"query parameter {name} is required",
            [{"field": name, "problem": "missing"}],
        )
    if len(value) > max_length:
        raise ApiError(
            422,
            "validation_failed",
            f"query parameter {name} is too long",
            [{"field": name, "problem": f"longer than {max_length} characters"}],
        )
    return value
