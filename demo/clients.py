"""Thin clients for the public interfaces the demo uses beside the member API (`demo/member_api.py`):
mailed links and the mailbox."""

from __future__ import annotations

import datetime as dt
import html.parser
import re
import time
import urllib.parse
from typing import Any

import aiohttp

from devstack.mailbox import MailboxClient, Message

LINK = re.compile(r"https?://[^\s<>\"']+")


class DemoError(Exception):
    """A step failed; the message says which and what the system answered."""


class _FormFinder(html.parser.HTMLParser):
    """The first <form> of a page: its action, its attributes and its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.attributes: dict[str, str] = {}
        self.fields: dict[str, str] = {}
        self._in_form = False
        self.found = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and not self.found:
            self.found = self._in_form = True
            self.action = values.get("action", "")
            self.attributes = values
        elif tag == "input" and self._in_form and values.get("name"):
            self.fields[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def _first_form(body: str, url: str) -> _FormFinder:
    form = _FormFinder()
    form.feed(body)
    if not form.found:
        raise DemoError(f"the page at {url} has no form to confirm with")
    return form


async def follow_confirmation_link(session: aiohttp.ClientSession, link: str) -> str:
    """What a person's browser does with a mailed link: open its page (which changes nothing; the token is in
    the link's fragment, which is never sent), let the page's script put the token into the form (and send it
    on when the form says `data-submit`, domain_verify's review step), then press the button.

    Returns the text of the page shown after the button.
    """
    parts = urllib.parse.urlsplit(link)
    token = urllib.parse.parse_qs(parts.fragment).get("token", [""])[0]
    url = urllib.parse.urlunsplit(parts._replace(fragment=""))
    if not token or token in url:
        raise DemoError(f"the mailed link {link} does not carry its token in the fragment only")
    async with session.get(url) as page:
        body = await page.text()
        if page.status != 200:
            raise DemoError(f"GET {url} answered {page.status}: {body[:500]}")
    form = _first_form(body, url)
    while True:
        if "data-mailed-token" in form.attributes:  # what mailed-link.js does
            form.fields["token"] = token
        target = urllib.parse.urljoin(url, form.action or url)
        async with session.post(target, data=form.fields) as answer:
            text = await answer.text()
            if answer.status != 200:
                raise DemoError(f"POST {target} answered {answer.status}: {text[:500]}")
        if "data-submit" not in form.attributes:
            return text
        url, form = target, _first_form(text, target)  # the review page: the person presses its button


class Mail:
    """The mailbox, remembering which messages the demo has already used."""

    def __init__(self, base_url: str) -> None:
        self.client = MailboxClient(base_url)
        self.seen: set[str] = set()
        self.subjects: list[dict[str, str]] = []

    async def next(self, *, to: str, subject: str, timeout: float = 30.0) -> Message:
        """The first unseen mail to `to` whose subject contains `subject`, waiting for it."""
        message = await self.client.wait_for(
            lambda m: m["id"] not in self.seen, timeout=timeout, to=to, subject=subject, interval=0.05
        )
        self.seen.add(message["id"])
        self.subjects.append({"to": to, "subject": message["subject"], "delivered": message["delivered"]})
        return message

    @staticmethod
    def link(message: Message, contains: str) -> str:
        for link in LINK.findall(message.get("text") or ""):
            if contains in link:
                return link.rstrip(".,;)")
        raise DemoError(f"no link containing {contains!r} in the mail {message['subject']!r}")

    @staticmethod
    def delivered_at(message: Message) -> float:
        """When the mailbox stored the message (epoch seconds)."""
        return dt.datetime.fromisoformat(message["delivered"]).timestamp()


async def wait_until(check: Any, what: str, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll the async `check()` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")
        await _sleep(interval)


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)
