"""Protocols and type aliases shared across layers; `core` depends on these, not on drivers."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from llm_config.models import (
    ApiKey,
    AuditEvent,
    ChangeRow,
    Entry,
    Environment,
    HistoryItem,
    PendingEvent,
    ResealOutcome,
    SealedValue,
    StoredEntry,
    StoredVersion,
    UnreadableRow,
    ValueType,
    WriteRequest,
    WriteResult,
)

if TYPE_CHECKING:  # annotations only (`documents` is a sibling of this module's layer)
    from llm_config.documents import EnvDiff, Promotion

__all__ = [
    "AsyncConfigAPI",
    "AuditQuery",
    "Cipher",
    "Clock",
    "ConfigAPI",
    "ConfigReader",
    "ConfigWriter",
    "Fingerprinter",
    "JSONValue",
    "Storage",
]

JSONValue = Any
"""Any value SPEC §3 allows: str, int, float, bool, None, list, dict."""

Clock = Callable[[], float]
"""Returns seconds since the epoch (time.time-compatible); the fake clock of `testing` swaps it."""

Fingerprinter = Callable[[str, str, Environment, ValueType, "str | None"], "str | None"]
"""(namespace, key, environment, value type, stored value) → the value's place-bound fingerprint."""


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters for reading the audit trail; every field optional, results oldest first."""

    since: str | None = None  # RFC 3339, inclusive
    until: str | None = None  # RFC 3339, exclusive
    actor: str | None = None
    type: str | None = None
    namespace: str | None = None  # also matches sub-namespaces
    after_seq: int = 0  # keyset cursor
    limit: int | None = None


class Storage(Protocol):
    """A persistent store of entries, versions, API keys and the audit chain.

    Every method is safe to call from several threads. `apply` is the only way to change entries:
    all its writes and their audit events commit in one transaction, or none do. Once `set_row_key`
    has been called, every protected row read is checked against its keyed MAC and its latest audit
    event (`llm_config.integrity`), and a failing row raises `IntegrityError` instead of being served.
    """

    url: str
    """Where the store lives, with any password masked."""

    def set_row_key(self, key: bytes | None, epoch: str | None = None, audit_key: bytes | None = None) -> None:
        """Check rows on read with `key` from now on (None: rows cannot be checked: no master key); `epoch`
        and `audit_key` say which store epoch and audit key writes must belong to (others are refused)."""

    def rows_checked_with(self, key: bytes) -> AbstractContextManager[None]:
        """Within the block, this thread's `iter_*` check row MACs against `key` instead."""

    @property
    def verifying(self) -> bool:
        """Whether rows are checked on read."""

    def integrity_failures(self) -> list[str]:
        """Rows that failed their check in this process and still fail (for health)."""

    def integrity_pending(self) -> bool:
        """Whether this store predates row MACs and needs `migrate_integrity` once."""

    def migrate_integrity(self, event: PendingEvent, audit_key: bytes, fingerprint_of: Fingerprinter) -> int:
        """Compute every row's MAC once, bound to one `integrity_migrated` event; returns its seq."""

    def get_current(self, namespace: str, key: str, env: Environment) -> StoredEntry | None:
        """The current row of an entry (tombstones included), or None if it never existed."""

    def get_version(
        self, namespace: str, key: str, env: Environment, version: int
    ) -> StoredVersion | None:
        """One version row, or None."""

    def history(
        self, namespace: str, key: str, env: Environment, limit: int | None = None
    ) -> list[StoredVersion]:
        """Versions newest first."""

    def list_current(
        self,
        namespace: str,
        env: Environment,
        *,
        prefix: str = "",
        after_key: str | None = None,
        limit: int | None = None,
        recursive: bool = False,
        tombstones: bool = False,
    ) -> list[StoredEntry]:
        """Live (non-deleted) entries ordered by (namespace, key), keyset-paginated by key; with
        `tombstones`, deleted ones too.

        With `recursive`, sub-namespaces (`ns/...`) are included and `after_key` is
        `namespace + "~" + key` of the last row seen ('~' is in no name).
        """

    def subjects(self, prefix: str) -> list[str]:
        """Audit-event subjects starting with `prefix` (the protected rows the trail knows of)."""
        ...

    def namespaces(self, prefix: str = "") -> list[str]:
        """Sorted namespaces that hold at least one live entry."""

    def apply(self, writes: Sequence[WriteRequest], audit_key: bytes) -> list[WriteResult]:
        """Apply writes in one transaction with compare-and-set and one audit event each.

        Raises ConflictError (nothing changed) when an expected version does not match,
        NotFoundError for a delete/rollback/purge of a missing entry or version.
        """

    def append_audit(self, event: PendingEvent, audit_key: bytes) -> AuditEvent:
        """Append an event that changes no row (reveals, denials); durable on return."""

    def append_audit_many(self, events: Sequence[PendingEvent], audit_key: bytes) -> None:
        """Append several such events in one transaction."""

    def audit_events(self, query: AuditQuery) -> list[AuditEvent]:
        """Events matching the query, oldest first."""

    def audit_head(self) -> tuple[int, str] | None:
        """(seq, mac) of the newest event, or None for an empty chain."""

    def iter_entries(self) -> Iterator[tuple[StoredEntry, bool, bool] | UnreadableRow]:
        """Every entry row unchecked: (row, MAC holds?, fresh?), or UnreadableRow for one that cannot
        even be mapped."""

    def iter_versions(self) -> Iterator[tuple[str, str, str, StoredVersion, bool] | UnreadableRow]:
        """Every version row unchecked (namespace, key, environment, row, MAC holds?), by entry and version;
        UnreadableRow for one that cannot even be mapped."""

    def iter_api_keys(self) -> Iterator[tuple[ApiKey, bool, bool] | UnreadableRow]:
        """Every key row unchecked: (record, MAC holds?, fresh?), or UnreadableRow."""

    def create_api_key(self, record: ApiKey, event: PendingEvent, audit_key: bytes, *, now: str) -> AuditEvent:
        """Insert a key and its event atomically; a live key of the same name is a ConflictError."""

    def revoke_api_keys(
        self, key_id: str, revoked_at: str, event_for: Callable[[ApiKey, bool], PendingEvent], audit_key: bytes,
    ) -> list[ApiKey]:
        """Revoke a key and, transitively, the live keys it created; returns the newly revoked records."""

    def get_api_key(self, key_id: str) -> ApiKey | None:
        """A key record by id."""

    def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        """A key record by the peppered HMAC of the key."""

    def list_api_keys(self) -> list[ApiKey]:
        """Every key record, oldest first (revoked ones included)."""

    def sealed_values(self) -> list[str]:
        """Every stored ciphertext (each version's, and a current row's where it is not its version's copy),
        for counting ciphertexts per key id."""

    def export_rows(self) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """Every row of every table, raw (MACs as stored), parents first, from one read snapshot
        (backup, migrate); consume it in the thread that started it."""

    def import_rows(self, rows: Iterable[tuple[str, Sequence[Any]]], *, replace_all: bool,
                    settings: dict[str, str] | None = None, check: Callable[[], None] | None = None) -> dict[str, int]:
        """Load raw rows in one write transaction (with `replace_all`, after deleting everything);
        `settings` are written last, then `check()` runs inside the transaction (raising keeps nothing).
        Returns the count per table."""

    def is_empty(self) -> bool:
        """Whether the store holds no entry, API key or audit event."""

    def setup_lock(self) -> AbstractContextManager[None]:
        """The database's migration lock, held for one-time setup (the first admin key)."""

    @property
    def applied_migrations(self) -> list[int]:
        """Schema migrations applied when this store was opened."""

    def pending_migrations(self) -> list[int]:
        """Schema migrations this code knows that the store has not applied."""

    def get_meta(self, name: str) -> str | None:
        """A store-level setting (instance secret envelope, schema version …)."""

    def set_meta(self, name: str, value: str, *, only_if_absent: bool = False) -> bool:
        """Write a setting; with `only_if_absent`, keep an existing one and return False."""

    def change_token(self) -> object:
        """A value that changes when another connection commits (compared with `!=` only)."""

    def changes_since(self, revision: int, limit: int = 1000) -> tuple[list[tuple[str, str, Environment, int]], int]:
        """(namespace, key, environment, revision) of entries changed after `revision`, oldest first, at
        most `limit`; and the store's current revision."""

    def watch_since(self, revision: int, limit: int = 1000, *, namespace: str | None = None,
                    recursive: bool = False) -> tuple[list[ChangeRow], int]:
        """Changes (writes, deletes, rollbacks, purges) after `revision` in revision order, at most `limit`
        (only `namespace`'s, and its sub-namespaces' with `recursive`, if given); and the store's current
        revision, read first."""

    def sealed_row(self, row: StoredEntry) -> bytes | None:
        """`row` in its stored form with its row MAC, for a shared cache (None without the row key)."""

    def open_sealed_row(self, data: bytes, namespace: str, key: str, env: Environment) -> StoredEntry | None:
        """The entry `sealed_row` wrote if its row MAC holds and it belongs to this place, else None."""

    def snapshot(self) -> AbstractContextManager[None]:
        """Reads of this thread inside the block all see one committed state of the store (concurrent
        commits are not seen until it ends); for checks that read several tables, like `audit verify`."""

    # -- key rotation (core/rotation.py) --

    def sealed_versions(
        self, after: tuple[str, int] | None, limit: int
    ) -> tuple[list[SealedValue], tuple[str, int] | None]:
        """Up to `limit` sealed version rows after position `after` ((entry_id, version); None: from the
        start), in that order, and the position to continue after (None: no more)."""

    def reseal(self, changes: Sequence[tuple[SealedValue, str]], sealed_by: str,
               audit_key: bytes) -> list[ResealOutcome]:
        """Compare-and-set each row's envelope to the new one (and its entry's current row where it holds the
        same ciphertext) in one write transaction; MACs recomputed with their audit_seq kept; counts the
        ciphertexts written under `sealed_by`. One outcome per change."""

    def swap_meta(self, name: str, old: str | None, new: str, *, sealed_by: str | None = None) -> bool:
        """Compare-and-set a setting (`old` None: only if absent); `sealed_by` counts `new` as one ciphertext."""

    def seal_counts(self) -> dict[str, int]:
        """Ciphertexts written under each key id over the store's life."""

    def close(self) -> None:
        """Release connections; further calls raise StorageError."""


