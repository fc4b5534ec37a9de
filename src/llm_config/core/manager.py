"""ConfigManager: the one orchestrator under the library, the CLI and the REST API.

Owns validation, secret sealing, the L1 cache and its invalidation, audit of reveals, import/export
and resolution. Depends on the Protocols of `types.py`, never on a driver. Never lets a plaintext
secret reach storage, the cache, a log line, an audit event or an error message.
"""

from __future__ import annotations

import builtins
import dataclasses
import logging
import os
import pwd
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, NoReturn

import orjson

from llm_config import audit, rbac
from llm_config.cache.l1 import L1Cache
from llm_config.core.read_audit import ReadAuditBuffer
from llm_config.core.resolve import merge_with_base, nest
from llm_config.core.transfer import ImportPlan, format_export, parse_import
from llm_config.crypto.aead import Keyring, derive_key, envelope_key_id
from llm_config.crypto.apikeys import generate_api_key, hash_api_key, looks_like_api_key
from llm_config.crypto.keys import HOW_TO_SUPPLY, KeySource, find_keyring
from llm_config.errors import (
    AuthenticationError,
    KeyMissingError,
    NotFoundError,
    PermissionDeniedError,
    SecretKeyError,
    StoreMissingError,
    ValidationError,
)
from llm_config.models import (
    ENCRYPTED_PLACEHOLDER,
    ApiKey,
    AuditEvent,
    Entry,
    Environment,
    HistoryItem,
    Metadata,
    Principal,
    Role,
    StoredEntry,
    StoredVersion,
    ValueType,
    WriteKind,
    WriteRequest,
)
from llm_config.names import parse_environment, validate_key, validate_namespace
from llm_config.storage import open_storage
from llm_config.types import AuditQuery, Clock, Storage
from llm_config.values import check_text, check_version, validate_value

__all__ = ["AUTH_CACHE_SECONDS", "ConfigManager", "os_account"]

log = logging.getLogger("llm_config")

_INSTANCE_SECRET: Final = "instance_secret"  # noqa: S105 - a meta row name
_INSTANCE_AAD: Final = b"llm-config instance secret v1"
_ENV_FAST: Final[dict[object, Environment]] = {
    **{e.value: e for e in Environment}, **{e: e for e in Environment}
}
AUTH_CACHE_SECONDS: Final = 0.5  # revocation reaches every process within this (SPEC §9: 1 s)
_ENTRY_OVERHEAD: Final = 400  # bytes charged per cached entry besides its stored value


