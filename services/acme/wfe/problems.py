"""ACME problem documents (RFC 8555 6.7, RFC 7807): `urn:ietf:params:acme:error:*`, with subproblems."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

NS = "urn:ietf:params:acme:error:"
CONTENT_TYPE = "application/problem+json"

STATUS = {
    "malformed": 400, "badNonce": 400, "badSignatureAlgorithm": 400, "badPublicKey": 400, "badCSR": 400,
    "badRevocationReason": 400, "invalidContact": 400, "unsupportedContact": 400, "unsupportedIdentifier": 400,
    "rejectedIdentifier": 400, "externalAccountRequired": 400, "alreadyRevoked": 400, "orderNotReady": 403,
    "unauthorized": 403, "caa": 403, "accountDoesNotExist": 400, "rateLimited": 429, "serverInternal": 500,
    "conflict": 409, "notFound": 404, "connection": 400, "incorrectResponse": 403, "dns": 400,
}


class Problem(Exception):
    """An ACME error answered as a problem document; `kind` is the part after the URN namespace."""

    def __init__(self, kind: str, detail: str, *, status: int | None = None, retry_after: int | None = None,
                 subproblems: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.status = status or STATUS.get(kind, 400)
        self.retry_after = retry_after
        self.subproblems = subproblems or []
        self.headers = dict(headers or {})

    def document(self) -> dict[str, Any]:
        return problem_document(self.kind, self.detail, self.status, self.subproblems)

    def response(self) -> web.Response:
        headers = dict(self.headers)
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return web.Response(status=self.status, text=json.dumps(self.document()), content_type=CONTENT_TYPE,
                            headers=headers)


def problem_document(kind: str, detail: str, status: int | None = None,
                     subproblems: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": NS + kind, "detail": detail, "status": status or STATUS.get(kind, 400)}
    if subproblems:
        doc["subproblems"] = subproblems
    return doc


def subproblem(kind: str, detail: str, identifier: str) -> dict[str, Any]:
    return {"type": NS + kind, "detail": detail, "identifier": {"type": "dns", "value": identifier}}
