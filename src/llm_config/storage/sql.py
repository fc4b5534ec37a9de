"""The SQL storage core: every query and every write of the `Storage` Protocol once, over a `Dialect`.

Owns: the statements (written once with `?` placeholders and `"key"` quoted, translated per dialect);
the row mappers; the row-MAC checks of SPEC §2 on every read (`llm_config.integrity`); the write
transaction — compare-and-set, version rows, current rows, the watch revision counter (meta row
`revision`) and the audit-chain append, all in one transaction under the dialect's write lock
(ARCHITECTURE decisions 3, 6, 7) — and **group commit**: write transactions that arrive together in one
process share one database transaction and one fsync, each under its own savepoint with its own checks,
events and outcome, none acknowledged before the batch commits.

A `Dialect` holds only what differs between SQLite, PostgreSQL and MySQL: connections (and pooling),
placeholders, upsert spelling, how a write transaction takes the lock, how a read snapshot starts, change
detection, what happens after a purge, and which driver errors mean "unreachable".

Never: sees a plaintext secret (secret values arrive sealed and leave sealed), serves a row whose MAC
fails, builds SQL from input (statements are static; list/audit queries only combine fixed fragments),
or puts a stored value, a request value or a ciphertext into an error message or a log line.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Final, TypeVar

import orjson

from llm_config.audit import FINGERPRINT_SCHEME, GENESIS_MAC, event_mac, write_event_type
from llm_config.errors import (
    AuditError,
    AuthenticationError,
    ConflictError,
    IntegrityError,
    LLMConfigError,
    NotFoundError,
    StorageError,
    StorageUnavailableError,
    ValidationError,
)
from llm_config.integrity import (
    MIGRATION_SUBJECT,
    RowMacs,
    entry_subject,
    entry_subject_sql,
    is_fresh,
    key_subject,
)
from llm_config.models import (
    ApiKey,
    AuditEvent,
    ChangeRow,
    Environment,
    PendingEvent,
    ResealOutcome,
    Role,
    SealedValue,
    StoredEntry,
    StoredVersion,
    UnreadableRow,
    ValueType,
    WriteKind,
    WriteRequest,
    WriteResult,
)
from llm_config.names import RESERVED, validate_namespace, validate_stored_key
from llm_config.storage.migrate import Dialect as MigrationDialect
from llm_config.storage.migrate import migration_lock
from llm_config.times import utc_now
from llm_config.types import AuditQuery, Fingerprinter
from llm_config.writes import FOR_ROLLBACK, check_expected, check_plain_over_secret, check_purge, check_target, where

__all__ = ["MAX_BATCH", "ROW_COLUMNS", "ROW_TABLES", "WATCH_FLOOR", "Dialect", "SQLStorage", "new_id", "open_dialect"]

log = logging.getLogger("llm_config.storage")

MAX_BATCH: Final = 64
"""Most write transactions one group commit takes (the rest wait for the next batch)."""
PAGE: Final = 1000
"""Rows per page when iterating a whole table (keyset pages, so a large store never sits in memory)."""

_ENVS: Final = {env.value: env for env in Environment}
_VTYPES: Final = {vt.value: vt for vt in ValueType}
# Binding a str-enum makes sqlite3 look for an adapter first (~0.5 us); bind the plain text instead.
_ENV_TEXT: Final[dict[Any, str]] = {env: env.value for env in Environment}

# Column lists in MAC order (integrity.row_mac covers exactly these values, in this order). "key" is
# quoted everywhere: it is a reserved word in MySQL (whose sessions run with ANSI_QUOTES).
_ENTRY_COLS: Final = (
    'id, namespace, "key", environment, version, deleted, value_type, stored_value, fingerprint, '
    "created_at, created_by, updated_at, updated_by, tags, description, revision, audit_seq, purged"
)


def _aliased(columns: str, alias: str) -> str:
    """`columns` with every name prefixed by `alias.`."""
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


_E_ENTRY_COLS: Final = _aliased(_ENTRY_COLS, "e")
_N_ENTRY: Final = 18
_VERSION_COLS: Final = (
    "entry_id, version, deleted, purged, value_type, stored_value, fingerprint, "
    "created_at, created_by, change_description, audit_seq, revision"
)
_V_VERSION_COLS: Final = _aliased(_VERSION_COLS, "v")
_N_VERSION: Final = 12
_API_KEY_COLS: Final = (
    "id, name, role, namespaces, environments, key_hash, created_at, created_by, expires_at, revoked_at, "
    "parent_id, audit_seq"
)
_K_API_KEY_COLS: Final = _aliased(_API_KEY_COLS, "k")
_N_API_KEY: Final = 12
_AUDIT_COLS: Final = (
    'seq, id, timestamp, type, actor, namespace, "key", environment, old_version, new_version, '
    "outcome, source_ip, request_id, details, prev_mac, mac, subject"
)

ROW_COLUMNS: Final = {
    "meta": "name, value",
    "entries": _ENTRY_COLS + ", mac",
    "versions": _VERSION_COLS + ", mac",
    "api_keys": _API_KEY_COLS + ", mac",
    "audit_events": _AUDIT_COLS,
}
"""The columns of every table, as backups carry them (a backup row is these values in this order)."""
ROW_TABLES: Final = tuple(ROW_COLUMNS)
"""Tables in the order a backup holds and a restore loads them (parents before children)."""
_CHANGE_KIND: Final = {WriteKind.SET: "set", WriteKind.DELETE: "delete", WriteKind.ROLLBACK: "rollback",
                       WriteKind.PURGE: "purge"}
"""The watch stream's name for each kind of write."""
WATCH_FLOOR: Final = "watch_floor"
"""Meta row: the revision the change feed starts after (a restore or a load starts it again)."""

_FIRST_KEYS: Final = {"meta": ("",), "entries": ("",), "versions": ("", -1), "api_keys": ("",),
                      "audit_events": (-1,)}

# The newest event about a row's subject, next to the row (integrity.is_fresh).
_E_KEY: Final = 'e."key"'
_ENTRY_HEAD: Final = (
    "(SELECT MAX(a.seq) FROM audit_events a "
    f"WHERE a.subject = {entry_subject_sql('e.namespace', _E_KEY, 'e.environment')})"
)
_KEY_HEAD: Final = "(SELECT MAX(a.seq) FROM audit_events a WHERE a.subject = 'k:' || k.id)"
_SUBTREE: Final = "(namespace = ? OR (namespace > ? AND namespace < ?))"
_PENDING: Final = "integrity_pending"
_EPOCH: Final = "epoch"
_PENDING_REMEDY: Final = (
    "open it once with the master key where its directory can be written; 'llm-config doctor' says why that failed"
)


class Dialect:
    """What one database does differently. Subclasses set the class attributes and implement the
    connection methods; the core never imports a driver."""

    name: ClassVar[str]
    paramstyle: ClassVar[str] = "qmark"  # or "format" (%s)
    errors: tuple[type[BaseException], ...] = ()
    """The driver's exception classes (mapped to StorageError by `storage_error`)."""
    begin_write: ClassVar[tuple[str, ...]]
    """Statements opening a write transaction that holds the store's write lock (which also guards the
    audit-chain head); the last one, if it selects, returns the revision counter."""
    begin_snapshot: ClassVar[tuple[str, ...]]
    """Statements opening a read-only transaction that sees one committed state."""
    migrations: ClassVar[MigrationDialect]
    """How the migration runner speaks to this database (its lock is also `SQLStorage.setup_lock`'s)."""
    lock_returns_revision: ClassVar[bool] = False
    change_poll_seconds: ClassVar[float | None] = 0.1
    """How often a background thread should look for other processes' commits (None: `change_token`
    is a local call cheap enough for the request path — SQLite's)."""

    def __init__(self, url: str) -> None:
        self.url = url  # masked
        self.applied: list[int] = []  # migrations this open applied

    def open(self, *, upgrade: bool = True) -> None:
        """Connect, apply pending migrations (unless not `upgrade`: then they are a StorageError)."""
        raise NotImplementedError

    # -- statements that differ --------------------------------------------------------------------

    def upsert(self, table: str, columns: Sequence[str], key: str) -> str:
        cols = ", ".join(columns)
        marks = ", ".join("?" * len(columns))
        sets = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
        return f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({key}) DO UPDATE SET {sets}"

    def insert_ignore(self, table: str, columns: Sequence[str], key: str) -> str:
        cols = ", ".join(columns)
        marks = ", ".join("?" * len(columns))
        return f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT ({key}) DO NOTHING"

    # -- connections ---------------------------------------------------------------------------------

    def read_one(self, sql: str, params: Sequence[Any]) -> Any:
        """One row of a read outside any transaction (the hot path: backends make it cheap)."""
        with self.hold() as cur:
            cur.execute(sql, params)
            return cur.fetchone()

    def read_all(self, sql: str, params: Sequence[Any]) -> list[Any]:
        with self.hold() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def hold(self) -> contextlib.AbstractContextManager[Any]:
        """A cursor on one connection, kept for the block (transactions and snapshots run in one)."""
        raise NotImplementedError

    def pipeline(self, cur: Any) -> contextlib.AbstractContextManager[Callable[[], None]]:
        """Held around a write transaction on `cur`: statements whose results are not read may be sent
        together with the next one that is (PostgreSQL's pipeline mode). Yields `flush`: send everything
        queued and raise the first error among it (called after COMMIT, before anything is acknowledged)."""
        return contextlib.nullcontext(lambda: None)

    def write_guard(self) -> contextlib.AbstractContextManager[object]:
        """Held around a write transaction (SQLite: a file lock that writers of other processes wait on)."""
        return contextlib.nullcontext()

    def after_purge(self) -> None:
        """Make a purged value's old copies go away where the database allows (checkpoint, vacuum)."""

    def aborts_transaction(self, exc: BaseException) -> bool:
        """Whether `exc` rolled the whole transaction back, savepoints and all (InnoDB's deadlock victim):
        then no ticket of the batch may be acknowledged, and none may go on in a new transaction."""
        return False

    def change_token(self) -> object:
        """A value that changes when any connection commits a write: the audit chain's length (every write
        transaction appends to it) and the store epoch (a restore may leave the length where it was).
        SQLite has a cheaper one."""
        row = self.read_one("SELECT (SELECT MAX(seq) FROM audit_events), (SELECT value FROM meta WHERE name = "
                            "'epoch')", ())
        return (int(row[0] or 0), row[1])

    def pending_migrations(self) -> list[int]:
        raise NotImplementedError

    def storage_error(self, operation: str, exc: BaseException) -> StorageError:
        """The error to raise for a driver error (the text names tables and conditions, never values)."""
        return StorageError(f"Storage failed while {operation}: {exc}")

    # -- a server dialect's connection pool (SQLite has none and overrides these) -----------------------

    _pool: Any = None

    def _need_pool(self) -> Any:
        if self._pool is None:
            raise StorageError("Storage is closed")
        return self._pool

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def open_dialect(dialect: Dialect, *, upgrade: bool = True) -> SQLStorage:
    """Open a server dialect (connect, migrate unless not `upgrade`, start its pool) as a storage."""
    dialect.open(upgrade=upgrade)
    return SQLStorage(dialect)


