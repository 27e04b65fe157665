"""The bootstrap commands give each account one kind of trust: `create-admin` makes support staff who
are not Assurers, `create-assurer` makes founding Assurers who are not admins (least trust: no command
makes one account both, and the local system seeds them apart)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from shared.config import MongoSettings

PASSWORD = "a long bootstrap passphrase"


def _create(command: str, email: str, mongo: MongoSettings, database: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CACERT_MONGO_URL": mongo.url, "CACERT_MONGO_DATABASE": database,
           "CACERT_ADMIN_PASSWORD": PASSWORD, "CACERT_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "services.registration", command, "--email", email],
                          env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.integration
async def test_an_admin_is_no_assurer_and_a_founding_assurer_is_no_admin(mongo_settings: MongoSettings) -> None:
    database = f"{mongo_settings.database}_bootstrap_{uuid.uuid4().hex[:6]}"
    admin = _create("create-admin", "support@example.org", mongo_settings, database)
    assurer = _create("create-assurer", "founder@example.org", mongo_settings, database)
    assert admin.returncode == 0, admin.stderr
    assert assurer.returncode == 0, assurer.stderr
    assert admin.stdout.startswith("admin support@example.org ready") and "roles member, admin" in admin.stdout
    assert assurer.stdout.startswith("assurer founder@example.org ready")
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_settings.url)
    try:
        members = client[database]["members"]
        by_email = {doc["primary_email"]: doc async for doc in members.find({})}
        assert sorted(by_email["support@example.org"]["roles"]) == ["admin", "member"]
        founder = by_email["founder@example.org"]
        assert sorted(founder["roles"]) == ["assurer", "member"]
        assert founder.get("assurer_test_passed") is True
    finally:
        await client.drop_database(database)
        await client.close()

