"""Structured JSON logs with correlation ids bound to every line.

Handlers bind `event_id` / `request_id` through structlog's contextvars, so
every line a handler (or anything it calls) writes carries them without
passing a logger around. A redaction processor is the last line of defence
for secrets: keys that look like secrets are masked, and values that look
like PEM private keys are replaced, whoever logged them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import structlog

SECRET_KEY_PATTERN = re.compile(
    r"pass(word|phrase)?|secret|token|private[_-]?key|authorization|cookie|csrf|api[_-]?key",
    re.IGNORECASE,
)
_PRIVATE_KEY_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S)
REDACTED = "[redacted]"


def redact(value: Any, key: str = "") -> Any:
    """Mask secret-looking keys and PEM private keys, recursively."""
    if key and SECRET_KEY_PATTERN.search(key) and not key.endswith(("_id", "_hash", "_count")):
        return REDACTED
    if isinstance(value, str):
        return _PRIVATE_KEY_PEM.sub(REDACTED, value) if "PRIVATE KEY" in value else value
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = redact(event_dict[key], key)
    return event_dict


def configure(service: str, level: str = "INFO", stream: Any = None) -> None:
    """Configure structlog (and stdlib logging) to write one JSON object per line."""
    stream = stream or sys.stdout
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _redact_processor,
    ]
    structlog.configure(
        processors=[*shared_processors, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    # Libraries (aiokafka, pymongo, aiohttp) log through stdlib: route them into the same JSON stream.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processor=structlog.processors.JSONRenderer(),
        foreign_pre_chain=[*shared_processors[:1], structlog.stdlib.add_logger_name, *shared_processors[1:]],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric_level, logging.WARNING))
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name) if name else structlog.get_logger()


@contextmanager
def bound(**values: Any) -> Iterator[None]:
    """Bind correlation ids (event_id, request_id, ...) for the duration of a block."""
    tokens = structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
