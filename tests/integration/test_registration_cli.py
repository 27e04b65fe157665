"""The `cacert` command line against the running service: a member's first steps from a terminal."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.config import KafkaSettings, MongoSettings
from tests.registration.csrs import build_csr
from tests.registration.harness import PASSWORD, Stack, running

pytestmark = pytest.mark.usefixtures("topics")


@pytest.fixture
async def stack(kafka_settings: KafkaSettings, mongo_settings: MongoSettings) -> AsyncIterator[Stack]:
    async with running(kafka_settings, mongo_settings) as s:
        yield s


async def cacert(stack: Stack, token_file: Path, *args: str, stdin: str = "") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.registration.cli",
        "--api",
        stack.api.base,
        "--token-file",
        str(token_file),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(stdin.encode())
    return process.returncode or 0, out.decode(), err.decode()


async def test_member_steps_from_the_terminal(stack: Stack, tmp_path: Path) -> None:
    token_file = tmp_path / "session"
    code, out, err = await cacert(
        stack,
        token_file,
        "signup",
        "--name",
        "Lea Terminal",
        "--date-of-birth",
        "1991-03-04",
        "--email",
        "lea@example.org",
        stdin=PASSWORD + "\n",
    )
    assert code == 0, err
    assert json.loads(out)["email"] == "lea@example.org"
    code, _, err = await cacert(
        stack, token_file, "login", "--email", "lea@example.org", stdin=PASSWORD + "\n"
    )
    assert code == 1 and "email_unverified" in err
    token = await stack.confirmation_token("lea@example.org")
    assert (await cacert(stack, token_file, "confirm-email", "--", token))[0] == 0
    code, out, err = await cacert(
        stack, token_file, "login", "--email", "lea@example.org", stdin=PASSWORD + "\n"
    )
    assert code == 0 and "logged in" in out, err
    assert token_file.stat().st_mode & 0o777 == 0o600
    code, out, _ = await cacert(stack, token_file, "me")
    assert code == 0 and json.loads(out)["name"] == "Lea Terminal"
    code, out, _ = await cacert(stack, token_file, "domains", "contacts", "www.example.org")
    assert code == 0 and "hostmaster@example.org" in json.loads(out)["contacts"]
    code, out, _ = await cacert(stack, token_file, "domains", "add", "example.org")
    assert code == 0
    code, out, _ = await cacert(
        stack, token_file, "domains", "verify", "example.org", "--contact", "admin@example.org"
    )
    assert code == 0 and json.loads(out)["status"] == "pending"
    # the DNS and website methods (BR 3.2.2.4.7, 3.2.2.4.18): the CLI prints what to publish, then checks
    assert (await cacert(stack, token_file, "domains", "add", "example.net"))[0] == 0
    code, out, err = await cacert(stack, token_file, "domains", "verify", "example.net", "--method", "dns_change")
    assert code == 0, err
    assert re.search(r'^  _cacert-challenge\.example\.net\.? .*TXT\s+"[A-Za-z0-9_-]{32,}"$', out, re.M), out
    code, out, err = await cacert(stack, token_file, "domains", "check", "example.net")
    assert code == 0 and json.loads(out)["status"] == "pending", err
    code, out, err = await cacert(stack, token_file, "domains", "verify", "example.net", "--method", "website_change")
    assert code == 0 and "http://example.net/.well-known/pki-validation/" in out, out + err
    csr = tmp_path / "req.pem"
    csr.write_text(build_csr(dns=["www.example.org"]))
    code, _, err = await cacert(stack, token_file, "csr", "submit", str(csr), "--profile", "server")
    assert code == 1 and "www.example.org is not within a domain you have verified" in err
    code, out, _ = await cacert(stack, token_file, "requests", "list")
    assert code == 0 and json.loads(out)["requests"][0]["status"] == "rejected"
    assert (await cacert(stack, token_file, "logout"))[0] == 0
    assert not token_file.exists()
