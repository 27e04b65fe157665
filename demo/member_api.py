"""The registration member API as a client sees it: JSON in, JSON out, a bearer token.

One client for the code outside the services that talks to the API over HTTP: the demo
(`demo/flow.py`) and the end-to-end benchmark (`benchmarks/e2e_load.py`). `send` returns whatever
the API answered; `call` also insists on a success and raises `ApiRefused` otherwise.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import aiohttp


class ApiRefused(Exception):
    """The API answered an error status the caller did not expect; the message says what it answered."""

    def __init__(self, method: str, path: str, status: int, text: str) -> None:
        super().__init__(f"{method} {path} answered {status}: {text[:2000]}")
        self.status = status


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: Any  # the JSON document, the text when the answer is not JSON, None when it is empty
    text: str


class MemberApi:
    """One member's (or Assurer's) view of the API; `token` is set by `login` or given per request."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str | None = None) -> None:
        self._session = session
        self.base_url = base_url.rstrip("/")
        self.token = token

    async def send(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> Reply:
        """One request, any answer. `token` overrides the session's own (one client, many members)."""
        headers = {"Accept": "application/json"}
        bearer = token or self.token
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        async with self._session.request(method, self.base_url + path, json=body, headers=headers) as response:
            text = await response.text()
        parsed = json.loads(text) if text[:1] in ("{", "[") else (text or None)
        return Reply(response.status, parsed, text)

    async def call(
        self, method: str, path: str, body: Any = None, *, token: str | None = None, ok: tuple[int, ...] = ()
    ) -> Any:
        """The answer's body; an error status not listed in `ok` raises `ApiRefused`."""
        reply = await self.send(method, path, body, token=token)
        if reply.status >= 400 and reply.status not in ok:
            raise ApiRefused(method, path, reply.status, reply.text)
        return reply.body

    async def login(self, email: str, password: str, second_factor_secret: str | None = None) -> str:
        """Open a session (`POST /v1/sessions`, with the current TOTP code when the account has a second
        factor); its token is used from now on, and returned."""
        body = {"email": email, "password": password}
        if second_factor_secret:
            import pyotp

            body["totp"] = pyotp.TOTP(second_factor_secret).now()
        session = await self.call("POST", "/v1/sessions", body)
        self.token = str(session["token"])
        return self.token
