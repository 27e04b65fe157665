"""Templates to mail content: subject, plain text, optional HTML, attachments.

Each template `templates/<name>.txt.j2` extends the shared layout and
defines a `subject` block and a `body` block; `<name>.html.j2`, when
present, adds an HTML alternative (autoescaped; the plain text is not,
since it is never interpreted). Undefined variables are errors, so a typo
in a template fails a unit test instead of mailing an empty line.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from typing import Any

import jinja2

from services.notifier import certificate_mail
from services.notifier.addresses import subject_text
from services.notifier.certificate_mail import Attachment

TEMPLATES = Path(__file__).with_name("templates")
# Templates whose context describes a certificate and gets file names, anchor and label derived from it.
CERTIFICATE_TEMPLATES = frozenset({"cert_issued", "expiry_reminder"})
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class TemplateMissing(LookupError):
    """No template of that name: the mail can never be rendered."""


@dataclasses.dataclass(frozen=True)
class MailContent:
    subject: str
    text: str
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()


class MailRenderer:
    def __init__(self, directory: Path = TEMPLATES, *, account_url: str = "") -> None:
        """`account_url`: registration's public URL (the footer names it; reminders link to Renew under it)."""
        loader = jinja2.FileSystemLoader(directory)
        options: dict[str, Any] = {"loader": loader, "undefined": jinja2.StrictUndefined,
                                   "trim_blocks": True, "lstrip_blocks": True, "keep_trailing_newline": True}
        self._text = jinja2.Environment(autoescape=False, **options)  # noqa: S701 - plain text, never HTML
        self._html = jinja2.Environment(autoescape=True, **options)
        self._account_url = account_url

    def known(self, template: str) -> bool:
        return bool(_NAME.match(template)) and f"{template}.txt.j2" in self._names

    @functools.cached_property
    def _names(self) -> frozenset[str]:
        return frozenset(self._text.list_templates())

    def render(self, template: str, context: dict[str, Any]) -> MailContent:
        if not self.known(template):
            raise TemplateMissing(f"no template {template!r}")
        # page/code: absent from mails queued before commands carried them; such a mail names the link alone.
        values = {"account_url": self._account_url, "name": None, "page": None, "code": None, **context}
        if template in CERTIFICATE_TEMPLATES:
            values.update(certificate_mail.extras(values))
        if template == "expiry_reminder":
            values["renew_url"] = certificate_mail.renew_url(self._account_url, str(values["serial"]))
        text_template = self._text.get_template(f"{template}.txt.j2")
        subject = subject_text("".join(text_template.blocks["subject"](text_template.new_context(values))))
        text = text_template.render(values)
        html = None
        if f"{template}.html.j2" in self._names:
            html = self._html.get_template(f"{template}.html.j2").render(values)
        files = tuple(certificate_mail.attachments(values)) if template == "cert_issued" else ()
        return MailContent(subject=subject, text=text, html=html, attachments=files)
