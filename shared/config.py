"""Typed settings, read once at start-up from the environment or mounted files.

Every service describes its settings as a frozen dataclass whose fields carry
a `setting(...)` marker naming the environment variable. `load(SettingsClass)`
reads them all, converts them to the annotated type, and raises
`ConfigError` naming the first variable that is missing or invalid, so a
misconfigured pod dies with one line an operator can act on.

Secrets may be given as `NAME_FILE=/path` instead of `NAME=value`: that is
how Kubernetes Secrets are mounted, and it keeps secrets out of `env` dumps.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")

_MISSING = object()


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable."""


def setting(
    env: str,
    default: Any = _MISSING,
    *,
    secret: bool = False,
    help: str = "",
) -> Any:
    """Declare a dataclass field read from environment variable `env`."""
    metadata = {"env": env, "secret": secret, "help": help}
    if default is _MISSING:
        return dataclasses.field(metadata=metadata)
    if isinstance(default, list | dict | set):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _convert(raw: str, target: Any, env: str) -> Any:
    origin = typing.get_origin(target)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(target) if a is not type(None)]
        if raw == "":
            return None
        return _convert(raw, args[0], env)
    if target is str:
        return raw
    if target is bool:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{env} must be a boolean (true/false), got {raw!r}")
    if target is int or target is float:
        try:
            return target(raw)
        except ValueError:
            raise ConfigError(f"{env} must be a{'n integer' if target is int else ' number'}, "
                              f"got {raw!r}") from None
    if target is bytes:
        return raw.encode()
    if target is Path:
        return Path(raw)
    if origin in (list, tuple):
        (item,) = typing.get_args(target)[:1] or (str,)
        items = [_convert(part.strip(), item, env) for part in raw.split(",") if part.strip()]
        return items if origin is list else tuple(items)
    raise ConfigError(f"{env}: unsupported setting type {target!r}")


def _read_raw(env: str, environ: Mapping[str, str]) -> str | None:
    if env in environ:
        return environ[env]
    file_var = f"{env}_FILE"
    if file_var in environ:
        path = Path(environ[file_var])
        try:
            return path.read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{file_var} points at {path}, which cannot be read: {exc.strerror}") from None
    return None


def load(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Build `cls` from the environment; raise ConfigError naming the bad variable."""
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        env = field.metadata.get("env")
        if env is None:
            nested = hints[field.name]
            if dataclasses.is_dataclass(nested):
                values[field.name] = load(nested, environ)  # type: ignore[arg-type]
            continue
        raw = _read_raw(env, environ)
        if raw is None:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{env} is required but not set (nor {env}_FILE)")
            continue
        values[field.name] = _convert(raw, hints[field.name], env)
    instance = cls(**values)
    validate = getattr(instance, "validate", None)
    if callable(validate):
        validate()
    return instance


def load_or_exit(cls: type[T], environ: Mapping[str, str] | None = None,
                 exit: Callable[[int], NoReturn] = sys.exit) -> T:
    """Like `load`, but print one line to stderr and exit 2 on a bad setting."""
    try:
        return load(cls, environ)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        exit(2)


def describe(cls: type) -> list[tuple[str, str, bool]]:
    """(env var, help, secret) for every setting: used by docs and manifests tests."""
    hints = typing.get_type_hints(cls)
    rows: list[tuple[str, str, bool]] = []
    for f in dataclasses.fields(cls):
        if "env" in f.metadata:
            rows.append((f.metadata["env"], f.metadata.get("help", ""), f.metadata.get("secret", False)))
        elif dataclasses.is_dataclass(hints[f.name]):
            rows.extend(describe(hints[f.name]))
    return rows


@dataclasses.dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str = setting("CACERT_KAFKA_BOOTSTRAP", help="Kafka bootstrap servers, host:port[,host:port]")
    topic_prefix: str = setting("CACERT_KAFKA_TOPIC_PREFIX", "cacert.",
                                help="prefix of every topic (lets several stacks share a broker)")
    group_prefix: str = setting("CACERT_KAFKA_GROUP_PREFIX", "",
                                help="prefix of every consumer group id (groups are broker-wide, so a "
                                     "second stack on a shared broker needs one, like topic_prefix)")
    security_protocol: str = setting("CACERT_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    sasl_mechanism: str = setting("CACERT_KAFKA_SASL_MECHANISM", "")
    sasl_username: str = setting("CACERT_KAFKA_USERNAME", "")
    sasl_password: str = setting("CACERT_KAFKA_PASSWORD", "", secret=True)
    ssl_cafile: str = setting("CACERT_KAFKA_CA_FILE", "")

    def validate(self) -> None:
        if self.security_protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            raise ConfigError("CACERT_KAFKA_SECURITY_PROTOCOL must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")


@dataclasses.dataclass(frozen=True)
class MongoSettings:
    url: str = setting("CACERT_MONGO_URL", secret=True, help="MongoDB connection string")
    database: str = setting("CACERT_MONGO_DATABASE", "", help="database name (default: the service's name)")
    socket_timeout_seconds: float = setting(
        "CACERT_MONGO_SOCKET_TIMEOUT_SECONDS", 30.0,
        help="a database answer slower than this fails as a network timeout (handled like a dropped "
             "connection) instead of hanging the service on a stuck server")
    max_pool_size: int = setting(
        "CACERT_MONGO_MAX_POOL_SIZE", 25,
        help="database commands one process runs at once (more wait for a connection); keeps the local "
             "stack's FerretDB, which needs two of its own connections per update, below its pool")

    def __post_init__(self) -> None:
        if self.max_pool_size < 1:
            raise ConfigError(f"CACERT_MONGO_MAX_POOL_SIZE must be at least 1, got {self.max_pool_size}")
        if self.socket_timeout_seconds <= 0:
            raise ConfigError(
                f"CACERT_MONGO_SOCKET_TIMEOUT_SECONDS must be positive, got {self.socket_timeout_seconds}")


@dataclasses.dataclass(frozen=True)
class HttpSettings:
    host: str = setting("CACERT_HTTP_HOST", "127.0.0.1")
    port: int = setting("CACERT_HTTP_PORT", 8080)
    trusted_proxies: list[str] = setting(
        "CACERT_TRUSTED_PROXIES", [],
        help="CIDRs of the reverse proxies (the ingress controller) whose X-Forwarded-For is believed when "
             "rate limits key on the client's address (comma list; empty: the socket peer is the client)")

    drain_seconds: float = setting(
        "CACERT_SHUTDOWN_DRAIN_SECONDS", 0.0,
        help="on SIGTERM, keep serving this long with /readyz failing and connections closing after each "
             "answer before the listener closes, so no request is dropped during a rolling update")

    @property
    def trusted_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(c.strip(), strict=False) for c in self.trusted_proxies]

    def validate(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"CACERT_HTTP_PORT must be between 0 and 65535, got {self.port}")
        if not 0 <= self.drain_seconds <= 120:
            raise ConfigError(f"CACERT_SHUTDOWN_DRAIN_SECONDS must be 0..120, got {self.drain_seconds}")
        for cidr in self.trusted_proxies:
            try:
                ipaddress.ip_network(cidr.strip(), strict=False)
            except ValueError:
                raise ConfigError(f"CACERT_TRUSTED_PROXIES: {cidr!r} is not a CIDR") from None
