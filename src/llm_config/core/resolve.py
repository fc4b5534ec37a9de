"""Resolution of a namespace to a flat or nested mapping (SPEC §3). Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from llm_config.errors import ValidationError

__all__ = ["env_var_name", "env_var_names", "merge_with_base"]


def merge_with_base(base: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """The environment's own values, falling back to base key by key; sorted by key."""
    merged = dict(base)
    merged.update(own)
    return {k: merged[k] for k in sorted(merged)}


def env_var_name(key: str, prefix: str = "") -> str:
    """`openai.api_key` → `OPENAI_API_KEY` (upper-case; `.` and `-` become `_`)."""
    return prefix + key.upper().replace(".", "_").replace("-", "_")


def env_var_names(keys: Iterable[str], prefix: str = "") -> dict[str, str]:
    """Map keys to variable names, refusing collisions (`a.b` and `a_b` both → `A_B`)."""
    seen: dict[str, str] = {}
    for key in keys:
        name = env_var_name(key, prefix)
        if name in seen:
            raise ValidationError(f"Keys {seen[name]!r} and {key!r} both map to {name}")
        seen[name] = key
    return seen
