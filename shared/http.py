"""The aiohttp scaffold every service uses: health, readiness, metrics, JSON errors.

Errors always leave as `{"error": {"code", "message", "details"}}` with the
request id, so a client (or an operator reading logs) can correlate them;
an unexpected exception becomes a 500 with no internals in the body.
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import jsonschema
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pymongo.errors import ConnectionFailure

from shared.logging import bound, get_logger

ReadinessCheck = Callable[[], Awaitable[bool]]
log = get_logger("shared.http")

REQUESTS = Counter("cacert_http_requests_total", "HTTP requests", ["service", "route", "status"])
LATENCY = Histogram("cacert_http_request_seconds", "HTTP request latency", ["service", "route"])
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
REQUEST_ID_KEY = web.AppKey("request_id_header", str)
READINESS_KEY = web.AppKey("readiness", dict)
class Draining:
    """Whether the process is shutting down; one per application, flipped by shared.service.close_http
    (an application's own state may not change once it runs)."""

    def __init__(self) -> None:
        self.active = False


DRAINING_KEY = web.AppKey("draining", Draining)
"""Set when the process is shutting down (shared.service.close_http): /readyz answers 503 so load
balancers take the replica out, and every answer closes its connection so keep-alive clients reconnect
to another replica instead of sending their next request into a closing socket."""
SERVICE_KEY = web.AppKey("service", str)


class ApiError(Exception):
    """An error with an HTTP status and a stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_response(status: int, code: str, message: str, details: Any = None,
                   request_id: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message, "details": details}}
    if request_id:
        body["error"]["request_id"] = request_id
    return web.json_response(body, status=status)


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def _observe(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else str(uuid.uuid4())
    request["request_id"] = request_id
    service = request.app[SERVICE_KEY]
    route = _route_name(request)
    with bound(request_id=request_id), LATENCY.labels(service, route).time():
        try:
            response = await handler(request)
        except ApiError as exc:
            response = error_response(exc.status, exc.code, exc.message, exc.details, request_id)
        except web.HTTPException as exc:
            if exc.status >= 400 and exc.content_type != "application/json" and exc.content_type != "text/html":
                code = exc.reason.lower().replace(" ", "_")
                message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
                response = error_response(exc.status, code, message, None, request_id)
            else:
                raise
        except ConnectionFailure as exc:
            # The database is unreachable or did not answer in time (CACERT_MONGO_SOCKET_TIMEOUT_SECONDS): a
            # moment's outage, not a fault of the request, so 503 and a time to come back rather than a 500.
            log.warning("database unavailable", path=request.path, method=request.method,
                        error=type(exc).__name__)
            response = error_response(503, "database_unavailable",
                                      "the service's database is not answering; try again shortly", None, request_id)
            response.headers["Retry-After"] = "5"
        except Exception:
            log.exception("unhandled error", path=request.path, method=request.method)
            response = error_response(500, "internal_error", "internal error; quote the request id to support",
                                      None, request_id)
        response.headers.setdefault("X-Request-ID", request_id)
        if request.app[DRAINING_KEY].active and not response.prepared:
            response.force_close()
        REQUESTS.labels(service, route, str(response.status)).inc()
        return response


def _problem(error: jsonschema.ValidationError) -> str:
    """jsonschema's message, unless it would only echo (a truncated copy of) a huge input value or a long
    pattern: a value that does not match the pattern of a schema with a `title` "is not <title>"."""
    title = error.schema.get("title") if isinstance(error.schema, dict) else None
    if error.validator == "pattern" and isinstance(title, str):
        return f"is not {title}"
    if len(error.message) <= 300:
        return error.message
    if error.validator == "maxLength":
        return f"is longer than {error.validator_value} characters"
    return f"does not satisfy {error.validator} {str(error.validator_value)[:200]}"


TRUSTED_PROXIES_KEY = web.AppKey("trusted_proxies", list)
"""The app's trusted reverse proxies (HttpSettings.trusted_networks); set by each service that rate-limits."""


def client_address(request: web.Request) -> str:
    """The client a per-client limit counts: the socket peer, unless the peer is a trusted proxy; then
    the nearest X-Forwarded-For entry (from the right) that is not itself a trusted proxy. Entries left
    of that are whatever the client sent and are never believed."""
    trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = request.app.get(TRUSTED_PROXIES_KEY, [])
    peer = request.remote or "unknown"
    if not trusted or not _within(peer, trusted):
        return peer
    hops = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",") if part.strip()]
    for hop in reversed(hops):
        if not _within(hop, trusted):
            return hop if _is_address(hop) else peer
    return peer


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _within(address: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


MAX_JSON_DEPTH = 32
"""Deeper request bodies are refused before validation: no API takes more than a few levels, and a
deep one would make the schema validator recurse as deep."""


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:  # nothing below the limit needs a closer look
                stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _unencodable(value: Any) -> bool:
    """True when a string (or key) in the parsed body holds a lone surrogate (`"\\ud800"` is valid JSON but
    no UTF-8 text: hashing, storing or logging it would fail later, as a 500)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


async def read_json(request: web.Request, schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The request body as a JSON object, validated against `schema`; 4xx with details otherwise."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "body_too_large", f"request body exceeds {request.app._client_max_size} bytes"
                       ) from None
    try:
        body = json.loads(raw or b"")
    except RecursionError:
        raise ApiError(400, "invalid_json", f"request body is nested more than {MAX_JSON_DEPTH} levels deep"
                       ) from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", "request body is not valid JSON", {"position": exc.pos}) from None
    except (UnicodeDecodeError, ValueError):  # e.g. an integer beyond Python's digit limit
        raise ApiError(400, "invalid_json", "request body is not valid JSON: a number or string in it cannot "
                                            "be read") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    if _depth(body) > MAX_JSON_DEPTH:
        raise ApiError(400, "invalid_json", f"request body is nested more than {MAX_JSON_DEPTH} levels deep")
    if _unencodable(body):
        raise ApiError(400, "invalid_json", "request body is not valid JSON: a string in it holds a lone "
                                            "surrogate (\\ud800-\\udfff), which is not text")
    if schema is not None:
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(body), key=lambda e: list(e.path))
        if errors:
            details = [{"field": "/".join(str(p) for p in e.absolute_path) or "(body)", "problem": _problem(e)}
                       for e in errors[:20]]
            raise ApiError(422, "validation_failed", "the request body is not valid", details)
    return body


def check_value(value: Any, schema: Mapping[str, Any], field: str) -> None:
    """422 `validation_failed` naming `field` unless `value` (e.g. a query parameter) satisfies `schema`."""
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path))
    if errors:
        raise ApiError(422, "validation_failed", f"{field} is not valid",
                       [{"field": field, "problem": _problem(e)} for e in errors[:20]])


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    if request.app[DRAINING_KEY].active:
        return web.json_response({"status": "draining", "checks": {}}, status=503)
    results: dict[str, bool] = {}
    for name, check in request.app[READINESS_KEY].items():
        try:
            results[name] = bool(await check())
        except Exception:
            results[name] = False
    ready = all(results.values())
    return web.json_response({"status": "ready" if ready else "not_ready", "checks": results},
                             status=200 if ready else 503)


async def _metrics(_: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def create_app(service: str, *, readiness: Mapping[str, ReadinessCheck] | None = None,
               client_max_size: int = 256 * 1024) -> web.Application:
    """An application with /healthz, /readyz, /metrics and JSON error handling."""
    app = web.Application(middlewares=[_observe], client_max_size=client_max_size)
    app[SERVICE_KEY] = service
    app[READINESS_KEY] = dict(readiness or {})
    app[DRAINING_KEY] = Draining()
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app
