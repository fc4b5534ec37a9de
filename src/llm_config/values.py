"""Strict JSON values (SPEC §3, ARCHITECTURE decision 8). Pure.

Accepted: str, 64-bit int, finite float, bool, None, list, dict with str keys; at most 1 MiB
serialized and nesting depth 32. NaN, ±Infinity and integers outside 64 bits are refused, never
rewritten. Messages never quote the value.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

import orjson

from llm_config.errors import ValidationError

__all__ = [
    "MAX_DEPTH",
    "MAX_VALUE_BYTES",
    "check_text",
    "check_version",
    "dumps",
    "loads_strict",
    "parse_cli_value",
    "validate_value",
]

MAX_VALUE_BYTES: Final = 1024 * 1024
MAX_DEPTH: Final = 32
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63 - 1


def _check(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValidationError(f"Invalid value: nesting deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise ValidationError("Invalid value: integer outside the 64-bit range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError("Invalid value: NaN and Infinity are not JSON")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check(item, depth + 1)
        return
    if isinstance(value, dict):
        for k, item in value.items():
            if not isinstance(k, str):
                raise ValidationError("Invalid value: object keys must be strings")
            _check(item, depth + 1)
        return
    raise ValidationError(f"Invalid value: {type(value).__name__} is not a JSON type")


def dumps(value: Any) -> str:
    """Serialize a validated value to compact JSON text (UTF-8, keys in given order)."""
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError) as exc:  # surrogates, odd types
        raise ValidationError(f"Invalid value: not serializable as JSON ({type(exc).__name__})") from None


def validate_value(value: Any) -> str:
    """Check a value against SPEC §3 and return its stored JSON text."""
    _check(value, 1)
    text = dumps(value)
    if len(text.encode()) > MAX_VALUE_BYTES:
        raise ValidationError(f"Invalid value: larger than {MAX_VALUE_BYTES} bytes serialized")
    return text


def _reject_constant(name: str) -> Any:
    raise ValidationError(f"Invalid JSON: {name} is not allowed")


def loads_strict(text: str | bytes, *, wrapper_depth: int = 0) -> Any:
    """Parse JSON refusing NaN/Infinity, out-of-range integers and excess depth.

    `wrapper_depth` is how many levels of envelope (a request body, an import document) sit
    around the values, so they get the same depth allowance as a value given on its own.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError("Invalid JSON: not UTF-8") from None
    if len(text) > 4 * MAX_VALUE_BYTES:
        raise ValidationError(f"Invalid value: larger than {MAX_VALUE_BYTES} bytes serialized")
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValidationError:
        raise
    except RecursionError:
        raise ValidationError(f"Invalid value: nesting deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "malformed"
        pos = f" at position {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ValidationError(f"Invalid JSON: {msg}{pos}") from None
    _check(value, 1 - wrapper_depth)
    return value


def check_text(text: object, what: str, max_len: int = 1000) -> str:
    """A free-text field (description, message, tag): a str of valid Unicode, at most `max_len`."""
    if not isinstance(text, str) or len(text) > max_len:
        raise ValidationError(f"Invalid {what}: at most {max_len} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"Invalid {what}: not valid Unicode (lone surrogate)") from None
    return text


def check_version(version: object, what: str = "version", *, allow_zero: bool = False) -> int:
    """A version number: a positive (or, with `allow_zero`, non-negative) 64-bit integer."""
    low = 0 if allow_zero else 1
    if not isinstance(version, int) or isinstance(version, bool) or not low <= version <= _INT_MAX:
        kind = "a non-negative" if allow_zero else "a positive"
        raise ValidationError(f"Invalid {what}: must be {kind} 64-bit integer")
    return version


def parse_cli_value(text: str) -> Any:
    """A CLI VALUE: JSON if it parses as JSON, else the string itself (SPEC §4).

    Text that parses but breaks the rules (NaN, 2**64) is refused rather than kept as a string,
    so `set k NaN` cannot silently store the string "NaN" where a number was meant.
    """
    try:
        parsed = json.loads(text, parse_constant=_reject_constant)
    except ValidationError:
        raise ValidationError(
            "Invalid value: NaN and Infinity are not JSON (quote them to store a string)"
        ) from None
    except (ValueError, RecursionError):
        return text
    _check(parsed, 1)
    return parsed
