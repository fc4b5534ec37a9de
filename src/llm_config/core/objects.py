"""Templates and schemas stored as entries: llm-config's own objects under a reserved key prefix.

A template `greeting` of `prompts [production]` is the entry `prompts/~t:greeting [production]`; a schema
for `openai.*` is `ns/~s:openai.* [base]`. So each gets, from the one write path, everything an entry
has: versions and rollback, compare-and-set, a row MAC bound to its audit event, a place in backups,
restores and migrations, and a change in the watch feed — on every backend, with no second copy of the
versioning rules. No config key can start with `~` (names.py), and config listings stop before it.

Owns the row side (documents in, stored rows out); the modules of each kind own their permissions and
meaning. The document is plain JSON (never a secret: a template names secrets by key).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from llm_config import audit, writes
from llm_config.core.context import CallContext
from llm_config.core.custody import place
from llm_config.errors import LLMConfigError, NotFoundError
from llm_config.models import (
    Environment,
    HistoryItem,
    StoredEntry,
    StoredVersion,
    ValueType,
    WriteKind,
    WriteRequest,
)
from llm_config.values import check_text, check_version, validate_value

if TYPE_CHECKING:
    from llm_config.core.manager import ConfigManager

__all__ = ["ObjectStore"]


class ObjectStore:
    """The stored rows of one kind of object (`prefix` "~t:" or "~s:"), named `what` in messages."""

    def __init__(self, manager: ConfigManager, prefix: str, what: str, *, audit_type: str = "") -> None:
        self._m = manager
        self.prefix = prefix
        self.what = what
        self._audit_type = audit_type

    def missing(self, namespace: str, name: str, env: Environment, version: int | None = None) -> NotFoundError:
        place = writes.where(namespace, name, env)
        message = (f"Version {version} of {self.what} {place} not found" if version is not None
                   else f"{self.what.capitalize()} not found: {place}")
        return NotFoundError(message, namespace=namespace, key=name, environment=env.value, version=version)

    # ------------------------------------------------------------------ reads

    def current(self, namespace: str, name: str, env: Environment) -> StoredEntry | None:
        """The live row (None if missing or deleted)."""
        row = self._m.storage.get_current(namespace, self.prefix + name, env)
        return None if row is None or row.deleted else row

    def document(self, namespace: str, name: str, env: Environment, version: int | None = None
                 ) -> tuple[StoredEntry, dict[str, Any], str, str, int]:
        """(current row, document, updated_at, updated_by, version) of the live or a past version."""
        row = self._m.storage.get_current(namespace, self.prefix + name, env)
        if version is None:
            if row is None or row.deleted or row.stored_value is None:
                raise self.missing(namespace, name, env)
            return row, orjson.loads(row.stored_value), row.updated_at, row.updated_by, row.version
        check_version(version)
        stored = self._m.storage.get_version(namespace, self.prefix + name, env, version) if row else None
        if row is None or stored is None or stored.deleted or stored.purged or stored.stored_value is None:
            raise self.missing(namespace, name, env, version)
        return row, orjson.loads(stored.stored_value), stored.created_at, stored.created_by, version

    def rows(self, namespace: str, env: Environment) -> builtins.list[StoredEntry]:
        """Every live row of this kind in one namespace and environment, by name."""
        return self._m.storage.list_current(namespace, env, prefix=self.prefix)

    def history(self, namespace: str, name: str, env: Environment, limit: int | None) -> builtins.list[HistoryItem]:
        if limit is not None:
            check_version(limit, "limit")
        rows: builtins.list[StoredVersion] = self._m.storage.history(namespace, self.prefix + name, env, limit)
        if not rows:
            raise self.missing(namespace, name, env)
        return [self._m._history_item(r) for r in rows]

    # ------------------------------------------------------------------ writes

    def write(
        self, ctx: CallContext, namespace: str, name: str, env: Environment, document: Mapping[str, Any], *,
        description: str | None, expected_version: int | None, message: str | None,
    ) -> StoredEntry:
        """Store a new version of the document (plain JSON, checked like any value)."""
        keys = self._m._need("Writing")
        if description is not None:
            check_text(description, "description")
        if message is not None:
            check_text(message, "message")
        if expected_version is not None:
            check_version(expected_version, "expected_version", allow_zero=True)
        stored_key = self.prefix + name
        text = validate_value(dict(document))
        fingerprint = audit.fingerprint(keys.fingerprint, place(namespace, stored_key, env), text.encode())
        request = self._m._request(
            WriteKind.SET, namespace, stored_key, env, ctx=ctx, change_description=message or "",
            value_type=ValueType.PLAIN, stored_value=text, fingerprint=fingerprint,
            expected_version=expected_version, description=description, audit_type=self._audit_type,
            audit_details={"fingerprint": fingerprint, "fingerprint_scheme": audit.FINGERPRINT_SCHEME},
        )
        return self._apply(request)

    def delete(self, ctx: CallContext, namespace: str, name: str, env: Environment,
               expected_version: int | None) -> StoredEntry:
        if expected_version is not None:
            check_version(expected_version, "expected_version", allow_zero=True)
        if self.current(namespace, name, env) is None:
            raise self.missing(namespace, name, env)
        request = self._m._request(WriteKind.DELETE, namespace, self.prefix + name, env, ctx=ctx,
                                   change_description="Deleted", expected_version=expected_version,
                                   audit_type=self._audit_type)
        return self._apply(request)

    def rollback(self, ctx: CallContext, namespace: str, name: str, env: Environment, version: int) -> StoredEntry:
        request = self._m._request(
            WriteKind.ROLLBACK, namespace, self.prefix + name, env, ctx=ctx,
            change_description=f"Rollback to version {version}", target_version=check_version(version),
            audit_details={"target_version": version}, audit_type=self._audit_type,
        )
        return self._apply(request)

    def _apply(self, request: WriteRequest) -> StoredEntry:
        try:
            return self._m._apply([request])[0]
        except LLMConfigError as exc:  # storage names the stored key: say it as users name the object
            if self.prefix in exc.message:
                exc.message = exc.message.replace("Config not found", f"{self.what.capitalize()} not found")
                exc.message = exc.message.replace("/" + self.prefix, "/", 1)
                exc.args = (exc.message,)
                exc.key = request.key[len(self.prefix):]
            raise