class Cipher(Protocol):
    """Seals and opens secret values (AES-256-GCM under a keyring)."""

    def seal(self, plaintext: bytes, aad: bytes) -> str:
        """Return the envelope JSON text of a fresh encryption."""

    def open(self, envelope: str, aad: bytes) -> bytes:
        """Return the plaintext, or raise SecretKeyError if no key opens it or it was altered."""


# The read/write surface the library (`ConfigManager`, and `ConfigManager.as_caller(...)`) and the remote SDK
# (`llm_config.Client`; `AsyncClient` for the async twin) share (SPEC §4b): parameter names and defaults
# are the manager's (tests/typing/test_protocols.py checks them); neither names `actor=` — the manager
# takes one, the SDK's actor is its API key's.


@runtime_checkable
class ConfigReader(Protocol):
    """The read surface shared by `ConfigManager` and the remote `Client`."""

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
        """One entry (the environment's value, or base's with `with_overrides`); `reveal` decrypts a secret."""
        ...

    def list(
        self, namespace: str, *, env: str | Environment = Environment.DEVELOPMENT, prefix: str = "",
        recursive: bool = False,
    ) -> builtins.list[Entry]:
        """Live entries of a namespace ordered by key (secrets unrevealed)."""
        ...

    def history(
        self, namespace: str, key: str, *, env: str | Environment = Environment.DEVELOPMENT,
        limit: int | None = None,
    ) -> builtins.list[HistoryItem]:
        """Every version newest first."""
        ...

    def resolve(
        self, namespace: str, *, env: str | Environment = Environment.DEVELOPMENT, nested: bool = False,
        reveal: bool = False,
    ) -> dict[str, Any]:
        """`{KEY: VALUE}` of the environment over base."""
        ...

    def namespaces(self, prefix: str = "") -> builtins.list[str]:
        """Namespaces holding at least one live entry (that the caller may list)."""
        ...

    def render(
        self, namespace: str, name: str, variables: Mapping[str, Any] | None = None, *,
        env: str | Environment = Environment.DEVELOPMENT, allow_extra: bool = False,
    ) -> str:
        """A prompt template rendered strictly (every variable supplied or defaulted; unknown ones refused
        unless `allow_extra`), its `{{ config:K }}` / `{{ secret:K }}` resolved with the caller's permissions."""
        ...

    def diff(self, namespace: str, *, from_env: str | Environment, to_env: str | Environment) -> EnvDiff:
        """Each environment's own entries compared (added, removed, changed, unchanged, not_compared keys)."""
        ...


