"""ConfigManager: the one orchestrator under the library, the CLI and the REST API.

A facade: it opens the store and its keys (`custody`), owns entries — reads with the L1 cache and
its invalidation, writes, reveals, resolution, import/export — and hands the other concepts to the
module that owns each: access control (`access`), API keys (`apikeys`), the audit trail
(`auditing`, `verify`), health (`health`) and the one-time data upgrades (`upgrade`). Depends on the
Protocols of `types.py`, never on a driver. Never lets a plaintext secret reach storage, the cache, a
log line, an audit event or an error message.
"""

from __future__ import annotations

import builtins
import functools
import logging
import os
import pwd
import time
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING, Any, Final

import orjson

from llm_config import audit, rbac, writes
from llm_config.cache.record import CacheRecord, make_record
from llm_config.cache.tiered import TieredCache
from llm_config.core.access import Access
from llm_config.core.context import CallContext, Caller
from llm_config.core.custody import EPOCH, StoreKeys, need, place, unlock
from llm_config.core.llm_methods import LLMMethods
from llm_config.core.resolve import merge_with_base
from llm_config.core.watch import ChangeFeed, Signals
from llm_config.crypto.keys import HOW_TO_SUPPLY, KeySource, find_keyring
from llm_config.errors import KeyMissingError, NotFoundError, SchemaViolationError, StorageError, ValidationError
from llm_config.models import (
    ENCRYPTED_PLACEHOLDER,
    ApiKey,
    AuditEvent,
    Entry,
    Environment,
    HistoryItem,
    Metadata,
    PendingEvent,
    Principal,
    Role,
    StoredEntry,
    StoredVersion,
    ValueType,
    WriteKind,
    WriteRequest,
    build_entry,
)
from llm_config.names import RESERVED, parse_environment, validate_key, validate_label, validate_namespace
from llm_config.nesting import nest
from llm_config.storage import open_storage, store_exists
from llm_config.times import rfc3339
from llm_config.types import AuditQuery, Clock, Storage
from llm_config.values import check_text, check_version, validate_value

if TYPE_CHECKING:  # imported where first used: `llm-config get` must start fast (ARCHITECTURE, the CLI)
    from llm_config.cache.redis import RedisTier
    from llm_config.core.apikeys import ApiKeys
    from llm_config.core.auditing import AuditTrail
    from llm_config.core.backups import Backups, BackupSummary, MigrateSummary, RestoreSummary
    from llm_config.core.environments import Environments
    from llm_config.core.polling import ChangePoller
    from llm_config.core.read_audit import ReadAuditBuffer
    from llm_config.core.rotation import RotationProgress, RotationSummary
    from llm_config.core.schema_store import Checker, SchemaStore
    from llm_config.core.template_store import TemplateStore
    from llm_config.core.transfer import ImportPlan
    from llm_config.storage.backup import BackupInfo

__all__ = ["ConfigManager", "os_account"]

log = logging.getLogger("llm_config")

_ENV_FAST: Final[dict[object, Environment]] = {
    **{e.value: e for e in Environment}, **{e: e for e in Environment}
}


def os_account() -> str:
    """The OS account running this process (not $USER, which anyone can set)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid:{os.geteuid()}"


def _env(env: str | Environment) -> Environment:
    found = _ENV_FAST.get(env)
    return found if found is not None else parse_environment(env)


_OWNER: Final = CallContext()
"""The local owner of the store with the manager's own actor: the context of a call without `actor=`."""


def _owner(actor: str | None) -> CallContext:
    """The context of a library or CLI call (the local owner, recorded as `actor` if given)."""
    return _OWNER if actor is None else CallContext(actor=actor)


def _ctx(principal: Principal | None, source_ip: str | None, request_id: str | None) -> CallContext:
    return CallContext(principal, source_ip, request_id)


