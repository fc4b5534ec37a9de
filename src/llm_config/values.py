"""Strict JSON values (SPEC §3, ARCHITECTURE decision 8). Pure.

Accepted: str, 64-bit int, finite float, bool, None, list, dict with str keys; at most 1 MiB
serialized and at most 32 nested arrays/objects. NaN, ±Infinity and integers outside 64 bits are refused, never
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
    "MAX_DOCUMENT_BYTES",
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
MAX_DOCUMENT_BYTES: Final = 16 * 1024 * 1024
"""Largest import document read from a file or stdin (REST bodies are capped by `--max-body` first)."""
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**63 - 1


def _check(value: Any, enclosing: int) -> None:
    """Check `value`, which sits inside `enclosing` arrays/objects. One rule for depth: at most
    `MAX_DEPTH` nested arrays/objects, whatever the innermost one holds (`[[]]` and `[[1]]` are both 2)."""
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
    if isinstance(value, (list, tuple, dict)):
        if enclosing + 1 > MAX_DEPTH:
            raise ValidationError(f"Invalid value: more than {MAX_DEPTH} nested arrays/objects")
        if isinstance(value, dict):
            for k, item in value.items():
                if not isinstance(k, str):
                    raise ValidationError("Invalid value: object keys must be strings")
                _check(item, enclosing + 1)
        else:
            for item in value:
                _check(item, enclosing + 1)
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
    _check(value, 0)
    text = dumps(value)
    if len(text.encode()) > MAX_VALUE_BYTES:
        raise ValidationError(f"Invalid value: larger than {MAX_VALUE_BYTES} bytes serialized")
    return text


class _DuplicateKeyError(ValidationError):
    """An object with the same key twice (its own type, so that callers tell it from a NaN)."""


def _reject_constant(name: str) -> Any:
    raise ValidationError(f"Invalid JSON: {name} is not allowed")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are all different: `{"secret": true, "secret": false}` is ambiguous.

    The message names no key: it may sit inside a secret value (SPEC §8: values are never echoed)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKeyError("Invalid JSON: an object has the same key twice")
    return obj


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
    if len(text) > MAX_DOCUMENT_BYTES:
        raise ValidationError(f"Invalid JSON: larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        # the C parser is linear in the input and refuses excess nesting itself (RecursionError);
        # objects are checked for duplicate keys as they are built
        value = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_object)
    except ValidationError:
        raise
    except RecursionError:
        raise ValidationError(f"Invalid value: more than {MAX_DEPTH} nested arrays/objects") from None
    except ValueError as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "malformed"
        pos = f" at position {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ValidationError(f"Invalid JSON: {msg}{pos}") from None
    _check(value, -wrapper_depth)
    return value


def check_text(text: object, what: str, max_len: int = 1000) -> str:
    """A free-text field (description, message): a str of valid Unicode, at most `max_len` characters."""
    if not isinstance(text, str):
        raise ValidationError(f"Invalid {what}: must be a string")
    if len(text) > max_len:
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
        parsed = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_object)
    except _DuplicateKeyError:
        raise
    except ValidationError:
        raise ValidationError(
            "Invalid value: NaN and Infinity are not JSON (quote them to store a string)"
        ) from None
    except RecursionError:
        raise ValidationError(f"Invalid value: more than {MAX_DEPTH} nested arrays/objects") from None
    except ValueError:
        return text
    _check(parsed, 0)
    return parsed
