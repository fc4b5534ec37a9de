"""Grammar of namespaces, keys and environments (SPEC §3). Pure: refuses, never rewrites."""

from __future__ import annotations

import re

from llm_config.errors import ValidationError
from llm_config.models import Environment

__all__ = [
    "DEFAULT_ENVIRONMENT",
    "ENVIRONMENT_NAMES",
    "ENVIRONMENT_PATTERN",
    "KEY_PATTERN",
    "LABEL_PATTERN",
    "NAMESPACE_PATTERN",
    "OBJECT_NAME_MAX",
    "RESERVED",
    "SCHEMA_PATTERN",
    "SCHEMA_PREFIX",
    "SEGMENT_PATTERN",
    "TEMPLATE_NAME_PATTERN",
    "TEMPLATE_PREFIX",
    "parse_environment",
    "stored_kind",
    "validate_key",
    "validate_label",
    "validate_name",
    "validate_namespace",
    "validate_schema_pattern",
    "validate_stored_key",
    "validate_template_name",
]

SEGMENT_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
"""One namespace segment (the grammar, unanchored: the REST schema anchors it)."""
KEY_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}"
_MAX_SEGMENTS = 8
NAMESPACE_PATTERN = rf"{SEGMENT_PATTERN}(?:/{SEGMENT_PATTERN}){{0,{_MAX_SEGMENTS - 1}}}"
OBJECT_NAME_MAX = 197
"""The longest template name or schema pattern: stored behind a 3-character prefix in the 200-character
key column (MySQL's `VARCHAR(200)`)."""
SCHEMA_PATTERN = rf"[A-Za-z0-9*?][A-Za-z0-9_.*?-]{{0,{OBJECT_NAME_MAX - 1}}}"
"""A schema's key pattern: a key, or a glob of one with `*` (any run, dots included) and `?` (one character)."""
TEMPLATE_NAME_PATTERN = rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{OBJECT_NAME_MAX - 1}}}"
"""A template's name: the key grammar, at most 197 characters."""
LABEL_PATTERN = r"[^\u0000-\u001f\u007f-\u009f]{1,100}"
"""A tag or an API key's name: 1-100 characters, none of them a control character."""

_SEGMENT = re.compile(SEGMENT_PATTERN)
_KEY = re.compile(KEY_PATTERN)
_LABEL = re.compile(LABEL_PATTERN)
_SCHEMA = re.compile(SCHEMA_PATTERN)

RESERVED = "~"
"""First character of the stored keys of llm-config's own objects. No key can start with it, and it sorts
after every character a key can start with, so a listing of keys is one range that excludes them."""
TEMPLATE_PREFIX = "~t:"
"""Templates are entries whose stored key is this prefix and the template's name (versioned like values)."""
SCHEMA_PREFIX = "~s:"
"""Schemas are entries whose stored key is this prefix and the key pattern (environment `base`)."""

DEFAULT_ENVIRONMENT = Environment.DEVELOPMENT

_ALIASES = {
    "base": Environment.BASE,
    "development": Environment.DEVELOPMENT,
    "dev": Environment.DEVELOPMENT,
    "staging": Environment.STAGING,
    "stage": Environment.STAGING,
    "production": Environment.PRODUCTION,
    "prod": Environment.PRODUCTION,
    "edge": Environment.EDGE,
}


ENVIRONMENT_NAMES = tuple(_ALIASES)
"""Every name an environment may be given by (canonical names and aliases), matched case-insensitively."""
ENVIRONMENT_PATTERN = "|".join(
    "".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in name) for name in ENVIRONMENT_NAMES
)
"""The environment names, case-insensitive, as a regular expression without flags (for JSON Schema)."""


def _shown(text: str) -> str:
    """A name as it may appear in a message: repr-escaped and cut, so control bytes cannot spoof."""
    shown = text if len(text) <= 80 else text[:77] + "..."
    return ascii(shown)