def new_id() -> str:
    """A random UUID (version 4), without importing `uuid` on every command's start (~2 ms)."""
    h = bytearray(os.urandom(16))
    h[6] = (h[6] & 0x0F) | 0x40
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def _successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no bound)."""
    while prefix:
        last = ord(prefix[-1])
        if last < 0x10FFFF:
            return prefix[:-1] + chr(last + 1)
        prefix = prefix[:-1]
    return None


def _subtree(namespace: str) -> tuple[str, str, str]:
    # '0' is the character after '/', so (ns/, ns0) holds exactly the names starting with "ns/".
    return (namespace, namespace + "/", namespace + "0")


def _encode_tags(tags: Sequence[str]) -> str:
    return orjson.dumps(list(tags)).decode() if tags else "[]"


def _encode_ints(numbers: Sequence[int]) -> str:
    return orjson.dumps(list(numbers)).decode() if numbers else "[]"


# -- row mappers: database tuples in MAC order <-> domain records ------------------------------------

# What mapping a row raises when a column holds a value llm-config never writes (orjson's decode
# error is a ValueError): such a row was changed outside llm-config.
_UNMAPPABLE: Final = (KeyError, ValueError, TypeError, IndexError)
_T = TypeVar("_T")


def _label(table: str, values: Sequence[Any]) -> str:
    """How messages name a raw row of `table` (`values` in MAC order; versions with their entry's name
    in front), whatever its columns hold."""
    if table == "entries":
        return f"entry {where(values[1], values[2], values[3])}"
    if table == "versions":
        return f"version {values[4]} of {where(values[0], values[1], values[2])}"
    return f"API key {values[0]}"


def entry_from_row(v: Sequence[Any]) -> StoredEntry:
    tags, purged = v[13], v[17]
    return StoredEntry(
        v[0], v[1], v[2], _ENVS[v[3]], v[4], v[5] == 1, _VTYPES[v[6]], v[7], v[8], v[9], v[10], v[11], v[12],
        () if tags == "[]" else tuple(orjson.loads(tags)), v[14], v[15],
        () if purged == "[]" else tuple(orjson.loads(purged)), v[16],
    )


def _entry_values(e: StoredEntry, audit_seq: int) -> tuple[Any, ...]:
    return (
        e.id, e.namespace, e.key, e.environment.value, e.version, int(e.deleted), e.value_type.value,
        e.stored_value, e.fingerprint, e.created_at, e.created_by, e.updated_at, e.updated_by,
        _encode_tags(e.tags), e.description, e.revision, audit_seq, _encode_ints(e.purged_versions),
    )


def _version(v: Sequence[Any]) -> StoredVersion:
    return StoredVersion(v[0], v[1], v[2] == 1, v[3] == 1, _VTYPES[v[4]], v[5], v[6], v[7], v[8], v[9], v[10], v[11])


def _version_values(v: StoredVersion) -> tuple[Any, ...]:
    return (
        v.entry_id, v.version, int(v.deleted), int(v.purged), v.value_type.value, v.stored_value, v.fingerprint,
        v.created_at, v.created_by, v.change_description, v.audit_seq, v.revision,
    )


def _version_mac_input(entry: StoredEntry, values: Sequence[Any]) -> tuple[Any, ...]:
    # a version row is bound to the entry it belongs to by name, not just by entry_id
    return (entry.namespace, entry.key, entry.environment.value, *values)


def _api_key(v: Sequence[Any]) -> ApiKey:
    return ApiKey(
        id=v[0], name=v[1], role=Role(v[2]), namespaces=tuple(orjson.loads(v[3])),
        environments=tuple(Environment(e) for e in orjson.loads(v[4])), key_hash=v[5],
        created_at=v[6], created_by=v[7], expires_at=v[8], revoked_at=v[9], parent_id=v[10],
    )


def _api_key_values(k: ApiKey, audit_seq: int) -> tuple[Any, ...]:
    return (
        k.id, k.name, k.role.value, orjson.dumps(list(k.namespaces)).decode(),
        orjson.dumps([e.value for e in k.environments]).decode(), k.key_hash, k.created_at, k.created_by,
        k.expires_at, k.revoked_at, k.parent_id, audit_seq,
    )


def _event(row: Sequence[Any]) -> AuditEvent:
    return AuditEvent(
        row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10], row[11],
        row[12], orjson.loads(row[13]), row[14], row[15], row[16],
    )


def _one(cur: Any, sql: str, params: Sequence[Any] = ()) -> Any:
    cur.execute(sql, params)
    return cur.fetchone()


def _all(cur: Any, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    cur.execute(sql, params)
    return list(cur.fetchall())


class _Statements:
    """The fixed statements, in the dialect's placeholder style."""

    def __init__(self, d: Dialect) -> None:
        q = d.paramstyle != "qmark"

        def s(sql: str) -> str:
            return sql.replace("?", "%s") if q else sql

        self.p = s
        entry_cols = [c.strip() for c in _ENTRY_COLS.split(",")]
        key_cols = [c.strip() for c in _API_KEY_COLS.split(",")]
        # Always one row: (head, entry columns or NULLs, mac) — a missing entry whose subject has
        # events is a deleted row, told apart from one that never existed.
        self.get_current = s(
            f"SELECT (SELECT MAX(seq) FROM audit_events WHERE subject = ?), {_E_ENTRY_COLS}, e.mac "
            'FROM (SELECT 1 AS one) one LEFT JOIN entries e ON e.namespace = ? AND e.environment = ? AND e."key" = ?'
        )
        self.insert_entry = s(f"INSERT INTO entries ({_ENTRY_COLS}, mac) VALUES ({', '.join('?' * (_N_ENTRY + 1))})")
        self.update_entry = s(
            "UPDATE entries SET " + ", ".join(f"{c} = ?" for c in entry_cols[1:]) + ", mac = ? WHERE id = ?"
        )
        self.insert_version = s(
            f"INSERT INTO versions ({_VERSION_COLS}, mac) VALUES ({', '.join('?' * (_N_VERSION + 1))})"
        )
        self.versions_of = s(f"SELECT {_VERSION_COLS}, mac FROM versions WHERE entry_id = ? ORDER BY version DESC")
        self.versions_of_limit = s(
            f"SELECT {_VERSION_COLS}, mac FROM versions WHERE entry_id = ? ORDER BY version DESC LIMIT ?"
        )
        self.version_of = s(f"SELECT {_VERSION_COLS}, mac FROM versions WHERE entry_id = ? AND version = ?")
        self.purge_version = s(
            "UPDATE versions SET purged = 1, stored_value = NULL, value_type = 'none', fingerprint = NULL, mac = ? "
            "WHERE entry_id = ? AND version = ?"
        )
        self.entries_page = s(
            f"SELECT {_ENTRY_HEAD}, {_E_ENTRY_COLS}, e.mac FROM entries e "
            'WHERE (e.namespace, e."key", e.environment) > (?, ?, ?) '
            'ORDER BY e.namespace, e."key", e.environment LIMIT ?'
        )
        self.versions_page = s(
            f'SELECT e.namespace, e."key", e.environment, {_V_VERSION_COLS}, v.mac '
            "FROM versions v JOIN entries e ON e.id = v.entry_id "
            'WHERE (e.namespace, e."key", e.environment, v.version) > (?, ?, ?, ?) '
            'ORDER BY e.namespace, e."key", e.environment, v.version LIMIT ?'
        )
        self.upsert_api_key = s(d.upsert("api_keys", [*key_cols, "mac"], "id"))
        api_keys = f"SELECT {_KEY_HEAD}, {_K_API_KEY_COLS}, k.mac FROM api_keys k"
        self.api_key_by_id = s(api_keys + " WHERE k.id = ?")
        self.api_key_by_hash = s(api_keys + " WHERE k.key_hash = ?")
        self.api_keys_ordered = s(api_keys + " ORDER BY k.created_at, k.id")
        self.api_key_children = s(api_keys + " WHERE k.parent_id = ?")
        self.live_name = s(
            "SELECT 1 FROM api_keys WHERE name = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?) "
            "LIMIT 1"
        )
        # every stored ciphertext: the versions', and a current row's only where it is not its version's copy
        self.sealed_values = s(
            "SELECT stored_value FROM versions WHERE value_type = 'secret' AND stored_value IS NOT NULL "
            "UNION ALL SELECT e.stored_value FROM entries e WHERE e.value_type = 'secret' AND e.stored_value IS NOT "
            "NULL AND NOT EXISTS (SELECT 1 FROM versions v WHERE v.entry_id = e.id AND v.version = e.version AND "
            "v.stored_value = e.stored_value)"
        )
        self.audit_head = "SELECT seq, mac FROM audit_events ORDER BY seq DESC LIMIT 1"
        self.changes_since = s(
            'SELECT namespace, "key", environment, revision FROM entries WHERE revision > ? ORDER BY revision LIMIT ?'
        )
        # the watch stream's feed: one row per write, keyed by its revision, in the write's transaction; read
        # in one statement (one snapshot); a namespace's own rows through (namespace, revision)
        self.insert_change = s(
            'INSERT INTO changes (revision, namespace, "key", environment, version, kind) VALUES (?, ?, ?, ?, ?, ?)'
        )
        _change_columns = 'SELECT revision, namespace, "key", environment, version, kind FROM changes '
        self.watch_all = s(_change_columns + "WHERE revision > ? ORDER BY revision LIMIT ?")
        self.watch_namespace = s(_change_columns + "WHERE namespace = ? AND revision > ? ORDER BY revision LIMIT ?")
        # a namespace and its sub-namespaces: 'ns' itself, or 'ns/' <= namespace < 'ns0' ('0' follows '/')
        self.watch_tree = s(_change_columns + "WHERE (namespace = ? OR (namespace >= ? AND namespace < ?)) "
                            "AND revision > ? ORDER BY revision LIMIT ?")
        self.delete_changes = "DELETE FROM changes"
        # what a write batch needs after taking the lock, in one round trip: the chain head, and whether
        # the store still waits for its one-time row-MAC migration
        self.batch_head = s(
            "SELECT a.seq, a.mac, (SELECT COUNT(*) FROM meta WHERE name = ?), (SELECT value FROM meta WHERE name = ?) "
            "FROM (SELECT 1 AS one) one LEFT JOIN (SELECT seq, mac FROM audit_events ORDER BY seq DESC LIMIT 1) a "
            "ON 1 = 1"
        )
        self.insert_audit = s(f"INSERT INTO audit_events ({_AUDIT_COLS}) VALUES ({', '.join('?' * 17)})")
        self.subject_head = s("SELECT MAX(seq) FROM audit_events WHERE subject = ?")
        self.any_subject = "SELECT 1 FROM audit_events WHERE subject IS NOT NULL LIMIT 1"
        self.get_meta = s("SELECT value FROM meta WHERE name = ?")
        self.set_meta = s(d.upsert("meta", ["name", "value"], "name"))
        self.add_meta = s(d.insert_ignore("meta", ["name", "value"], "name"))
        self.delete_meta = s("DELETE FROM meta WHERE name = ?")
        self.fix_version = s("UPDATE versions SET fingerprint = ?, mac = ? WHERE entry_id = ? AND version = ?")
        # raw rows of every table, for backup / restore / migrate (ROW_TABLES order: parents first)
        self.raw_pages = {
            "meta": (s("SELECT name, value FROM meta WHERE name > ? ORDER BY name LIMIT ?"), 1),
            "entries": (s(f"SELECT {_ENTRY_COLS}, mac FROM entries WHERE id > ? ORDER BY id LIMIT ?"), 1),
            "versions": (s(f"SELECT {_VERSION_COLS}, mac FROM versions WHERE (entry_id, version) > (?, ?) "
                           "ORDER BY entry_id, version LIMIT ?"), 2),
            "api_keys": (s(f"SELECT {_API_KEY_COLS}, mac FROM api_keys WHERE id > ? ORDER BY id LIMIT ?"), 1),
            "audit_events": (s(f"SELECT {_AUDIT_COLS} FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?"), 1),
        }
        self.raw_insert = {
            table: s(f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(cols.split(',')))})")
            for table, cols in ROW_COLUMNS.items()
        }