def os_account() -> str:
    """The OS account running this process (not $USER, which anyone can set)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid:{os.geteuid()}"


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _aad(namespace: str, key: str, env: Environment) -> bytes:
    return f"{namespace}\x00{key}\x00{env.value}".encode()


def _env(env: str | Environment) -> Environment:
    found = _ENV_FAST.get(env)
    return found if found is not None else parse_environment(env)


def _where(namespace: str, key: str, env: Environment) -> str:
    return f"{namespace}/{key} [{env.value}]"


class ConfigManager:
    """Versioned configuration and secrets over one storage backend. Thread-safe.

    Use `ConfigManager.open(...)`; close it (or use it as a context manager) when done.
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
    ) -> None:
        self.storage = storage
        self.actor = actor or os_account()
        self.audit_reads = audit_reads
        self._clock = clock
        self._key_source = key_source
        self._keyring: Keyring | None = key_source.keyring if key_source else None
        self._audit_key: bytes | None = None
        self._fingerprint_key: bytes | None = None
        self._pepper: bytes | None = None
        self.cache: L1Cache[Entry] = L1Cache(
            ttl=cache_ttl, max_entries=cache_max_entries, max_bytes=cache_max_bytes
        )
        self._principals: dict[str, tuple[float, Principal]] = {}
        self._check_interval = change_check_interval
        self._next_check = 0.0
        self._change_token = storage.change_token()
        if self._keyring is not None:
            self._load_instance_secret()
        self._read_audit: ReadAuditBuffer | None = None
        if audit_reads:
            _, audit_key, _ = self._need_key("Auditing reads")
            self._read_audit = ReadAuditBuffer(storage, audit_key)

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
        **options: Any,
    ) -> ConfigManager:
        """Open (and with `create`, create) a store; the key is looked up per SPEC §2.

        Creating a store needs the key, since the store's instance secret is sealed under it.
        Without a key an existing store opens read-only for plain values.
        """
        if redis_url:
            raise ValidationError("Redis (L2 cache) is not available yet in this version: omit redis_url")
        key_source = find_keyring(encryption_key=encryption_key, key_file=key_file)
        try:
            backend = open_storage(storage, create=False)
        except StoreMissingError:
            if not create:
                raise
            if key_source is None:
                raise KeyMissingError(f"Creating a store needs the master key: {HOW_TO_SUPPLY}") from None
            backend = open_storage(storage, create=True)
        try:
            return cls(backend, key_source=key_source, actor=actor, **options)
        except BaseException:
            backend.close()
            raise

    def _load_instance_secret(self) -> None:
        assert self._keyring is not None
        envelope = self.storage.get_meta(_INSTANCE_SECRET)
        if envelope is None:
            fresh = self._keyring.seal(os.urandom(32), _INSTANCE_AAD)
            self.storage.set_meta(_INSTANCE_SECRET, fresh, only_if_absent=True)
            envelope = self.storage.get_meta(_INSTANCE_SECRET)
            assert envelope is not None
        try:
            secret = self._keyring.open(envelope, _INSTANCE_AAD)
        except SecretKeyError:
            sealed_by = envelope_key_id(envelope) or "unknown"
            raise SecretKeyError(
                f"The encryption key does not open this store (store sealed by key id {sealed_by}, "
                f"keyring has {', '.join(self._keyring.key_ids)})"
            ) from None
        self._audit_key = derive_key(secret, "audit-chain")
        self._fingerprint_key = derive_key(secret, "fingerprint")
        self._pepper = derive_key(secret, "api-key-pepper")

    @property
    def has_key(self) -> bool:
        """Whether a master key is loaded (writes and secret operations need one)."""
        return self._keyring is not None

    def _need_key(self, what: str) -> tuple[Keyring, bytes, bytes]:
        if self._keyring is None or self._audit_key is None or self._fingerprint_key is None:
            raise KeyMissingError(f"{what} needs the master key: {HOW_TO_SUPPLY}")
        return self._keyring, self._audit_key, self._fingerprint_key

    def close(self) -> None:
        """Flush queued read events and release the storage connections."""
        if self._read_audit is not None:
            self._read_audit.close()
        self.cache.clear()
        self.storage.close()

    def __enter__(self) -> ConfigManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ cache plumbing

    def _check_foreign_changes(self) -> None:
        """Flush L1 if another connection committed since the last look (rate-limited)."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self._check_interval
        token = self.storage.change_token()
        if token != self._change_token:
            self._change_token = token
            self.cache.clear()
            self._principals.clear()

    def _entry(self, row: StoredEntry) -> Entry:
        if row.value_type is ValueType.SECRET:
            value: Any = ENCRYPTED_PLACEHOLDER
        elif row.stored_value is None:
            value = None
        else:
            value = orjson.loads(row.stored_value)
        return Entry(
            id=row.id,
            namespace=row.namespace,
            key=row.key,
            value=value,
            environment=row.environment,
            version=row.version,
            secret=row.value_type is ValueType.SECRET,
            metadata=Metadata(
                created_at=row.created_at,
                created_by=row.created_by,
                updated_at=row.updated_at,
                updated_by=row.updated_by,
                tags=row.tags,
                description=row.description,
            ),
        )

    def _current(self, namespace: str, key: str, env: Environment, *, looked: bool = False) -> Entry | None:
        """The live entry (unrevealed), from L1 or storage; `looked`: the caller already missed L1."""
        cache_key = (namespace, key, env)
        if not looked:
            self._check_foreign_changes()
            hit = self.cache.get(cache_key)
            if hit is not None:
                return hit
        if type(namespace) is not str or type(key) is not str:
            validate_namespace(namespace)
            validate_key(key)
        generation = self.cache.generation
        row = self.storage.get_current(namespace, key, env)
        if row is None or row.deleted:
            # names are checked only here: no row can exist under a name that breaks the grammar,
            # and a bad name must be a ValidationError rather than "not found"
            validate_namespace(namespace)
            validate_key(key)
            return None
        entry = self._entry(row)
        self.cache.put(cache_key, entry, _ENTRY_OVERHEAD + len(row.stored_value or ""), generation)
        return entry

    # ------------------------------------------------------------------ authorization

    def _authorize(
        self,
        principal: Principal | None,
        permission: str,
        namespace: str | None,
        env: Environment | None,
        *,
        key: str | None = None,
        source_ip: str | None = None,
        request_id: str | None = None,
    ) -> None:
        """Default deny (SPEC §8); a refusal is audited once as `access_denied`, then raised.

        `principal=None` is the local owner of the store (CLI, library): an admin.
        """
        if principal is None or rbac.allowed(principal, permission, namespace, env):
            return
        if namespace is None and env is None and permission in rbac.permissions_of(principal.role):
            return  # an unscoped operation (namespaces, audit list): the caller filters by scope
        where = f"{namespace or '*'}" + (f"/{key}" if key else "") + (f" [{env.value}]" if env else "")
        self._deny(
            principal, permission, namespace, env, key=key, source_ip=source_ip, request_id=request_id,
            message=f"Permission denied: {principal.actor} ({principal.role.value}) may not {permission} on {where}",
        )

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
        request_id: str | None = None,
    ) -> None:
        """The audited RBAC decision, for front ends guarding their own routes (bans, metrics).

        `require_unscoped`: the target is server-wide state, so only keys without namespace or
        environment limits pass.
        """
        if require_unscoped and principal is not None and not rbac.allowed(principal, permission, None, None):
            self._deny(principal, permission, None, None, key=None, source_ip=source_ip, request_id=request_id,
                       message=f"Permission denied: {principal.actor} ({principal.role.value}) may not "
                       f"{permission} (needs a key without namespace or environment limits)")
        self._authorize(principal, permission, namespace, env, key=key, source_ip=source_ip,
                        request_id=request_id)

    def cached_principal(self, token: str) -> Principal | None:
        """The principal of `token` if authenticated within `AUTH_CACHE_SECONDS` (no I/O), else None."""
        cached = self._principals.get(token)
        return cached[1] if cached is not None and cached[0] > time.monotonic() else None

    def _deny(
        self, principal: Principal, permission: str, namespace: str | None, env: Environment | None, *,
        key: str | None, source_ip: str | None, request_id: str | None, message: str,
    ) -> NoReturn:
        """Audit an `access_denied` event, then raise PermissionDeniedError with `message`."""
        if self._audit_key is not None:
            self.storage.append_audit(
                type="access_denied", actor=principal.actor, audit_key=self._audit_key, namespace=namespace,
                key=key, environment=env.value if env else None, outcome="denied", source_ip=source_ip,
                request_id=request_id, details={"permission": permission}, timestamp=self._now(),
            )
        raise PermissionDeniedError(message, namespace=namespace, key=key, environment=env.value if env else None)

    def peek(
        self, namespace: str, key: str, env: str | Environment, *, principal: Principal | None = None,
        source_ip: str | None = None, request_id: str | None = None,
    ) -> Entry | None:
        """The cached live entry if L1 holds it, else None; never touches storage.

        A principal without read access gets None, so the caller takes the slow path, which
        refuses and audits the attempt.
        """
        self._check_foreign_changes()
        environment = _ENV_FAST.get(env) or parse_environment(env)
        if principal is not None and not rbac.allowed(principal, "config:read", namespace, environment):
            return None
        hit = self.cache.get((namespace, key, environment))
        if hit is not None and self._read_audit is not None:
            self._record_read(hit, principal, None, source_ip, request_id)
        return hit

    def _record_read(
        self, entry: Entry, principal: Principal | None, actor: str | None, source_ip: str | None,
        request_id: str | None,
    ) -> None:
        assert self._read_audit is not None
        self._read_audit.record({
            "type": "config_accessed", "actor": principal.actor if principal else actor or self.actor,
            "namespace": entry.namespace, "key": entry.key, "environment": entry.environment.value,
            "old_version": entry.version, "source_ip": source_ip, "request_id": request_id,
            "timestamp": self._now(),
        })

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
        source_ip: str | None = None,
        request_id: str | None = None,
        principal: Principal | None = None,
    ) -> Entry:
        """One entry. `with_overrides`: the env's value, else base's. `reveal` decrypts (audited)."""
        environment = _ENV_FAST.get(env) or parse_environment(env)
        if principal is not None:
            self._authorize(principal, "config:read", namespace, environment, key=key, source_ip=source_ip,
                            request_id=request_id)
        if version is None and not reveal and not with_overrides:
            # the hot path: one change check and one dict lookup on a hit
            self._check_foreign_changes()
            hit = self.cache.get((namespace, key, environment))
            if hit is None:
                hit = self._current(namespace, key, environment, looked=True)
            if hit is not None:
                if self._read_audit is not None:
                    self._record_read(hit, principal, actor, source_ip, request_id)
                return hit
            raise NotFoundError(
                f"Config not found: {_where(namespace, key, environment)}",
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
                    f"Config not found: {_where(namespace, key, environment)}",
                    namespace=namespace, key=key, environment=environment.value,
                )
            entry = found
        if reveal and entry.secret:
            self._authorize(principal, "secret:read", namespace, environment, key=key, source_ip=source_ip,
                            request_id=request_id)
            who = principal.actor if principal is not None else actor
            entry = self._reveal(entry, version, actor=who, source_ip=source_ip, request_id=request_id)
        elif self._read_audit is not None:
            self._record_read(entry, principal, actor, source_ip, request_id)
        return entry

    def _get_version(self, namespace: str, key: str, env: Environment, version: int) -> Entry:
        validate_namespace(namespace)
        validate_key(key)
        check_version(version)
        row = self.storage.get_current(namespace, key, env)
        stored = self.storage.get_version(namespace, key, env, version) if row else None
        if row is None or stored is None:
            raise NotFoundError(f"Version {version} not found", namespace=namespace, key=key,
                                environment=env.value, version=version)
        if stored.deleted or stored.purged:
            what = "deleted" if stored.deleted else "purged"
            raise NotFoundError(
                f"Version {version} of {_where(namespace, key, env)} is {what}",
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
        )

    def _reveal(
        self, entry: Entry, version: int | None, *, actor: str | None, source_ip: str | None,
        request_id: str | None,
    ) -> Entry:
        """Decrypt a secret, appending `secret_accessed` to the audit trail first."""
        keyring, audit_key, _ = self._need_key("Revealing a secret")
        if version is None:
            row = self.storage.get_current(entry.namespace, entry.key, entry.environment)
            envelope = row.stored_value if row is not None and row.version == entry.version else None
        else:
            stored = self.storage.get_version(entry.namespace, entry.key, entry.environment, entry.version)
            envelope = stored.stored_value if stored is not None else None
        if envelope is None:  # changed under us: read the fresh current row
            fresh = self.storage.get_current(entry.namespace, entry.key, entry.environment)
            if fresh is None or fresh.deleted or fresh.value_type is not ValueType.SECRET:
                raise NotFoundError(f"Config not found: {_where(entry.namespace, entry.key, entry.environment)}")
            entry, envelope = self._entry(fresh), fresh.stored_value
            assert envelope is not None
        plaintext = keyring.open(envelope, _aad(entry.namespace, entry.key, entry.environment))
        self.storage.append_audit(
            type="secret_accessed",
            actor=actor or self.actor,
            audit_key=audit_key,
            namespace=entry.namespace,
            key=entry.key,
            environment=entry.environment.value,
            old_version=entry.version,
            source_ip=source_ip,
            request_id=request_id,
            timestamp=_rfc3339(self._clock()),
        )
        return Entry(
            id=entry.id, namespace=entry.namespace, key=entry.key, value=orjson.loads(plaintext),
            environment=entry.environment, version=entry.version, secret=True, metadata=entry.metadata,
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
        principal: Principal | None = None,
    ) -> builtins.list[Entry]:
        """Live entries of a namespace ordered by key (secrets unrevealed)."""
        return self.list_page(namespace, env=env, prefix=prefix, recursive=recursive, limit=limit,
                              cursor=cursor, principal=principal)[0]

    def list_page(
        self,
        namespace: str,
        *,
        env: str | Environment = Environment.DEVELOPMENT,
        prefix: str = "",
        recursive: bool = False,
        limit: int | None = None,
        cursor: str | None = None,
        principal: Principal | None = None,
        source_ip: str | None = None,
        request_id: str | None = None,
    ) -> tuple[builtins.list[Entry], str | None]:
        """A page of `list` and the cursor of the next page (None at the end)."""
        validate_namespace(namespace)
        environment = _env(env)
        self._authorize(principal, "config:list", namespace, environment, source_ip=source_ip,
                        request_id=request_id)
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
            next_cursor = f"{last.namespace}\x00{last.key}" if recursive else last.key
        return [self._entry(r) for r in rows], next_cursor

    def namespaces(
        self, prefix: str = "", *, principal: Principal | None = None, source_ip: str | None = None,
        request_id: str | None = None,
    ) -> builtins.list[str]:
        """Namespaces holding at least one live entry (only those the principal may list)."""
        self._authorize(principal, "config:list", None, None, source_ip=source_ip, request_id=request_id)
        found = self.storage.namespaces(prefix)
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
        principal: Principal | None = None,
        source_ip: str | None = None,
        request_id: str | None = None,
    ) -> builtins.list[HistoryItem]:
        """Every version newest first; secret values as "<encrypted>", tombstones as null."""
        environment = self._target(namespace, key, env)
        self._authorize(principal, "history:read", namespace, environment, key=key, source_ip=source_ip,
                        request_id=request_id)
        if limit is not None:
            check_version(limit, "limit")
        rows = self.storage.history(namespace, key, environment, limit)
        if not rows:
            raise NotFoundError(f"Config not found: {_where(namespace, key, environment)}",
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
        source_ip: str | None = None,
        request_id: str | None = None,
        principal: Principal | None = None,
    ) -> dict[str, Any]:
        """`{KEY: VALUE}` of the environment over base. Secrets are "<encrypted>" unless `reveal`."""
        validate_namespace(namespace)
        environment = _env(env)
        self._authorize(principal, "config:read", namespace, environment, source_ip=source_ip,
                        request_id=request_id)
        own = self._resolved_entries(namespace, environment)
        if reveal and any(e.secret for e in own.values()):
            self._authorize(principal, "secret:read", namespace, environment, source_ip=source_ip,
                            request_id=request_id)
            who = principal.actor if principal is not None else actor
            own = {
                k: self._reveal(e, None, actor=who, source_ip=source_ip, request_id=request_id)
                if e.secret else e
                for k, e in own.items()
            }
        flat = {k: e.value for k, e in own.items()}
        return nest(flat) if nested else flat

    def _resolved_entries(self, namespace: str, env: Environment) -> dict[str, Entry]:
        entries = {e.key: e for e in self.list(namespace, env=env)}
        if env is Environment.BASE:
            return entries
        base = {e.key: e for e in self.list(namespace, env=Environment.BASE)}
        return merge_with_base(base, entries)

    # ------------------------------------------------------------------ writes

    def _now(self) -> str:
        return _rfc3339(self._clock())

    def _target(self, namespace: str, key: str, env: str | Environment) -> Environment:
        """Validate the names of a write's target and parse its environment."""
        validate_namespace(namespace)
        validate_key(key)
        return _env(env)

    def _write_target(
        self, namespace: str, key: str, env: str | Environment, permission: str, principal: Principal | None,
        actor: str | None, source_ip: str | None, request_id: str | None,
    ) -> tuple[Environment, str | None]:
        """Validate and authorize a write's target; returns its environment and the actor to record."""
        environment = self._target(namespace, key, env)
        if principal is None:
            return environment, actor
        self._authorize(principal, permission, namespace, environment, key=key, source_ip=source_ip,
                        request_id=request_id)
        return environment, principal.actor

    def _request(
        self, kind: WriteKind, namespace: str, key: str, env: Environment, *, actor: str | None,
        source_ip: str | None, request_id: str | None, change_description: str, **fields: Any,
    ) -> WriteRequest:
        """A WriteRequest stamped with the actor (checked) and the time."""
        who = check_text(actor or self.actor, "actor", 200)
        return WriteRequest(
            kind=kind, namespace=namespace, key=key, environment=env, actor=who, timestamp=self._now(),
            change_description=change_description, source_ip=source_ip, request_id=request_id, **fields,
        )

    def _apply(self, writes: Sequence[WriteRequest]) -> builtins.list[StoredEntry]:
        _, audit_key, _ = self._need_key("Writing")
        try:
            results = self.storage.apply(writes, audit_key)
        finally:
            # after a write, and at once after a conflict (our cached copy may be stale)
            for w in writes:
                self.cache.invalidate((w.namespace, w.key, w.environment))
        return [r.entry for r in results]

    def _seal_value(
        self, namespace: str, key: str, env: Environment, value: Any, secret: bool
    ) -> tuple[ValueType, str, str]:
        keyring, _, fp_key = self._need_key("Writing")
        text = validate_value(value)
        fingerprint = audit.fingerprint(fp_key, text.encode())
        if secret:
            return ValueType.SECRET, keyring.seal(text.encode(), _aad(namespace, key, env)), fingerprint
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
        actor: str | None,
        source_ip: str | None,
        request_id: str | None,
    ) -> WriteRequest:
        refuse_plain_over_secret = secret is None  # checked again by storage under its write lock
        is_secret_now = current is not None and not current.deleted and current.value_type is ValueType.SECRET
        if secret is None:
            if is_secret_now:
                raise ValidationError(
                    f"{_where(namespace, key, env)} is a secret: pass --secret (secret=True) to update it, "
                    "or --no-secret (secret=False) to store it in plain text",
                    namespace=namespace, key=key, environment=env.value,
                )
            secret = False
        if description is not None:
            check_text(description, "description")
        tag_tuple = None
        if tags is not None:
            tag_tuple = tuple(tags)
            for tag in tag_tuple:
                if not check_text(tag, "tag", 100) or not tag.isprintable():
                    raise ValidationError("Invalid tag: 1-100 printable characters")
            if len(tag_tuple) > 50:
                raise ValidationError("Invalid tags: at most 50")
        if expected_version is not None:
            check_version(expected_version, "expected_version", allow_zero=True)
        value_type, stored, fingerprint = self._seal_value(namespace, key, env, value, secret)
        return self._request(
            WriteKind.SET, namespace, key, env, actor=actor, source_ip=source_ip, request_id=request_id,
            change_description=change_description, value_type=value_type, stored_value=stored,
            fingerprint=fingerprint, expected_version=expected_version, tags=tag_tuple, description=description,
            audit_details={"fingerprint": fingerprint}, refuse_plain_over_secret=refuse_plain_over_secret,
        )

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
        source_ip: str | None = None,
        request_id: str | None = None,
        principal: Principal | None = None,
    ) -> Entry:
        """Write a new version; `expected_version` makes it a compare-and-set (0: must not exist)."""
        environment, actor = self._write_target(
            namespace, key, env, "secret:create" if secret else "config:create", principal, actor, source_ip,
            request_id,
        )
        if message is not None:
            check_text(message, "message")
        request = self._set_request(  # storage enforces the secret rule on the row it locks
            namespace, key, value, environment, None, secret=secret, description=description,
            tags=tags, change_description=message or "", expected_version=expected_version, actor=actor,
            source_ip=source_ip, request_id=request_id,
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
        source_ip: str | None = None,
        request_id: str | None = None,
        principal: Principal | None = None,
    ) -> Entry:
        """Write a tombstone version; returns it (value None). Missing key → NotFoundError."""
        environment, actor = self._write_target(
            namespace, key, env, "config:delete", principal, actor, source_ip, request_id
        )
        if expected_version is not None:
            check_version(expected_version, "expected_version", allow_zero=True)
        request = self._request(
            WriteKind.DELETE, namespace, key, environment, actor=actor, source_ip=source_ip,
            request_id=request_id, change_description="Deleted", expected_version=expected_version,
        )
        return self._entry(self._apply([request])[0])

    def rollback(
        self,
        namespace: str,
        key: str,
        version: int,
        *,
        env: str | Environment = Environment.DEVELOPMENT,
        actor: str | None = None,
        source_ip: str | None = None,
        request_id: str | None = None,
        principal: Principal | None = None,
    ) -> Entry:
        """Write version max+1 holding version N's value (an undelete after a delete)."""
        environment, actor = self._write_target(
            namespace, key, env, "config:rollback", principal, actor, source_ip, request_id
        )
        request = self._request(
            WriteKind.ROLLBACK, namespace, key, environment, actor=actor, source_ip=source_ip,
            request_id=request_id, change_description=f"Rollback to version {version}",
            target_version=check_version(version), audit_details={"target_version": version},
        )
        return self._entry(self._apply([request])[0])

    def purge(
        self,
        namespace: str,
        key: str,
        version: int,
        *,
        env: str | Environment = Environment.DEVELOPMENT,
        actor: str | None = None,
        source_ip: str | None = None,
        request_id: str | None = None,
        principal: Principal | None = None,
    ) -> None:
        """Destroy one (non-current) version's value for good (admins only); history keeps a marker."""
        environment, actor = self._write_target(
            namespace, key, env, "system:delete", principal, actor, source_ip, request_id
        )
        self._apply([self._request(
            WriteKind.PURGE, namespace, key, environment, actor=actor, source_ip=source_ip,
            request_id=request_id, change_description=f"Purged version {version}",
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
        source_ip: str | None = None,
        request_id: str | None = None,
        principal: Principal | None = None,
    ) -> dict[str, Any]:
        """The SPEC §5 document of one environment's own entries (secrets only with `reveal`)."""
        validate_namespace(namespace)
        environment = _env(env)
        self._authorize(principal, "config:export", namespace, environment, source_ip=source_ip,
                        request_id=request_id)
        if reveal:
            self._authorize(principal, "secret:read", namespace, environment, source_ip=source_ip,
                            request_id=request_id)
        if principal is not None:
            actor = principal.actor
        entries = self.list(namespace, env=environment)
        doc: dict[str, Any] = {
            "namespace": namespace,
            "environment": environment.value,
            "values": {e.key: e.value for e in entries if not e.secret},
        }
        if reveal:
            doc["secrets"] = {
                e.key: self._reveal(e, None, actor=actor, source_ip=source_ip, request_id=request_id).value
                for e in entries if e.secret
            }
        return doc

    def export_text(
        self, namespace: str, *, env: str | Environment = Environment.DEVELOPMENT, fmt: str = "json",
        reveal: bool = False, actor: str | None = None, source_ip: str | None = None,
        request_id: str | None = None, principal: Principal | None = None,
    ) -> str:
        """`export` rendered as json, yaml or dotenv text."""
        if fmt not in ("json", "yaml", "dotenv"):
            raise ValidationError(f"Unknown export format {fmt!r}: use json, yaml or dotenv")
        doc = self.export(namespace, env=env, reveal=reveal, actor=actor, source_ip=source_ip, request_id=request_id,
                          principal=principal)
        return format_export(doc, fmt)

    def import_(
        self,
        namespace: str,
        document: str | dict[str, Any],
        *,
        env: str | Environment = Environment.DEVELOPMENT,
        fmt: str | None = None,
        prune: bool = False,
        dry_run: bool = False,
        actor: str | None = None,
        source_ip: str | None = None,
        request_id: str | None = None,
        principal: Principal | None = None,
    ) -> ImportPlan:
        """Upsert a document's keys all or nothing; unchanged values write nothing.

        `prune` deletes live keys the document lacks — secret keys only if it has a secrets section.
        """
        validate_namespace(namespace)
        environment = _env(env)
        self._authorize(principal, "config:import", namespace, environment, source_ip=source_ip,
                        request_id=request_id)
        text = document if isinstance(document, str) else orjson.dumps(document).decode()
        doc = parse_import(text, fmt)
        if doc.secrets:
            self._authorize(principal, "secret:create", namespace, environment, source_ip=source_ip,
                            request_id=request_id)
        if prune:
            self._authorize(principal, "config:delete", namespace, environment, source_ip=source_ip,
                            request_id=request_id)
        if principal is not None:
            actor = principal.actor
        _, _, fp_key = self._need_key("Importing")
        current = {
            row.key: row for row in self.storage.list_current(namespace, environment)
        }
        plan = ImportPlan(dry_run=dry_run)
        writes: builtins.list[WriteRequest] = []
        wanted: builtins.list[tuple[str, Any, bool]] = [(k, v, False) for k, v in doc.values.items()]
        wanted += [(k, v, True) for k, v in (doc.secrets or {}).items()]
        for key, value, secret in sorted(wanted):
            row = current.get(key)
            text_value = validate_value(value)
            if row is not None and (row.value_type is ValueType.SECRET) == secret \
                    and row.fingerprint == audit.fingerprint(fp_key, text_value.encode()):
                plan.unchanged.append(key)
                continue
            (plan.updated if row is not None else plan.created).append(key)
            writes.append(self._set_request(
                namespace, key, value, environment, row, secret=True if secret else None,
                description=None, tags=None, change_description="Imported",
                expected_version=row.version if row is not None else 0, actor=actor,
                source_ip=source_ip, request_id=request_id,
            ))
        if prune:
            keep = set(doc.values) | set(doc.secrets or {})
            for key, row in sorted(current.items()):
                if key in keep or (row.value_type is ValueType.SECRET and doc.secrets is None):
                    continue
                plan.deleted.append(key)
                writes.append(self._request(
                    WriteKind.DELETE, namespace, key, environment, actor=actor, source_ip=source_ip,
                    request_id=request_id, change_description="Deleted", expected_version=row.version,
                ))
        if writes and not dry_run:
            self._apply(writes)
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
        principal: Principal | None = None,
        source_ip: str | None = None,
        request_id: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns its record and the key itself, which is shown once and never stored.

        A key can only create keys of equal or narrower role and scope (SPEC §4).
        """
        _, audit_key, _ = self._need_key("Creating an API key")
        assert self._pepper is not None
        self._authorize(principal, "users:create", None, None, source_ip=source_ip, request_id=request_id)
        check_text(name, "key name", 100)
        if not name.strip() or not name.isprintable():
            raise ValidationError("Invalid key name: 1-100 printable characters")
        try:
            parsed_role = Role(role.lower() if isinstance(role, str) else role)
        except ValueError:
            raise ValidationError(f"Unknown role: {str(role)[:32]} (use admin, editor, viewer or auditor)") from None
        scope_ns = tuple(dict.fromkeys(validate_namespace(n) for n in namespaces))
        scope_env = tuple(dict.fromkeys(_env(e) for e in environments))
        if principal is not None and not rbac.is_narrower(principal, parsed_role, scope_ns, scope_env):
            self._deny(principal, "users:create", None, None, key=None, source_ip=source_ip, request_id=request_id,
                       message=f"Permission denied: {principal.actor} may only create keys of equal or narrower "
                       "role and scope")
        expires_at = None
        if expires_days is not None:
            if not 0 < expires_days <= 36500:
                raise ValidationError("Invalid expiry: days must be between 0 and 36500")
            expires_at = _rfc3339(self._clock() + expires_days * 86400)
        secret_key = generate_api_key()
        actor = principal.actor if principal is not None else self.actor
        record = ApiKey(
            id="key_" + uuid.uuid4().hex[:16], name=name, role=parsed_role, namespaces=scope_ns,
            environments=scope_env, key_hash=hash_api_key(self._pepper, secret_key), created_at=self._now(),
            created_by=actor, expires_at=expires_at, revoked_at=None,
        )
        self.storage.save_api_key(record, audit_key=audit_key, event={
            "type": "key_created", "actor": actor, "source_ip": source_ip, "request_id": request_id,
            "timestamp": record.created_at, "details": {"key_id": record.id, "name": name,
                                                        "role": parsed_role.value}})
        return record, secret_key

    def list_api_keys(
        self, *, principal: Principal | None = None, source_ip: str | None = None, request_id: str | None = None
    ) -> builtins.list[ApiKey]:
        """Every key (without secrets); a caller sees the keys it could have created itself."""
        self._authorize(principal, "users:list", None, None, source_ip=source_ip, request_id=request_id)
        keys = self.storage.list_api_keys()
        if principal is None:
            return keys
        return [k for k in keys if rbac.is_narrower(principal, k.role, k.namespaces, k.environments)]

    def revoke_api_key(
        self, key_id: str, *, principal: Principal | None = None, source_ip: str | None = None,
        request_id: str | None = None,
    ) -> ApiKey:
        """Revoke a key; effective on every process within `AUTH_CACHE_SECONDS`."""
        _, audit_key, _ = self._need_key("Revoking an API key")
        self._authorize(principal, "users:delete", None, None, source_ip=source_ip, request_id=request_id)
        record = self.storage.get_api_key(key_id) if isinstance(key_id, str) and len(key_id) < 100 else None
        if record is None or (
            principal is not None and not rbac.is_narrower(principal, record.role, record.namespaces,
                                                            record.environments)
        ):
            raise NotFoundError(f"API key not found: {str(key_id)[:40]}")
        if record.revoked_at is not None:
            return record
        actor = principal.actor if principal is not None else self.actor
        revoked = dataclasses.replace(record, revoked_at=self._now())
        self.storage.save_api_key(revoked, audit_key=audit_key, event={
            "type": "key_revoked", "actor": actor, "source_ip": source_ip, "request_id": request_id,
            "timestamp": revoked.revoked_at, "details": {"key_id": record.id, "name": record.name}})
        self._principals.clear()
        return revoked

    def has_api_keys(self) -> bool:
        """Whether any key (revoked ones included) was ever created."""
        return bool(self.storage.list_api_keys())

    def authenticate(
        self, token: str | None, *, source_ip: str | None = None, request_id: str | None = None
    ) -> Principal:
        """The principal of an API key; AuthenticationError (audited) for a missing or bad one.

        Lookups are cached for at most `AUTH_CACHE_SECONDS`, which bounds how long a revoked or
        expired key keeps working on a process that did not revoke it.
        """
        if self._pepper is None:
            raise KeyMissingError(f"Authentication needs the master key: {HOW_TO_SUPPLY}")
        if token:
            cached = self._principals.get(token)
            now = time.monotonic()
            if cached is not None and cached[0] > now:
                return cached[1]
            if looks_like_api_key(token):
                record = self.storage.get_api_key_by_hash(hash_api_key(self._pepper, token))
                if record is not None and record.revoked_at is None and (
                    record.expires_at is None or record.expires_at > self._now()
                ):
                    principal = Principal(actor=f"key:{record.name}", role=record.role,
                                          namespaces=record.namespaces, environments=record.environments,
                                          key_id=record.id)
                    if len(self._principals) > 10_000:
                        self._principals.clear()
                    self._principals[token] = (now + AUTH_CACHE_SECONDS, principal)
                    return principal
        reason = "missing" if not token else "invalid, expired or revoked"
        if self._audit_key is not None:
            self.storage.append_audit(
                type="auth_failed", actor="anonymous", audit_key=self._audit_key, outcome="failure",
                source_ip=source_ip, request_id=request_id, details={"reason": reason}, timestamp=self._now(),
            )
        raise AuthenticationError(f"API key {reason}")

    def ensure_initial_admin_key(self) -> str | None:
        """On a store that never had a key, create an unrestricted admin key and return it (once)."""
        if self.has_api_keys():
            return None
        return self.create_api_key("initial-admin", Role.ADMIN)[1]

    # ------------------------------------------------------------------ audit and health

    def audit_events(
        self, query: AuditQuery | None = None, *, principal: Principal | None = None,
        source_ip: str | None = None, request_id: str | None = None,
    ) -> builtins.list[AuditEvent]:
        """Audit events oldest first, filtered to the principal's namespaces (works without the key)."""
        query = query or AuditQuery()
        if query.namespace is not None:
            validate_namespace(query.namespace)
        self._authorize(principal, "audit_log:list", query.namespace, None, source_ip=source_ip,
                        request_id=request_id)
        if principal is None or not principal.namespaces:
            return self.storage.audit_events(query)
        # a namespace-limited caller sees only events inside its namespaces: page until full
        out: builtins.list[AuditEvent] = []
        after = query.after_seq
        while query.limit is None or len(out) < query.limit:
            page = self.storage.audit_events(dataclasses.replace(query, after_seq=after, limit=500))
            if not page:
                break
            out.extend(e for e in page if e.namespace is not None
                       and any(rbac.covers_namespace(p, e.namespace) for p in principal.namespaces))
            after = page[-1].seq
        return out if query.limit is None else out[: query.limit]

    def audit_verify(
        self, anchor: str | None = None, *, principal: Principal | None = None, source_ip: str | None = None,
        request_id: str | None = None,
    ) -> audit.VerifyReport:
        """Check the whole chain and the version references; `anchor` is `SEQ:MAC`."""
        self._authorize(principal, "audit_log:read", None, None, source_ip=source_ip, request_id=request_id)
        _, audit_key, _ = self._need_key("Verifying the audit trail")
        parsed = None
        if anchor is not None:
            try:
                parsed = audit.parse_anchor(anchor)
            except ValueError as exc:
                raise ValidationError(f"Invalid anchor: {exc}") from None
        report = audit.verify_chain(
            self.storage.audit_events(AuditQuery()), audit_key, anchor=parsed,
            version_refs=self.storage.version_audit_refs(),
        )
        if principal is not None and principal.namespaces and report.problems:
            # problem lines name keys of other namespaces: a scoped caller learns only that it failed
            report.problems = [f"{len(report.problems)} problem(s) found; ask an unrestricted auditor"]
        return report

    def audit_head(
        self, *, principal: Principal | None = None, source_ip: str | None = None, request_id: str | None = None
    ) -> str | None:
        """`SEQ:MAC` of the newest event, to keep outside the database."""
        self._authorize(principal, "audit_log:read", None, None, source_ip=source_ip, request_id=request_id)
        head = self.storage.audit_head()
        return f"{head[0]}:{head[1]}" if head else None

    def doctor(self, *, public: bool = False) -> dict[str, Any]:
        """Health of the store, the key and the audit chain, for `llm-config doctor` and `/health`.

        `public` (for the unauthenticated `/health`): no paths, no key origins, and no full chain
        verification, which reads every event.
        """
        checks: dict[str, dict[str, Any]] = {}
        head = None
        try:
            head = self.storage.audit_head()
            where = "reachable" if public else f"{self.storage.url} reachable"
            checks["storage"] = {"status": "healthy", "message": where}
        except Exception as exc:  # report, never raise: doctor is how users find out
            checks["storage"] = {"status": "unhealthy", "message": type(exc).__name__ if public else str(exc)}
        if self._keyring is None:
            checks["key"] = {"status": "degraded", "message": "no master key loaded: writes and secrets unavailable"
                             + ("" if public else f"; {HOW_TO_SUPPLY}")}
        elif public:
            checks["key"] = {"status": "healthy", "message": "master key loaded"}
        else:
            assert self._key_source is not None
            checks["key"] = {
                "status": "healthy",
                "message": f"keyring from {self._key_source.origin}; sealing key id {self._keyring.primary_id}",
                "key_ids": self._keyring.key_ids,
            }
            if checks["storage"]["status"] == "healthy":
                checks["key"]["ciphertexts_by_key_id"] = self._ciphertexts_by_key_id()
        checks["cache"] = {
            "status": "healthy",
            "message": f"L1 {len(self.cache)} entries, {self.cache.size_bytes} bytes, "
            f"{self.cache.stats.hits} hits, {self.cache.stats.misses} misses; L2 not configured",
        }
        events = head[0] if head else 0
        if self._audit_key is None:
            checks["audit"] = {"status": "degraded", "message": f"{events} events; appending needs the master key"}
        elif public or checks["storage"]["status"] != "healthy":
            checks["audit"] = {"status": "healthy", "message": f"{events} events; audit key loaded"}
        else:
            report = self.audit_verify()
            checks["audit"] = {
                "status": "healthy" if report.ok else "unhealthy",
                "message": f"{report.events} events, chain {'verifies' if report.ok else 'BROKEN'}",
                "problems": report.problems[:10],
            }
        statuses = {c["status"] for c in checks.values()}
        overall = "unhealthy" if "unhealthy" in statuses else "degraded" if "degraded" in statuses else "healthy"
        return {"status": overall, "checks": checks}

    def _ciphertexts_by_key_id(self) -> dict[str, int]:
        """How many ciphertexts each master key id still seals (SPEC §2: when an old key can go)."""
        counts: dict[str, int] = {}
        envelopes = self.storage.sealed_values()
        instance = self.storage.get_meta(_INSTANCE_SECRET)
        for envelope in [*envelopes, *([instance] if instance else [])]:
            kid = envelope_key_id(envelope) or "unknown"
            counts[kid] = counts.get(kid, 0) + 1
        return counts
