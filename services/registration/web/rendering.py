"""Jinja2 templates (autoescaped: names, domains and CSR contents are untrusted) and small response helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from services.registration.members import Member
from services.registration.web.security import CSRF_FIELD, LINK_PAGE_HEADERS, Visitor

HERE = Path(__file__).parent
STYLESHEET = HERE / "static" / "portal.css"
FAVICON = HERE / "static" / "favicon.svg"

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

# The member menu, CAcert style: (section, label, path); admin entries only for support staff.
MENU = (
    ("account", "My account", "/account"),
    ("domains", "Domains", "/account/domains"),
    ("server", "Server Certificates", "/account/server-certs"),
    ("client", "Client Certificates", "/account/client-certs"),
    ("assurance", "Assurance", "/account/assurance"),
)
CODESIGN_MENU = (("codesign", "Code Signing", "/account/code-signing"),)  # once support activated it
ADMIN_MENU = (("admin", "Support (admin)", "/account/admin"),)


def menu_for(member: Member | None) -> tuple[tuple[str, str, str], ...]:
    if member is None:
        return ()
    codesign = CODESIGN_MENU if member.is_assurer and member.codesign_enabled else ()
    return MENU + codesign + (ADMIN_MENU if member.is_admin else ())


def render(
    visitor: Visitor, template: str, *, title: str, section: str = "", status: int = 200, **context: Any
) -> web.Response:
    member = visitor.member
    menu = menu_for(member)
    body = _templates.get_template(template).render(
        title=title,
        section=section,
        member=member,
        menu=menu,
        csrf_field=CSRF_FIELD,
        csrf=visitor.csrf,
        **context,
    )
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def render_link_page(template: str, *, title: str, status: int = 200, **context: Any) -> web.Response:
    """A page opened from a mailed link whose URL holds a secret: no visitor, no menu, the strict headers."""
    body = _templates.get_template(template).render(
        title=title, section="", member=None, menu=(), csrf_field=CSRF_FIELD, csrf="", **context
    )
    return web.Response(
        text=body, status=status, content_type="text/html", charset="utf-8", headers=LINK_PAGE_HEADERS
    )


def error_page(
    visitor: Visitor, status: int, title: str, message: str, details: list[str] | None = None
) -> web.Response:
    return render(visitor, "error.html", title=title, status=status, message=message, details=details or [])


def see_other(location: str) -> web.Response:
    """303 to a path of this site (after a POST, so reloading does not post again)."""
    return web.Response(status=303, headers={"Location": location})


async def stylesheet(_: web.Request) -> web.Response:
    return web.Response(
        body=STYLESHEET.read_bytes(),
        content_type="text/css",
        headers={"Cache-Control": "public, max-age=3600"},
    )


async def favicon(_: web.Request) -> web.Response:
    return web.Response(
        body=FAVICON.read_bytes(),
        content_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


async def favicon_ico(_: web.Request) -> web.Response:
    """Browsers ask for /favicon.ico on pages without an icon link (like the API's /confirm-email)."""
    return web.Response(status=301, headers={"Location": "/static/favicon.svg"})