@dataclass(slots=True)
class _Head:
    """The audit-chain head and the revision counter, read once per batch under the write lock."""

    seq: int
    mac: str
    revision: int
    epoch: str | None = None
    seals: dict[str, int] = field(default_factory=dict)  # ciphertexts the batch writes per key id (replaced,
    # never mutated: a ticket's savepoint rollback restores the dict it started with)


class _Ticket:
    """One write transaction waiting for (or led into) a group commit."""

    __slots__ = ("audit", "body", "done", "error", "lead", "operation", "result", "rows", "signed_with")

    def __init__(self, operation: str, body: Callable[[Any, _Head], Any], audit: bool, rows: bool,
                 signed_with: bytes | None) -> None:
        self.operation = operation
        self.body = body
        self.audit = audit
        self.rows = rows
        self.signed_with = signed_with  # the audit key it signs with: must be the current epoch's
        self.done = threading.Event()
        self.lead = False
        self.result: Any = None
        self.error: BaseException | None = None


class SQLStorage:
    """`Storage` over one SQL database through a `Dialect`; safe to share between threads."""

    def __init__(self, dialect: Dialect, *, read_only: bool = False) -> None:
        self._d = dialect
        self.dialect: str = dialect.name
        self.url = dialect.url
        self.read_only = read_only
        self._s = _Statements(dialect)
        self._tl = threading.local()  # .cur: this thread's cursor inside a snapshot or write transaction
        self._macs: RowMacs | None = None
        self._key_epoch: str | None = None
        self._audit_key: bytes | None = None
        self._migrated_seq: int | None = None
        self._migrated_known = False
        self._failures: dict[tuple[Any, ...], str] = {}
        self._gc_lock = threading.Lock()
        self._gc_queue: list[_Ticket] = []
        self._gc_busy = False
        self.change_poll_seconds = dialect.change_poll_seconds
        self.batches = 0  # group commits run (tests and benchmarks read it)
        self.batched = 0  # write transactions they held

    @property
    def applied_migrations(self) -> list[int]:
        """The schema migrations applied when this store was opened (`llm-config upgrade` reports them)."""
        return list(self._d.applied)

    def close(self) -> None:
        """Release every connection; later calls raise StorageError. Idempotent."""
        self._d.close()

    def __enter__(self) -> SQLStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------------

    def _read_one(self, sql: str, params: Sequence[Any]) -> Any:
        cur = getattr(self._tl, "cur", None)
        if cur is not None:
            cur.execute(sql, params)
            return cur.fetchone()
        return self._d.read_one(sql, params)

    def _read_all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        cur = getattr(self._tl, "cur", None)
        if cur is not None:
            cur.execute(sql, params)
            return list(cur.fetchall())
        return self._d.read_all(sql, params)

    def _error(self, operation: str, exc: BaseException) -> StorageError:
        return self._d.storage_error(operation, exc)

    # -- row integrity ---------------------------------------------------------------------------

    def set_row_key(self, key: bytes | None, epoch: str | None = None, audit_key: bytes | None = None) -> None:
        """Check every row read from now on against `key` (None: rows cannot be checked). `epoch` and
        `audit_key`: the store epoch these keys belong to and its audit key — writes are refused while the
        store's epoch differs (a restore replaced the store, and with it, maybe, every key) or while they are
        signed with another audit key, until the keys of the new epoch are handed over."""
        self._macs = None if key is None else RowMacs(key)
        self._key_epoch = epoch
        self._audit_key = audit_key
        self._migrated_known = False  # keys of another epoch: the store may be another one altogether

    @contextlib.contextmanager
    def rows_checked_with(self, key: bytes) -> Iterator[None]:
        """Within the block, `iter_*` of this thread report MACs checked against `key` (a restore verifies
        the loaded rows with the backup's key without changing what other threads check with)."""
        self._tl.macs = RowMacs(key)
        try:
            yield
        finally:
            self._tl.macs = None

    @property
    def verifying(self) -> bool:
        """Whether rows are checked on read (a row key was handed over)."""
        return self._macs is not None

    def _migration_seq(self) -> int | None:
        if not self._migrated_known:
            row = self._read_one(self._s.subject_head, (MIGRATION_SUBJECT,))
            self._migrated_seq = None if row is None or row[0] is None else int(row[0])
            self._migrated_known = True
        return self._migrated_seq

    def _fail(self, locator: tuple[Any, ...], message: str) -> IntegrityError:
        """Record (and log, once per row) an integrity failure; the caller raises what it returns."""
        text = f"Integrity check failed: {message}"
        with contextlib.suppress(StorageError):  # the hint is best effort; the failure stands
            if self.integrity_pending():
                text += f"; this older store's row MACs are not computed yet ({_PENDING_REMEDY})"
        if locator not in self._failures:
            log.error("%s", text)
        self._failures[locator] = text
        return IntegrityError(text)

    def _checked_entry(self, row: Sequence[Any], namespace: str, key: str, env: Environment) -> StoredEntry | None:
        """Map a `get_current` row, refusing a forged, replayed or deleted entry."""
        values = row[1:_N_ENTRY + 1]
        macs = self._macs
        if values[0] is None:
            if macs is not None and row[0] is not None:
                # a crafted invalid name could spell another entry's subject: only a valid one may fail here
                validate_namespace(namespace)
                validate_stored_key(key)
                raise self._fail(("entries", namespace, key, env.value),
                                 f"entry {where(namespace, key, env)} has audit events but no row "
                                 "(deleted outside llm-config)")
            return None
        if macs is not None:
            self._check_entry_values(macs, row[0], values, row[_N_ENTRY + 1])
        return self._mapped(("entries", namespace, key, env.value), entry_from_row, values, values)

    def _mapped(self, locator: tuple[Any, ...], build: Callable[[Sequence[Any]], _T], values: Sequence[Any],
                named: Sequence[Any]) -> _T:
        """`build(values)`, or an integrity failure naming the row when a column holds a value
        llm-config never writes (reached only by rows that were not, or could not be, MAC-checked).
        `locator` as `_recheck` takes it; `named`: the row's values as `_label` takes them."""
        try:
            return build(values)
        except _UNMAPPABLE:
            label = _label(locator[0], named)
            raise self._fail(locator, f"{label} holds values llm-config never writes "
                                      "(changed outside llm-config)") from None

    def _unchecked(self, table: str, build: Callable[[Sequence[Any]], _T], values: Sequence[Any],
                   named: Sequence[Any], mac: object) -> tuple[_T, bool] | UnreadableRow:
        """For verify: (the mapped row, MAC ok? — False without a row key), or UnreadableRow when a
        column holds a value llm-config never writes. `named`: the MAC input (and `_label`'s)."""
        try:
            mapped = build(values)
        except _UNMAPPABLE:
            return UnreadableRow(_label(table, named))
        macs = getattr(self._tl, "macs", None) or self._macs
        return mapped, macs is not None and macs.ok(table, named, mac)

    def _check_entry_values(self, macs: RowMacs, head: int | None, values: Sequence[Any], mac: object) -> None:
        # the common case first and without building any text: this runs on every cold read
        if macs.ok("entries", values, mac):
            if is_fresh(values[16], head, self._migration_seq()):
                return
            problem = "is an older copy of itself (replayed row)"
        else:
            problem = "was changed outside llm-config (row MAC mismatch)"
        raise self._fail(("entries", values[1], values[2], values[3]),
                         f"entry {where(values[1], values[2], values[3])} {problem}")

    def _check_version(self, entry: StoredEntry, values: Sequence[Any], mac: object) -> StoredVersion:
        macs = self._macs
        named = _version_mac_input(entry, values)
        locator = ("versions", entry.namespace, entry.key, entry.environment.value, values[1])
        if macs is not None and (not macs.ok("versions", named, mac) or values[0] != entry.id):
            raise self._fail(locator, f"{_label('versions', named)} was changed outside llm-config (row MAC mismatch)")
        version = self._mapped(locator, _version, values, named)
        if macs is not None and (
            version.version > entry.version or version.purged != (version.version in entry.purged_versions)
        ):
            raise self._fail(locator, f"{_label('versions', named)} is an older copy of itself (replayed row)")
        return version

    def _checked_key(self, row: Sequence[Any]) -> ApiKey:
        values = row[1:_N_API_KEY + 1]
        macs = self._macs
        if macs is not None:
            locator = ("api_keys", values[0])
            if not macs.ok("api_keys", values, row[_N_API_KEY + 1]):
                raise self._fail(locator, f"API key {values[0]} was changed outside llm-config (row MAC mismatch)")
            if not is_fresh(values[11], row[0], self._migration_seq()):
                raise self._fail(locator, f"API key {values[0]} is an older copy of itself (replayed row)")
        return self._mapped(("api_keys", values[0]), _api_key, values, values)

    def integrity_failures(self) -> list[str]:
        """Rows that failed their check in this process and still fail when read again."""
        still: list[str] = []
        for locator in list(self._failures):
            try:
                self._recheck(locator)
            except StorageError:  # IntegrityError among them: still failing, or unreachable to say otherwise
                still.append(self._failures[locator])
                continue
            self._failures.pop(locator, None)
        return still

    def _recheck(self, locator: tuple[Any, ...]) -> None:
        table = locator[0]
        if table == "api_keys":
            self.get_api_key(locator[1])
            return
        env = _ENVS.get(locator[3])
        if env is None:  # not a name any lookup can reach: nothing can have repaired it
            raise IntegrityError(f"unreadable locator {locator!r}")
        if table == "entries":
            self.get_current(locator[1], locator[2], env)
        else:
            self.get_version(locator[1], locator[2], env, locator[4])

    # -- reads -----------------------------------------------------------------------------------

    def get_current(self, namespace: str, key: str, env: Environment) -> StoredEntry | None:
        env_text = _ENV_TEXT.get(env, env)
        try:
            # always exactly one row (a LEFT JOIN on a constant)
            row = self._read_one(self._s.get_current,
                                 (entry_subject(namespace, key, env_text), namespace, env_text, key))
        except self._d.errors as exc:
            raise self._error("reading an entry", exc) from exc
        values = row[1:_N_ENTRY + 1]
        macs = self._macs
        head = row[0]
        # the common case inline (every cold read comes here): a live row, its MAC good, no later event
        if macs is not None and head is not None and values[16] == head and values[0] is not None \
                and macs.ok("entries", values, row[_N_ENTRY + 1]):
            return entry_from_row(values)
        return self._checked_entry(row, namespace, key, env)

    # -- the stored form for a shared cache (cache/tiered.py keeps it in Redis) --------------------

    def sealed_row(self, row: StoredEntry) -> bytes | None:
        """`row` as its stored column values plus its row MAC (secrets stay sealed), for a shared cache;
        None without the row key (nothing could check it on the way back)."""
        macs = self._macs
        if macs is None:
            return None
        values = _entry_values(row, row.audit_seq)
        return orjson.dumps([*values, macs.mac("entries", values)])

    def open_sealed_row(self, data: bytes, namespace: str, key: str, env: Environment) -> StoredEntry | None:
        """The entry in `data` (as `sealed_row` wrote it) if its row MAC holds and it is the entry of this
        place; else None — whoever can write the cache cannot inject or move an entry."""
        macs = self._macs
        if macs is None:
            return None
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if type(doc) is not list or len(doc) != _N_ENTRY + 1:
            return None
        values = doc[:_N_ENTRY]
        if values[1] != namespace or values[2] != key or values[3] != _ENV_TEXT.get(env, env) \
                or not macs.ok("entries", values, doc[_N_ENTRY]):
            return None
        try:
            return entry_from_row(values)
        except _UNMAPPABLE:
            return None

    def changes_since(self, revision: int, limit: int = 1000) -> tuple[list[tuple[str, str, Environment, int]], int]:
        """Entries changed after `revision` in revision order (at most `limit`) and the store's revision, read
        first: every change up to it is in the list (two statements, not one snapshot — so never the other
        way round, or a commit in between would be counted as seen and never listed)."""
        try:
            current = self._read_one(self._s.get_meta, ("revision",))
            rows = self._read_all(self._s.changes_since, (revision, limit))
        except self._d.errors as exc:
            raise self._error("reading changes", exc) from exc
        return ([(r[0], r[1], _ENVS[r[2]], int(r[3])) for r in rows if r[2] in _ENVS],
                int(current[0]) if current else 0)

    def watch_since(self, revision: int, limit: int = 1000, *, namespace: str | None = None,
                    recursive: bool = False) -> tuple[list[ChangeRow], int]:
        """Changes after `revision` in revision order (at most `limit`; of one namespace, and with `recursive`
        its sub-namespaces, if given) and the store's revision, read first: revisions are taken under the
        write lock and committed in their order, so every change up to it is visible to the one statement
        that follows."""
        params: tuple[Any, ...]
        if namespace is None:
            sql, params = self._s.watch_all, (revision, limit)
        elif recursive:
            sql, params = self._s.watch_tree, (namespace, namespace + "/", namespace + "0", revision, limit)
        else:
            sql, params = self._s.watch_namespace, (namespace, revision, limit)
        try:
            current = self._read_one(self._s.get_meta, ("revision",))
            rows = self._read_all(sql, params)
        except self._d.errors as exc:
            raise self._error("reading changes", exc) from exc
        return ([ChangeRow(int(r[0]), r[1], r[2], _ENVS[r[3]], int(r[4]), str(r[5])) for r in rows if r[3] in _ENVS],
                int(current[0]) if current else 0)

    def _versions(self, entry: StoredEntry, version: int | None, limit: int | None,
                  cur: Any = None) -> list[StoredVersion]:
        params: tuple[Any, ...]
        if version is not None:
            sql, params = self._s.version_of, (entry.id, version)
        elif limit is not None:
            sql, params = self._s.versions_of_limit, (entry.id, max(limit, 0))
        else:
            sql, params = self._s.versions_of, (entry.id,)
        rows = _all(cur, sql, params) if cur is not None else self._read_all(sql, params)
        return [self._check_version(entry, row[:_N_VERSION], row[_N_VERSION]) for row in rows]

    def get_version(
        self, namespace: str, key: str, env: Environment, version: int
    ) -> StoredVersion | None:
        entry = self.get_current(namespace, key, env)
        if entry is None:
            return None
        try:
            found = self._versions(entry, version, None)
        except self._d.errors as exc:
            raise self._error("reading a version", exc) from exc
        return found[0] if found else None

    def history(
        self, namespace: str, key: str, env: Environment, limit: int | None = None
    ) -> list[StoredVersion]:
        entry = self.get_current(namespace, key, env)
        if entry is None:
            return []
        try:
            return self._versions(entry, None, limit)
        except self._d.errors as exc:
            raise self._error("reading history", exc) from exc

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
        # A whole listing (no page) reads the tombstones too and checks every row's MAC before dropping
        # them: a live row flipped to `deleted` behind our back must fail the listing, not vanish from it
        # (a resolve would serve base instead, a schema stop being enforced).
        whole = limit is None and self._macs is not None
        clauses = ["e.environment = ?"] if whole or tombstones else ["e.environment = ?", "e.deleted = 0"]
        params: list[Any] = [_ENV_TEXT.get(env, env)]
        if recursive:
            clauses.append(_SUBTREE.replace("namespace", "e.namespace"))
            params.extend(_subtree(namespace))
        else:
            clauses.append("e.namespace = ?")
            params.append(namespace)
        if prefix:
            clauses.append('e."key" >= ?')
            params.append(prefix)
        # config keys only, unless asked for: templates and schemas are stored from RESERVED on
        upper = _successor(prefix) if prefix.startswith(RESERVED) else min(_successor(prefix) or RESERVED, RESERVED)
        if upper is not None:
            clauses.append('e."key" < ?')
            params.append(upper)
        if after_key is not None:
            if recursive:
                after_ns, sep, after_k = after_key.partition("~")
                if not sep:
                    after_ns, after_k = namespace, after_key
                clauses.append('(e.namespace > ? OR (e.namespace = ? AND e."key" > ?))')
                params.extend((after_ns, after_ns, after_k))
            else:
                clauses.append('e."key" > ?')
                params.append(after_key)
        order = 'e.namespace, e."key"' if recursive else 'e."key"'
        head = _ENTRY_HEAD if self._macs is not None else "NULL"
        sql = f"SELECT {head}, {_E_ENTRY_COLS}, e.mac FROM entries e WHERE {' AND '.join(clauses)} ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(limit, 0))
        try:
            rows = self._read_all(self._s.p(sql), params)
        except self._d.errors as exc:
            raise self._error("listing entries", exc) from exc
        macs = self._macs
        if macs is None:
            return [self._mapped(("entries", row[2], row[3], row[4]), entry_from_row, row[1:_N_ENTRY + 1],
                                 row[1:_N_ENTRY + 1]) for row in rows]
        out: list[StoredEntry] = []
        for row in rows:  # a listing that meets a failing row fails whole (SPEC §2)
            values = row[1:_N_ENTRY + 1]
            self._check_entry_values(macs, row[0], values, row[_N_ENTRY + 1])
            if tombstones or values[5] == 0:
                out.append(entry_from_row(values))
        return out

    def subjects(self, prefix: str) -> list[str]:
        """Every audit-event subject starting with `prefix` (`integrity.entry_subject`): the rows the trail
        says exist, so a listing can tell a row deleted behind our back from one never written."""
        upper = _successor(prefix)
        sql = "SELECT DISTINCT subject FROM audit_events WHERE subject >= ?" + (" AND subject < ?" if upper else "")
        try:
            rows = self._read_all(self._s.p(sql), [prefix, upper] if upper else [prefix])
        except self._d.errors as exc:
            raise self._error("reading the audit trail", exc) from exc
        return [row[0] for row in rows]

    def namespaces(self, prefix: str = "") -> list[str]:
        sql = "SELECT DISTINCT namespace FROM entries WHERE deleted = 0"
        params: list[Any] = []
        if prefix:
            sql += " AND namespace >= ?"
            params.append(prefix)
            upper = _successor(prefix)
            if upper is not None:
                sql += " AND namespace < ?"
                params.append(upper)
        sql += " ORDER BY namespace"
        try:
            rows = self._read_all(self._s.p(sql), params)
        except self._d.errors as exc:
            raise self._error("listing namespaces", exc) from exc
        return [row[0] for row in rows]

    def _pages(self, sql: str, start: tuple[Any, ...], key: Callable[[Any], tuple[Any, ...]],
               operation: str) -> Iterator[Any]:
        """Every row of a keyset-paginated query, PAGE rows at a time."""
        after = start
        while True:
            try:
                rows = self._read_all(sql, (*after, PAGE))
            except self._d.errors as exc:
                raise self._error(operation, exc) from exc
            yield from rows
            if len(rows) < PAGE:
                return
            after = key(rows[-1])

    def iter_entries(self) -> Iterator[tuple[StoredEntry, bool, bool] | UnreadableRow]:
        """Every entry row, unchecked: (entry, MAC ok?, fresh?) — for verify (MAC ok is False
        without a row key) — or an UnreadableRow. Ordered by namespace, key, environment."""
        for row in self._pages(self._s.entries_page, ("", "", ""), lambda r: (r[2], r[3], r[4]), "reading entries"):
            values = row[1:_N_ENTRY + 1]
            item = self._unchecked("entries", entry_from_row, values, values, row[_N_ENTRY + 1])
            yield item if isinstance(item, UnreadableRow) else (
                *item, is_fresh(values[16], row[0], self._migration_seq()))

    def iter_versions(self) -> Iterator[tuple[str, str, str, StoredVersion, bool] | UnreadableRow]:
        """Every version row, unchecked: (namespace, key, environment, version, MAC ok?) — for verify —
        or an UnreadableRow."""
        for row in self._pages(self._s.versions_page, ("", "", "", -1), lambda r: (r[0], r[1], r[2], r[4]),
                               "reading versions"):
            named = row[:3 + _N_VERSION]
            item = self._unchecked("versions", _version, named[3:], named, row[3 + _N_VERSION])
            yield item if isinstance(item, UnreadableRow) else (row[0], row[1], row[2], *item)

    def sealed_values(self) -> list[str]:
        try:
            rows = self._read_all(self._s.sealed_values)
        except self._d.errors as exc:
            raise self._error("reading sealed values", exc) from exc
        return [row[0] for row in rows]

    # -- write transactions and group commit ----------------------------------------------------------

    def _transaction(
        self, operation: str, body: Callable[[Any, _Head], Any], *, audit: bool = False, rows: bool = False,
        signed_with: bytes | None = None,
    ) -> Any:
        """Run `body(cursor, head)` in a write transaction, committed together with whatever other write
        transactions of this process arrive meanwhile (group commit); return its result once durable.

        `rows`: the body writes MAC'd rows, which a store whose row MACs are still to be computed
        (integrity_pending) must not take — the one-time migration would then refuse it for good.
        `signed_with`: the audit key the body signs with; the write is refused (503, retry) unless it is the
        key of the store's current epoch (`set_row_key`), so a write built before a restore replaced the
        store's keys can never append to the restored chain.
        """
        if self.read_only:
            error = AuditError if audit else StorageError
            raise error(f"Storage failed while {operation}: the store at {self.url} is open read-only (its "
                        "directory cannot be written here)")
        if getattr(self._tl, "cur", None) is not None:
            raise StorageError(f"Storage failed while {operation}: writes cannot run inside a read snapshot")
        ticket = _Ticket(operation, body, audit, rows, signed_with)
        with self._gc_lock:
            self._gc_queue.append(ticket)
            lead = not self._gc_busy
            if lead:
                self._gc_busy = True
        if not lead:
            ticket.done.wait()
            lead = ticket.lead
        if lead:
            self._lead()
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def _lead(self) -> None:
        """Commit the queued tickets (this thread's first) as one batch, then hand over to the next."""
        with self._gc_lock:
            batch = self._gc_queue[:MAX_BATCH]
            del self._gc_queue[:MAX_BATCH]
        try:
            self._run_batch(batch)
        except BaseException as exc:  # every ticket learns what happened; nothing is lost
            for ticket in batch:
                if ticket.error is None:
                    ticket.error = exc
        finally:
            with self._gc_lock:
                if self._gc_queue:
                    nxt = self._gc_queue[0]
                    nxt.lead = True
                    nxt.done.set()
                else:
                    self._gc_busy = False
            for ticket in batch:
                ticket.done.set()

    def _run_batch(self, batch: list[_Ticket]) -> None:
        try:
            self._run_batch_held(batch)
        except self._d.errors as exc:  # no connection (pool timeout, database down) or a lost one
            raise self._batch_error(batch, exc) from exc

    def _run_batch_held(self, batch: list[_Ticket]) -> None:
        d = self._d
        with d.write_guard(), d.hold() as cur, d.pipeline(cur) as flush:
            self._tl.cur = cur
            try:
                try:
                    head, pending = self._begin(cur, batch)
                except d.errors as exc:
                    raise self._batch_error(batch, exc) from exc
                start_revision = head.revision
                head = self._run_tickets(cur, batch, head, pending)
                try:
                    if head.revision != start_revision:
                        cur.execute(self._s.set_meta, ("revision", str(head.revision)))
                    if head.seals:
                        self._add_seals(cur, head.seals)
                    cur.execute("COMMIT")
                    flush()  # nothing is acknowledged before the commit is known to have happened
                except d.errors as exc:
                    raise self._batch_error(batch, exc) from exc
                self.batches += 1
                self.batched += len(batch)
            except BaseException as exc:
                with contextlib.suppress(*d.errors):  # the original error is what matters
                    cur.execute("ROLLBACK")
                for ticket in batch:
                    if ticket.error is None:
                        ticket.error = self._ticket_error(ticket, exc) if isinstance(exc, d.errors) else exc
                    ticket.result = None
                raise
            finally:
                self._tl.cur = None

    def _begin(self, cur: Any, batch: list[_Ticket]) -> tuple[_Head, bool]:
        """Open the write transaction under the lock; read the chain head and revision once for the batch."""
        s, d = self._s, self._d
        for statement in d.begin_write:
            cur.execute(statement)
        row = cur.fetchone() if d.lock_returns_revision else _one(cur, s.get_meta, ("revision",))
        revision = int(row[0]) if row else 0
        seq, mac, pending, epoch = _one(cur, s.batch_head, (_PENDING, _EPOCH))
        head = _Head(int(seq), str(mac), revision, epoch) if seq is not None else _Head(0, GENESIS_MAC, revision, epoch)
        return head, bool(pending) and any(t.rows for t in batch)

    def _run_tickets(self, cur: Any, batch: list[_Ticket], head: _Head, pending: bool) -> _Head:
        """Each ticket under its own savepoint (none for a batch of one, which fails whole): one ticket's
        conflict or error rolls back only its own statements and chain links."""
        d = self._d
        single = len(batch) == 1
        for ticket in batch:
            if ticket.rows and pending:
                ticket.error = IntegrityError(
                    "Integrity check failed: this older store's row MACs are not computed yet, so it takes "
                    f"no writes ({_PENDING_REMEDY})"
                )
                continue
            if ticket.signed_with is not None and not self._current_keys(head, ticket.signed_with):
                ticket.error = StorageUnavailableError(
                    f"Storage failed while {ticket.operation}: the store was restored from a backup meanwhile; "
                    "retry in a moment (this process takes up the restored store's keys by itself)"
                )
                continue
            saved = replace(head)
            try:
                if not single:
                    cur.execute("SAVEPOINT w")
                ticket.result = ticket.body(cur, head)
                if not single:
                    cur.execute("RELEASE SAVEPOINT w")
            except Exception as exc:  # one ticket's failure is its own: its savepoint goes, the batch stays
                if single or d.aborts_transaction(exc):
                    raise  # the whole batch fails (the caller rolls back and answers every ticket)
                try:
                    cur.execute("ROLLBACK TO SAVEPOINT w")
                    cur.execute("RELEASE SAVEPOINT w")
                except d.errors as lost:
                    raise self._batch_error(batch, lost) from lost
                ticket.error = self._ticket_error(ticket, exc)
                head = saved
        return head

    def _current_keys(self, head: _Head, audit_key: bytes) -> bool:
        """Whether a write signed with `audit_key` belongs to the store as it is now (its epoch, its keys)."""
        if head.epoch != self._key_epoch:
            return False
        expected = self._audit_key
        return expected is None or hmac.compare_digest(expected, audit_key)

    def _ticket_error(self, ticket: _Ticket, exc: BaseException) -> BaseException:
        if isinstance(exc, LLMConfigError) or not isinstance(exc, self._d.errors):
            return exc
        if ticket.audit:
            return AuditError(f"Audit event could not be written: {exc}")
        return self._error(ticket.operation, exc)

    def _batch_error(self, batch: list[_Ticket], exc: BaseException) -> StorageError:
        """A failure of the whole batch (begin, commit, a lost connection): every ticket gets it."""
        first: StorageError | None = None
        for ticket in batch:
            if ticket.error is None:
                error = self._ticket_error(ticket, exc)
                assert isinstance(error, StorageError)
                ticket.error = error
                first = first or error
        return first or self._error("committing", exc)

    # -- entry writes ------------------------------------------------------------------------------

    def apply(self, writes: Sequence[WriteRequest], audit_key: bytes) -> list[WriteResult]:
        if not writes:
            return []
        results: list[WriteResult] = self._transaction(
            "applying writes", lambda cur, head: self._apply_all(cur, head, writes, audit_key), rows=True,
            signed_with=audit_key,
        )
        if any(w.kind is WriteKind.PURGE for w in writes):
            self._d.after_purge()
        return results

    def _apply_all(
        self, cur: Any, head: _Head, writes: Sequence[WriteRequest], audit_key: bytes
    ) -> list[WriteResult]:
        results: list[WriteResult] = []
        for write in writes:
            head.revision += 1
            seq = head.seq + 1
            entry, old_version, new_version, secret, existed, details = self._apply_one(cur, write, seq, head.revision)
            changed = old_version if write.kind is WriteKind.PURGE else new_version  # a purge names its version
            cur.execute(self._s.insert_change, (head.revision, write.namespace, write.key, write.environment.value,
                                                changed, _CHANGE_KIND[write.kind]))
            if write.kind is WriteKind.SET and write.value_type is ValueType.SECRET:
                self._count_seal(head, write.stored_value)
            self._append(cur, head, audit_key, PendingEvent(
                type=write.audit_type or write_event_type(write.kind, secret=secret, existed=existed),
                actor=write.actor, namespace=write.namespace, key=write.key,
                environment=write.environment.value, old_version=old_version, new_version=new_version,
                source_ip=write.source_ip, request_id=write.request_id, details=details,
                timestamp=write.timestamp,
                subject=entry_subject(write.namespace, write.key, write.environment.value),
            ))
            results.append(WriteResult(entry=entry, old_version=old_version, audit_seq=seq))
        return results

    def _current_for_write(self, cur: Any, w: WriteRequest) -> StoredEntry | None:
        env = w.environment.value
        row = _one(cur, self._s.get_current, (entry_subject(w.namespace, w.key, env), w.namespace, env, w.key))
        return self._checked_entry(row, w.namespace, w.key, w.environment)

    def _apply_one(
        self, cur: Any, w: WriteRequest, seq: int, revision: int
    ) -> tuple[StoredEntry, int | None, int | None, bool, bool, dict[str, Any]]:
        """Apply one write; return (entry, old_version, new_version, secret, existed, details) for its event."""
        current = self._current_for_write(cur, w)
        if w.kind is WriteKind.SET:
            check_plain_over_secret(w, current, w.value_type)
        check_expected(w, current)
        existed = current is not None and not current.deleted
        old_version = current.version if current is not None else None
        new_version = (current.version if current is not None else 0) + 1
        kind = w.kind
        details = dict(w.audit_details)

        if kind is WriteKind.SET:
            if w.value_type is ValueType.NONE or w.stored_value is None:
                raise ValidationError(f"A set of {where(w.namespace, w.key, w.environment)} needs a value")
            secret = w.value_type is ValueType.SECRET or (
                current is not None and current.value_type is ValueType.SECRET
            )
            entry = self._write_version(
                cur, w, current, new_version=new_version, seq=seq, revision=revision,
                deleted=False, value_type=w.value_type, stored_value=w.stored_value,
                fingerprint=w.fingerprint,
            )
            return entry, old_version, new_version, secret, existed, details

        if current is None or (kind is WriteKind.DELETE and current.deleted):
            raise NotFoundError(
                f"Config not found: {where(w.namespace, w.key, w.environment)}",
                namespace=w.namespace, key=w.key, environment=w.environment.value,
            )

        if kind is WriteKind.DELETE:
            entry = self._write_version(
                cur, w, current, new_version=new_version, seq=seq, revision=revision,
                deleted=True, value_type=ValueType.NONE, stored_value=None, fingerprint=None,
            )
            return entry, old_version, new_version, current.value_type is ValueType.SECRET, existed, details

        if w.target_version is None:
            raise ValidationError(f"A {w.kind.value} needs a target version")
        found = self._versions(current, w.target_version, None, cur)
        target = check_target(w, found[0] if found else None)
        if kind is WriteKind.ROLLBACK:
            check_plain_over_secret(w, current, target.value_type, FOR_ROLLBACK)
            entry = self._write_version(
                cur, w, current, new_version=new_version, seq=seq, revision=revision,
                deleted=False, value_type=target.value_type, stored_value=target.stored_value,
                fingerprint=target.fingerprint,
            )
            if target.fingerprint is not None:
                details["fingerprint"] = target.fingerprint
                details["fingerprint_scheme"] = FINGERPRINT_SCHEME
            secret = ValueType.SECRET in (target.value_type, current.value_type)
            return entry, old_version, new_version, secret, existed, details

        if kind is WriteKind.PURGE:
            check_purge(w, current, target)
            macs = self._need_macs()
            purged = replace(target, purged=True, value_type=ValueType.NONE, stored_value=None, fingerprint=None)
            mac = macs.mac("versions", _version_mac_input(current, _version_values(purged)))
            cur.execute(self._s.purge_version, (mac, current.id, target.version))
            entry = replace(
                current, revision=revision,
                purged_versions=tuple(sorted({*current.purged_versions, target.version})),
            )
            self._save_entry(cur, entry, seq, insert=False)
            details["purged_version"] = target.version
            secret = target.value_type is ValueType.SECRET
            return entry, target.version, None, secret, existed, details

        raise ValidationError(f"Unknown write kind: {kind!r}")  # pragma: no cover

    def _need_macs(self) -> RowMacs:
        if self._macs is None:
            raise StorageError("Writing needs the row-integrity key (open the store with the master key)")
        return self._macs

    def _save_entry(self, cur: Any, entry: StoredEntry, seq: int, *, insert: bool) -> None:
        entry.audit_seq = seq
        values = _entry_values(entry, seq)
        mac = self._need_macs().mac("entries", values)
        if insert:
            cur.execute(self._s.insert_entry, (*values, mac))
        else:
            cur.execute(self._s.update_entry, (*values[1:], mac, entry.id))

    def _write_version(
        self,
        cur: Any,
        w: WriteRequest,
        current: StoredEntry | None,
        *,
        new_version: int,
        seq: int,
        revision: int,
        deleted: bool,
        value_type: ValueType,
        stored_value: str | None,
        fingerprint: str | None,
    ) -> StoredEntry:
        """Insert version `new_version` and make it the entry's current row (id and created_* kept)."""
        if current is None:
            entry = StoredEntry(
                id=new_id(), namespace=w.namespace, key=w.key, environment=w.environment, version=new_version,
                deleted=deleted, value_type=value_type, stored_value=stored_value, fingerprint=fingerprint,
                created_at=w.timestamp, created_by=w.actor, updated_at=w.timestamp, updated_by=w.actor,
                tags=tuple(w.tags) if w.tags is not None else (), description=w.description, revision=revision,
            )
        else:
            entry = replace(
                current, version=new_version, deleted=deleted, value_type=value_type, stored_value=stored_value,
                fingerprint=fingerprint, updated_at=w.timestamp, updated_by=w.actor,
                tags=tuple(w.tags) if w.tags is not None else current.tags,
                description=w.description if w.description is not None else current.description,
                revision=revision,
            )
        self._save_entry(cur, entry, seq, insert=current is None)
        version = StoredVersion(
            entry_id=entry.id, version=new_version, deleted=deleted, purged=False, value_type=value_type,
            stored_value=stored_value, fingerprint=fingerprint, created_at=w.timestamp, created_by=w.actor,
            change_description=w.change_description
            or ("Updated" if current is not None and not current.deleted else "Created"),
            audit_seq=seq, revision=revision,
        )
        values = _version_values(version)
        mac = self._need_macs().mac("versions", _version_mac_input(entry, values))
        cur.execute(self._s.insert_version, (*values, mac))
        return entry

    # -- audit -----------------------------------------------------------------------------------

    def _append(self, cur: Any, head: _Head, audit_key: bytes, pending: PendingEvent) -> AuditEvent:
        """Append the next link of the chain (the head advances with it)."""
        event = make_event(audit_key, head.seq + 1, head.mac, pending)
        cur.execute(self._s.insert_audit, event_values(event))
        head.seq, head.mac = event.seq, event.mac
        return event

    def append_audit(self, event: PendingEvent, audit_key: bytes) -> AuditEvent:
        return self._audited(audit_key, [event])[-1]

    def append_audit_many(self, events: Sequence[PendingEvent], audit_key: bytes) -> None:
        if events:
            self._audited(audit_key, events)

    def _audited(self, audit_key: bytes, events: Sequence[PendingEvent]) -> list[AuditEvent]:
        built: list[AuditEvent] = self._transaction(
            "appending audit events",
            lambda cur, head: [self._append(cur, head, audit_key, e) for e in events], audit=True,
            signed_with=audit_key,
        )
        return built

    def audit_events(self, query: AuditQuery) -> list[AuditEvent]:
        clauses = ["seq > ?"]
        params: list[Any] = [query.after_seq]
        if query.since is not None:
            clauses.append("timestamp >= ?")
            params.append(query.since)
        if query.until is not None:
            clauses.append("timestamp < ?")
            params.append(query.until)
        if query.actor is not None:
            clauses.append("actor = ?")
            params.append(query.actor)
        if query.type is not None:
            clauses.append("type = ?")
            params.append(query.type)
        if query.namespace is not None:
            clauses.append(_SUBTREE)
            params.extend(_subtree(query.namespace))
        sql = f"SELECT {_AUDIT_COLS} FROM audit_events WHERE {' AND '.join(clauses)} ORDER BY seq"
        if query.limit is not None:
            sql += " LIMIT ?"
            params.append(max(query.limit, 0))
        try:
            rows = self._read_all(self._s.p(sql), params)
        except self._d.errors as exc:
            raise self._error("reading the audit trail", exc) from exc
        return [_event(row) for row in rows]

    def audit_head(self) -> tuple[int, str] | None:
        try:
            row = self._read_one(self._s.audit_head, ())
        except self._d.errors as exc:
            raise self._error("reading the audit head", exc) from exc
        return None if row is None else (int(row[0]), str(row[1]))

    # -- API keys ----------------------------------------------------------------------------------

    def _insert_key_events(
        self, cur: Any, head: _Head, audit_key: bytes, changes: Sequence[tuple[ApiKey, PendingEvent]]
    ) -> list[AuditEvent]:
        macs = self._need_macs()
        built: list[AuditEvent] = []
        for record, pending in changes:
            event = self._append(cur, head, audit_key, replace(pending, subject=key_subject(record.id)))
            values = _api_key_values(record, event.seq)
            cur.execute(self._s.upsert_api_key, (*values, macs.mac("api_keys", values)))
            built.append(event)
        return built

    def create_api_key(self, record: ApiKey, event: PendingEvent, audit_key: bytes, *, now: str) -> AuditEvent:
        """Insert a new key with its `key_created` event; refuses a name already used by a live key
        (ConflictError) and a parent that was revoked or expired meanwhile (AuthenticationError: the
        caller's own key is no longer valid)."""
        def body(cur: Any, head: _Head) -> list[AuditEvent]:
            if _one(cur, self._s.live_name, (record.name, now)) is not None:
                raise ConflictError(f"An API key named {record.name!r} already exists: choose another name "
                                    "or revoke that key first")
            if record.parent_id is not None:
                row = _one(cur, self._s.api_key_by_id, (record.parent_id,))
                parent = None if row is None else self._checked_key(row)
                if parent is None or parent.revoked_at is not None or (
                    parent.expires_at is not None and parent.expires_at <= now
                ):
                    raise AuthenticationError("API key invalid, expired or revoked")
            return self._insert_key_events(cur, head, audit_key, [(record, event)])

        created: list[AuditEvent] = self._transaction("creating an API key", body, audit=True, rows=True,
                                                      signed_with=audit_key)
        return created[0]

    def revoke_api_keys(
        self, key_id: str, revoked_at: str, event_for: Callable[[ApiKey, bool], PendingEvent], audit_key: bytes,
    ) -> list[ApiKey]:
        """Revoke a key and every live key it created, transitively (one event each, one transaction).

        `event_for(record, cascaded)` builds each key's `key_revoked` event. Returns the revoked records
        (the first is `key_id`'s); keys already revoked are left as they are.
        """
        def body(cur: Any, head: _Head) -> list[ApiKey]:
            row = _one(cur, self._s.api_key_by_id, (key_id,))
            if row is None:
                return []
            root = self._checked_key(row)
            tree, todo, seen = [root], [root.id], {root.id}
            while todo:
                parent = todo.pop()
                for child_row in _all(cur, self._s.api_key_children, (parent,)):
                    child_id = child_row[1]
                    if child_id in seen:
                        continue
                    seen.add(child_id)
                    todo.append(child_id)  # a forged child's own children are still revoked
                    try:
                        tree.append(self._checked_key(child_row))
                    except IntegrityError:
                        # never authenticates anyway (its failure is recorded for health and verify);
                        # signing its revocation would bless what was forged, and refusing the whole
                        # revocation would let one inserted row keep a stolen parent alive
                        continue
            changes = [
                (replace(k, revoked_at=revoked_at), event_for(k, k.id != root.id))
                for k in tree if k.revoked_at is None
            ]
            self._insert_key_events(cur, head, audit_key, changes)
            return [record for record, _ in changes]

        revoked: list[ApiKey] = self._transaction("revoking API keys", body, audit=True, rows=True,
                                                  signed_with=audit_key)
        return revoked

    def get_api_key(self, key_id: str) -> ApiKey | None:
        return self._one_key(self._s.api_key_by_id, key_id)

    def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._one_key(self._s.api_key_by_hash, key_hash)

    def _one_key(self, sql: str, param: str) -> ApiKey | None:
        try:
            row = self._read_one(sql, (param,))
        except self._d.errors as exc:
            raise self._error("reading an API key", exc) from exc
        return None if row is None else self._checked_key(row)

    def list_api_keys(self) -> list[ApiKey]:
        try:
            rows = self._read_all(self._s.api_keys_ordered)
        except self._d.errors as exc:
            raise self._error("listing API keys", exc) from exc
        return [self._checked_key(row) for row in rows]

    def iter_api_keys(self) -> Iterator[tuple[ApiKey, bool, bool] | UnreadableRow]:
        """Every key row, unchecked: (record, MAC ok?, fresh?) — for verify — or an UnreadableRow."""
        try:
            rows = self._read_all(self._s.api_keys_ordered)
        except self._d.errors as exc:
            raise self._error("listing API keys", exc) from exc
        for row in rows:
            values = row[1:_N_API_KEY + 1]
            item = self._unchecked("api_keys", _api_key, values, values, row[_N_API_KEY + 1])
            yield item if isinstance(item, UnreadableRow) else (
                *item, is_fresh(values[11], row[0], self._migration_seq()))

    # -- the one-time integrity migration ----------------------------------------------------------

    def integrity_pending(self) -> bool:
        """Whether this store predates row MACs and still needs them computed once."""
        return self.get_meta(_PENDING) is not None

    def migrate_integrity(self, event: PendingEvent, audit_key: bytes, fingerprint_of: Fingerprinter) -> int:
        """Compute every row's MAC once (an upgraded store), bound to one `integrity_migrated` event.

        `fingerprint_of(namespace, key, environment, value_type, stored_value)` gives a value's
        place-bound fingerprint (None: no value, or a secret no key in the keyring opens — stored
        fingerprints are then all of the current scheme). Refuses when any event already names a
        subject (the store was written with row MACs: a missing MAC there is tampering, never a
        reason to compute one). Returns the event's seq.
        """
        macs = self._need_macs()
        s = self._s

        def body(cur: Any, head: _Head) -> int:
            if _one(cur, s.get_meta, (_PENDING,)) is None:
                return 0  # another process got there first
            if _one(cur, s.any_subject) is not None:
                raise IntegrityError(
                    "Integrity check failed: the store asks for its row MACs to be computed again, but it was "
                    "already written with them (the 'integrity_pending' setting was added outside llm-config)"
                )
            try:
                entries = [entry_from_row(row[:_N_ENTRY]) for row in _all(cur, f"SELECT {_ENTRY_COLS} FROM entries")]
                versions = [_version(row) for row in _all(cur, f"SELECT {_VERSION_COLS} FROM versions")]
                keys = [_api_key(row) for row in _all(cur, f"SELECT {_API_KEY_COLS} FROM api_keys")]
            except _UNMAPPABLE:
                raise IntegrityError(
                    "Integrity check failed: this store's row MACs cannot be computed because a row holds values "
                    "llm-config never writes; run 'llm-config audit verify'"
                ) from None
            by_id = {e.id: e for e in entries}
            pending = replace(event, subject=MIGRATION_SUBJECT, details={
                **event.details, "entries": len(entries), "versions": len(versions), "api_keys": len(keys),
            })
            seq = self._append(cur, head, audit_key, pending).seq
            purged: dict[str, list[int]] = {}
            for v in versions:
                entry = by_id[v.entry_id]
                if v.purged:
                    purged.setdefault(v.entry_id, []).append(v.version)
                fp = fingerprint_of(entry.namespace, entry.key, entry.environment, v.value_type, v.stored_value)
                values = _version_values(replace(v, fingerprint=fp))
                cur.execute(s.fix_version, (values[6], macs.mac("versions", _version_mac_input(entry, values)),
                                            v.entry_id, v.version))
            for e in entries:
                fp = fingerprint_of(e.namespace, e.key, e.environment, e.value_type, e.stored_value)
                fixed = replace(e, fingerprint=fp, purged_versions=tuple(sorted(purged.get(e.id, []))))
                self._save_entry(cur, fixed, seq, insert=False)
            for k in keys:
                values = _api_key_values(k, seq)
                cur.execute(s.upsert_api_key, (*values, macs.mac("api_keys", values)))
            cur.execute(s.delete_meta, (_PENDING,))
            return seq

        seq: int = self._transaction("computing row MACs", body, signed_with=audit_key)
        self._migrated_known = False
        return seq

    @contextlib.contextmanager
    def setup_lock(self) -> Iterator[None]:
        """Hold the database's migration lock for a block: one-time setup that replicas starting together
        must do once (the first admin key of a server database). SQLite: no lock (one host)."""
        with self._d.hold() as cur, migration_lock(cur, self._d.migrations):
            yield

    # -- whole-store copies (backup, restore, migrate) -------------------------------------------------

    def export_rows(self) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """Every row of every table, raw (MACs as stored), table by table in ROW_TABLES order, from one
        read snapshot — consistent under concurrent writes; keyset pages, so memory stays flat. Consume it
        in the thread that started it (the snapshot is that thread's)."""
        with self.snapshot():
            for table in ROW_TABLES:
                sql, width = self._s.raw_pages[table]

                def after(row: Any, width: int = width) -> tuple[Any, ...]:
                    return tuple(row[:width])

                for row in self._pages(sql, _FIRST_KEYS[table], after, f"reading {table}"):
                    if table == "meta" and row[0] == WATCH_FLOOR:
                        continue  # where this store's change feed starts: the store's own, like the feed
                    yield table, tuple(row)

    def is_empty(self) -> bool:
        """Whether the store holds no entry, API key or audit event (settings may exist)."""
        try:
            return all(self._read_one(f"SELECT 1 FROM {table} LIMIT 1", ()) is None
                       for table in ("entries", "api_keys", "audit_events"))
        except self._d.errors as exc:
            raise self._error("checking whether the store is empty", exc) from exc

    def import_rows(self, rows: Iterable[tuple[str, Sequence[Any]]], *, replace_all: bool,
                    settings: dict[str, str] | None = None, check: Callable[[], None] | None = None) -> dict[str, int]:
        """Load raw rows (as `export_rows` yields them, tables in ROW_TABLES order) in one write
        transaction; with `replace_all`, everything the store held is deleted first. `settings` are
        written over the loaded meta rows (a restore's new epoch). `check()` runs last, inside the
        transaction (this thread's reads see the loaded rows): if it raises, nothing is kept. Returns the
        count per table."""
        counts = dict.fromkeys(ROW_TABLES, 0)

        def body(cur: Any, head: _Head) -> dict[str, int]:
            before = head.revision
            cur.execute(self._s.delete_changes)  # the feed's history is this store's, never a backup's
            if replace_all:
                head.seals = {}  # the loaded store's counters replace ours (earlier tickets' rows go too)
                for table in reversed(ROW_TABLES):
                    # the revision row is the write lock other writers queue on: updated, never deleted
                    cur.execute(f"DELETE FROM {table}" + (" WHERE name <> 'revision'" if table == "meta" else ""))
            chunk: list[Sequence[Any]] = []
            current = ""
            for table, row in rows:
                if table == "meta":
                    cur.execute(self._s.set_meta, tuple(row))
                    counts[table] += 1
                    continue
                if table != current or len(chunk) >= PAGE:
                    if chunk:
                        cur.executemany(self._s.raw_insert[current], chunk)
                    chunk, current = [], table
                chunk.append(tuple(row))
                counts[table] += 1
            if chunk:
                cur.executemany(self._s.raw_insert[current], chunk)
            for name, value in (settings or {}).items():
                cur.execute(self._s.set_meta, (name, value))
            epoch = _one(cur, self._s.get_meta, (_EPOCH,))
            head.epoch = None if epoch is None else str(epoch[0])  # later writes of the batch meet the fence
            self._migrated_known = False
            revision = _one(cur, self._s.get_meta, ("revision",))
            # the feed starts again at the loaded revision — above every revision this store served before, for
            # a restore (a new epoch): a watcher resuming from before it gets `resync`, never a silent jump into
            # the restored store's history. A copy (`migrate`: no new epoch) keeps the loaded revision, so it
            # reads back exactly as it was sent; its target served nobody.
            loaded = int(revision[0]) if revision else 0
            if settings and _EPOCH in settings and 0 < before >= loaded:
                loaded = before + 1
                cur.execute(self._s.set_meta, ("revision", str(loaded)))
            cur.execute(self._s.set_meta, (WATCH_FLOOR, str(loaded)))
            revision = (loaded,)
            chain = _one(cur, self._s.audit_head)
            # the batch's head is the loaded store's from here on (nothing after this in the batch may
            # write the revision it read before the load)
            head.revision = int(revision[0]) if revision else 0
            head.seq, head.mac = (int(chain[0]), str(chain[1])) if chain else (0, GENESIS_MAC)
            if check is not None:
                check()
            return counts

        try:
            loaded: dict[str, int] = self._transaction("loading a store", body)
        finally:
            self._migrated_known = False
        self._failures.clear()
        return loaded

    # -- meta ------------------------------------------------------------------------------------

    def pending_migrations(self) -> list[int]:
        """Schema migrations this code knows that the store has not applied (none once opened, unless
        another process downgraded it)."""
        try:
            return self._d.pending_migrations()
        except self._d.errors as exc:
            raise self._error("reading the schema version", exc) from exc

    def get_meta(self, name: str) -> str | None:
        try:
            row = self._read_one(self._s.get_meta, (name,))
        except self._d.errors as exc:
            raise self._error("reading a setting", exc) from exc
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str, *, only_if_absent: bool = False) -> bool:
        def body(cur: Any, head: _Head) -> bool:
            if only_if_absent:
                if _one(cur, self._s.get_meta, (name,)) is not None:
                    return False
                cur.execute(self._s.add_meta, (name, value))
                return True
            cur.execute(self._s.set_meta, (name, value))
            return True

        done: bool = self._transaction("writing a setting", body)
        return done

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        if getattr(self._tl, "cur", None) is not None:  # inside one already: that one's snapshot holds
            yield
            return
        d = self._d
        with d.hold() as cur:
            try:
                for statement in d.begin_snapshot:
                    cur.execute(statement)
            except d.errors as exc:
                raise self._error("starting a read snapshot", exc) from exc
            self._tl.cur = cur
            try:
                yield
            finally:
                self._tl.cur = None
                with contextlib.suppress(*d.errors):  # a read transaction has nothing to lose
                    cur.execute("COMMIT")

    def change_token(self) -> object:
        """A value that changes whenever any connection commits a write, this process's own included."""
        try:
            return self._d.change_token()
        except self._d.errors as exc:
            raise self._error("checking for changes", exc) from exc

    # -- key rotation (core/rotation.py) --------------------------------------------------------------
    # Re-sealing never changes what a row says, only its ciphertext: each row is compare-and-set on the
    # envelope read before (under the write lock, so a concurrent write is never overwritten), its MAC is
    # checked and recomputed with its audit_seq kept (freshness holds), and the ciphertexts written under
    # each key id are counted in meta rows `seals:<kid>` in the same transaction (NIST SP 800-38D).

    @functools.cached_property
    def _rotation_sql(self) -> dict[str, str]:
        p = self._s.p
        pos = "v.entry_id >= ? AND (v.entry_id, v.version) > (?, ?)"  # the first column alone helps MariaDB's index
        return {
            "page": p(
                'SELECT e.namespace, e."key", e.environment, v.entry_id, v.version, v.stored_value, '
                "CASE WHEN e.version = v.version AND e.stored_value = v.stored_value THEN 1 ELSE 0 END "
                "FROM versions v JOIN entries e ON e.id = v.entry_id "
                f"WHERE v.value_type = 'secret' AND v.stored_value IS NOT NULL AND {pos} "
                "ORDER BY v.entry_id, v.version LIMIT ?"
            ),
            "range": p(
                f"SELECT {_E_ENTRY_COLS}, e.mac, {_V_VERSION_COLS}, v.mac FROM versions v JOIN entries e "
                "ON e.id = v.entry_id WHERE v.entry_id >= ? AND v.entry_id <= ? "
                "AND (v.entry_id, v.version) >= (?, ?) AND (v.entry_id, v.version) <= (?, ?)"
            ),
            "version": p("UPDATE versions SET stored_value = ?, mac = ? WHERE entry_id = ? AND version = ? "
                         "AND stored_value = ?"),
            "entry": p("UPDATE entries SET stored_value = ?, mac = ? WHERE id = ? AND version = ? "
                       "AND stored_value = ?"),
            "counts": p("SELECT name, value FROM meta WHERE name >= ? AND name < ?"),
            # DECIMAL(20, 0): the one integer type all three spell alike; the sum goes back as text
            "add": p("UPDATE meta SET value = CAST(value AS DECIMAL(20, 0)) + ? WHERE name = ?"),
        }

    def sealed_versions(
        self, after: tuple[str, int] | None, limit: int
    ) -> tuple[list[SealedValue], tuple[str, int] | None]:
        """Up to `limit` sealed version rows after position `after` ((entry_id, version); None: from the
        start) in that order, and the position to continue after (None: no more rows)."""
        entry_id, version = after if after is not None else ("", -1)
        try:
            rows = self._read_all(self._rotation_sql["page"], (entry_id, entry_id, version, max(limit, 1)))
        except self._d.errors as exc:
            raise self._error("reading sealed values", exc) from exc
        found = [SealedValue(r[3], int(r[4]), r[0], r[1], _ENVS[r[2]], r[5], r[6] == 1) for r in rows if r[2] in _ENVS]
        return found, ((rows[-1][3], int(rows[-1][4])) if len(rows) >= max(limit, 1) else None)

    def reseal(self, changes: Sequence[tuple[SealedValue, str]], sealed_by: str,
               audit_key: bytes) -> list[ResealOutcome]:
        """Replace each version row's envelope with the new one (sealed under key id `sealed_by`) if the row
        still holds the envelope it was read with, and its entry's current row too where that holds the same
        ciphertext; one transaction under the write lock, fenced like any write signed with `audit_key`.
        Returns one outcome per change, in order."""
        if not changes:
            return []
        macs = self._need_macs()
        sql = self._rotation_sql
        ordered = sorted(changes, key=lambda c: (c[0].entry_id, c[0].version))
        first, last = ordered[0][0], ordered[-1][0]

        def body(cur: Any, head: _Head) -> list[ResealOutcome]:
            rows = _all(cur, sql["range"], (first.entry_id, last.entry_id, first.entry_id, first.version,
                                            last.entry_id, last.version))
            by_position = {(r[_N_ENTRY + 1], int(r[_N_ENTRY + 2])): r for r in rows}
            outcomes: list[ResealOutcome] = []
            written = 0
            for sealed, envelope in changes:
                row = by_position.get((sealed.entry_id, sealed.version))
                old = sealed.stored_value
                if row is None or row[_N_ENTRY + 6] != old:
                    outcomes.append(ResealOutcome.CHANGED)
                    continue
                entry, entry_mac = list(row[:_N_ENTRY]), row[_N_ENTRY]
                version, version_mac = list(row[_N_ENTRY + 1:_N_ENTRY + 1 + _N_VERSION]), row[_N_ENTRY + 1 + _N_VERSION]
                mirrored = entry[4] == sealed.version and entry[7] == old
                if (entry[1], entry[2], entry[3]) != (sealed.namespace, sealed.key, sealed.environment.value) \
                        or not macs.ok("versions", (*entry[1:4], *version), version_mac) \
                        or (mirrored and not macs.ok("entries", entry, entry_mac)):
                    outcomes.append(ResealOutcome.TAMPERED)  # never bless a forged row with a fresh MAC
                    continue
                version[5] = envelope
                cur.execute(sql["version"], (envelope, macs.mac("versions", (*entry[1:4], *version)),
                                             sealed.entry_id, sealed.version, old))
                if mirrored:
                    entry[7] = envelope
                    cur.execute(sql["entry"], (envelope, macs.mac("entries", entry), entry[0], sealed.version, old))
                outcomes.append(ResealOutcome.RESEALED)
                written += 1
            if written:
                head.seals = {**head.seals, sealed_by: head.seals.get(sealed_by, 0) + written}
            return outcomes

        outcomes: list[ResealOutcome] = self._transaction("re-sealing secrets", body, rows=True,
                                                          signed_with=audit_key)
        return outcomes

    def swap_meta(self, name: str, old: str | None, new: str, *, sealed_by: str | None = None) -> bool:
        """Write setting `name` only if it still holds `old` (None: only if absent); False if it did not.
        `sealed_by`: `new` is a ciphertext sealed under that key id, counted in the same transaction."""
        def body(cur: Any, head: _Head) -> bool:
            row = _one(cur, self._s.get_meta, (name,))
            if (None if row is None else str(row[0])) != old:
                return False
            cur.execute(self._s.set_meta if old is not None else self._s.add_meta, (name, new))
            if sealed_by is not None:
                head.seals = {**head.seals, sealed_by: head.seals.get(sealed_by, 0) + 1}
            return True

        done: bool = self._transaction("writing a setting", body)
        return done

    def seal_counts(self) -> dict[str, int]:
        """Ciphertexts written under each key id over the store's life (meta rows `seals:<kid>`)."""
        try:
            rows = self._read_all(self._rotation_sql["counts"], ("seals:", "seals;"))
        except self._d.errors as exc:
            raise self._error("reading the seal counters", exc) from exc
        return {str(name)[6:]: int(value) for name, value in rows if str(value).isdigit()}

    @staticmethod
    def _count_seal(head: _Head, envelope: str | None) -> None:
        """Count one ciphertext a write batch stores (under the key id its envelope names)."""
        try:
            doc = orjson.loads(envelope or "")
        except orjson.JSONDecodeError:
            return
        kid = doc.get("kid") if isinstance(doc, dict) else None
        if isinstance(kid, str) and kid:
            head.seals = {**head.seals, kid[:16]: head.seals.get(kid[:16], 0) + 1}

    def _add_seals(self, cur: Any, seals: dict[str, int]) -> None:
        """Add a batch's seal counts to the meta counters (inside its transaction, under the write lock), with
        statements that read nothing back: PostgreSQL sends them with the COMMIT, no round trip of their own."""
        for kid, count in sorted(seals.items()):
            cur.execute(self._s.add_meta, (f"seals:{kid}", "0"))
            cur.execute(self._rotation_sql["add"], (count, f"seals:{kid}"))


