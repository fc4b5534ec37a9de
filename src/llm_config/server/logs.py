"""Structured logs of the server (structlog over stdlib logging) with a redaction processor.

Every event goes through `redact`, which replaces the value of any field named like a key, token,
authorization, password, secret, cookie or value with `[redacted]`, and masks anything shaped like
an API key (`llmc_…`) wherever it appears — in the event text, nested dicts and lists included.
Access lines carry method, route template, status, latency, request id, client ip and actor —
never headers, query strings or bodies.

Output is one JSON object per line on the stdlib logger (`llm_config.server…`), so whoever runs the
server chooses the handler; `configure()` adds a stderr handler when nobody did.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Final

import orjson
import structlog

__all__ = ["ACCESS_LOGGER", "REDACTED", "SERVER_LOGGER", "configure", "get_logger", "redact", "scrub"]

SERVER_LOGGER: Final = "llm_config.server"
ACCESS_LOGGER: Final = "llm_config.server.access"
REDACTED: Final = "[redacted]"

_SENSITIVE_NAME: Final = re.compile(r"key|token|authori[sz]ation|passw(?:or)?d|secret|value|cookie|credential",
                                    re.IGNORECASE)
_API_KEY: Final = re.compile(r"llmc_[A-Za-z0-9_-]{20,}")
_MAX_DEPTH: Final = 8


def _sensitive(name: object) -> bool:
    return isinstance(name, str) and bool(_SENSITIVE_NAME.search(name))


def scrub(value: Any, depth: int = 0) -> Any:
    """`value` with sensitive fields redacted and API keys masked (containers are copied)."""
    if isinstance(value, str):
        return _API_KEY.sub("llmc_" + REDACTED, value) if "llmc_" in value else value
    if isinstance(value, bytes | bytearray):
        return scrub(bytes(value).decode("utf-8", "replace"), depth)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= _MAX_DEPTH:
        return REDACTED
    if isinstance(value, dict):
        return {k: REDACTED if _sensitive(k) else scrub(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v, depth + 1) for v in value]
    return scrub(str(value), depth)


def redact(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: redact sensitive fields, mask API keys everywhere."""
    for name in list(event_dict):
        if name != "event" and _sensitive(name):
            event_dict[name] = REDACTED
        else:
            event_dict[name] = scrub(event_dict[name])
    return event_dict


def _dumps(obj: Any, **_kw: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


_PROCESSORS: Final[list[Any]] = [
    structlog.stdlib.filter_by_level,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.format_exc_info,
    redact,  # last before rendering: nothing added after it escapes it
    structlog.processors.JSONRenderer(serializer=_dumps),
]


def get_logger(name: str = SERVER_LOGGER) -> Any:
    """A structlog logger writing redacted JSON lines to the stdlib logger `name`."""
    return structlog.wrap_logger(
        logging.getLogger(name), processors=_PROCESSORS, wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def configure(level: int = logging.INFO) -> None:
    """Send our loggers to stderr (one JSON line each) unless the host application set up logging."""
    ours = logging.getLogger("llm_config")
    if logging.getLogger().handlers or ours.handlers:
        if ours.level == logging.NOTSET:
            ours.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours.addHandler(handler)
    ours.setLevel(level)
    ours.propagate = False
