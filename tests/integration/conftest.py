"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from shared.config import MongoSettings
from shared.mongo import connect


@pytest.fixture
async def db(mongo_settings: MongoSettings) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    """A database of the test's own on the stack's MongoDB server, dropped afterwards."""
    client, database = connect(mongo_settings, service="test")
    yield database
    await client.drop_database(database.name)
    await client.close()