def make_event(audit_key: bytes, seq: int, prev_mac: str, pending: PendingEvent) -> AuditEvent:
    """Build the next link; its MAC covers exactly what a reader loads back (`audit.mac_fields`)."""
    try:
        # Round-trip the details so the MAC covers what a reader will load back.
        stored_details = orjson.loads(orjson.dumps(pending.details, option=orjson.OPT_SORT_KEYS))
    except TypeError:
        raise ValidationError("Audit details must be a JSON object with string keys") from None
    event = AuditEvent(
        seq=seq, id=new_id(), timestamp=pending.timestamp if pending.timestamp is not None else utc_now(),
        type=pending.type, actor=pending.actor, namespace=pending.namespace, key=pending.key,
        environment=pending.environment, old_version=pending.old_version, new_version=pending.new_version,
        outcome=pending.outcome, source_ip=pending.source_ip, request_id=pending.request_id,
        details=stored_details, prev_mac=prev_mac, mac="", subject=pending.subject,
    )
    return replace(event, mac=event_mac(audit_key, event))


def event_values(event: AuditEvent) -> tuple[Any, ...]:
    """An event's columns in `_AUDIT_COLS` order."""
    return (
        event.seq, event.id, event.timestamp, event.type, event.actor, event.namespace,
        event.key, event.environment, event.old_version, event.new_version, event.outcome,
        event.source_ip, event.request_id,
        orjson.dumps(event.details, option=orjson.OPT_SORT_KEYS).decode(), event.prev_mac,
        event.mac, event.subject,
    )
