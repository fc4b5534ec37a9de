"""Settings and their one precedence chain: flag > `LLM_CONFIG_<NAME>` env > TOML file > default.

Dataclasses and tomllib only, so the CLI stays fast to start (no pydantic-settings). Never
prints or logs a key or a password.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from llm_config.errors import ValidationError

__all__ = ["ServeOptions", "Settings", "load_settings", "parse_size"]

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20}


def parse_size(text: str | int) -> int:
    """`2MiB`, `512k`, `1048576` → bytes."""
    if isinstance(text, int):
        return text
    raw = text.strip().lower()
    digits = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(digits):]
    if not digits.isdigit() or unit not in _UNITS:
        raise ValidationError(f"Invalid size {text!r}: use bytes or a unit like 512KiB or 2MiB")
    return int(digits) * _UNITS[unit]


@dataclass(slots=True)
class Settings:
    """Global settings shared by every command (SPEC §1, §4 global options)."""

    storage: str = ".llm-config"
    encryption_key: str | None = None
    key_file: str | None = None
    redis_url: str | None = None
    server: str | None = None
    api_key: str | None = None


@dataclass(slots=True)
class ServeOptions:
    """Options of `llm-config serve` (SPEC §4, §9).

    Rate limits are `RATE:BURST` (requests per second, bucket size); `0` switches one off. Slow
    clients: a request's headers must arrive within `header_timeout` seconds and its body within
    `body_timeout`; one address may hold at most `max_connections_per_ip` connections (uvicorn;
    trusted proxies exempt; 0 switches the cap off).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    server_impl: str = "uvicorn"
    tls_cert: str | None = None
    tls_key: str | None = None
    cache_ttl: float = 5.0
    cache_l2: str = "auto"  # Redis L2 reads: auto = on for server databases, off in front of local SQLite
    audit_reads: bool = False
    max_body: int = 2 << 20
    max_restore_body: int = 1 << 30  # a backup POSTed to /api/v1/admin/restore (checked after authorization)
    cors_origin: list[str] = field(default_factory=list)
    rate_limit_key: str = "100:50"
    rate_limit_ip: str = "10:10"
    allow_cidr: list[str] = field(default_factory=list)
    deny_cidr: list[str] = field(default_factory=list)
    trusted_proxy: list[str] = field(default_factory=list)
    metrics_auth: bool = False
    ban_loopback: bool = False
    access_log: bool = True
    redis_prefix: str = "llm-config:"
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections_per_ip: int = 100
    no_upgrade: bool = False  # refuse to start while schema migrations are pending (`llm-config upgrade` runs them)
    bootstrap_admin_key_file: str | None = None  # server databases: where the first admin key is written
    tracing: bool = False  # OpenTelemetry spans (the `otel` extra), exported as the standard OTEL_* variables say


T = TypeVar("T", Settings, ServeOptions)

# The key's environment variables are LLM_CONFIG_KEY and LLM_CONFIG_KEY_FILE, in that order (SPEC §2);
# `crypto.keys.find_keyring` reads them itself, so settings carry only flag and file values for these.
_KEY_FIELDS = frozenset({"encryption_key", "key_file"})


def _convert(value: Any, default: Any, name: str) -> Any:
    if value is None:
        return None
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(text)
        if isinstance(default, int) and name in ("max_body", "max_restore_body"):
            return parse_size(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, list):
            return list(value) if isinstance(value, list) else [s for s in str(value).split(",") if s]
    except (TypeError, ValueError):
        raise ValidationError(f"Invalid setting {name}: {str(value)[:40]!r}") from None
    return str(value).strip()  # a URL or path read from a file (a Kubernetes Secret) may end in a newline


def _read_file(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    import tomllib  # only when a settings file is given

    try:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ValidationError(f"Config file not found: {path}") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValidationError(f"Config file {path} is invalid: {exc}") from None
    flat: dict[str, Any] = {}
    for name, value in data.items():  # [serve] table or top-level keys
        if isinstance(value, dict):
            flat.update({k.replace("-", "_"): v for k, v in value.items()})
        else:
            flat[name.replace("-", "_")] = value
    return flat


def load_settings(
    cls: type[T], flags: dict[str, Any], config_file: str | None = None
) -> T:
    """Build `cls` taking each field from flags, then env, then the TOML file, then its default."""
    file_values = _read_file(config_file or os.environ.get("LLM_CONFIG_CONFIG"))
    defaults = cls()
    values: dict[str, Any] = {}
    for f in fields(cls):
        default = getattr(defaults, f.name)
        chosen = flags.get(f.name)
        if (chosen is None or chosen == []) and f.name not in _KEY_FIELDS:
            chosen = os.environ.get("LLM_CONFIG_" + f.name.upper()) or None
        if chosen is None:
            chosen = file_values.get(f.name)
        converted = _convert(chosen, default, f.name)
        values[f.name] = default if converted is None else converted
    return cls(**values)
