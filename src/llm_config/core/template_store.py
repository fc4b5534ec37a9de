"""Prompt templates of a namespace (SPEC §6): stored, versioned, rolled back and rendered as a caller.

The syntax, the include tree and the strict render rules are `templates.py`'s (pure); this module loads
what a render needs — the templates (the environment's own, else `base`), the `config:` values and the
`secret:` plaintexts — with the caller's permissions, and audits a render that used secrets as one
`template_rendered` event naming the secret keys. Templates follow the `config` permissions; a render
with `{{ secret:… }}` also needs `secret:read`.

Never: stores a template that does not parse, puts a secret into a message or an event, or calls a
lookup before the variables are known to be complete.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from llm_config import writes
from llm_config.core.context import CallContext
from llm_config.core.custody import place
from llm_config.core.objects import ObjectStore
from llm_config.core.templates import Rendered, TemplateSource, parse, render
from llm_config.documents import Template
from llm_config.errors import NotFoundError, ValidationError
from llm_config.models import Environment, HistoryItem, PendingEvent, StoredEntry, ValueType
from llm_config.names import TEMPLATE_PREFIX, parse_environment, validate_namespace, validate_template_name

if TYPE_CHECKING:
    from llm_config.core.manager import ConfigManager

__all__ = ["TemplateStore"]

_MAX_DEFAULTS = 200


class TemplateStore:
    """The templates of one store, as its manager's callers see them."""

    def __init__(self, manager: ConfigManager) -> None:
        self._m = manager
        self._rows = ObjectStore(manager, TEMPLATE_PREFIX, "template")

    def _target(self, ctx: CallContext, namespace: str, name: str | None, env: str | Environment,
                permission: str) -> Environment:
        validate_namespace(namespace)
        if name is not None:
            validate_template_name(name)
        environment = parse_environment(env)
        self._m._access.authorize(ctx, permission, namespace, environment, key=name)
        return environment

    @staticmethod
    def _template(namespace: str, name: str, env: Environment, doc: Mapping[str, Any], version: int,
                  description: str | None, updated_at: str, updated_by: str) -> Template:
        content = doc["content"]
        return Template(
            namespace=namespace, name=name, environment=env, version=version, content=content,
            variables=parse(content).variables, defaults=dict(doc.get("defaults", {})), description=description,
            updated_at=updated_at, updated_by=updated_by,
        )

    def _from_row(self, row: StoredEntry) -> Template:
        assert row.stored_value is not None
        return self._template(row.namespace, row.key[len(TEMPLATE_PREFIX):], row.environment,
                              orjson.loads(row.stored_value), row.version, row.description, row.updated_at,
                              row.updated_by)

    # ------------------------------------------------------------------ versions

    def set(
        self, ctx: CallContext, namespace: str, name: str, content: str, *, env: str | Environment,
        description: str | None, defaults: Mapping[str, Any] | None, expected_version: int | None,
        message: str | None,
    ) -> Template:
        environment = self._target(ctx, namespace, name, env, "config:create")
        if not isinstance(content, str):
            raise ValidationError("Invalid template content: must be a string")
        parsed = parse(content)  # a syntax error (with its position) stores nothing
        defaults = dict(defaults or {})
        if len(defaults) > _MAX_DEFAULTS:
            raise ValidationError(f"Invalid template defaults: at most {_MAX_DEFAULTS}")
        unknown = sorted(k for k in defaults if k not in parsed.variables)
        if unknown:
            raise ValidationError(f"Defaults for variables the template does not use: {', '.join(map(str, unknown))}")
        row = self._rows.write(ctx, namespace, name, environment, {"content": content, "defaults": defaults},
                               description=description, expected_version=expected_version, message=message)
        return self._from_row(row)

    def get(self, ctx: CallContext, namespace: str, name: str, *, env: str | Environment,
            version: int | None) -> Template:
        environment = self._target(ctx, namespace, name, env, "config:read")
        row, doc, at, by, number = self._rows.document(namespace, name, environment, version)
        return self._template(namespace, name, environment, doc, number, row.description, at, by)

    def list(self, ctx: CallContext, namespace: str, *, env: str | Environment) -> builtins.list[Template]:
        environment = self._target(ctx, namespace, None, env, "config:list")
        return [self._from_row(row) for row in self._rows.rows(namespace, environment)]

    def history(self, ctx: CallContext, namespace: str, name: str, *, env: str | Environment,
                limit: int | None) -> builtins.list[HistoryItem]:
        environment = self._target(ctx, namespace, name, env, "history:read")
        return self._rows.history(namespace, name, environment, limit)

    def rollback(self, ctx: CallContext, namespace: str, name: str, version: int, *,
                 env: str | Environment) -> Template:
        environment = self._target(ctx, namespace, name, env, "config:rollback")
        return self._from_row(self._rows.rollback(ctx, namespace, name, environment, version))

    def delete(self, ctx: CallContext, namespace: str, name: str, *, env: str | Environment,
               expected_version: int | None) -> None:
        environment = self._target(ctx, namespace, name, env, "config:delete")
        self._rows.delete(ctx, namespace, name, environment, expected_version)

    # ------------------------------------------------------------------ rendering

    def _source(self, namespace: str, name: str, env: Environment) -> TemplateSource:
        """The template the environment renders: its own, else base's (as values resolve)."""
        validate_template_name(name)
        stored_key = TEMPLATE_PREFIX + name
        for where in (env, Environment.BASE) if env is not Environment.BASE else (env,):
            record = self._m.cache.load((namespace, stored_key, where),
                                        functools.partial(self._m.storage.get_current, namespace, stored_key, where))
            if record is not None:
                doc = record.entry.value
                return TemplateSource(name=name, parsed=parse(doc["content"]), defaults=doc.get("defaults", {}))
        raise NotFoundError(f"Template not found: {writes.where(namespace, name, env)}",
                            namespace=namespace, key=name, environment=env.value)

    def render(self, ctx: CallContext, namespace: str, name: str, variables: Mapping[str, Any] | None, *,
               env: str | Environment, allow_extra: bool) -> str:
        environment = self._target(ctx, namespace, name, env, "config:read")
        if variables is not None and not isinstance(variables, Mapping):
            raise ValidationError("Invalid template variables: must be an object of NAME: VALUE")
        if not isinstance(allow_extra, bool):
            raise ValidationError("Invalid allow_extra: must be true or false")
        self._m._check_foreign_changes()
        root = self._source(namespace, name, environment)

        def lookup(kind: str, key: str) -> Any:
            return self._lookup(ctx, namespace, environment, kind, key)

        result: Rendered = render(root, variables or {}, load=lambda n: self._source(namespace, n, environment),
                                  lookup=lookup, allow_extra=allow_extra)
        if result.secret_keys:
            keys = self._m._need("Rendering secrets")
            self._m.storage.append_audit(PendingEvent(
                type="template_rendered", actor=ctx.actor_or(self._m.actor), namespace=namespace, key=name,
                environment=environment.value, source_ip=ctx.source_ip, request_id=ctx.request_id,
                timestamp=self._m._now(),
                details={"secret_keys": list(result.secret_keys), "templates": list(result.templates)},
            ), keys.audit)
        return result.text

    def _lookup(self, ctx: CallContext, namespace: str, env: Environment, kind: str, key: str) -> Any:
        """The value of `{{ config:KEY }}` or `{{ secret:KEY }}`: the environment's own, else base's."""
        entry = self._m._current(namespace, key, env)
        if entry is None and env is not Environment.BASE:
            entry = self._m._current(namespace, key, Environment.BASE)
        if entry is None:
            raise NotFoundError(f"Template reference {kind}:{key} not found: {writes.where(namespace, key, env)}",
                                namespace=namespace, key=key, environment=env.value)
        if kind == "config":
            if entry.secret:
                raise ValidationError(f"Template reference config:{key} names a secret: write {{{{ secret:{key} }}}}",
                                      namespace=namespace, key=key, environment=env.value)
            return entry.value
        if not entry.secret:
            raise ValidationError(f"Template reference secret:{key} names a plain value: write {{{{ config:{key} }}}}",
                                  namespace=namespace, key=key, environment=env.value)
        self._m._access.authorize(ctx, "secret:read", namespace, entry.environment, key=key)
        keys = self._m._need("Rendering secrets")
        row = self._m.storage.get_current(namespace, key, entry.environment)
        if row is None or row.deleted or row.value_type is not ValueType.SECRET or row.stored_value is None:
            raise NotFoundError(f"Template reference secret:{key} not found: {writes.where(namespace, key, env)}",
                                namespace=namespace, key=key, environment=env.value)
        return orjson.loads(keys.keyring.open(row.stored_value, place(namespace, key, entry.environment)))
