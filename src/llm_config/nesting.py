"""Dotted keys as nested objects, and a resolved namespace bound to a pydantic model (SPEC §4b). Pure.

Shared by the library (`ConfigManager.resolve(nested=True)`, `bind`) and the SDK (`Client.bind`): a
pydantic model is the caller's, so pydantic is never imported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from llm_config.errors import ValidationError

__all__ = ["bind_model", "nest"]

_M = TypeVar("_M")


class _Node(dict[str, Any]):
    """An intermediate object made by nesting (as opposed to a stored dict value)."""


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Split dotted keys into nested objects; `a` and `a.b` together are an error."""
    root = _Node()
    for key in sorted(flat):
        parts = key.split(".")
        node = root
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, _Node())
            if not isinstance(child, _Node):
                raise ValidationError(
                    f"Cannot nest: {'.'.join(parts[: i + 1])!r} is both a key and a prefix of {key!r}"
                )
            node = child
        if parts[-1] in node:
            raise ValidationError(f"Cannot nest: {key!r} is both a key and a prefix of another key")
        node[parts[-1]] = flat[key]
    return _plain(root)


def _plain(node: _Node) -> dict[str, Any]:
    return {k: _plain(v) if isinstance(v, _Node) else v for k, v in node.items()}


def bind_model(model: type[_M], flat: Mapping[str, Any]) -> _M:
    """`flat` (a resolved namespace) nested on dots and validated by the pydantic `model`: a key the model
    does not declare, a missing field or a wrong type is a ValidationError naming the key (never a value)."""
    validate = getattr(model, "model_validate", None)
    if validate is None:
        raise ValidationError(f"bind needs a pydantic model class, not {getattr(model, '__name__', model)!r}")
    data = nest(flat)
    try:
        instance = validate(data)
    except ValueError as exc:  # pydantic.ValidationError: name each key and what is wrong, not the input
        errors = getattr(exc, "errors", None)
        if errors is None:
            raise
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ())) or '(root)'}: {e.get('msg', 'invalid')}"
            for e in errors(include_input=False, include_url=False)
        ]
        raise ValidationError(f"Cannot bind to {model.__name__}: " + "; ".join(problems[:10])) from None
    declared = _flatten(instance.model_dump()).keys() | _flatten(instance.model_dump(by_alias=True)).keys()
    unknown = sorted(_flatten(data).keys() - declared)
    if unknown:  # a typo'd key the model ignored
        raise ValidationError(f"Cannot bind to {model.__name__}: keys the model does not declare: "
                              + ", ".join(unknown[:20]))
    return instance  # type: ignore[no-any-return]


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out
