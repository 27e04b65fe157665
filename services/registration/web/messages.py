"""Every error a member can cause, as a plain sentence that says what to do.

The domain objects word their errors for the JSON API: field names (`csr_pem`), lower-case
clauses, and sometimes a library's own text (the cryptography package's parse errors with its FAQ
URL, the idna package's codepoint descriptions). The portal never shows those: `for_error` picks
the portal's sentence for an `ApiError` by its code, and `plain` cleans any other message or
refusal reason (drops library detail after a known clause, names fields in words, starts with a
capital letter and ends with a full stop). The API keeps its own wording.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from shared.http import ApiError

# (a clause of our own that a library's explanation follows, what to keep of the message)
_LIBRARY_DETAIL: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.S)
    for p in (
        r"^(.*? is not a valid domain name)\b.*$",
        r"^(.*? is not a readable certificate request)\b.*$",
        r"^(the CSR signature cannot be checked)\b.*$",
        r"^(the CSR public key cannot be read)\b.*$",
        r"^(the CSR subject cannot be read)\b.*$",
        r"^(the CSR extensions cannot be read)\b.*$",
        r"^(the stored certificate cannot be encoded)\b.*$",
        r"^(not a proof of possession)\b.*$",
    )
)
# Field names of the API and what the member calls them.
_FIELDS = {
    "csr_pem": "the CSR",
    "spki_sha256": "the key hash",
    "cert_class": "the class",
    "date_of_birth": "the date of birth",
    "new_password": "the new password",
}
# What a library adds that no member can act on.
_NOISE = re.compile(r"\s*(See https?://\S+ for more details\.?|https?://\S+)")

# The portal's own sentence per API error code, where the API's message is not already one.
_BY_CODE: dict[str, Callable[[ApiError], str]] = {
    "invalid_domain": lambda e: plain(e.message) + " Use letters, digits and hyphens, with dots between the parts, "
    "e.g. example.org.",
    "public_suffix": lambda e: plain(e.message.split(";")[0]) + " Add the domain you registered below it, "
    "e.g. example.org rather than org.",
    "invalid_contact": lambda _: "Choose one of the addresses listed for this domain.",
    "contact_not_official": lambda e: plain(e.message) + " Choose one of the addresses listed for this domain.",
    "invalid_method": lambda _: "Choose how to verify the domain: by email, by a DNS record or by a file on the "
    "website.",
    "no_challenge": lambda _: "Choose the DNS or website method first; the page then shows the random value to "
    "publish.",
    "invalid_format": lambda _: "Choose one of the download formats: PEM, DER or PKCS#7.",
    "invalid_key_hash": lambda _: "Enter the key's SHA-256 hash as 64 lower-case hexadecimal digits.",
    "certificate_unreadable": lambda _: "This certificate cannot be downloaded in that format; try PEM, or ask "
    "support.",
    "validation_failed": lambda e: _validation(e),
    "csr_rejected": lambda _: "This CSR cannot be certified; see the reasons below.",
    "invalid_credentials": lambda _: "The address or the password is wrong. Check both, or choose Forgot your "
    "password.",
}


def _validation(error: ApiError) -> str:
    problems = detail_lines(error.details)
    return " ".join(problems) if problems else plain(error.message)


def plain(message: str) -> str:
    """A message or refusal reason as a sentence for the member: no library text, no field names."""
    text = " ".join(str(message).split())
    for pattern in _LIBRARY_DETAIL:
        found = pattern.match(text)
        if found:
            text = found.group(1)
            break
    text = _NOISE.sub("", text)
    for field, words in _FIELDS.items():
        text = re.sub(rf"\b{field}\b", words, text)
    text = text.strip().rstrip(":;,")
    if not text:
        return "Something went wrong. Go back and try again."
    first = text.split(" ", 1)[0]
    if first.isalpha():  # a word, not a name the member typed (www.example.org, ada@example.org)
        text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def for_error(error: ApiError) -> str:
    """The sentence the portal shows for an API error a member caused."""
    worded = _BY_CODE.get(error.code)
    return worded(error) if worded else plain(error.message)


def detail_lines(details: Any) -> list[str]:
    """The detail lines of an error (field problems, refusal reasons), each a plain sentence."""
    if isinstance(details, list):
        return [plain(str(d.get("problem", "")) if isinstance(d, dict) else str(d)) for d in details][:20]
    if isinstance(details, dict) and isinstance(details.get("reasons"), list):
        return [plain(str(r)) for r in details["reasons"]][:20]
    return []