@runtime_checkable
class ConfigWriter(Protocol):
    """The write surface shared by `ConfigManager` and the remote `Client`."""

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
        """Write a new version; `expected_version` makes it a compare-and-set (0: must not exist)."""
        ...

    def delete(
        self, namespace: str, key: str, *, env: str | Environment = Environment.DEVELOPMENT,
        expected_version: int | None = None,
    ) -> Entry:
        """Write a tombstone version and return it."""
        ...

    def rollback(
        self, namespace: str, key: str, version: int, *, env: str | Environment = Environment.DEVELOPMENT,
    ) -> Entry:
        """Write a new version holding version `version`'s value."""
        ...

    def promote(
        self, namespace: str, *, from_env: str | Environment, to_env: str | Environment,
        keys: Sequence[str] | None = None, prune: bool = False, dry_run: bool = False,
        plan: Promotion | None = None, secret: bool | None = None,
    ) -> Promotion:
        """Copy the source environment's own entries (or `keys`) to the target in one transaction of
        compare-and-set writes (`prune`: delete target keys the source lacks); `dry_run` returns the plan,
        which passed back as `plan` is applied only if nothing moved since (else ConflictError)."""
        ...


@runtime_checkable
class ConfigAPI(ConfigReader, ConfigWriter, Protocol):
    """The whole shared surface: `ConfigManager`, a `Caller` view of it, and `llm_config.Client`."""


