"""Mailed links that keep their token out of every request line (issue 19, item 5).

A link with the token in its path or query (`/confirm/<token>`, `?token=...`) is written into the access
log of every proxy, ingress and server it passes, and into browser history. So a mailed link carries
the token in the URL *fragment* (`https://ra.example/confirm-email#token=...`), which a browser never
sends. The page it opens is static; `static/mailed-link.js` (served by each service at `SCRIPT_PATH`,
allowed by its CSP as `script-src 'self'`) moves the token from the fragment into the page's form, and
the token reaches the server only in a POST body. Without JavaScript the person types the code the
mail shows beside the link into the same form. The server never reads a token from a URL.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from aiohttp import web

TOKEN_FIELD = "token"  # noqa: S105 - the name of the form field and of the fragment parameter
SCRIPT_PATH = "/static/mailed-link.js"
SCRIPT = Path(__file__).parent / "static" / "mailed-link.js"


def mailed_link(public_url: str, path: str, token: str) -> str:
    """The link a mail carries: the page at `path`, the token in the fragment only."""
    return f"{page(public_url, path)}#{TOKEN_FIELD}={quote(token, safe='')}"


def page(public_url: str, path: str) -> str:
    """The page a mailed link opens, without the token (the mail names it beside the code)."""
    return f"{public_url.rstrip('/')}{path}"


async def script(_: web.Request) -> web.Response:
    return web.Response(body=SCRIPT.read_bytes(), content_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=3600"})
