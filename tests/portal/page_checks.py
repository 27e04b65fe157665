"""The checks the browser walk makes on every page it reaches (tests/portal/test_portal_walk.py).

For each page: a full-page screenshot at desktop width and one at 390 px, and these checks, whose
failures are collected (page by page) so one run reports everything that is wrong:

* no console error and no uncaught script error (a CSP violation is a console error);
* the stylesheet applied: every linked stylesheet loaded with rules, and the body no longer has the
  browser's default 8 px margin;
* the page is HTML, and its text is not JSON;
* no internal text: field names, library and exception names, and no error or notice starting with a
  lower-case letter (a raw library message), unless it starts with the address or domain it is about;
* every visible input, select and textarea has an accessible name (a label, aria-label or aria-labelledby);
* Tab moves focus through visible elements only, each with a visible focus indicator (outline or shadow)
  (a page with no link, button or field, like domain_verify's answer page, has nothing to focus);
* at 390 px nothing overflows sideways (`scrollWidth <= clientWidth`);
* axe-core (pinned in devstack/axe/) reports no violation of impact "serious" or "critical".
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from devstack import axe
from tests.portal.browser import DESKTOP, PHONE, SCREENSHOTS, shot

WALK = SCREENSHOTS / "walk"
INTERNAL = re.compile(
    r"csr_pem|csr_file|Traceback|cryptography|codepoint|KeyError|ValueError|TypeError|AttributeError|"
    r"NoneType|validation_failed|Internal Server Error|\{'|'\}|\bu'|\\u[0-9a-f]{4}|object at 0x"
)
NAME_FIRST = re.compile(r"[^\s@]+(@[^\s@]+)?\.[a-z]{2,}\b")  # "ada@example.org is now verified." is a sentence
SERIOUS = ("serious", "critical")
TAB_STOPS = 80  # more than any page has: the loop ends when focus comes back round

_FIELDS_WITHOUT_NAME = """() => {
  const named = el => {
    const parts = [...(el.labels || [])].map(l => l.innerText);
    parts.push(el.getAttribute('aria-label') || '');
    for (const id of (el.getAttribute('aria-labelledby') || '').split(/\\s+/).filter(Boolean)) {
      parts.push((document.getElementById(id) || {}).innerText || '');
    }
    return parts.join('').trim() !== '';
  };
  return [...document.querySelectorAll('input, select, textarea')]
    .filter(el => !['hidden', 'submit', 'button', 'reset'].includes(el.type))
    .filter(el => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden')
    .filter(el => !named(el))
    .map(el => el.outerHTML.slice(0, 160));
}"""

_FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  const s = getComputedStyle(el);
  const r = el.getBoundingClientRect();
  const visible = r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.opacity !== '0'
    && r.right > 0 && r.bottom > 0 && r.left < window.innerWidth && r.top < window.innerHeight;
  const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0;
  const shadow = s.boxShadow && s.boxShadow !== 'none';
  return {key: el.outerHTML.slice(0, 160), visible, indicator: Boolean(outline || shadow)};
}"""

_START_OVER = "() => { if (document.activeElement) document.activeElement.blur(); window.scrollTo(0, 0); }"

_FOCUSABLE = """() => [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')]
  .filter(el => el.type !== 'hidden' && el.getClientRects().length > 0).length"""

_STYLED = """() => {
  const links = [...document.querySelectorAll('link[rel~="stylesheet"]')];
  const empty = links.filter(l => !l.sheet || l.sheet.cssRules.length === 0).map(l => l.href);
  return {links: links.length, empty, margin: getComputedStyle(document.body).margin};
}"""

_MESSAGES = """() => [...document.querySelectorAll('.error, .notice, [role=alert], [role=status], .error li')]
  .map(el => el.innerText.trim()).filter(Boolean)"""


def axe_source() -> str:
    """axe.min.js from the stack cache; missing is a failure (./dev test installs it), never a skip."""
    path = axe.script()
    if not axe.installed():
        pytest.fail(f"axe-core {axe.version()} is not installed at {path}: run `python -m devstack axe-core`"
                    " (./dev test does it before the tests)")
    return path.read_text()


class PageWalk:
    """Watches one browser page and checks each page it lands on; `check` numbers the screenshots."""

    def __init__(self, page: Any, axe_script: str, counter: list[int], failures: list[str],
                 notes: list[str] | None = None) -> None:
        self.page = page
        self.notes = notes if notes is not None else []  # axe's minor and moderate findings: printed, not failed
        self._axe = axe_script
        self._counter = counter  # shared by the walk's pages, so the files sort in walk order
        self.failures = failures
        self._events: list[str] = []
        self._stylesheets: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self._events.append(f"script error: {error}"))
        page.on("response", self._response)

    @staticmethod
    def reset_folder() -> None:
        shutil.rmtree(WALK, ignore_errors=True)
        WALK.mkdir(parents=True, exist_ok=True)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self._events.append(f"console error: {message.text} ({message.location.get('url', '')})")

    def _response(self, response: Any) -> None:
        if response.request.resource_type == "stylesheet" and response.status != 200:
            self._stylesheets.append(f"stylesheet {response.url} answered {response.status}")

    async def check(self, name: str, *, status: int | None = None) -> Path:
        """Check the page now shown; `status` is the HTTP status the page itself is expected to have (a 404
        page logs "Failed to load resource" for its own address, which is then not a failure)."""
        self._counter[0] += 1
        label = f"{self._counter[0]:02d}-{name}"
        page = self.page
        found: list[str] = []
        await page.wait_for_load_state("load")

        events, self._events = self._events, []
        own = f"the server responded with a status of {status}"
        found += [e for e in events if not (status and own in e and page.url.split("#")[0] in e)]
        found += self._stylesheets
        self._stylesheets = []

        if await page.evaluate("document.contentType") != "text/html":
            found.append(f"not an HTML page: {await page.evaluate('document.contentType')}")
        styled = await page.evaluate(_STYLED)
        if not styled["links"] or styled["empty"] or styled["margin"] == "8px":
            found.append(f"unstyled: {styled}")
        text = await page.evaluate("document.body ? document.body.innerText : ''")
        try:
            json.loads(text)
            found.append("the page's text is JSON")
        except ValueError:
            pass
        found += [f"internal text {m.group(0)!r}: …{text[max(0, m.start() - 60):m.end() + 60]}…"
                  for m in INTERNAL.finditer(text)]
        found += [f"message starts in lower case: {m!r}" for m in await page.evaluate(_MESSAGES)
                  if m[:1].islower() and not NAME_FIRST.match(m)]
        found += [f"field without a label: {f}" for f in await page.evaluate(_FIELDS_WITHOUT_NAME)]
        found += await self._tab_through()

        await shot(page, f"walk/{label}")
        found += await self._axe_violations(label)
        await page.set_viewport_size(PHONE)
        width = await page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        if width[0] > width[1]:
            found.append(f"overflows at 390 px: {width[0]} px wide, {width[1]} px visible;"
                         f" widest: {await page.evaluate(_WIDEST)}")
        await shot(page, f"walk/{label}-390px")
        await page.set_viewport_size(DESKTOP)
        self.failures += [f"{label} ({page.url}): {f}" for f in found]
        return WALK / f"{label}.png"

    async def _tab_through(self) -> list[str]:
        page = self.page
        await page.evaluate(_START_OVER)
        problems: list[str] = []
        seen: set[str] = set()
        stops = 0
        for _ in range(TAB_STOPS):
            await page.keyboard.press("Tab")
            focused = await page.evaluate(_FOCUSED)
            if focused is None or focused["key"] in seen:
                break
            seen.add(focused["key"])
            stops += 1
            if not focused["visible"]:
                problems.append(f"Tab focuses an element that is not visible: {focused['key']}")
            elif not focused["indicator"]:
                problems.append(f"no visible focus indicator on {focused['key']}")
        if stops == 0 and await page.evaluate(_FOCUSABLE):
            problems.append("Tab does not move the focus to anything, although the page has links or fields")
        await page.evaluate(_START_OVER)
        return problems

    async def _axe_violations(self, label: str) -> list[str]:
        page = self.page
        # Evaluated through the DevTools protocol, which the page's CSP (script-src 'none') does not govern; an
        # injected <script> tag would need the CSP switched off, and then a CSP violation would go unnoticed.
        if not await page.evaluate("typeof window.axe === 'object'"):
            await page.evaluate("() => {\n" + self._axe + "\n}")
        results = await page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
        if not results["passes"]:
            return ["axe-core ran no rule at all"]
        problems = []
        for violation in results["violations"]:
            if violation["impact"] not in SERIOUS:
                self.notes.append(f"{label}: axe {violation['impact']} {violation['id']} ({len(violation['nodes'])})")
            else:
                nodes = "; ".join(" ".join(map(str, n["target"])) + f" ({n.get('failureSummary', '')[:200]})"
                                  for n in violation["nodes"][:5])
                problems.append(f"axe {violation['impact']} {violation['id']}: {violation['help']}: {nodes}")
        return problems


_WIDEST = """() => [...document.querySelectorAll('body *')]
  .filter(el => el.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
  .slice(-3)
  .map(el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className ? '.' + el.className : ''))"""
