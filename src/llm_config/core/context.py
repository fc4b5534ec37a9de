"""Who is calling, from where, in which request: bound once per call, read by every part of the core.

`CallContext` is the caller of one operation; `Caller` is a manager's methods bound to one (what
`ConfigManager.as_caller(ctx)` returns — the REST routes make one per request). `principal=None` is the
local owner of the store (the CLI and the library): an unrestricted admin whose actor is the
manager's (or the call's `actor=`); the REST edge always sets a principal.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import IO, TYPE_CHECKING, Any

from llm_config.core.llm_methods import LLMMethods
from llm_config.models import Entry, Environment, HistoryItem, Principal

if TYPE_CHECKING:  # the manager imports this module; these are only annotations here
    from llm_config.audit import VerifyReport
    from llm_config.core.backups import BackupSummary, MigrateSummary, RestoreSummary
    from llm_config.core.manager import ConfigManager
    from llm_config.core.rotation import RotationProgress, RotationSummary
    from llm_config.core.transfer import ImportPlan
    from llm_config.models import ApiKey, AuditEvent, Role
    from llm_config.types import AuditQuery

__all__ = ["CallContext", "Caller"]


@dataclass(frozen=True, slots=True)
class CallContext:
    """The caller of one operation."""

    principal: Principal | None = None
    source_ip: str | None = None
    request_id: str | None = None
    actor: str | None = None  # the library's `actor=` override; ignored when a principal is set

    def actor_or(self, default: str) -> str:
        """What the audit trail records for this caller."""
        if self.principal is not None:
            return self.principal.actor
        return self.actor or default


class Caller(LLMMethods):
    """The methods of one `ConfigManager` run as one caller (`ConfigManager.as_caller(ctx)`).

    Each method takes the manager's parameters less `actor=` (the context's principal, or else its
    `actor`, is recorded) and calls the manager's private implementation with the bound context, so the
    logic lives once: the manager's public methods are the same calls with the local owner's context.
    Cheap to make (two references); as thread-safe as the manager.
    """

    __slots__ = ("_ctx", "_manager")

    def __init__(self, manager: ConfigManager, ctx: CallContext) -> None:
        self._manager = manager
        self._ctx = ctx

    @property
    def context(self) -> CallContext:
        """The caller these methods run as."""
        return self._ctx

    def _call_context(self, actor: str | None) -> CallContext:
        if actor is None or self._ctx.principal is not None:
            return self._ctx
        return replace(self._ctx, actor=actor)

    def _owner_manager(self) -> ConfigManager:
        return self._manager

    @property
    def manager(self) -> ConfigManager:
        """The manager underneath."""
        return self._manager

    def __repr__(self) -> str:
        principal = self._ctx.principal
        who = principal.actor if principal is not None else self._ctx.actor or "owner"
        return f"<Caller {who!r} of {self._manager!r}>"

    # ------------------------------------------------------------------ reads

    def get(
        self,
        namespace: str,
        key: str,
        *,
        env: str | Environment = Environment.DEVELOPMENT,
        version: int | None = None,
        with_overrides: bool = False,
        reveal: bool = False,
    ) -> Entry:
        """`ConfigManager.get` as this caller (`config:read`; `secret:read` to reveal)."""
        return self._manager._get(self._ctx, namespace, key, env, version, with_overrides, reveal)

    def list(
        self,
        namespace: str,
        *,
        env: str | Environment = Environment.DEVELOPMENT,
        prefix: str = "",
        recursive: bool = False,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> builtins.list[Entry]:
        """`ConfigManager.list` as this caller (`config:list`)."""
        return self._manager._list_page(self._ctx, namespace, env=env, prefix=prefix, recursive=recursive,
                                        limit=limit, cursor=cursor)[0]

    def list_page(
        self,
        namespace: str,
        *,
        env: str | Environment = Environment.DEVELOPMENT,
        prefix: str = "",
        recursive: bool = False,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> tuple[builtins.list[Entry], str | None]:
        """`ConfigManager.list_page` as this caller (`config:list`)."""
        return self._manager._list_page(self._ctx, namespace, env=env, prefix=prefix, recursive=recursive,
                                        limit=limit, cursor=cursor)

    def namespaces(self, prefix: str = "") -> builtins.list[str]:
        """`ConfigManager.namespaces` as this caller: only the namespaces its key covers."""
        return self._manager._namespaces(self._ctx, prefix)

    def history(
        self, namespace: str, key: str, *, env: str | Environment = Environment.DEVELOPMENT,
        limit: int | None = None,
    ) -> builtins.list[HistoryItem]:
        """`ConfigManager.history` as this caller (`history:read`)."""
        return self._manager._history(self._ctx, namespace, key, env=env, limit=limit)

    def resolve(
        self, namespace: str, *, env: str | Environment = Environment.DEVELOPMENT, nested: bool = False,
        reveal: bool = False,
    ) -> dict[str, Any]:
        """`ConfigManager.resolve` as this caller (`config:read`; `secret:read` to reveal)."""
        return self._manager._resolve(self._ctx, namespace, env=env, nested=nested, reveal=reveal)

    # ------------------------------------------------------------------ writes

    def set(
        self,
        namespace: str,
        key: str,
        value: Any,
        *,
        env: str | Environment = Environment.DEVELOPMENT,
        secret: bool | None = None,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        message: str | None = None,
        expected_version: int | None = None,
    ) -> Entry:
        """`ConfigManager.set` as this caller (`config:create`, or `secret:create` for a secret)."""
        return self._manager._set(self._ctx, namespace, key, value, env=env, secret=secret, description=description,
                                  tags=tags, message=message, expected_version=expected_version)

    def delete(
        self, namespace: str, key: str, *, env: str | Environment = Environment.DEVELOPMENT,
        expected_version: int | None = None,
    ) -> Entry:
        """`ConfigManager.delete` as this caller (`config:delete`)."""
        return self._manager._delete(self._ctx, namespace, key, env=env, expected_version=expected_version)

    def rollback(
        self, namespace: str, key: str, version: int, *, env: str | Environment = Environment.DEVELOPMENT,
        secret: bool | None = None,
    ) -> Entry:
        """`ConfigManager.rollback` as this caller (`config:rollback`)."""
        return self._manager._rollback(self._ctx, namespace, key, version, env=env, secret=secret)

    def purge(
        self, namespace: str, key: str, version: int, *, env: str | Environment = Environment.DEVELOPMENT,
    ) -> None:
        """`ConfigManager.purge` as this caller (`system:delete`: admins only)."""
        self._manager._purge(self._ctx, namespace, key, version, env=env)

    # ------------------------------------------------------------------ export / import

    def export(
        self, namespace: str, *, env: str | Environment = Environment.DEVELOPMENT, reveal: bool = False,
    ) -> dict[str, Any]:
        """`ConfigManager.export` as this caller (`config:export`; `secret:read` to reveal)."""
        return self._manager._export(self._ctx, namespace, env=env, reveal=reveal)

    def export_text(
        self, namespace: str, *, env: str | Environment = Environment.DEVELOPMENT, fmt: str = "json",
        reveal: bool = False,
    ) -> str:
        """`ConfigManager.export_text` as this caller."""
        return self._manager._export_text(self._ctx, namespace, env=env, fmt=fmt, reveal=reveal)

    def import_(
        self,
        namespace: str,
        document: str | dict[str, Any],
        *,
        env: str | Environment = Environment.DEVELOPMENT,
        fmt: str | None = None,
        prune: bool = False,
        dry_run: bool = False,
        secret: bool | None = None,
    ) -> ImportPlan:
        """`ConfigManager.import_` as this caller (`config:import`, and what the document needs)."""
        return self._manager._import(self._ctx, namespace, document, env=env, fmt=fmt, prune=prune,
                                     dry_run=dry_run, secret=secret)

    # ------------------------------------------------------------------ API keys

    def create_api_key(
        self,
        name: str,
        role: str | Role,
        *,
        namespaces: Sequence[str] = (),
        environments: Sequence[str | Environment] = (),
        expires_days: float | None = None,
    ) -> tuple[ApiKey, str]:
        """`ConfigManager.create_api_key` as this caller: a key of equal or narrower role, scope and lifetime."""
        return self._manager._create_api_key(self._ctx, name, role, namespaces=namespaces,
                                             environments=environments, expires_days=expires_days)

    def list_api_keys(self) -> builtins.list[ApiKey]:
        """`ConfigManager.list_api_keys` as this caller: the keys it could have created itself."""
        return self._manager._list_api_keys(self._ctx)

    def revoke_api_key(self, key_id: str) -> ApiKey:
        """`ConfigManager.revoke_api_key` as this caller."""
        return self._manager._revoke_api_key(self._ctx, key_id)

    # ------------------------------------------------------------------ audit

    def audit_events(self, query: AuditQuery | None = None) -> builtins.list[AuditEvent]:
        """`ConfigManager.audit_events` as this caller: only the events of its scope."""
        return self._manager._audit_events(self._ctx, query)

    def audit_verify(self, anchor: str | None = None) -> VerifyReport:
        """`ConfigManager.audit_verify` as this caller."""
        return self._manager._audit_verify(self._ctx, anchor)

    def audit_head(self) -> str | None:
        """`ConfigManager.audit_head` as this caller."""
        return self._manager._audit_head(self._ctx)

    # ------------------------------------------------------------------ backup, restore, migrate, rotation

    def backup(self, out: IO[bytes]) -> BackupSummary:
        """`ConfigManager.backup` as this caller."""
        return self._manager._backup(self._ctx, out)

    def restore(self, stream: IO[bytes], *, force: bool = False) -> RestoreSummary:
        """`ConfigManager.restore` as this caller."""
        return self._manager._restore(self._ctx, stream, force=force)

    def migrate_to(self, target: str, *, force: bool = False) -> MigrateSummary:
        """`ConfigManager.migrate_to` as this caller."""
        return self._manager._migrate_to(self._ctx, target, force=force)

    def rotate_key(
        self, new_key: bytes, *, batch_size: int = 200, on_batch: Callable[[RotationProgress], None] | None = None,
    ) -> RotationSummary:
        """`ConfigManager.rotate_key` as this caller (admins only)."""
        return self._manager._rotate_key(self._ctx, new_key, batch_size=batch_size, on_batch=on_batch)

    def rotate_key_to(self, key_id: str, *, batch_size: int = 200) -> RotationSummary:
        """`ConfigManager.rotate_key_to` as this caller (admins only)."""
        return self._manager._rotate_key_to(self._ctx, key_id, batch_size=batch_size)