def validate_namespace(namespace: object) -> str:
    """Return the namespace unchanged if it is 1–8 `/`-joined segments of the allowed grammar."""
    if not isinstance(namespace, str) or not namespace:
        raise ValidationError("Invalid namespace: must be a non-empty string")
    segments = namespace.split("/")
    if len(segments) > _MAX_SEGMENTS:
        raise ValidationError(
            f"Invalid namespace {_shown(namespace)}: at most {_MAX_SEGMENTS} segments"
        )
    for segment in segments:
        if not _SEGMENT.fullmatch(segment) or segment in (".", ".."):
            raise ValidationError(
                f"Invalid namespace {_shown(namespace)}: each '/'-separated segment must be 1-64 "
                "characters of letters, digits, '_', '.', '-', starting with a letter or digit"
            )
    return namespace


def validate_key(key: object) -> str:
    """Return the key unchanged if it matches `[A-Za-z0-9][A-Za-z0-9_.-]{0,199}`."""
    if not isinstance(key, str) or not key:
        raise ValidationError("Invalid key: must be a non-empty string")
    if not _KEY.fullmatch(key):
        raise ValidationError(
            f"Invalid key {_shown(key)}: must be 1-200 characters of letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return key


def validate_schema_pattern(pattern: object) -> str:
    """A schema's key pattern: a key, or a glob of one using `*` and `?` only (SPEC §6)."""
    if not isinstance(pattern, str) or not pattern:
        raise ValidationError("Invalid schema pattern: must be a non-empty string")
    if not _SCHEMA.fullmatch(pattern):
        raise ValidationError(
            f"Invalid schema pattern {_shown(pattern)}: a key (1-{OBJECT_NAME_MAX} characters of letters, digits, "
            "'_', '.', '-') or a glob of one using '*' and '?'"
        )
    return pattern


def validate_template_name(name: object) -> str:
    """A template's name: the key grammar, at most `OBJECT_NAME_MAX` characters."""
    validate_name(name, "template name")
    assert isinstance(name, str)
    if len(name) > OBJECT_NAME_MAX:
        raise ValidationError(f"Invalid template name {_shown(name)}: at most {OBJECT_NAME_MAX} characters")
    return name


def stored_kind(stored_key: str) -> str:
    """What a stored key holds: "config", "template" or "schema"."""
    if not stored_key.startswith(RESERVED):
        return "config"
    return "template" if stored_key.startswith(TEMPLATE_PREFIX) else "schema"


def validate_stored_key(key: object) -> str:
    """A key as storage holds it: a config key, `~t:` + a template name or `~s:` + a schema pattern."""
    if isinstance(key, str) and key.startswith(TEMPLATE_PREFIX):
        validate_template_name(key[len(TEMPLATE_PREFIX):])
        return key
    if isinstance(key, str) and key.startswith(SCHEMA_PREFIX):
        validate_schema_pattern(key[len(SCHEMA_PREFIX):])
        return key
    return validate_key(key)


def validate_name(name: object, what: str = "name") -> str:
    """Template names and similar identifiers follow the key grammar."""
    try:
        return validate_key(name)
    except ValidationError as exc:
        raise ValidationError(exc.message.replace("Invalid key", f"Invalid {what}", 1)) from None


def parse_environment(value: object) -> Environment:
    """Parse an environment name case-insensitively, accepting the aliases dev, stage and prod."""
    if isinstance(value, Environment):
        return value
    if isinstance(value, str) and value.isascii():
        env = _ALIASES.get(value.lower())
        if env is not None:
            return env
    shown = repr(value)[:64]
    if isinstance(value, str):
        shown = value[:64] if value.isprintable() else ascii(value[:64])
    raise ValidationError(f"Unknown environment: {shown}")


def validate_label(text: object, what: str) -> str:
    """A tag or an API key's name: 1-100 characters without control characters (never rewritten)."""
    if not isinstance(text, str):
        raise ValidationError(f"Invalid {what}: must be a string")
    if not _LABEL.fullmatch(text) or not _encodable(text):
        raise ValidationError(f"Invalid {what}: 1-100 characters, no control characters")
    return text


def _encodable(text: str) -> bool:
    """No lone surrogate (which JSON from the wire never carries, but a Python caller can pass)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
