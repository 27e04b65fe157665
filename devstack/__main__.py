"""`python -m devstack up [--system]|down|status|env|logs|axe-core`: the local stack from a shell (used by ./dev)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from devstack import axe, endpoints, paths, stack, system
from devstack.errors import StackError


def _only(value: str) -> list[str]:
    return [part for part in value.split(",") if part.strip()]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    if args.system:
        if args.only:
            raise StackError("--system starts everything; it cannot be combined with --only")
        system.up(_say)
        print(system.table())
        print(f"the system is up ({time.monotonic() - started:.1f}s)", file=sys.stderr)
        return 0
    stack.up(args.only)
    print(f"stack is up ({time.monotonic() - started:.1f}s); `python -m devstack env` prints its settings",
          file=sys.stderr)  # fmt: skip
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    if not args.only:
        system.down(_say)  # the services first: they hold connections to Kafka and FerretDB
    stack.down(args.only, wipe=args.wipe)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    rows = stack.status(args.only)
    for row in rows:
        pid = f"pid {row.pid}" if row.pid else "-"
        print(f"{row.name:<14} {row.state:<10} {pid:<11} {row.address}")
    ok = all(row.state == "running" for row in rows)
    if not args.only:
        services = system.status()
        for svc in services:
            pid = f"pid {svc.pid}" if svc.pid else "-"
            print(f"{svc.name:<14} {svc.state:<10} {pid:<11} {svc.url}")
        states = {svc.state for svc in services}
        if states == {"stopped"}:
            print("services are not running (`./dev up` starts them)")
        else:
            ok = ok and states == {"running"}
    print(f"state: {paths.state_dir()}  cache: {paths.cache_dir()}")
    return 0 if ok else 1


def _cmd_env(args: argparse.Namespace) -> int:
    for key, value in endpoints.current().env().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def _cmd_axe_core(args: argparse.Namespace) -> int:
    print(axe.ensure(_say))
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    if args.name in system.BY_NAME:
        name, path = args.name, paths.log_file(args.name)
    else:
        comp = stack.component(args.name)
        name, path = comp.name, comp.log_file
    if not path.exists():
        print(f"no log yet for {name} ({path})", file=sys.stderr)
        return 1
    with path.open("rb") as f:
        lines = f.read().decode("utf-8", "replace").splitlines()[-args.lines :]
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
        if not args.follow:
            return 0
        try:
            while True:
                chunk = f.read()
                if chunk:
                    sys.stdout.write(chunk.decode("utf-8", "replace"))
                    sys.stdout.flush()
                else:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Kafka (KRaft), FerretDB, an SMTP mailbox and DNS (Knot, Unbound) as local processes on 127.0.0.1.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    only_help = "comma-separated subset of: kafka, mongo, smtp, dns-auth, dns (default: all)"

    up = sub.add_parser("up", help="start (idempotent) and wait until everything answers")
    up.add_argument("--only", type=_only, default=None, help=only_help)
    up.add_argument("--system", action="store_true",
                    help="the whole CA: also create the CA and support accounts on first run and start "
                         "registration, domain_verify, signer (issue, status) and notifier")  # fmt: skip
    up.set_defaults(func=_cmd_up)

    down = sub.add_parser("down", help="stop the services and the stack (idempotent)")
    down.add_argument("--only", type=_only, default=None, help=only_help)
    down.add_argument("--wipe", action="store_true", help="also delete data and logs (the cache is kept)")
    down.set_defaults(func=_cmd_down)

    status = sub.add_parser("status", help="what runs and answers (exit 1 unless all of it)")
    status.add_argument("--only", type=_only, default=None, help=only_help)
    status.set_defaults(func=_cmd_status)

    env = sub.add_parser("env", help="print `export CACERT_...=...` lines for a shell")
    env.set_defaults(func=_cmd_env)

    logs = sub.add_parser("logs", help="print a component's log")
    logs.add_argument(
        "name",
        help="kafka, mongo (ferretdb), smtp (mailbox), dns-auth (knot), dns (unbound), or a service: "
        + ", ".join(system.BY_NAME),
    )
    logs.add_argument("-n", "--lines", type=int, default=200, help="how many last lines (default 200)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing what is appended")
    logs.set_defaults(func=_cmd_logs)

    axe_core = sub.add_parser("axe-core", help="install the pinned axe-core (devstack/axe/) into the cache unless "
                              "it is there, and print the path of axe.min.js (the portal's browser walk uses it)")
    axe_core.set_defaults(func=_cmd_axe_core)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
