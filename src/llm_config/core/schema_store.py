"""JSON Schemas of a namespace (SPEC §6): stored, versioned, audited (`schema_changed`) and enforced.

A schema is attached to a key or a key pattern (`openai.*`) of one namespace, for every environment; a
value must satisfy every schema whose pattern matches its key, on every write, import, rollback and
promotion (the manager asks `checker` once per operation). The rules of patterns, compilation and
violation messages are `schemas.py`'s (pure); this module stores documents and loads what applies.
Schemas are admin-only to change (`system:update`/`system:delete`); reading them needs `system:read`.

Never: puts a value into a message (a violation names key, path and rule).
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import orjson

from llm_config.core.context import CallContext
from llm_config.core.objects import ObjectStore
from llm_config.documents import Schema
from llm_config.errors import IntegrityError, ValidationError
from llm_config.integrity import entry_subject
from llm_config.models import Environment, HistoryItem, StoredEntry
from llm_config.names import SCHEMA_PREFIX, validate_namespace, validate_schema_pattern

if TYPE_CHECKING:
    from llm_config.core.manager import ConfigManager
    from llm_config.core.schemas import CompiledSchema

__all__ = ["NO_CHECK", "Checker", "SchemaStore"]

_BASE = Environment.BASE

Checker = Callable[[str, Environment, Any], None]
"""`check(key, environment, value)`: raises SchemaViolationError when the value breaks a schema of its key."""


def _no_check(key: str, env: Environment, value: Any) -> None:
    return None


NO_CHECK: Final[Checker] = _no_check
"""The checker of a namespace without schemas."""


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str, text: str, *, checked: bool = True) -> CompiledSchema:
    """A document compiled once (keyed by its text, so a new version compiles anew). `checked`: it was
    checked against the metaschema when it was stored (a row of ours: its MAC held), so that is skipped."""
    from llm_config.core.schemas import builtin_schema, compile_schema

    doc = orjson.loads(text)
    builtin = doc.get("builtin")
    return compile_schema(pattern, builtin_schema(builtin) if builtin else doc["schema"], checked=checked)


class SchemaStore:
    """The schemas of one store, as its manager's callers see them."""

    def __init__(self, manager: ConfigManager) -> None:
        self._m = manager
        self._rows = ObjectStore(manager, SCHEMA_PREFIX, "schema", audit_type="schema_changed")

    def _target(self, ctx: CallContext, namespace: str, pattern: str | None, permission: str) -> None:
        validate_namespace(namespace)
        if pattern is not None:
            validate_schema_pattern(pattern)
        self._m._access.authorize(ctx, permission, namespace, _BASE, key=pattern)

    @staticmethod
    def _schema(namespace: str, pattern: str, doc: Mapping[str, Any], version: int, description: str | None,
                updated_at: str, updated_by: str) -> Schema:
        from llm_config.core.schemas import builtin_schema

        builtin = doc.get("builtin")
        document = builtin_schema(builtin) if builtin else doc["schema"]
        return Schema(namespace=namespace, pattern=pattern, version=version, document=document, builtin=builtin,
                      description=description, updated_at=updated_at, updated_by=updated_by)

    def _from_row(self, row: StoredEntry) -> Schema:
        assert row.stored_value is not None
        return self._schema(row.namespace, row.key[len(SCHEMA_PREFIX):], orjson.loads(row.stored_value),
                            row.version, row.description, row.updated_at, row.updated_by)

    # ------------------------------------------------------------------ versions

    def set(
        self, ctx: CallContext, namespace: str, pattern: str, document: Mapping[str, Any] | None, *,
        builtin: str | None, description: str | None, expected_version: int | None,
    ) -> Schema:
        self._target(ctx, namespace, pattern, "system:update")
        from llm_config.core.schemas import builtin_schema

        if (document is None) == (builtin is None):
            raise ValidationError("A schema is either a JSON Schema document or the name of a built-in (--builtin)")
        if builtin is not None:
            if not isinstance(builtin, str):
                raise ValidationError("Invalid built-in schema name: must be a string")
            builtin_schema(builtin)  # an unknown name lists the known ones
            stored: dict[str, Any] = {"builtin": builtin}
        else:
            if not isinstance(document, Mapping):
                raise ValidationError("Invalid JSON Schema: must be a JSON object")
            stored = {"schema": dict(document)}
        _compiled(pattern, orjson.dumps(stored).decode(), checked=False)  # an invalid schema stores nothing
        row = self._rows.write(ctx, namespace, pattern, _BASE, stored, description=description,
                               expected_version=expected_version, message=None)
        return self._from_row(row)

    def get(self, ctx: CallContext, namespace: str, pattern: str, *, version: int | None) -> Schema:
        self._target(ctx, namespace, pattern, "system:read")
        row, doc, at, by, number = self._rows.document(namespace, pattern, _BASE, version)
        return self._schema(namespace, pattern, doc, number, row.description, at, by)

    def list(self, ctx: CallContext, namespace: str) -> builtins.list[Schema]:
        self._target(ctx, namespace, None, "system:read")
        return [self._from_row(row) for row in self._live(namespace)]

    def _live(self, namespace: str) -> builtins.list[StoredEntry]:
        """The namespace's live schema rows, every one MAC-checked — and none missing: a schema the audit
        trail says was written but whose row is gone (deleted behind our back, which would silently stop
        its enforcement) fails as an IntegrityError."""
        storage = self._m.storage
        rows = storage.list_current(namespace, _BASE, prefix=SCHEMA_PREFIX, tombstones=True)
        if self._m.has_key:
            prefix = entry_subject(namespace, SCHEMA_PREFIX, "")[:-1]  # `c:ns/~s:` (the subject ends `@env`)
            present = {entry_subject(namespace, row.key, _BASE.value) for row in rows}
            missing = sorted(set(storage.subjects(prefix)) - present)
            if missing:
                patterns = ", ".join(m[len(prefix):].rsplit("@", 1)[0] for m in missing[:5])
                raise IntegrityError(f"schemas of {namespace} have audit events but no row (deleted outside "
                                     f"llm-config): {patterns}")
        return [row for row in rows if not row.deleted]

    def history(self, ctx: CallContext, namespace: str, pattern: str, *, limit: int | None
                ) -> builtins.list[HistoryItem]:
        self._target(ctx, namespace, pattern, "system:read")
        return self._rows.history(namespace, pattern, _BASE, limit)

    def rollback(self, ctx: CallContext, namespace: str, pattern: str, version: int) -> Schema:
        self._target(ctx, namespace, pattern, "system:update")
        return self._from_row(self._rows.rollback(ctx, namespace, pattern, _BASE, version))

    def delete(self, ctx: CallContext, namespace: str, pattern: str, *, expected_version: int | None) -> None:
        self._target(ctx, namespace, pattern, "system:delete")
        self._rows.delete(ctx, namespace, pattern, _BASE, expected_version)

    # ------------------------------------------------------------------ enforcement

    def checker(self, namespace: str) -> Checker:
        """The check every value written to `namespace` must pass, loaded once for one operation."""
        rows = self._live(namespace)
        if not rows:
            return NO_CHECK
        from llm_config.core.schemas import check_all, matches

        stored = [(row.key[len(SCHEMA_PREFIX):], row.stored_value or "null") for row in rows]

        def check(key: str, env: Environment, value: Any) -> None:
            # compiled only when its pattern matches (a fresh CLI process pays for the schemas it uses)
            applying = [_compiled(pattern, text) for pattern, text in stored if matches(pattern, key)]
            if applying:
                check_all(applying, namespace, key, env.value, value)

        return check
