import dataclasses

import pytest

from shared.config import ConfigError, KafkaSettings, load, load_or_exit, setting
from shared.settings import CommonSettings


@dataclasses.dataclass(frozen=True)
class Example:
    name: str = setting("EX_NAME")
    port: int = setting("EX_PORT", 8080)
    debug: bool = setting("EX_DEBUG", False)
    hosts: list[str] = setting("EX_HOSTS", ["a"])


def test_missing_required_setting_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="EX_NAME is required"):
        load(Example, {})


def test_missing_required_setting_stops_start_up_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        load_or_exit(CommonSettings, {"CACERT_MONGO_URL": "mongodb://x"})
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "CACERT_KAFKA_BOOTSTRAP" in err


def test_invalid_integer_is_refused_with_the_variable_name() -> None:
    with pytest.raises(ConfigError, match="EX_PORT must be an integer"):
        load(Example, {"EX_NAME": "n", "EX_PORT": "eighty"})


def test_values_are_converted_to_their_types() -> None:
    loaded = load(Example, {"EX_NAME": "n", "EX_PORT": "9", "EX_DEBUG": "yes", "EX_HOSTS": "x, y"})
    assert loaded == Example(name="n", port=9, debug=True, hosts=["x", "y"])


def test_secret_can_come_from_a_mounted_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    loaded = load(KafkaSettings, {"CACERT_KAFKA_BOOTSTRAP": "b:1", "CACERT_KAFKA_PASSWORD_FILE": str(secret)})
    assert loaded.sasl_password == "s3cret"


def test_unreadable_secret_file_is_named() -> None:
    with pytest.raises(ConfigError, match="CACERT_KAFKA_BOOTSTRAP_FILE"):
        load(KafkaSettings, {"CACERT_KAFKA_BOOTSTRAP_FILE": "/nonexistent/file"})


def test_nested_settings_are_loaded() -> None:
    loaded = load(CommonSettings, {"CACERT_KAFKA_BOOTSTRAP": "k:1", "CACERT_MONGO_URL": "mongodb://m",
                                   "CACERT_HTTP_PORT": "81"})
    assert loaded.kafka.bootstrap == "k:1" and loaded.http.port == 81 and loaded.create_topics is True


def test_validation_hook_rejects_bad_protocol() -> None:
    with pytest.raises(ConfigError, match="CACERT_KAFKA_SECURITY_PROTOCOL"):
        load(KafkaSettings, {"CACERT_KAFKA_BOOTSTRAP": "k:1", "CACERT_KAFKA_SECURITY_PROTOCOL": "TLS"})
