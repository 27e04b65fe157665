"""Creating the first support account (admin) and the founding Assurers from the command line.

The web of trust needs a start: nobody can become an Assurer without
points from an Assurer. Operators therefore create the first admin
(`create-admin`) and the founding Assurers (`create-assurer`) directly in the
database; their events wait in the outbox and the running service publishes
them on its next sweep. The address is treated as verified because the
operator vouches for it. An existing account with that address is promoted
instead. The two are separate accounts on purpose (least trust): support
staff grant roles and activate code signing, Assurers award points, and no
command makes one account both. Both commands turn on the account's second
factor (TOTP) and print its secret once, since staff act only with it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from datetime import date
from typing import Any

import pyotp
from pymongo.asynchronous.database import AsyncDatabase

from services.registration.context import Context
from services.registration.members import Member, Members
from services.registration.passwords import password_problem
from services.registration.second_factor import ISSUER
from services.registration.settings import RegistrationSettings
from services.registration.store import INDEXES, MongoRegistrationStore
from shared.config import load_or_exit
from shared.events import utcnow
from shared.mongo import connect, ensure_indexes

PASSWORD_ENV = "CACERT_ADMIN_PASSWORD"  # noqa: S105 (the variable's name, not a password)


async def bootstrap_member(
    db: AsyncDatabase[dict[str, Any]],
    settings: RegistrationSettings,
    *,
    email: str,
    name: str,
    date_of_birth: date,
    password: str,
    roles: tuple[str, ...],
    second_factor_secret: str | None = None,
) -> Member:
    """Create (or promote) a verified account holding `roles`; with `second_factor_secret`, its TOTP is on
    (staff need it before they assure, grant or activate anything)."""
    store = MongoRegistrationStore(db, clock=utcnow)
    ctx = Context(store, settings, utcnow)
    members = Members(ctx)
    existing = await members.by_address(email)
    await ctx.audit("bootstrap", "member.bootstrapped", email, roles=list(roles), existing=existing is not None)
    if existing is not None:
        merged = [*existing.roles, *(r for r in roles if r not in existing.roles)]
        member = await members.change_roles(
            existing,
            roles=merged,
            codesign=existing.codesign_enabled,
            changed_by="bootstrap",
            extra={"assurer_test_passed": True} if "assurer" in roles else None,
        )
    else:
        member = await members.create(
            name=name,
            date_of_birth=date_of_birth,
            address=email,
            password=password,
            roles=roles,
            verified=True,
            assurer_test_passed="assurer" in roles,
        )
    if second_factor_secret:
        await store.update_member_with_events(
            member.id, {"totp_secret": second_factor_secret, "second_factor": True}, [])
        member = dataclasses.replace(member, second_factor=True)
    return member


def _read_password(from_stdin: bool) -> str:
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    return getpass.getpass("password for the new admin: ")


COMMANDS = {
    "create-admin": (("member", "admin"), "Create a support (admin) account.", "CAcert Support"),
    "create-assurer": (("member", "assurer"), "Create a founding Assurer (not an admin) of the web of trust.",
                       "Founding Assurer"),
}


def main(argv: list[str], command: str = "create-admin") -> int:
    roles, description, default_name = COMMANDS[command]
    parser = argparse.ArgumentParser(prog=f"python -m services.registration {command}", description=description)
    parser.add_argument("--email", required=True)
    parser.add_argument("--name", default=default_name)
    parser.add_argument("--date-of-birth", default="1970-01-01")
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the password from stdin (default: ${PASSWORD_ENV}, else a prompt)",
    )
    args = parser.parse_args(argv)
    from shared.dns_names import normalise_email

    try:
        email = normalise_email(args.email)
        born = date.fromisoformat(args.date_of_birth)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    password = _read_password(args.password_stdin)
    problem = password_problem(password)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    settings = load_or_exit(RegistrationSettings, {"CACERT_KAFKA_BOOTSTRAP": "unused", **os.environ})
    secret = pyotp.random_base32()

    async def create() -> Member:
        client, db = connect(settings.common.mongo, service="registration")
        try:
            await ensure_indexes(db, INDEXES)
            return await bootstrap_member(
                db, settings, email=email, name=args.name, date_of_birth=born, password=password, roles=roles,
                second_factor_secret=secret,
            )
        finally:
            await client.close()

    member = asyncio.run(create())
    print(f"{command.removeprefix('create-')} {member.primary_email} ready: member id {member.id}, "
          f"roles {', '.join(member.roles)}")
    # Staff act only with two-factor authentication on: this is its secret, shown once, for their app.
    print(f"two-factor secret (add it to an authenticator app): {secret}")
    print(f"  {pyotp.TOTP(secret).provisioning_uri(name=member.primary_email, issuer_name=ISSUER)}")
    return 0
