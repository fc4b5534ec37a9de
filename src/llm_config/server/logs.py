"""Structured logs of the server (structlog over stdlib logging) with a redaction processor.

Every event goes through `redact`, which replaces the value of any field named like a key, token,
authorization, password, secret, cookie or value with `[redacted]`, and masks anything shaped like
an API key (`llmc_…`) wherever it appears — in the event text, nested dicts and lists included.
Access lines carry method, route template, status, latency, request id, client ip and actor —
never headers, query strings or bodies — and, with tracing on, the trace and span ids.

Output is one JSON object per line on the stdlib logger (`llm_config.server…`), so whoever runs the
server chooses the handler; `configure()` adds a stderr handler when nobody did.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import structlog

from llm_config.tracing import current_ids

__all__ = [
    "ACCESS_LOGGER", "REDACTED", "SERVER_LOGGER", "access_line", "configure", "get_logger", "redact", "scrub",
]

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


_ACCESS_STD: Final = logging.getLogger(ACCESS_LOGGER)
_OWN_HANDLER: list[logging.StreamHandler[Any]] = []


def access_line(
    method: str, route: str, status: int, duration_ms: float, request_id: str, client_ip: str | None,
    actor: str | None,
) -> None:
    """One access-log line: the same JSON the structlog path writes, at a tenth of its cost.

    Every field is ours (route template, validated request id, parsed address, key name), so the
    only redaction needed is masking an API-key-shaped actor. When `configure` installed our stderr
    handler, the line is written to it directly (one JSON encode and one write, ~4 µs, where
    structlog's chain and stdlib dispatch cost ~35 µs per request, measured); when the host
    application configured logging, the line goes through the stdlib logger like any other.
    """
    if not _ACCESS_STD.isEnabledFor(logging.INFO):
        return
    if actor is not None and "llmc_" in actor:
        actor = scrub(actor)
    record = {
        "method": method, "route": route, "status": status, "duration_ms": duration_ms, "request_id": request_id,
        "client_ip": client_ip, "actor": actor, "event": "request", "level": "info",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    ids = current_ids()  # None at once while tracing is off
    if ids is not None:
        record["trace_id"], record["span_id"] = ids
    if _OWN_HANDLER and not _ACCESS_STD.handlers:
        handler = _OWN_HANDLER[0]
        line = orjson.dumps(record).decode() + "\n"
        with handler.lock or _NO_LOCK:
            handler.stream.write(line)
            handler.stream.flush()
        return
    _ACCESS_STD.info(orjson.dumps(record).decode())


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK: Final = _NoLock()


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
    _OWN_HANDLER[:] = [handler]
    ours.setLevel(level)
    ours.propagate = False