@runtime_checkable
class AsyncConfigAPI(Protocol):
    """`ConfigAPI` with every method a coroutine: what `llm_config.AsyncClient` offers."""

    async def get(
        self,
        namespace: str,
        key: str,
        *,
        env: str | Environment = Environment.DEVELOPMENT,
        version: int | None = None,
        with_overrides: bool = False,
        reveal: bool = False,
    ) -> Entry:
        """`ConfigReader.get`."""
        ...

    async def list(
        self, namespace: str, *, env: str | Environment = Environment.DEVELOPMENT, prefix: str = "",
        recursive: bool = False,
    ) -> builtins.list[Entry]:
        """`ConfigReader.list`."""
        ...

    async def history(
        self, namespace: str, key: str, *, env: str | Environment = Environment.DEVELOPMENT,
        limit: int | None = None,
    ) -> builtins.list[HistoryItem]:
        """`ConfigReader.history`."""
        ...

    async def resolve(
        self, namespace: str, *, env: str | Environment = Environment.DEVELOPMENT, nested: bool = False,
        reveal: bool = False,
    ) -> dict[str, Any]:
        """`ConfigReader.resolve`."""
        ...

    async def namespaces(self, prefix: str = "") -> builtins.list[str]:
        """`ConfigReader.namespaces`."""
        ...

    async def render(
        self, namespace: str, name: str, variables: Mapping[str, Any] | None = None, *,
        env: str | Environment = Environment.DEVELOPMENT, allow_extra: bool = False,
    ) -> str:
        """`ConfigReader.render`."""
        ...

    async def diff(self, namespace: str, *, from_env: str | Environment, to_env: str | Environment) -> EnvDiff:
        """`ConfigReader.diff`."""
        ...

    async def set(
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
        """`ConfigWriter.set`."""
        ...

    async def delete(
        self, namespace: str, key: str, *, env: str | Environment = Environment.DEVELOPMENT,
        expected_version: int | None = None,
    ) -> Entry:
        """`ConfigWriter.delete`."""
        ...

    async def rollback(
        self, namespace: str, key: str, version: int, *, env: str | Environment = Environment.DEVELOPMENT,
    ) -> Entry:
        """`ConfigWriter.rollback`."""
        ...

    async def promote(
        self, namespace: str, *, from_env: str | Environment, to_env: str | Environment,
        keys: Sequence[str] | None = None, prune: bool = False, dry_run: bool = False,
        plan: Promotion | None = None, secret: bool | None = None,
    ) -> Promotion:
        """`ConfigWriter.promote`."""
        ...
