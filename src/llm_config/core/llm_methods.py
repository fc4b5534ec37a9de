"""The LLM-native methods — templates, schemas, diff and promotion, `bind` — written once for both the
manager (run as the local owner, or as `actor=`) and a caller's view (`Caller`, run as its context).

Each method is a thin delegation to the module that owns its concept (`template_store`,
`schema_store`, `environments`, `resolve`); the class that mixes this in says who is calling
(`_call_context`) and which manager does the work (`_owner_manager`).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from llm_config.models import Environment, HistoryItem

if TYPE_CHECKING:
    from llm_config.core.context import CallContext
    from llm_config.core.manager import ConfigManager
    from llm_config.documents import EnvDiff, Promotion, Schema, Template

__all__ = ["LLMMethods"]

_DEV = Environment.DEVELOPMENT
_M = TypeVar("_M")


class LLMMethods:
    """Mixed into `ConfigManager` and `Caller`."""

    __slots__ = ()

    def _call_context(self, actor: str | None) -> CallContext:
        raise NotImplementedError

    def _owner_manager(self) -> ConfigManager:
        raise NotImplementedError

    # ------------------------------------------------------------------ templates

    def set_template(
        self, namespace: str, name: str, content: str, *, env: str | Environment = _DEV,
        description: str | None = None, defaults: Mapping[str, Any] | None = None,
        expected_version: int | None = None, message: str | None = None, actor: str | None = None,
    ) -> Template:
        """Store a new version of a prompt template (`config:create`); a syntax error stores nothing."""
        return self._owner_manager()._templates.set(
            self._call_context(actor), namespace, name, content, env=env, description=description,
            defaults=defaults, expected_version=expected_version, message=message)

    def get_template(self, namespace: str, name: str, *, env: str | Environment = _DEV,
                     version: int | None = None) -> Template:
        """The live (or one past) version of a template of this environment (`config:read`)."""
        return self._owner_manager()._templates.get(self._call_context(None), namespace, name, env=env,
                                                    version=version)

    def list_templates(self, namespace: str, *, env: str | Environment = _DEV) -> builtins.list[Template]:
        """The environment's own live templates, by name (`config:list`)."""
        return self._owner_manager()._templates.list(self._call_context(None), namespace, env=env)

    def template_history(self, namespace: str, name: str, *, env: str | Environment = _DEV,
                         limit: int | None = None) -> builtins.list[HistoryItem]:
        """Every version newest first; `value` is `{"content", "defaults"}` (`history:read`)."""
        return self._owner_manager()._templates.history(self._call_context(None), namespace, name, env=env,
                                                        limit=limit)

    def rollback_template(self, namespace: str, name: str, version: int, *, env: str | Environment = _DEV,
                          actor: str | None = None) -> Template:
        """A new version holding version N's text and defaults (`config:rollback`)."""
        return self._owner_manager()._templates.rollback(self._call_context(actor), namespace, name, version,
                                                         env=env)

    def delete_template(self, namespace: str, name: str, *, env: str | Environment = _DEV,
                        expected_version: int | None = None, actor: str | None = None) -> None:
        """Delete a template (history is kept; rollback undeletes) (`config:delete`)."""
        self._owner_manager()._templates.delete(self._call_context(actor), namespace, name, env=env,
                                                expected_version=expected_version)

    def render(self, namespace: str, name: str, variables: Mapping[str, Any] | None = None, *,
               env: str | Environment = _DEV, allow_extra: bool = False, actor: str | None = None) -> str:
        """Render a template strictly: every variable supplied or defaulted, no unknown ones unless
        `allow_extra`; `{{ config:K }}` / `{{ secret:K }}` resolve in its namespace and environment (else
        base) with the caller's permissions; a render that used secrets is audited (`template_rendered`)."""
        return self._owner_manager()._templates.render(self._call_context(actor), namespace, name, variables,
                                                       env=env, allow_extra=allow_extra)

    # ------------------------------------------------------------------ schemas

    def set_schema(
        self, namespace: str, pattern: str, schema: Mapping[str, Any] | None = None, *, builtin: str | None = None,
        description: str | None = None, expected_version: int | None = None, actor: str | None = None,
    ) -> Schema:
        """Attach a JSON Schema (or a built-in, by name) to a key or key pattern (admins only); every
        later write, import, rollback and promotion of a matching key must satisfy it."""
        return self._owner_manager()._schemas.set(
            self._call_context(actor), namespace, pattern, schema, builtin=builtin, description=description,
            expected_version=expected_version)

    def get_schema(self, namespace: str, pattern: str, *, version: int | None = None) -> Schema:
        """The live (or one past) version of a schema (`system:read`)."""
        return self._owner_manager()._schemas.get(self._call_context(None), namespace, pattern, version=version)

    def list_schemas(self, namespace: str) -> builtins.list[Schema]:
        """The namespace's live schemas, by pattern (`system:read`)."""
        return self._owner_manager()._schemas.list(self._call_context(None), namespace)

    def schema_history(self, namespace: str, pattern: str, *, limit: int | None = None) -> builtins.list[HistoryItem]:
        """Every version of a schema newest first (`system:read`)."""
        return self._owner_manager()._schemas.history(self._call_context(None), namespace, pattern, limit=limit)

    def rollback_schema(self, namespace: str, pattern: str, version: int, *, actor: str | None = None) -> Schema:
        """A new version holding version N's schema (admins only)."""
        return self._owner_manager()._schemas.rollback(self._call_context(actor), namespace, pattern, version)

    def delete_schema(self, namespace: str, pattern: str, *, expected_version: int | None = None,
                      actor: str | None = None) -> None:
        """Detach a schema (admins only)."""
        self._owner_manager()._schemas.delete(self._call_context(actor), namespace, pattern,
                                              expected_version=expected_version)

    # ------------------------------------------------------------------ environments

    def diff(self, namespace: str, *, from_env: str | Environment, to_env: str | Environment) -> EnvDiff:
        """Each environment's own entries compared; secrets compared inside, never shown."""
        return self._owner_manager()._environments.diff(self._call_context(None), namespace, source=from_env,
                                                        target=to_env)

    def promote(
        self, namespace: str, *, from_env: str | Environment, to_env: str | Environment,
        keys: Sequence[str] | None = None, prune: bool = False, dry_run: bool = False,
        plan: Promotion | None = None, secret: bool | None = None, actor: str | None = None,
    ) -> Promotion:
        """Copy the source environment's own entries (or `keys`) to the target in one transaction of
        compare-and-set writes; `prune` deletes target keys the source lacks; `dry_run` returns the plan
        only. Passing that plan back as `plan` applies it only if nothing moved since (else ConflictError).
        A plain value replaces a target secret only with `secret=False` (`--no-secret`), as with `set`."""
        return self._owner_manager()._environments.promote(
            self._call_context(actor), namespace, source=from_env, target=to_env, keys=keys, prune=prune,
            dry_run=dry_run, expected=plan, secret=secret)

    # ------------------------------------------------------------------ typed access

    def bind(self, model: type[_M], namespace: str, *, env: str | Environment = _DEV) -> _M:
        """The resolved namespace (secrets revealed) as a validated pydantic model instance; a key the model
        does not declare, a missing field or a wrong type is a ValidationError naming the key."""
        from llm_config.nesting import bind_model

        manager = self._owner_manager()
        flat = manager._resolve(self._call_context(None), namespace, env=env, nested=False, reveal=True)
        return bind_model(model, flat)
