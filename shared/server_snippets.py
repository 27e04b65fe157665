"""Web-server configuration for a member's certificate: the seed's Apache example, and nginx.

The registration portal (certificate page) and the notifier (the "certificate issued" mail) show
the same text, so it is written once here. Two uses, as the CAcert FAQ describes them:

* the **server** snippet installs a server certificate (the PEM download holds the certificate
  followed by its chain);
* the **client-certificate** snippet makes the web server ask visitors for a client certificate
  and accept only those issued under the root it is given (`SSLCACertificateFile` +
  `SSLVerifyClient require` in Apache, `ssl_client_certificate` + `ssl_verify_client on` in nginx).
  Which root decides who gets in: the Class 3 root admits Assured members only (the CA issues
  Class 3 certificates only to members with 50 assurance points or more); the Class 1 root admits
  every member, because the Class 3 root is itself signed by Class 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

ROOT_FILES = {1: "cacert-class1-root.pem", 3: "cacert-class3-root.pem"}


@dataclasses.dataclass(frozen=True)
class RootChoice:
    """Which root to name in a client-certificate configuration, and whom it admits."""

    cert_class: int
    admits: str
    filename: str


ROOT_CHOICES = (
    RootChoice(3, "assured members only (Class 3 certificates: 50 assurance points or more)", ROOT_FILES[3]),
    RootChoice(1, "everyone with a certificate from this CA (Class 1 and Class 3)", ROOT_FILES[1]),
)


@dataclasses.dataclass(frozen=True)
class ServerSnippets:
    apache_server: str
    nginx_server: str
    apache_client_auth: str
    nginx_client_auth: str
    root_advice: tuple[str, ...]  # one sentence per root: which file admits whom

    def as_text(self) -> str:
        """All of it as plain text (for mail)."""
        parts = [
            "Apache httpd 2.4 (server certificate):", self.apache_server, "",
            "nginx (server certificate):", self.nginx_server, "",
            "Asking visitors for a client certificate (Apache):", self.apache_client_auth, "",
            "The same in nginx:", self.nginx_client_auth, "",
            "Which root to name in the client-certificate configuration:",
            *(f"  - {line}" for line in self.root_advice),
        ]
        return "\n".join(parts)


def root_advice() -> tuple[str, ...]:
    return tuple(f"{c.filename} (the Class {c.cert_class} root) admits {c.admits}" for c in ROOT_CHOICES)


def server_snippets(dns_names: Sequence[str], *, client_root_class: int = 3) -> ServerSnippets:
    """Configuration for a server certificate covering `dns_names` (the first is the site's name).

    `client_root_class` is the root the client-certificate snippet names (3: assured members
    only, 1: everyone); both choices are explained in `root_advice`.
    """
    if client_root_class not in ROOT_FILES:
        raise ValueError(f"client_root_class must be 1 or 3, not {client_root_class!r}")
    names = list(dns_names) or ["example.org"]
    site = names[0].removeprefix("*.")
    aliases = "".join(f"    ServerAlias {n}\n" for n in names[1:])
    root = f"/etc/ssl/certs/{ROOT_FILES[client_root_class]}"
    apache_server = (
        "<VirtualHost *:443>\n"
        f"    ServerName {names[0]}\n"
        f"{aliases}"
        "    SSLEngine on\n"
        f"    SSLCertificateFile    /etc/ssl/certs/{site}.pem\n"
        f"    SSLCertificateKeyFile /etc/ssl/private/{site}.key\n"
        "    SSLProtocol           -all +TLSv1.2 +TLSv1.3\n"
        "</VirtualHost>"
    )
    nginx_server = (
        "server {\n"
        "    listen 443 ssl;\n"
        f"    server_name {' '.join(names)};\n"
        "    # the PEM download: the certificate followed by its chain\n"
        f"    ssl_certificate     /etc/ssl/certs/{site}.pem;\n"
        f"    ssl_certificate_key /etc/ssl/private/{site}.key;\n"
        "    ssl_protocols       TLSv1.2 TLSv1.3;\n"
        "}"
    )
    apache_client_auth = (
        "# inside the <VirtualHost> above\n"
        f"SSLCACertificateFile {root}\n"
        "SSLVerifyClient require\n"
        "SSLVerifyDepth  3"
    )
    nginx_client_auth = (
        "# inside the server { } above\n"
        f"ssl_client_certificate {root};\n"
        "ssl_verify_client      on;\n"
        "ssl_verify_depth       3;"
    )
    return ServerSnippets(apache_server, nginx_server, apache_client_auth, nginx_client_auth, root_advice())