class ConfigManager(LLMMethods):
    """Versioned configuration and secrets over one storage backend. Thread-safe.

    Use `ConfigManager.open(...)`; close it (or use it as a context manager) when done. Its methods run
    as the local owner of the store (an unrestricted admin, recorded as the manager's actor or the call's
    `actor=`); `as_caller(CallContext(principal, ...))` gives the same methods run as another caller.
    Each such public method is a thin wrapper over a private `_name(ctx, ...)` that the view calls too.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        key_source: KeySource | None,
        actor: str | None = None,
        clock: Clock = time.time,
        cache_ttl: float = 5.0,
        cache_max_entries: int = 100_000,
        cache_max_bytes: int = 64 << 20,
        change_check_interval: float = 0.005,
        audit_reads: bool = False,
        redis_url: str | None = None,
        l2_reads: bool | None = None,
        l2_ttl: float = 30.0,
        redis_timeout: float = 0.25,
        cache_listen: bool = True,
    ) -> None:
        self.storage = storage
        self.target: str | None = None  # the --storage it was opened from (`open` sets it)
        self.actor = actor or os_account()
        self.audit_reads = audit_reads
        self._clock = clock
        self.signals = Signals()  # wakes this process's watch streams (core/watch.py)
        # the feed tells this process's cache of what it read (late-bound: the cache is built below)
        self.feed = ChangeFeed(storage, lambda rows: self.cache.forget(
            [(r.namespace, r.key, r.environment, r.revision) for r in rows]))
        self._key_source = key_source
        keys, self.key_warning = unlock(storage, key_source, create=True)
        if self.key_warning is not None:
            log.warning("%s", self.key_warning)
        # why this older store's one-time row-MAC upgrade could not run (reads of its rows and all
        # writes then fail saying so; doctor and `audit verify` still work and tell the rest)
        self.integrity_problem: str | None = None
        if keys is not None and storage.integrity_pending():
            from llm_config.core.upgrade import upgrade_integrity

            try:
                upgrade_integrity(storage, keys, self.actor)
            except StorageError as exc:  # IntegrityError (broken chain, re-migration) or a read-only store
                self.integrity_problem = exc.message
                log.error("%s", exc.message)
        self._keys: StoreKeys | None = keys
        # a server database's change token is a network round trip: a background thread looks for other
        # processes' commits, so the request path (and the event loop, through `peek`) never waits on it;
        # with Redis the poll also writes tombstones there, so on SQLite it moves to that thread too
        poll_seconds = getattr(storage, "change_poll_seconds", None)
        if l2_reads is None:  # L2 pays off in front of a networked database, not in front of local SQLite
            l2_reads = poll_seconds is not None
        tier = self._redis_tier(redis_url, keys, l2_ttl, redis_timeout, cache_listen)
        if tier is not None and cache_listen and poll_seconds is None:
            poll_seconds = max(change_check_interval, 0.01)
        try:
            self.cache = TieredCache(
                storage, build=self._record, clock=clock, ttl=cache_ttl, max_entries=cache_max_entries,
                max_bytes=cache_max_bytes, check_interval=change_check_interval, epoch_key=EPOCH,
                l2=tier, l2_reads=l2_reads,
            )
        except BaseException:
            if tier is not None:
                tier.close()
            raise
        self.cache.set_key(keys.cache if keys is not None else None)
        self.cache.on_epoch = self._epoch_changed
        self.cache.on_change = self._forget_principals
        self.cache.on_principals = self._forget_principals
        self._access = Access(storage, keys, clock)
        self._poller: ChangePoller | None = None
        if poll_seconds is not None:
            from llm_config.core.polling import ChangePoller

            self._poller = ChangePoller(self.cache.poll, poll_seconds)
        self._read_audit: ReadAuditBuffer | None = None
        if audit_reads:
            from llm_config.core.read_audit import ReadAuditBuffer

            self._read_audit = ReadAuditBuffer(storage, self._need("Auditing reads").audit)

    @functools.cached_property
    def _api_keys(self) -> ApiKeys:
        from llm_config.core.apikeys import ApiKeys

        return ApiKeys(self.storage, self._keys, self._access, self._clock, self.actor, self.key_warning)

    @functools.cached_property
    def _templates(self) -> TemplateStore:
        from llm_config.core.template_store import TemplateStore

        return TemplateStore(self)

    @functools.cached_property
    def _schemas(self) -> SchemaStore:
        from llm_config.core.schema_store import SchemaStore

        return SchemaStore(self)

    @functools.cached_property
    def _environments(self) -> Environments:
        from llm_config.core.environments import Environments

        return Environments(self)

    def _call_context(self, actor: str | None) -> CallContext:
        return _owner(actor)

    def _owner_manager(self) -> ConfigManager:
        return self

    @functools.cached_property
    def _trail(self) -> AuditTrail:
        from llm_config.core.auditing import AuditTrail

        return AuditTrail(self.storage, self._keys, self._access, self.key_warning)

    # ------------------------------------------------------------------ opening and keys

    @classmethod
    def open(
        cls,
        storage: str | os.PathLike[str] = ".llm-config",
        *,
        encryption_key: str | None = None,
        key_file: str | os.PathLike[str] | None = None,
        actor: str | None = None,
        redis_url: str | None = None,
        create: bool = True,
        upgrade: bool = True,
        **options: Any,
    ) -> ConfigManager:
        """Open (and with `create`, create) a store; the key is looked up per SPEC §2.

        Creating a store needs the key, since the store's instance secret is sealed under it. Pending
        schema migrations are applied, unless `upgrade` is False: then they are a StorageError.
        Without a key — or with one that does not open the store — an existing store opens
        read-only for plain values (`key_warning` says why).
        """
        key_source = find_keyring(encryption_key=encryption_key, key_file=key_file)
        if create and not store_exists(storage) and key_source is None:
            raise KeyMissingError(
                f"Creating a store needs the master key: {HOW_TO_SUPPLY}, or run 'llm-config init' to create "
                "the store and a key file"
            )
        # a writer (`create`) also tightens the modes of an existing store; a reader never changes anything
        backend = open_storage(storage, create=create, upgrade=upgrade)
        try:
            manager = cls(backend, key_source=key_source, actor=actor, redis_url=redis_url, **options)
        except BaseException:
            backend.close()
            raise
        manager.target = os.fspath(storage)
        return manager

    @property
    def has_key(self) -> bool:
        """Whether a master key that opens this store is loaded (writes and secrets need one)."""
        return self._keys is not None

    def _need(self, what: str) -> StoreKeys:
        return need(self._keys, what, self.key_warning)

    def close(self) -> None:
        """Flush queued read events and release the storage connections."""
        if self._poller is not None:
            self._poller.stop()
        if self._read_audit is not None:
            self._read_audit.close()
        self.cache.close()
        self.storage.close()

    def __enter__(self) -> ConfigManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def as_caller(self, ctx: CallContext) -> Caller:
        """The methods of this manager run as `ctx`'s caller: its principal is authorized (and recorded
        as the actor), its address and request id go into every audit event. The REST routes use one
        per request; `CallContext()` is the local owner, as the manager itself."""
        return Caller(self, ctx)

    # ------------------------------------------------------------------ cache plumbing

    def _redis_tier(self, url: str | None, keys: StoreKeys | None, ttl: float, timeout: float,
                    listen: bool) -> RedisTier | None:
        """The Redis tier of this store's cache: records and channel under a prefix only this store's
        key holders can name (a store id derived from its cache key, so stores sharing a Redis never meet)."""
        if not url:
            return None
        if keys is None:
            log.warning("redis: not used without the master key (its records could not be checked)")
            return None
        from llm_config.cache.redis import RedisTier
        from llm_config.cache.tiered import store_prefix

        tier = RedisTier(url, prefix=store_prefix(keys.cache), ttl_seconds=ttl, timeout=timeout,
                         # late-bound: the cache that owns this tier is built after it
                         on_message=(lambda data: self.cache.on_message(data)) if listen else None,  # noqa: PLW0108
                         on_reconnect=lambda: self.cache.on_reconnect())  # noqa: PLW0108
        return tier

    def _check_foreign_changes(self) -> None:
        """Evict what another connection committed since the last look (rate-limited; a server database
        is watched by the background poller instead)."""
        if self._poller is None:
            self.cache.maybe_poll()

    def _epoch_changed(self, epoch: str | None) -> None:
        """Another process restored a backup: its instance secret may differ."""
        keys, _ = unlock(self.storage, self._key_source, create=False)
        if keys is not None:
            self._adopt_keys(keys)

    def _forget_principals(self) -> None:
        api_keys = self.__dict__.get("_api_keys")  # only if this process ever authenticated
        if api_keys is not None:
            api_keys.forget_principals()
        self.signals.principals()

    def _entry(self, row: StoredEntry) -> Entry:
        secret = row.value_type is ValueType.SECRET
        stored = row.stored_value
        value: Any = ENCRYPTED_PLACEHOLDER if secret else None if stored is None else orjson.loads(stored)
        return build_entry(row.id, row.namespace, row.key, value, row.environment, row.version, secret,
                           row.created_at, row.created_by, row.updated_at, row.updated_by, row.tags,
                           row.description, row.revision)

    def _record(self, row: StoredEntry) -> CacheRecord:
        return make_record(self._entry(row), len(row.stored_value or ""))

    def _current(self, namespace: str, key: str, env: Environment, *, looked: bool = False) -> Entry | None:
        """The live entry (unrevealed), from the cache or storage; `looked`: the caller just missed L1."""
        if not looked:
            self._check_foreign_changes()
        if type(namespace) is not str or type(key) is not str or key[:1] == RESERVED:
            validate_namespace(namespace)  # a reserved key (a template's or a schema's row) is refused here
            validate_key(key)
        record = self.cache.load((namespace, key, env), lambda: self.storage.get_current(namespace, key, env),
                                 looked=looked)
        if record is None:
            # names are checked only here: no row can exist under a name that breaks the grammar,
            # and a bad name must be a ValidationError rather than "not found"
            validate_namespace(namespace)
            validate_key(key)
            return None
        return record.entry

    # ------------------------------------------------------------------ authorization

    def authorize(
        self,
        principal: Principal | None,
        permission: str,
        namespace: str | None = None,
        env: Environment | None = None,
        *,
        key: str | None = None,
        source_ip: str | None = None,
        require_unscoped: bool = False,
        before_body: bool = False,
        request_id: str | None = None,
    ) -> None:
        """The audited RBAC decision, for front ends guarding their own work (bans, metrics, bodies).

        `require_unscoped`: the target is server-wide state, so only keys without namespace or
        environment limits pass. `before_body`: only role and namespace — what a front end can
        decide before it reads a request body that may name the environment.
        """
        ctx = _ctx(principal, source_ip, request_id)
        if require_unscoped:
            self._access.require_unscoped(ctx, permission)
        if before_body:
            self._access.authorize_before_body(ctx, permission, namespace)
            return
        self._access.authorize(ctx, permission, namespace, env, key=key)

    def cached_principal(self, token: str) -> Principal | None:
        """The principal of `token` if authenticated within `AUTH_CACHE_SECONDS` (no I/O), else None."""
        return self._api_keys.cached_principal(token)

    def peek(
        self, namespace: str, key: str, env: str | Environment, *, principal: Principal | None = None,
        source_ip: str | None = None, request_id: str | None = None,
    ) -> Entry | None:
        """The cached live entry if L1 holds it, else None; never touches storage.

        A principal without read access gets None, so the caller takes the slow path, which
        refuses and audits the attempt.
        """
        record = self.peek_record(namespace, key, env, principal=principal, source_ip=source_ip,
                                  request_id=request_id)
        return None if record is None else record.entry

    def peek_record(
        self, namespace: str, key: str, env: str | Environment, *, principal: Principal | None = None,
        source_ip: str | None = None, request_id: str | None = None,
    ) -> CacheRecord | None:
        """`peek`, with what the REST edge sends for the entry (its JSON body and ETag)."""
        self._check_foreign_changes()
        environment = _ENV_FAST.get(env) or parse_environment(env)
        if type(key) is not str or key[:1] == RESERVED:  # a template's or schema's row: never a config entry
            return None
        if principal is not None and not rbac.allowed(principal, "config:read", namespace, environment):
            return None
        hit = self.cache.peek((namespace, key, environment))
        if hit is not None and self._read_audit is not None:
            self._record_read(hit.entry, _ctx(principal, source_ip, request_id))
        return hit

    def _record_read(self, entry: Entry, ctx: CallContext) -> None:
        assert self._read_audit is not None
        self._read_audit.record(PendingEvent(
            type="config_accessed", actor=ctx.actor_or(self.actor), namespace=entry.namespace, key=entry.key,
            environment=entry.environment.value, old_version=entry.version, source_ip=ctx.source_ip,
            request_id=ctx.request_id, timestamp=self._now(),
        ))

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
        actor: str | None = None,
    ) -> Entry:
        """One entry. `with_overrides`: the env's value, else base's. `reveal` decrypts (audited)."""
        return self._get(_OWNER if actor is None else CallContext(actor=actor), namespace, key, env, version,
                         with_overrides, reveal)

    def _get(self, ctx: CallContext, namespace: str, key: str, env: str | Environment, version: int | None,
             with_overrides: bool, reveal: bool) -> Entry:
        environment = _ENV_FAST.get(env) or parse_environment(env)
        if ctx.principal is not None:
            self._access.authorize(ctx, "config:read", namespace, environment, key=key)
        if version is None and not reveal and not with_overrides:
            # the hot path: one change check and one dict lookup on a hit (`_check_foreign_changes` inlined)
            if self._poller is None:
                self.cache.maybe_poll()
            record = self.cache.peek((namespace, key, environment)) \
                if type(key) is str and key[:1] != RESERVED else None
            hit = record.entry if record is not None else self._current(namespace, key, environment, looked=True)
            if hit is not None:
                if self._read_audit is not None:
                    self._record_read(hit, ctx)
                return hit
            raise NotFoundError(
                f"Config not found: {writes.where(namespace, key, environment)}",
                namespace=namespace, key=key, environment=environment.value,
            )
        if version is not None:
            entry = self._get_version(namespace, key, environment, version)
        else:
            found = self._current(namespace, key, environment)
            if found is None and with_overrides and environment is not Environment.BASE:
                found = self._current(namespace, key, Environment.BASE)
            if found is None:
                raise NotFoundError(
                    f"Config not found: {writes.where(namespace, key, environment)}",
                    namespace=namespace, key=key, environment=environment.value,
                )
            entry = found
        if reveal and entry.secret:
            self._access.authorize(ctx, "secret:read", namespace, entry.environment, key=key)
            entry = self._reveal(entry, version, ctx)
        elif self._read_audit is not None:
            self._record_read(entry, ctx)
        return entry

    def _get_version(self, namespace: str, key: str, env: Environment, version: int) -> Entry:
        validate_namespace(namespace)
        validate_key(key)
        check_version(version)
        row = self.storage.get_current(namespace, key, env)
        stored = self.storage.get_version(namespace, key, env, version) if row else None
        if row is None or stored is None:
            raise NotFoundError(f"Version {version} of {writes.where(namespace, key, env)} not found",
                                namespace=namespace, key=key, environment=env.value, version=version)
        if stored.deleted or stored.purged:
            what = "a deletion (tombstone)" if stored.deleted else "purged: its value was destroyed"
            raise NotFoundError(
                f"Version {version} of {writes.where(namespace, key, env)} is {what}",
                namespace=namespace, key=key, environment=env.value, version=version,
            )
        current = self._entry(row)
        return Entry(
            id=current.id,
            namespace=namespace,
            key=key,
            value=ENCRYPTED_PLACEHOLDER if stored.value_type is ValueType.SECRET
            else orjson.loads(stored.stored_value or "null"),
            environment=env,
            version=version,
            secret=stored.value_type is ValueType.SECRET,
            metadata=Metadata(
                created_at=current.metadata.created_at,
                created_by=current.metadata.created_by,
                updated_at=stored.created_at,
                updated_by=stored.created_by,
                tags=current.metadata.tags,
                description=current.metadata.description,
            ),
            revision=stored.revision,
        )

    def _reveal(self, entry: Entry, version: int | None, ctx: CallContext) -> Entry:
        """Decrypt a secret, appending `secret_accessed` to the audit trail first."""
        keys = self._need("Revealing a secret")
        if version is None:
            row = self.storage.get_current(entry.namespace, entry.key, entry.environment)
            envelope = row.stored_value if row is not None and row.version == entry.version else None
        else:
            stored = self.storage.get_version(entry.namespace, entry.key, entry.environment, entry.version)
            envelope = stored.stored_value if stored is not None else None
        if envelope is None:  # changed under us: read the fresh current row
            fresh = self.storage.get_current(entry.namespace, entry.key, entry.environment)
            if fresh is None or fresh.deleted or fresh.value_type is not ValueType.SECRET:
                raise NotFoundError(f"Config not found: {writes.where(entry.namespace, entry.key, entry.environment)}")
            entry, envelope = self._entry(fresh), fresh.stored_value
            assert envelope is not None
        plaintext = keys.keyring.open(envelope, place(entry.namespace, entry.key, entry.environment))
        self.storage.append_audit(PendingEvent(
            type="secret_accessed", actor=ctx.actor_or(self.actor), namespace=entry.namespace, key=entry.key,
            environment=entry.environment.value, old_version=entry.version, source_ip=ctx.source_ip,
            request_id=ctx.request_id, timestamp=self._now(),
        ), keys.audit)
        return Entry(
            id=entry.id, namespace=entry.namespace, key=entry.key, value=orjson.loads(plaintext),
            environment=entry.environment, version=entry.version, secret=True, metadata=entry.metadata,
            revision=entry.revision,
        )

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
        """Live entries of a namespace ordered by key (secrets unrevealed)."""
        return self._list_page(_OWNER, namespace, env=env, prefix=prefix, recursive=recursive, limit=limit,
                               cursor=cursor)[0]

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
        """A page of `list` and the cursor of the next page (None at the end)."""
        return self._list_page(_OWNER, namespace, env=env, prefix=prefix, recursive=recursive, limit=limit,
                               cursor=cursor)

    def _list_page(
        self, ctx: CallContext, namespace: str, *, env: str | Environment, prefix: str, recursive: bool,
        limit: int | None, cursor: str | None,
    ) -> tuple[builtins.list[Entry], str | None]:
        validate_namespace(namespace)
        environment = _env(env)
        self._access.authorize(ctx, "config:list", namespace, environment)
        if prefix and not all(c.isalnum() or c in "_.-" for c in prefix):
            raise ValidationError("Invalid prefix: letters, digits, '_', '.', '-' only")
        if limit is not None and (limit < 1 or limit > 10_000):
            raise ValidationError("Invalid limit: must be between 1 and 10000")
        rows = self.storage.list_current(
            namespace, environment, prefix=prefix, after_key=cursor,
            limit=limit + 1 if limit else None, recursive=recursive,
        )
        next_cursor = None
        if limit is not None and len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            next_cursor = f"{last.namespace}~{last.key}" if recursive else last.key  # names never hold '~'
        return [self._entry(r) for r in rows], next_cursor

    def namespaces(self, prefix: str = "") -> builtins.list[str]:
        """Namespaces holding at least one live entry (for a caller: only those its key may list)."""
        return self._namespaces(_OWNER, prefix)

    def _namespaces(self, ctx: CallContext, prefix: str) -> builtins.list[str]:
        self._access.authorize(ctx, "config:list", None, None)
        found = self.storage.namespaces(prefix)
        principal = ctx.principal
        if principal is None or not principal.namespaces:
            return found
        return [ns for ns in found if any(rbac.covers_namespace(p, ns) for p in principal.namespaces)]

    def history(
        self,
        namespace: str,
        key: str,
        *,
        env: str | Environment = Environment.DEVELOPMENT,
        limit: int | None = None,
    ) -> builtins.list[HistoryItem]:
        """Every version newest first; secret values as "<encrypted>", tombstones as null."""
        return self._history(_OWNER, namespace, key, env=env, limit=limit)

    def _history(
        self, ctx: CallContext, namespace: str, key: str, *, env: str | Environment, limit: int | None,
    ) -> builtins.list[HistoryItem]:
        environment = self._target(namespace, key, env)
        self._access.authorize(ctx, "history:read", namespace, environment, key=key)
        if limit is not None:
            check_version(limit, "limit")
        rows = self.storage.history(namespace, key, environment, limit)
        if not rows:
            raise NotFoundError(f"Config not found: {writes.where(namespace, key, environment)}",
                                namespace=namespace, key=key, environment=environment.value)
        return [self._history_item(r) for r in rows]

    @staticmethod
    def _history_item(row: StoredVersion) -> HistoryItem:
        if row.value_type is ValueType.SECRET:
            value: Any = ENCRYPTED_PLACEHOLDER
        elif row.stored_value is None:
            value = None
        else:
            value = orjson.loads(row.stored_value)
        return HistoryItem(
            version=row.version,
            value=value,
            deleted=row.deleted,
            created_at=row.created_at,
            created_by=row.created_by,
            change_description="Purged" if row.purged else row.change_description,
        )

    def resolve(
        self,
        namespace: str,
        *,
        env: str | Environment = Environment.DEVELOPMENT,
        nested: bool = False,
        reveal: bool = False,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """`{KEY: VALUE}` of the environment over base. Secrets are "<encrypted>" unless `reveal`."""
        return self._resolve(_owner(actor), namespace, env=env, nested=nested, reveal=reveal)

    def _resolve(
        self, ctx: CallContext, namespace: str, *, env: str | Environment, nested: bool, reveal: bool,
    ) -> dict[str, Any]:
        validate_namespace(namespace)
        environment = _env(env)
        self._access.authorize(ctx, "config:read", namespace, environment)
        own = self._resolved_entries(namespace, environment)
        if reveal and any(e.secret for e in own.values()):
            self._access.authorize(ctx, "secret:read", namespace, environment)
            own = {k: self._reveal(e, None, ctx) if e.secret else e for k, e in own.items()}
        flat = {k: e.value for k, e in own.items()}
        return nest(flat) if nested else flat

    def _list_entries(self, namespace: str, env: Environment) -> builtins.list[Entry]:
        """Every live entry of one environment, for an operation already authorized as a whole."""
        return [self._entry(r) for r in self.storage.list_current(namespace, env)]

    def _resolved_entries(self, namespace: str, env: Environment) -> dict[str, Entry]:
        entries = {e.key: e for e in self._list_entries(namespace, env)}
        if env is Environment.BASE:
            return entries
        base = {e.key: e for e in self._list_entries(namespace, Environment.BASE)}
        return merge_with_base(base, entries)

    # ------------------------------------------------------------------ writes

    def _now(self) -> str:
        return rfc3339(self._clock())

    def _target(self, namespace: str, key: str, env: str | Environment) -> Environment:
        """Validate the names of a write's target and parse its environment."""
        validate_namespace(namespace)
        validate_key(key)
        return _env(env)

    def _write_target(
        self, ctx: CallContext, namespace: str, key: str, env: str | Environment, permission: str,
    ) -> Environment:
        """Validate and authorize a write's target; returns its environment."""
        environment = self._target(namespace, key, env)
        if ctx.principal is not None:
            self._access.authorize(ctx, permission, namespace, environment, key=key)
        return environment

    def _request(
        self, kind: WriteKind, namespace: str, key: str, env: Environment, *, ctx: CallContext,
        change_description: str, **fields: Any,
    ) -> WriteRequest:
        """A WriteRequest stamped with the caller's actor (checked), address, request id and the time."""
        who = check_text(ctx.actor_or(self.actor), "actor", 200)
        return WriteRequest(
            kind=kind, namespace=namespace, key=key, environment=env, actor=who, timestamp=self._now(),
            change_description=change_description, source_ip=ctx.source_ip, request_id=ctx.request_id, **fields,
        )

    def _apply(self, writes: Sequence[WriteRequest]) -> builtins.list[StoredEntry]:
        keys = self._need("Writing")
        try:
            results = self.storage.apply(writes, keys.audit)
        except BaseException:
            for w in writes:  # a conflict: our cached copy may be stale
                self.cache.l1.invalidate((w.namespace, w.key, w.environment))
            raise
        self.cache.invalidate([((r.entry.namespace, r.entry.key, r.entry.environment), r.entry.revision)
                               for r in results])
        self.signals.changed()
        return [r.entry for r in results]

    def _seal_value(
        self, namespace: str, key: str, env: Environment, value: Any, secret: bool
    ) -> tuple[ValueType, str, str]:
        keys = self._need("Writing")
        text = validate_value(value)
        where = place(namespace, key, env)
        fingerprint = audit.fingerprint(keys.fingerprint, where, text.encode())
        if secret:
            return ValueType.SECRET, keys.keyring.seal(text.encode(), where), fingerprint
        return ValueType.PLAIN, text, fingerprint

    def _set_request(
        self,
        namespace: str,
        key: str,
        value: Any,
        env: Environment,
        current: StoredEntry | None,
        *,
        secret: bool | None,
        description: str | None,
        tags: Sequence[str] | None,
        change_description: str,
        expected_version: int | None,
        ctx: CallContext,
        check: Checker,
        hint: str = writes.FOR_SET,
    ) -> WriteRequest:
        """A SET request; with `current` (an import's plan) the plain-over-secret rule is checked now too.
        `check`: the namespace's schemas (`SchemaStore.checker`), which the value must satisfy."""
        if description is not None:
            check_text(description, "description")
        tag_tuple = None
        if tags is not None:
            if isinstance(tags, str) or not isinstance(tags, Sequence):
                raise ValidationError("Invalid tags: a list of strings")
            tag_tuple = tuple(validate_label(tag, "tag") for tag in tags)
            if len(tag_tuple) > 50:
                raise ValidationError("Invalid tags: at most 50")
        if expected_version is not None:
            check_version(expected_version, "expected_version", allow_zero=True)
        value_type, stored, fingerprint = self._seal_value(namespace, key, env, value, bool(secret))
        check(key, env, value)  # after the value's own checks (size, depth, NaN)
        request = self._request(
            WriteKind.SET, namespace, key, env, ctx=ctx,
            change_description=change_description, value_type=value_type, stored_value=stored,
            fingerprint=fingerprint, expected_version=expected_version, tags=tag_tuple, description=description,
            audit_details={"fingerprint": fingerprint, "fingerprint_scheme": audit.FINGERPRINT_SCHEME},
            refuse_plain_over_secret=secret is None,  # storage checks it again on the row it locks
        )
        writes.check_plain_over_secret(request, current, value_type, hint)
        return request

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
        actor: str | None = None,
    ) -> Entry:
        """Write a new version; `expected_version` makes it a compare-and-set (0: must not exist)."""
        return self._set(_owner(actor), namespace, key, value, env=env, secret=secret, description=description,
                         tags=tags, message=message, expected_version=expected_version)

    def _set(
        self, ctx: CallContext, namespace: str, key: str, value: Any, *, env: str | Environment,
        secret: bool | None, description: str | None, tags: Sequence[str] | None, message: str | None,
        expected_version: int | None,
    ) -> Entry:
        environment = self._write_target(ctx, namespace, key, env, "secret:create" if secret else "config:create")
        if message is not None:
            check_text(message, "message")
        request = self._set_request(  # storage enforces the secret rule on the row it locks
            namespace, key, value, environment, None, secret=secret, description=description,
            tags=tags, change_description=message or "", expected_version=expected_version, ctx=ctx,
            check=self._schemas.checker(namespace),
        )
        return self._entry(self._apply([request])[0])

    def delete(
        self,
        namespace: str,
        key: str,
        *,
        env: str | Environment = Environment.DEVELOPMENT,
        expected_version: int | None = None,
        actor: str | None = None,
    ) -> Entry:
        """Write a tombstone version; returns it (value None). Missing key → NotFoundError."""
        return self._delete(_owner(actor), namespace, key, env=env, expected_version=expected_version)

    def _delete(
        self, ctx: CallContext, namespace: str, key: str, *, env: str | Environment, expected_version: int | None,
    ) -> Entry:
        environment = self._write_target(ctx, namespace, key, env, "config:delete")
        if expected_version is not None:
            check_version(expected_version, "expected_version", allow_zero=True)
        request = self._request(
            WriteKind.DELETE, namespace, key, environment, ctx=ctx, change_description="Deleted",
            expected_version=expected_version,
        )
        return self._entry(self._apply([request])[0])

    def rollback(
        self,
        namespace: str,
        key: str,
        version: int,
        *,
        env: str | Environment = Environment.DEVELOPMENT,
        secret: bool | None = None,
        actor: str | None = None,
    ) -> Entry:
        """Write version max+1 holding version N's value (an undelete after a delete).

        Rolling a secret back to a plain version needs `secret=False`, as `set` does (SPEC §5).
        """
        return self._rollback(_owner(actor), namespace, key, version, env=env, secret=secret)

    def _rollback(
        self, ctx: CallContext, namespace: str, key: str, version: int, *, env: str | Environment,
        secret: bool | None,
    ) -> Entry:
        environment = self._write_target(ctx, namespace, key, env, "config:rollback")
        if secret is not None and not isinstance(secret, bool):
            raise ValidationError("Invalid secret flag: must be true, false or omitted")
        self._check_rollback(namespace, key, environment, version)
        request = self._request(
            WriteKind.ROLLBACK, namespace, key, environment, ctx=ctx,
            change_description=f"Rollback to version {version}",
            target_version=check_version(version), audit_details={"target_version": version},
            refuse_plain_over_secret=secret is not False,
        )
        return self._entry(self._apply([request])[0])

    def _check_rollback(self, namespace: str, key: str, env: Environment, version: int) -> None:
        """The value a rollback restores must satisfy today's schemas (it may predate them)."""
        from llm_config.core.schema_store import NO_CHECK

        check = self._schemas.checker(namespace)
        if check is NO_CHECK:
            return
        stored = self.storage.get_version(namespace, key, env, check_version(version))
        if stored is None or stored.stored_value is None:
            return  # storage refuses it with the right message
        text = stored.stored_value
        if stored.value_type is ValueType.SECRET:
            text = self._need("Rolling back a secret").keyring.open(text, place(namespace, key, env)).decode()
        check(key, env, orjson.loads(text))

    def purge(
        self,
        namespace: str,
        key: str,
        version: int,
        *,
        env: str | Environment = Environment.DEVELOPMENT,
        actor: str | None = None,
    ) -> None:
        """Destroy one (non-current) version's value for good (admins only); history keeps a marker."""
        self._purge(_owner(actor), namespace, key, version, env=env)

    def _purge(self, ctx: CallContext, namespace: str, key: str, version: int, *, env: str | Environment) -> None:
        environment = self._write_target(ctx, namespace, key, env, "system:delete")
        self._apply([self._request(
            WriteKind.PURGE, namespace, key, environment, ctx=ctx, change_description=f"Purged version {version}",
            target_version=check_version(version),
        )])

    # ------------------------------------------------------------------ export / import

    def export(
        self,
        namespace: str,
        *,
        env: str | Environment = Environment.DEVELOPMENT,
        reveal: bool = False,
        actor: str | None = None,
    ) -> dict[str, Any]:
        """The SPEC §5 document of one environment's own entries (secrets only with `reveal`)."""
        return self._export(_owner(actor), namespace, env=env, reveal=reveal)

    def _export(self, ctx: CallContext, namespace: str, *, env: str | Environment, reveal: bool) -> dict[str, Any]:
        validate_namespace(namespace)
        environment = _env(env)
        self._access.authorize(ctx, "config:export", namespace, environment)
        if reveal:
            self._access.authorize(ctx, "secret:read", namespace, environment)
        entries = self._list_entries(namespace, environment)
        doc: dict[str, Any] = {
            "namespace": namespace,
            "environment": environment.value,
            "values": {e.key: e.value for e in entries if not e.secret},
        }
        if reveal:
            doc["secrets"] = {
                e.key: self._reveal(e, None, ctx).value
                for e in entries if e.secret
            }
        return doc

    def export_text(
        self, namespace: str, *, env: str | Environment = Environment.DEVELOPMENT, fmt: str = "json",
        reveal: bool = False, actor: str | None = None,
    ) -> str:
        """`export` rendered as json, yaml or dotenv text."""
        return self._export_text(_owner(actor), namespace, env=env, fmt=fmt, reveal=reveal)

    def _export_text(self, ctx: CallContext, namespace: str, *, env: str | Environment, fmt: str,
                     reveal: bool) -> str:
        if fmt not in ("json", "yaml", "dotenv"):
            raise ValidationError(f"Unknown export format {fmt!r}: use json, yaml or dotenv")
        from llm_config.core.transfer import format_export

        return format_export(self._export(ctx, namespace, env=env, reveal=reveal), fmt)

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
        actor: str | None = None,
    ) -> ImportPlan:
        """Upsert a document's keys all or nothing; unchanged values write nothing.

        Keys in the document's `secrets` section are always sealed; `secret=True` (`--secret`) seals every
        value (a file of provider keys); a plain value replaces a secret only with `secret=False`
        (`--no-secret`), as with `set`. `prune` deletes live keys the document lacks — secret keys only
        if it has a secrets section.
        """
        return self._import(_owner(actor), namespace, document, env=env, fmt=fmt, prune=prune, dry_run=dry_run,
                            secret=secret)

    def _import(
        self, ctx: CallContext, namespace: str, document: str | dict[str, Any], *, env: str | Environment,
        fmt: str | None, prune: bool, dry_run: bool, secret: bool | None,
    ) -> ImportPlan:
        validate_namespace(namespace)
        environment = _env(env)
        if secret is not None and not isinstance(secret, bool):
            raise ValidationError("Invalid secret flag: must be true, false or omitted")
        self._access.authorize(ctx, "config:import", namespace, environment)
        from llm_config.core.transfer import ImportPlan, parse_import

        text = document if isinstance(document, str) else orjson.dumps(document).decode()
        doc = parse_import(text, fmt)
        if doc.secrets or (secret and doc.values):
            self._access.authorize(ctx, "secret:create", namespace, environment)
        if prune:
            self._access.authorize(ctx, "config:delete", namespace, environment)
        keys = self._need("Importing")
        check = self._schemas.checker(namespace)
        current = {row.key: row for row in self.storage.list_current(namespace, environment)}
        plan = ImportPlan(dry_run=dry_run)
        requests: builtins.list[WriteRequest] = []
        refused: builtins.list[str] = []
        violated = False
        wanted: builtins.list[tuple[str, Any, bool]] = [(k, v, secret is True) for k, v in doc.values.items()]
        wanted += [(k, v, True) for k, v in (doc.secrets or {}).items()]
        for key, value, sealed in sorted(wanted):
            row = current.get(key)
            text_value = validate_value(value)
            if row is not None and (row.value_type is ValueType.SECRET) == sealed \
                    and row.fingerprint == audit.fingerprint(keys.fingerprint, place(namespace, key, environment),
                                                             text_value.encode()):
                plan.unchanged.append(key)
                continue
            try:
                request = self._set_request(
                    namespace, key, value, environment, row, secret=True if sealed else secret,
                    description=None, tags=None, change_description="Imported",
                    expected_version=row.version if row is not None else 0, ctx=ctx, check=check,
                    hint=writes.FOR_IMPORT,
                )
            except ValidationError as exc:
                refused.append(exc.message)
                violated = violated or isinstance(exc, SchemaViolationError)
                continue
            (plan.updated if row is not None else plan.created).append(key)
            requests.append(request)
        if refused:  # every key that cannot be imported as asked, before anything is written
            shown = "; ".join(refused[:10]) + (f" (and {len(refused) - 10} more)" if len(refused) > 10 else "")
            raise (SchemaViolationError if violated else ValidationError)(f"Nothing imported: {shown}")
        if prune:
            keep = set(doc.values) | set(doc.secrets or {})
            for key, row in sorted(current.items()):
                if key in keep or (row.value_type is ValueType.SECRET and doc.secrets is None):
                    continue
                plan.deleted.append(key)
                requests.append(self._request(
                    WriteKind.DELETE, namespace, key, environment, ctx=ctx, change_description="Deleted",
                    expected_version=row.version,
                ))
        if requests and not dry_run:
            self._apply(requests)
        return plan

    # ------------------------------------------------------------------ API keys and authentication

    def create_api_key(
        self,
        name: str,
        role: str | Role,
        *,
        namespaces: Sequence[str] = (),
        environments: Sequence[str | Environment] = (),
        expires_days: float | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns its record and the key itself, which is shown once and never stored.

        A key can only create keys of equal or narrower role, scope and lifetime (SPEC §4, §8).
        """
        return self._create_api_key(_OWNER, name, role, namespaces=namespaces, environments=environments,
                                    expires_days=expires_days)

    def _create_api_key(
        self, ctx: CallContext, name: str, role: str | Role, *, namespaces: Sequence[str],
        environments: Sequence[str | Environment], expires_days: float | None,
    ) -> tuple[ApiKey, str]:
        return self._api_keys.create(ctx, name, role, namespaces=namespaces, environments=environments,
                                     expires_days=expires_days)

    def list_api_keys(self) -> builtins.list[ApiKey]:
        """Every key (without secrets); a caller sees the keys it could have created itself."""
        return self._list_api_keys(_OWNER)

    def _list_api_keys(self, ctx: CallContext) -> builtins.list[ApiKey]:
        return self._api_keys.list(ctx)

    def revoke_api_key(self, key_id: str) -> ApiKey:
        """Revoke a key and every key it created; effective on every process within `AUTH_CACHE_SECONDS`."""
        return self._revoke_api_key(_OWNER, key_id)

    def _revoke_api_key(self, ctx: CallContext, key_id: str) -> ApiKey:
        revoked = self._api_keys.revoke(ctx, key_id)
        self.cache.principals_changed()
        self.signals.principals()
        return revoked

    def authenticate(
        self, token: str | None, *, source_ip: str | None = None, request_id: str | None = None,
        audit_failure: bool = True,
    ) -> Principal:
        """The principal of an API key; AuthenticationError for a missing or bad one (audited, coalesced
        per address, unless `audit_failure` is False). Lookups are cached for `AUTH_CACHE_SECONDS`."""
        return self._api_keys.authenticate(token, _ctx(None, source_ip, request_id), audit_failure=audit_failure)

    def record_auth_failure(self, reason: str, *, source_ip: str | None = None, request_id: str | None = None) -> None:
        """Audit a failed authentication decided at the edge (coalesced per address)."""
        self._api_keys.record_failure(reason, _ctx(None, source_ip, request_id))

    def record_ban(self, ip: str, *, until: str, failures: int, request_id: str | None = None) -> None:
        """Audit the ban of a client address decided at the edge (`ip_banned`, SPEC §7)."""
        if self._keys is None:
            return
        self.storage.append_audit(PendingEvent(
            type="ip_banned", actor="llm-config", outcome="denied", source_ip=ip, request_id=request_id,
            details={"until": until, "failures": failures}, timestamp=self._now(),
        ), self._keys.audit)

    def ensure_initial_admin_key(self) -> str | None:
        """On a store that never had a key, create an unrestricted admin key and return it (once)."""
        return self._api_keys.ensure_initial_admin()

    def bootstrap_admin_key(self) -> str | None:
        """`ensure_initial_admin_key` under the database's migration lock: replicas of a server database
        starting together create one key between them."""
        with self.storage.setup_lock():
            return self._api_keys.ensure_initial_admin()

    def has_api_keys(self) -> bool:
        """Whether the store holds any API key (revoked ones included)."""
        return bool(self.storage.list_api_keys())

    # ------------------------------------------------------------------ backup, restore, migrate

    @functools.cached_property
    def _backups(self) -> Backups:
        from llm_config.core.backups import Backups

        return Backups(self.storage, self._keys, self._key_source, self._access, self.actor)

    def backup(self, out: IO[bytes]) -> BackupSummary:
        """Write a consistent, checksummed backup of the whole store to `out` (SPEC §4; secrets stay sealed)."""
        return self._backup(_OWNER, out)

    def _backup(self, ctx: CallContext, out: IO[bytes]) -> BackupSummary:
        return self._backups.backup(ctx, out, now=self._now())

    def check_backup(self, stream: IO[bytes]) -> BackupInfo:
        """Verify a backup file and that this master key opens it, touching nothing."""
        return self._backups.check(stream)

    def restore(self, stream: IO[bytes], *, force: bool = False) -> RestoreSummary:
        """Replace everything in this store with a backup (a non-empty store needs `force`); a new epoch."""
        return self._restore(_OWNER, stream, force=force)

    def _restore(self, ctx: CallContext, stream: IO[bytes], *, force: bool) -> RestoreSummary:
        summary, keys = self._backups.restore(ctx, stream, force=force, now=self._now())
        self._adopt_keys(keys)
        self.cache.restored()
        return summary

    def migrate_to(self, target: str, *, force: bool = False) -> MigrateSummary:
        """Copy the whole store to the store at `target` (any backend) and verify the copy there."""
        return self._migrate_to(_OWNER, target, force=force)

    def _migrate_to(self, ctx: CallContext, target: str, *, force: bool) -> MigrateSummary:
        other = open_storage(target, create=True)
        try:
            return self._backups.migrate(ctx, other, force=force, now=self._now())
        finally:
            other.close()

    def _adopt_keys(self, keys: StoreKeys) -> None:
        """After a restore the store may hold another instance secret: every part starts over with its keys."""
        self._keys = keys
        self.key_warning = None
        self._access = Access(self.storage, keys, self._clock)
        for part in ("_api_keys", "_trail", "_backups"):
            self.__dict__.pop(part, None)
        self.cache.set_key(keys.cache)
        self.cache.clear()

    # ------------------------------------------------------------------ audit and health

    def audit_events(self, query: AuditQuery | None = None) -> builtins.list[AuditEvent]:
        """Audit events oldest first, as the caller may see them (works without the key)."""
        return self._audit_events(_OWNER, query)

    def _audit_events(self, ctx: CallContext, query: AuditQuery | None) -> builtins.list[AuditEvent]:
        return self._trail.events(ctx, query)

    def audit_verify(self, anchor: str | None = None) -> audit.VerifyReport:
        """Check the chain and every row against it; `anchor` is `SEQ:MAC`."""
        return self._audit_verify(_OWNER, anchor)

    def _audit_verify(self, ctx: CallContext, anchor: str | None) -> audit.VerifyReport:
        return self._trail.verify(ctx, anchor)

    def audit_head(self) -> str | None:
        """`SEQ:MAC` of the newest event, to keep outside the database."""
        return self._audit_head(_OWNER)

    def _audit_head(self, ctx: CallContext) -> str | None:
        return self._trail.head(ctx)

    def doctor(self, *, public: bool = False, detail: bool | None = None) -> dict[str, Any]:
        """Health of the store, key, row integrity, cache and audit chain (`llm-config doctor`, `/health`).

        `public` (the `/health` route): no full verification, which reads every row; without `detail`
        statuses only (messages, counts and cache statistics are for keys with `system:read`).
        """
        from llm_config.core.health import store_health
        from llm_config.storage.base import initial_key_path

        return store_health(
            self.storage, source=self._key_source, keys=self._keys, key_warning=self.key_warning,
            cache_stats=self.cache.describe, cache_problem=self.cache.status(probe=not public),
            detail=not public if detail is None else detail, deep=not public,
            initial_key_file=initial_key_path(self.target) if self.target is not None and not public else None,
            integrity_problem=self.integrity_problem,
        )

    # ------------------------------------------------------------------ master-key rotation (core/rotation.py)

    @property
    def key_ids(self) -> builtins.list[str]:
        """Ids of the master keys this process holds, the sealing one first (empty without a key)."""
        return self._keys.keyring.key_ids if self._keys is not None else []

    def rotate_key(
        self, new_key: bytes, *, batch_size: int = 200, on_batch: Callable[[RotationProgress], None] | None = None,
    ) -> RotationSummary:
        """Re-seal every secret version (history too) and the instance secret under `new_key` (32 raw bytes)
        while the store keeps serving; in batches, safe to re-run (SPEC §2). Admins only. From the start this
        manager seals with the new key; its old keys still open what they sealed."""
        return self._rotate_key(_OWNER, new_key, batch_size=batch_size, on_batch=on_batch)

    def _rotate_key(self, ctx: CallContext, new_key: bytes, *, batch_size: int,
                    on_batch: Callable[[RotationProgress], None] | None) -> RotationSummary:
        keyring = self._need("Rotating the master key").keyring.with_primary(new_key)
        return self._rotate(keyring, ctx, batch_size, on_batch)

    def rotate_key_to(self, key_id: str, *, batch_size: int = 200) -> RotationSummary:
        """`rotate_key` to a key this process's keyring already holds, named by its id (the REST route: key
        material never travels over HTTP)."""
        return self._rotate_key_to(_OWNER, key_id, batch_size=batch_size)

    def _rotate_key_to(self, ctx: CallContext, key_id: str, *, batch_size: int) -> RotationSummary:
        keys = self._need("Rotating the master key")
        if key_id not in keys.keyring.key_ids:
            raise ValidationError("Unknown new_key_id: not a key in this server's keyring (add it to "
                                  "LLM_CONFIG_KEY or the key file and restart first)")
        return self._rotate(keys.keyring.promoted(key_id), ctx, batch_size, None)

    def _rotate(self, keyring: Any, ctx: CallContext, batch_size: int,
                on_batch: Callable[[RotationProgress], None] | None) -> RotationSummary:
        from llm_config.core.rotation import rotate_master_key

        return rotate_master_key(self.storage, self._need("Rotating the master key"), keyring, self._access, ctx,
                                 actor=self.actor, now=self._now, batch_size=batch_size, on_batch=on_batch,
                                 adopt=self._adopt_rotated)

    def _adopt_rotated(self, keys: StoreKeys) -> None:
        self._key_source = keys.source
        self._adopt_keys(keys)
