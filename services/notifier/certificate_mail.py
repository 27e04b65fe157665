"""What a `cert.issued` mail adds to its template: PEM attachments, file names, the root to trust.

Kept out of the template so the rules (which files, which anchor) are
plain Python with unit tests, and the template only words them.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

_UNSAFE_FILENAME = re.compile(r"[^a-z0-9._-]+")


@dataclasses.dataclass(frozen=True)
class Attachment:
    filename: str
    data: bytes
    maintype: str = "application"
    subtype: str = "x-pem-file"


def _pem(text: str | None) -> str:
    text = (text or "").strip()
    return text + "\n" if text else ""


def attachments(context: dict[str, Any]) -> list[Attachment]:
    """certificate.pem, chain.pem (only when there are intermediates) and fullchain.pem.

    A Class 1 leaf is signed by the Class 1 root itself: it has no
    intermediate, so an empty chain.pem is left out rather than sent.
    """
    leaf = _pem(context["certificate_pem"])
    chain = _pem(context.get("chain_pem"))
    files = [Attachment("certificate.pem", leaf.encode("ascii"))]
    if chain:
        files.append(Attachment("chain.pem", chain.encode("ascii"), subtype="pem-certificate-chain"))
    files.append(Attachment("fullchain.pem", (leaf + chain).encode("ascii"), subtype="pem-certificate-chain"))
    return files


def file_stem(context: dict[str, Any]) -> str:
    """A file name for the configuration snippet, from the first name in the certificate."""
    names = [*(context.get("dns_names") or []), *(context.get("emails") or [])]
    raw = (names[0] if names else context.get("serial") or "certificate").lower().replace("*", "wildcard")
    return _UNSAFE_FILENAME.sub("_", raw).strip("._") or "certificate"


def trust_anchor(context: dict[str, Any]) -> dict[str, Any]:
    """Which root a relying party must trust for this certificate.

    Class 3 leaves chain to the Class 3 root, itself signed by Class 1, so
    either root validates them; Class 1 leaves validate only under Class 1.
    """
    class3 = context.get("cert_class") == 3 or "class3" in (context.get("trust_anchors") or [])
    return {"class3": class3, "anchor": "CAcert Class 3 root" if class3 else "CAcert Class 1 root"}


def label(context: dict[str, Any]) -> str:
    """How a certificate is named in a subject line: its first name, else its subject DN, else serial."""
    names = [*(context.get("dns_names") or []), *(context.get("emails") or []), *(context.get("names") or [])]
    return str(names[0] if names else context.get("subject") or context.get("serial") or "certificate")


def extras(context: dict[str, Any]) -> dict[str, Any]:
    return {"file_stem": file_stem(context), "has_chain": bool(_pem(context.get("chain_pem"))),
            "label": label(context), **trust_anchor(context)}
