"""Fixtures of the browser tests: the whole system in-process, and Debian's Chromium."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shared.config import KafkaSettings, MongoSettings
from tests.portal.stack import System, running_system


@pytest.fixture
async def system(kafka_settings: KafkaSettings, mongo_settings: MongoSettings, stack_env: dict[str, str],
                 tmp_path: Path) -> AsyncIterator[System]:
    async with running_system(kafka_settings, mongo_settings, stack_env, tmp_path / "ca") as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from tests.portal.browser import CHROMIUM, CHROMIUM_ARGS, playwright_api

    async with playwright_api.async_playwright() as p:
        launched = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        await launched.close()
