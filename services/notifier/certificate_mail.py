"""What a certificate mail adds to its template: PEM attachments, file names, the root to trust,
the client-certificate configuration and the Renew link.

Kept out of the template so the rules (which files, which anchor) are
plain Python with unit tests, and the template only words them.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import quote

from shared.server_snippets import root_advice, server_snippets

# The root the mailed client-certificate snippet names: Class 3 admits assured members only (the root
# advice beside it says that the Class 1 file admits everyone).
CLIENT_ROOT_CLASS = 3
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


def client_auth(context: dict[str, Any]) -> dict[str, Any] | None:
    """For a server certificate: the Apache and nginx lines that make its site ask visitors for a client
    certificate under the Class 3 root, from `shared.server_snippets` (the portal shows the same text).
    None for other profiles."""
    if context.get("profile") != "server":
        return None
    snippets = server_snippets(context.get("dns_names") or [], client_root_class=CLIENT_ROOT_CLASS)
    return {"apache": snippets.apache_client_auth, "nginx": snippets.nginx_client_auth,
            "root_class": CLIENT_ROOT_CLASS}


def renew_url(registration_url: str, serial: str) -> str:
    """The portal page that pre-fills a new request with this certificate's names and profile
    (empty when registration's public URL is not configured)."""
    if not registration_url:
        return ""
    return f"{registration_url.rstrip('/')}/account/certificates/{quote(serial, safe='')}/renew"


def extras(context: dict[str, Any]) -> dict[str, Any]:
    """Which root decides who a client-certificate check admits (`root_advice`) matters to server and
    client certificates; code signing has no use for it."""
    advice = root_advice() if context.get("profile") in ("server", "client") else ()
    return {"file_stem": file_stem(context), "has_chain": bool(_pem(context.get("chain_pem"))),
            "label": label(context), "client_auth": client_auth(context), "root_advice": advice,
            **trust_anchor(context)}
