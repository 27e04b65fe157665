"""`cacert`: the member and support command line over the registration HTTP API (stdlib only).

Every step a member or support person takes has a command, so the CA can
be used from a terminal: sign up, confirm the mailed token, log in (the
session token is kept in ~/.config/cacert/session, mode 0600), add
addresses and domains, verify a domain through an official contact, submit
a CSR, download certificates, revoke, assure, create ACME bindings for
certbot or cert-manager, and the support actions.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_API = "http://127.0.0.1:8081"
DEFAULT_TOKEN_FILE = Path.home() / ".config" / "cacert" / "session"


class CliError(Exception):
    """A failed call; the message is what the user sees."""


class Client:
    def __init__(self, api: str, token_file: Path) -> None:
        self.api = api.rstrip("/")
        self.token_file = token_file

    def token(self) -> str | None:
        try:
            return self.token_file.read_text().strip() or None
        except OSError:
            return None

    def save_token(self, token: str) -> None:
        self.token_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, *, raw: bool = False) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        token = self.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.api + path, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise CliError(_describe_error(exc)) from None
        except urllib.error.URLError as exc:
            raise CliError(f"cannot reach {self.api}: {exc.reason}") from None
        if raw:
            return payload
        return json.loads(payload) if payload else None


def _describe_error(exc: urllib.error.HTTPError) -> str:
    try:
        error = json.loads(exc.read())["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {exc.code}"
    lines = [f"error {exc.code} ({error.get('code')}): {error.get('message')}"]
    details = error.get("details")
    if isinstance(details, dict) and details.get("reasons"):
        lines += [f"  - {reason}" for reason in details["reasons"]]
    elif isinstance(details, list):
        lines += [
            f"  - {d.get('field')}: {d.get('problem')}" if isinstance(d, dict) else f"  - {d}"
            for d in details
        ]
    elif details:
        lines.append(f"  {json.dumps(details)}")
    if exc.headers.get("Retry-After"):
        lines.append(f"  retry after {exc.headers['Retry-After']} s")
    return "\n".join(lines)


def _password(prompt: str) -> str:
    if os.environ.get("CACERT_PASSWORD"):
        return os.environ["CACERT_PASSWORD"]
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return getpass.getpass(prompt)


def _print(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _domain_id(client: Client, name_or_id: str) -> str:
    for domain in client.call("GET", "/v1/domains")["domains"]:
        if name_or_id in (domain["id"], domain["domain"], domain["display_name"]):
            return str(domain["id"])
    raise CliError(f"no domain {name_or_id!r} on your account (see `cacert domains list`)")


def run(args: argparse.Namespace, client: Client) -> None:
    command = args.command
    q = urllib.parse.quote
    if command == "signup":
        _print(
            client.call(
                "POST",
                "/v1/members",
                {
                    "name": args.name,
                    "date_of_birth": args.date_of_birth,
                    "email": args.email,
                    "password": _password("password: "),
                },
            )
        )
    elif command == "login":
        session = client.call(
            "POST", "/v1/sessions", {"email": args.email, "password": _password("password: ")}
        )
        client.save_token(session["token"])
        print(f"logged in as {args.email} until {session['expires_at']} (token in {client.token_file})")
    elif command == "logout":
        client.call("DELETE", "/v1/sessions/current")
        client.token_file.unlink(missing_ok=True)
        print("logged out")
    elif command == "me":
        _print(client.call("GET", "/v1/me"))
    elif command == "confirm-email":
        _print(client.call("POST", "/v1/emails/confirm", {"token": args.token}))
    elif command == "emails":
        if args.action == "add":
            _print(client.call("POST", "/v1/emails", {"email": args.address}))
        else:
            _print(client.call("GET", "/v1/emails"))
    elif command == "domains":
        if args.action == "add":
            body = {"domain": args.domain, **({"contact": args.contact} if args.contact else {})}
            _print(client.call("POST", "/v1/domains", body))
        elif args.action == "list":
            _print(client.call("GET", "/v1/domains"))
        elif args.action == "contacts":
            _print(client.call("GET", f"/v1/domain-contacts?domain={q(args.domain)}"))
        elif args.action == "verify" and args.method != "email":
            domain_id = _domain_id(client, args.domain)
            shown = client.call("POST", f"/v1/domains/{q(domain_id)}/verify", {"method": args.method})
            challenge = shown["challenge"]
            if args.method == "dns_change":
                print(f"publish this TXT record, then run `cacert domains check {shown['domain']}`:")
                print(f"  {challenge['record']}")
            else:
                print(f"serve this file over http (port 80), then run `cacert domains check {shown['domain']}`:")
                print(f"  {challenge['url']}")
                print(f"  content: {challenge['file_content']}")
            print(f"the value can be used until {challenge['expires_at']}")
        elif args.action == "check":
            domain_id = _domain_id(client, args.domain)
            _print(client.call("POST", f"/v1/domains/{q(domain_id)}/check"))
        elif args.action == "verify":
            domain_id = _domain_id(client, args.domain)
            contact = args.contact
            if not contact:
                contacts = client.call("GET", f"/v1/domains/{q(domain_id)}/contacts")["contacts"]
                for number, address in enumerate(contacts, 1):
                    print(f"{number:2}. {address}")
                choice = input("mail the link to which contact? ")
                contact = contacts[int(choice) - 1] if choice.isdigit() else choice
            _print(client.call("POST", f"/v1/domains/{q(domain_id)}/verify", {"contact": contact}))
    elif command == "csr":
        pem = Path(args.file).read_text()
        chosen = {"cert_class": args.cert_class} if args.cert_class is not None else {}
        _print(client.call("POST", "/v1/requests", {"csr_pem": pem, "profile": args.profile, **chosen}))
    elif command == "requests":
        if args.request_id:
            _print(client.call("GET", f"/v1/requests/{q(args.request_id)}"))
        else:
            _print(client.call("GET", "/v1/requests"))
    elif command == "certs":
        if args.action == "list":
            _print(client.call("GET", "/v1/certificates"))
        else:
            data = client.call(
                "GET", f"/v1/certificates/{q(args.serial)}/download?format={args.format}", raw=True
            )
            if args.out:
                Path(args.out).write_bytes(data)
                print(f"wrote {args.out}")
            elif args.format == "pem":
                sys.stdout.write(data.decode())
            else:
                sys.stdout.buffer.write(data)
    elif command == "revoke":
        _print(client.call("POST", f"/v1/certificates/{q(args.serial)}/revoke", {"reason": args.reason}))
    elif command == "assure":
        _print(
            client.call(
                "POST",
                "/v1/assurances",
                {"member": args.member, "points": args.points, "location": args.location, "date": args.date,
                 "documents_checked": args.documents_checked},
            )
        )
    elif command == "assurances":
        _print(client.call("GET", "/v1/assurances"))
    elif command == "acme-binding":
        _acme_binding(args, client)
    elif command == "admin":
        member = q(getattr(args, "member", "") or "")
        if args.action == "show":
            _print(client.call("GET", f"/v1/admin/members/{member}"))
        elif args.action == "grant-assurer":
            _print(
                client.call(
                    "POST",
                    f"/v1/admin/members/{member}/assurer",
                    {"assurer_test_passed": args.assurer_test_passed},
                )
            )
        elif args.action == "activate-codesign":
            _print(client.call("POST", f"/v1/admin/members/{member}/codesign", {"enabled": not args.off}))
        elif args.action == "revoke":
            _print(client.call("POST", f"/v1/certificates/{q(args.serial)}/revoke", {"reason": args.reason}))


def _acme_binding(args: argparse.Namespace, client: Client) -> None:
    q = urllib.parse.quote
    if args.action == "create":
        body: dict[str, Any] = {"label": args.label} if args.label else {}
        if args.cert_class is not None:
            body["cert_class"] = args.cert_class
        created = client.call("POST", "/v1/acme-bindings", body)
        print(f"key id:   {created['key_id']}")
        print(f"HMAC key: {created['hmac_key']}")
        print(f"class:    {created['cert_class']}")
        print(f"ACME directory: {created['directory_url']}")
        print("The HMAC key is shown this once: the CA does not keep it. For certbot:")
        print(f"  certbot certonly --server {created['directory_url']} --eab-kid {created['key_id']} "
              f"--eab-hmac-key {created['hmac_key']} -d www.example.org ...")
    elif args.action == "list":
        listed = client.call("GET", "/v1/acme-bindings")
        if not listed["bindings"]:
            print("no ACME bindings (create one with `cacert acme-binding create`)")
        for binding in listed["bindings"]:
            state = "active" if binding["status"] == "active" else f"revoked {binding['revoked_at']}"
            label = f"  {binding['label']}" if binding["label"] else ""
            print(f"{binding['key_id']}  class {binding['cert_class']}  created {binding['created_at']}  "
                  f"{state}{label}")
    else:
        revoked = client.call("DELETE", f"/v1/acme-bindings/{q(args.key_id, safe='')}")
        print(f"revoked {revoked['key_id']} ({revoked['revoked_at']}): its ACME accounts can no longer act")


REASONS = ["unspecified", "key_compromise", "affiliation_changed", "superseded", "cessation_of_operation"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cacert", description="CAcert community CA: member and support commands."
    )
    p.add_argument("--api", default=os.environ.get("CACERT_API", DEFAULT_API), help=f"default {DEFAULT_API}")
    p.add_argument(
        "--token-file", type=Path, default=DEFAULT_TOKEN_FILE, help="where the session token is kept"
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("signup", help="create an account (password from $CACERT_PASSWORD, stdin or a prompt)")
    s.add_argument("--name", required=True)
    s.add_argument("--date-of-birth", required=True, help="YYYY-MM-DD")
    s.add_argument("--email", required=True)
    s = sub.add_parser("login", help="log in and keep the session token")
    s.add_argument("--email", required=True)
    sub.add_parser("logout")
    sub.add_parser("me", help="your account, points and addresses")
    s = sub.add_parser("confirm-email", help="confirm an address with the token from the mail")
    s.add_argument("token")
    s = sub.add_parser("emails")
    e = s.add_subparsers(dest="action", required=True)
    e.add_parser("list")
    e.add_parser("add").add_argument("address")
    s = sub.add_parser("domains")
    d = s.add_subparsers(dest="action", required=True)
    a = d.add_parser("add")
    a.add_argument("domain")
    a.add_argument("--contact", help="ask for verification by this official contact at once")
    d.add_parser("list")
    d.add_parser("contacts").add_argument("domain")
    v = d.add_parser("verify", help="verify a domain: mail a link to an official contact (pick one), or show "
                                    "the DNS record / website file to publish")
    v.add_argument("domain", help="domain name or id")
    v.add_argument("--contact")
    v.add_argument("--method", choices=["email", "dns_change", "website_change"], default="email",
                   help="email (BR 3.2.2.4.4, default), dns_change (TXT record, 3.2.2.4.7) or website_change "
                        "(file under /.well-known/pki-validation/, 3.2.2.4.18)")
    d.add_parser("check", help="look for the published DNS record or website file now").add_argument(
        "domain", help="domain name or id")
    s = sub.add_parser("csr")
    c = s.add_subparsers(dest="action", required=True)
    submit = c.add_parser("submit")
    submit.add_argument("file")
    submit.add_argument("--profile", choices=["server", "client", "codesign"], default="server")
    submit.add_argument("--class", dest="cert_class", type=int, choices=[1, 3],
                        help="the root to issue under (default: the highest you may have; Assured members may pick 1)")
    s = sub.add_parser("requests")
    r = s.add_subparsers(dest="action", required=True)
    r.add_parser("list").add_argument("request_id", nargs="?")
    s = sub.add_parser("certs")
    c = s.add_subparsers(dest="action", required=True)
    c.add_parser("list")
    g = c.add_parser("get")
    g.add_argument("serial")
    g.add_argument("--format", choices=["pem", "der", "p7b"], default="pem")
    g.add_argument("--out")
    s = sub.add_parser("revoke")
    s.add_argument("serial")
    s.add_argument("--reason", choices=REASONS, default="unspecified")
    s = sub.add_parser("assure", help="record an assurance (Assurers)")
    s.add_argument("member", help="member id or address")
    s.add_argument("--points", type=int, required=True)
    s.add_argument("--location", required=True)
    s.add_argument("--date", required=True, help="YYYY-MM-DD of the meeting")
    s.add_argument("--documents-checked", action="store_true", required=True,
                   help="confirm you checked two government-issued photo ID documents against the member's name "
                        "and date of birth (required)")
    sub.add_parser("assurances", help="assurances you received and gave")
    s = sub.add_parser("acme-binding", help="External Account Bindings for ACME clients (certbot, cert-manager)")
    ab = s.add_subparsers(dest="action", required=True)
    ac = ab.add_parser("create", help="create one; prints its key id and HMAC key, which are shown only once")
    ac.add_argument("--label", help="your name for it (the host or cluster using it), at most 100 characters")
    ac.add_argument("--class", dest="cert_class", type=int, choices=[1, 3],
                    help="the root its certificates chain to (default 1; 3 only for Assured members)")
    ab.add_parser("list", help="your bindings (never their keys)")
    ab.add_parser("revoke", help="revoke one: ACME accounts registered with it stop working").add_argument("key_id")
    s = sub.add_parser("admin", help="support actions")
    ad = s.add_subparsers(dest="action", required=True)
    ad.add_parser("show").add_argument("member")
    ga = ad.add_parser("grant-assurer")
    ga.add_argument("member")
    ga.add_argument("--assurer-test-passed", action="store_true", help="the member passed the assurer test")
    ac = ad.add_parser("activate-codesign")
    ac.add_argument("member")
    ac.add_argument("--off", action="store_true", help="deactivate instead")
    rv = ad.add_parser("revoke")
    rv.add_argument("serial")
    rv.add_argument("--reason", choices=REASONS, default="unspecified")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        run(args, Client(args.api, args.token_file))
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
