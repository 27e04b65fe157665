"""HTML pages of the confirm endpoint: Jinja2 templates with autoescaping and strict headers.

The pages are shown to whoever holds a mailed link, often inside a webmail
client, so they are locked down: one static script from this origin (it moves
the token from the link's fragment into the form, shared/mailed_links.py), no
framing, no referrer, nothing cached, styles only from this origin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

HERE = Path(__file__).parent
STYLESHEET = HERE / "static" / "confirm.css"

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,  # every template is HTML; member names and domains are untrusted input
    undefined=jinja2.StrictUndefined,
)


def render(template: str, *, status: int = 200, headers: dict[str, str] | None = None,
           **context: Any) -> web.Response:
    body = _templates.get_template(template).render(**context)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers=headers)


async def add_security_headers(_: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: every response of this service carries the headers."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


async def stylesheet(_: web.Request) -> web.Response:
    return web.Response(body=STYLESHEET.read_bytes(), content_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600"})
