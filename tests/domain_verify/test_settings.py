"""Settings: defaults, and the 30-day ceiling the Baseline Requirements put on a mailed random value."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from services.domain_verify.settings import DomainVerifySettings
from shared.config import ConfigError, load
from tests.mail_keys import SEALING_PUBLIC_PEM

BASE = {"CACERT_KAFKA_BOOTSTRAP": "127.0.0.1:19092", "CACERT_MONGO_URL": "mongodb://127.0.0.1:27018"}


def test_defaults() -> None:
    settings = load(DomainVerifySettings, BASE)
    assert settings.public_url == "http://127.0.0.1:8082"
    assert settings.challenge_hours == 72
    assert settings.validity_days == 0, "0: the BR 4.2.1 (SC-081) reuse schedule decides"
    assert settings.mode == "primary" and settings.perspectives == [] and settings.caa_identities == ["cacert.example"]
    assert settings.http_port == 80 and settings.http_allow_private == [], "private targets refused by default"


@pytest.mark.parametrize("hours", ["721", "0", "-1", "100000"])
def test_challenge_lifetimes_beyond_30_days_or_not_positive_are_refused_at_start_up(hours: str) -> None:
    with pytest.raises(ConfigError, match="CACERT_DOMAIN_VERIFY_CHALLENGE_HOURS"):
        load(DomainVerifySettings, {**BASE, "CACERT_DOMAIN_VERIFY_CHALLENGE_HOURS": hours})


def test_exactly_30_days_is_allowed() -> None:
    loaded = load(DomainVerifySettings, {**BASE, "CACERT_DOMAIN_VERIFY_CHALLENGE_HOURS": "720"})
    assert loaded.challenge_hours == 720


def test_public_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="PUBLIC_URL"):
        load(DomainVerifySettings, {**BASE, "CACERT_DOMAIN_VERIFY_PUBLIC_URL": "javascript:alert(1)"})


def test_entry_point_defaults_to_port_8082(monkeypatch: pytest.MonkeyPatch) -> None:
    import services.domain_verify.__main__ as entry

    captured: dict[str, object] = {}

    def fake_run(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> int:
        main(asyncio.Event()).close()  # builds the service object, runs nothing
        captured["ran"] = True
        return 0

    for key, value in {**BASE, "CACERT_MAIL_SEALING_PUBLIC_KEY": SEALING_PUBLIC_PEM}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CACERT_HTTP_PORT", raising=False)
    monkeypatch.setattr(entry, "run", fake_run)
    monkeypatch.setattr(entry, "configure", lambda *a, **k: None)
    original = entry.DomainVerifyService

    def spy(settings: DomainVerifySettings) -> object:
        captured["port"] = settings.common.http.port
        return original(settings)

    monkeypatch.setattr(entry, "DomainVerifyService", spy)
    with pytest.raises(SystemExit) as exit_info:
        entry.main()
    assert exit_info.value.code == 0 and captured["ran"] and captured["port"] == 8082
