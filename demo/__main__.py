"""`python -m demo --out DIR`: run the member walk against the system `./dev up` started."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from demo.clients import DemoError
from demo.flow import MemberDemo, Urls
from demo.member_api import ApiRefused


def parser() -> argparse.ArgumentParser:
    from devstack import system

    u = system.urls()
    p = argparse.ArgumentParser(
        prog="./dev demo",
        description="Walk a new member through the running CA (sign-up, domain, Class 1 and Class 3 "
        "certificates, assurance, revocation) and write the certificates to --out.",
    )
    p.add_argument("--out", type=Path, required=True, help="directory for the PEM files and summary.json")
    p.add_argument("--api", default=u["api"], help=f"member API (default {u['api']})")
    p.add_argument("--mailbox", default=u["mailbox"], help=f"mailbox API (default {u['mailbox']})")
    p.add_argument("--status", default=u["status"], help=f"signer status endpoints (default {u['status']})")
    p.add_argument("--confirm", default=u["confirm"], help=f"domain_verify (default {u['confirm']})")
    p.add_argument(
        "--accounts",
        type=Path,
        default=system.accounts_file(),
        help="JSON with the seeded Assurers' logins (default: the one `./dev up` wrote)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    import json

    args = parser().parse_args(argv)
    try:
        assurers = json.loads(args.accounts.read_text())["assurers"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: cannot read the seeded Assurers from {args.accounts} ({exc}); run `./dev up` first",
              file=sys.stderr)  # fmt: skip
        return 1
    urls = Urls(api=args.api, mailbox=args.mailbox, status=args.status, confirm=args.confirm)
    from devstack import endpoints

    demo = MemberDemo(urls, assurers, args.out, say=lambda line: print(line, flush=True),
                      dns_env=endpoints.current().env())
    try:
        summary = asyncio.run(demo.run())
    except (DemoError, ApiRefused, TimeoutError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    t = summary["timings"]
    p50, worst = t["csr_to_mail_p50_seconds"] * 1000, t["csr_to_mail_max_seconds"] * 1000
    print(f"done in {t['total_seconds']:.1f}s; CSR -> certificate mail p50 {p50:.0f} ms (max {worst:.0f} ms); "
          f"files in {args.out}")  # fmt: skip
    print(f"check it: openssl verify -CAfile {args.out}/class1_root.pem -untrusted {args.out}/chain_class3.pem "
          f"{args.out}/server_class3.pem")  # fmt: skip
    print(f"or, trusting assured members only: openssl verify -CAfile {args.out}/class3_root_self_signed.pem "
          f"-untrusted {args.out}/chain_class3.pem {args.out}/server_class3.pem")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
