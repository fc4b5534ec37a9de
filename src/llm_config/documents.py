"""Templates, schemas, environment diffs and promotion plans as the library, the REST API and the SDK
return them (SPEC §4, §6, §8): frozen dataclasses with their JSON shape, both ways. Pure, no I/O.

A template or schema never holds a secret (a template names secrets by key, `{{ secret:KEY }}`); a diff
or a plan names keys and versions, never a value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from llm_config.errors import ValidationError
from llm_config.models import Environment
from llm_config.names import parse_environment, validate_key

__all__ = ["EnvDiff", "Promotion", "PromotionStep", "Schema", "Template"]

Action = Literal["create", "update", "delete"]
_ACTIONS: Final = frozenset({"create", "update", "delete"})


def _body(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValidationError(f"Invalid {what}: expected a JSON object")
    return data


def _field(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...], what: str, *,
           optional: bool = False) -> Any:
    value = body.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ValidationError(f"Invalid {what}: field {name!r}")
    return value


def _names(body: Mapping[str, Any], name: str, what: str) -> tuple[str, ...]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(f"Invalid {what}: field {name!r} must be a list of strings")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Template:
    """One version of a prompt template: its text, the variables it uses (in order of first appearance,
    references excluded), their declared defaults and a description."""

    namespace: str
    name: str
    environment: Environment
    version: int
    content: str
    variables: tuple[str, ...]
    defaults: Mapping[str, Any]
    description: str | None
    updated_at: str
    updated_by: str

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace, "name": self.name, "environment": self.environment.value,
            "version": self.version, "content": self.content, "variables": list(self.variables),
            "defaults": dict(self.defaults), "description": self.description,
            "updated_at": self.updated_at, "updated_by": self.updated_by,
        }

    @classmethod
    def from_json(cls, data: Any) -> Template:
        what = "template"
        body = _body(data, what)
        defaults = _field(body, "defaults", dict, what)
        return cls(
            namespace=_field(body, "namespace", str, what), name=_field(body, "name", str, what),
            environment=parse_environment(_field(body, "environment", str, what)),
            version=_field(body, "version", int, what), content=_field(body, "content", str, what),
            variables=_names(body, "variables", what), defaults=defaults,
            description=_field(body, "description", str, what, optional=True),
            updated_at=_field(body, "updated_at", str, what), updated_by=_field(body, "updated_by", str, what),
        )


@dataclass(frozen=True, slots=True)
class Schema:
    """One version of the JSON Schema that keys matching `pattern` in a namespace must satisfy. `builtin`
    names the built-in it refers to (`document` is then that built-in as this version of llm-config ships it)."""

    namespace: str
    pattern: str
    version: int
    document: Mapping[str, Any]
    builtin: str | None
    description: str | None
    updated_at: str
    updated_by: str

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace, "pattern": self.pattern, "version": self.version,
            "schema": dict(self.document), "builtin": self.builtin, "description": self.description,
            "updated_at": self.updated_at, "updated_by": self.updated_by,
        }

    @classmethod
    def from_json(cls, data: Any) -> Schema:
        what = "schema"
        body = _body(data, what)
        return cls(
            namespace=_field(body, "namespace", str, what), pattern=_field(body, "pattern", str, what),
            version=_field(body, "version", int, what), document=_field(body, "schema", dict, what),
            builtin=_field(body, "builtin", str, what, optional=True),
            description=_field(body, "description", str, what, optional=True),
            updated_at=_field(body, "updated_at", str, what), updated_by=_field(body, "updated_by", str, what),
        )


@dataclass(frozen=True, slots=True)
class EnvDiff:
    """Each environment's own entries compared (SPEC §4 `diff`): `added` only in the source, `removed`
    only in the target; secrets the caller may not read on both sides are `not_compared`. Keys, sorted."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]
    not_compared: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"added": list(self.added), "removed": list(self.removed), "changed": list(self.changed),
                "unchanged": list(self.unchanged), "not_compared": list(self.not_compared)}

    @classmethod
    def from_json(cls, data: Any) -> EnvDiff:
        body = _body(data, "diff")
        return cls(*(_names(body, name, "diff") for name in ("added", "removed", "changed", "unchanged",
                                                              "not_compared")))


@dataclass(frozen=True, slots=True)
class PromotionStep:
    """One key of a promotion: what happens to it in the target, the source version it copies (None for a
    delete) and the target version it expects to find (0: none, or a deletion's tombstone)."""

    key: str
    action: Action
    source_version: int | None
    target_version: int
    secret: bool

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "action": self.action, "source_version": self.source_version,
                "target_version": self.target_version, "secret": self.secret}

    @classmethod
    def from_json(cls, data: Any) -> PromotionStep:
        what = "promotion step"
        body = _body(data, what)
        action = body.get("action")
        if not isinstance(action, str) or action not in _ACTIONS:
            raise ValidationError(f"Invalid {what}: field 'action' must be create, update or delete")
        return cls(key=validate_key(_field(body, "key", str, what)), action=action,  # type: ignore[arg-type]
                   source_version=_field(body, "source_version", int, what, optional=True),
                   target_version=_field(body, "target_version", int, what),
                   secret=_field(body, "secret", bool, what))


@dataclass(frozen=True, slots=True)
class Promotion:
    """A promotion's plan (`applied` False) or its result: the steps are compare-and-set writes applied in
    one transaction, each audited with the promotion's `id`."""

    id: str
    namespace: str
    source: Environment
    target: Environment
    steps: tuple[PromotionStep, ...]
    unchanged: tuple[str, ...]
    applied: bool

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "namespace": self.namespace, "from": self.source.value, "to": self.target.value,
                "applied": self.applied, "steps": [s.to_json() for s in self.steps],
                "unchanged": list(self.unchanged)}

    @classmethod
    def from_json(cls, data: Any) -> Promotion:
        what = "promotion"
        body = _body(data, what)
        steps = body.get("steps")
        if not isinstance(steps, list) or len(steps) > 100_000:
            raise ValidationError(f"Invalid {what}: field 'steps' must be a list of at most 100000 steps")
        return cls(
            id=_field(body, "id", str, what), namespace=_field(body, "namespace", str, what),
            source=parse_environment(_field(body, "from", str, what)),
            target=parse_environment(_field(body, "to", str, what)),
            steps=tuple(PromotionStep.from_json(s) for s in steps), unchanged=_names(body, "unchanged", what),
            applied=_field(body, "applied", bool, what),
        )

    def keys(self, action: Action | None = None) -> Sequence[str]:
        """The keys of the steps (of one action)."""
        return [s.key for s in self.steps if action is None or s.action == action]
