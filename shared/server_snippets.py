"""Web-server configuration for a member's certificate: the seed's Apache example, and nginx.

The registration portal (certificate page) and the notifier (the "certificate issued" mail) show
the same text, so it is written once here. Two uses, as the CAcert FAQ describes them:

* the **server** snippet installs a server certificate (the PEM download holds the certificate
  followed by its chain);
* the **client-certificate** snippet makes the web server ask visitors for a client certificate
  and accept only those issued under the root it is given (`SSLCACertificateFile` +
  `SSLVerifyClient require` in Apache, `ssl_client_certificate` + `ssl_verify_client on` in nginx).
  Which file decides who gets in (checked with a real Apache in
  tests/integration/test_apache_client_trust.py):

  - the **self-signed** Class 3 root alone admits Assured members only (the CA issues Class 3
    certificates only to members with 50 assurance points or more), from clients that send their
    certificate with its chain (the Class 3 issuing CA), as one made from the PEM download does. It must
    be the self-signed one: OpenSSL, under Apache and nginx alike, wants a self-signed anchor and refuses
    everything when the file holds only the Class 3 certificate signed by Class 1;
  - the Class 1 root followed by the Class 3 certificate it signed and the issuing CAs (the roots page's
    PEM bundle) admits every member, whether or not the client sends its chain. The Class 1 root alone
    admits only clients that send their chain along, which not every client does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

ROOT_FILES = {1: "cacert-roots.pem", 3: "cacert-class3-root.pem"}
"""The file a client-certificate configuration names, by the class whose members it admits. The names are
those of the roots page's downloads (`ROOT_DOWNLOADS`)."""
ROOT_DOWNLOADS = {1: "/roots/cacert-roots.pem", 3: "/roots/class3-root.pem"}


@dataclasses.dataclass(frozen=True)
class RootChoice:
    """Which file to name in a client-certificate configuration, what is in it, and whom it admits."""

    cert_class: int
    admits: str
    filename: str
    contents: str
    why: str  # a sentence: why this file and not another
    download: str  # the registration portal's path of that file


ROOT_CHOICES = (
    RootChoice(
        3, "assured members only (Class 3 certificates: 50 assurance points or more)", ROOT_FILES[3],
        "the self-signed Class 3 root",
        "It must be the self-signed one: with only the Class 3 root signed by Class 1 as anchor, Apache and nginx "
        "refuse every certificate. Members' clients send the Class 3 issuing CA along with their certificate "
        "(a PKCS#12 file made from the PEM download holds it).",
        ROOT_DOWNLOADS[3],
    ),
    RootChoice(
        1, "everyone with a certificate from this CA (Class 1 and Class 3)", ROOT_FILES[1],
        "the Class 1 root followed by the Class 3 root it signed and the two issuing CAs",
        "With the Class 1 root alone, certificates get in only from clients that send their chain (the issuing "
        "CA, and for Class 3 the Class 3 root signed by Class 1) along, and not every client does.",
        ROOT_DOWNLOADS[1],
    ),
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
            "Which file to name in the client-certificate configuration (from the CA's roots page):",
            *(f"  - {line}" for line in self.root_advice),
        ]
        return "\n".join(parts)


def root_advice() -> tuple[str, ...]:
    return tuple(f"{c.filename} ({c.contents}) admits {c.admits}. {c.why}" for c in ROOT_CHOICES)


def client_auth(client_root_class: int) -> tuple[str, str]:
    """The Apache and nginx lines that require a client certificate under `ROOT_FILES[client_root_class]`."""
    if client_root_class not in ROOT_FILES:
        raise ValueError(f"client_root_class must be 1 or 3, not {client_root_class!r}")
    root = f"/etc/ssl/certs/{ROOT_FILES[client_root_class]}"
    apache = f"SSLCACertificateFile {root}\nSSLVerifyClient require\nSSLVerifyDepth  3"
    nginx = f"ssl_client_certificate {root};\nssl_verify_client      on;\nssl_verify_depth       3;"
    return apache, nginx


def server_snippets(dns_names: Sequence[str], *, client_root_class: int = 3) -> ServerSnippets:
    """Configuration for a server certificate covering `dns_names` (the first is the site's name).

    `client_root_class` is the class whose root the client-certificate snippet names (3: the
    self-signed Class 3 root, assured members only; 1: the Class 1 root with the Class 3 certificate,
    everyone); both choices are explained in `root_advice`.
    """
    apache_lines, nginx_lines = client_auth(client_root_class)
    names = list(dns_names) or ["example.org"]
    site = names[0].removeprefix("*.")
    aliases = "".join(f"    ServerAlias {n}\n" for n in names[1:])
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
    apache_client_auth = "# inside the <VirtualHost> above\n" + apache_lines
    nginx_client_auth = "# inside the server { } above\n" + nginx_lines
    return ServerSnippets(apache_server, nginx_server, apache_client_auth, nginx_client_auth, root_advice())
