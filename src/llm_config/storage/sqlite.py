"""SQLite backend: the `Storage` Protocol of `llm_config.types` over stdlib sqlite3.

Owns: the static SQL of the SQLite dialect; per-thread connections (WAL, `synchronous=FULL`,
`secure_delete`, 30 s busy timeout, autocommit with explicit transactions); one `BEGIN IMMEDIATE`
transaction per `apply` that holds the compare-and-set checks, version rows, current rows, the watch
revision counter (meta row `revision`) and the audit-chain append (ARCHITECTURE decisions 2, 3, 6, 7);
the row MACs of SPEC §2 — computed in that transaction, checked on every read once the manager has
handed over the row key (`set_row_key`), see `llm_config.integrity`.

Never: sees a plaintext secret (secret values arrive sealed and leave sealed), serves a row whose MAC
fails, builds SQL from input (statements are static; list/audit queries only combine fixed
fragments), or puts a stored value, a request value or a ciphertext into an error message or a log
line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson

from llm_config.audit import FINGERPRINT_SCHEME, GENESIS_MAC, event_mac, write_event_type
from llm_config.errors import (
    AuditError,
    AuthenticationError,
    ConflictError,
    IntegrityError,
    NotFoundError,
    StorageError,
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
    Environment,
    PendingEvent,
    Role,
    StoredEntry,
    StoredVersion,
    UnreadableRow,
    ValueType,
    WriteKind,
    WriteRequest,
    WriteResult,
)
from llm_config.names import validate_key, validate_namespace
from llm_config.storage.migrate import SQLITE, migrate, pending_versions
from llm_config.times import utc_now
from llm_config.types import AuditQuery, Fingerprinter
from llm_config.writes import FOR_ROLLBACK, check_expected, check_plain_over_secret, check_purge, check_target, where

__all__ = ["BUSY_TIMEOUT_SECONDS", "CHECKPOINT_WAIT_MS", "SQLiteStorage"]

log = logging.getLogger("llm_config.storage")

BUSY_TIMEOUT_SECONDS: Final = 30.0
CHECKPOINT_WAIT_MS: Final = 1000
"""How long a purge waits for readers to let it empty the write-ahead log."""

_ENVS: Final = {env.value: env for env in Environment}
_VTYPES: Final = {vt.value: vt for vt in ValueType}
# Binding a str-enum makes sqlite3 look for an adapter first (~0.5 us); bind the plain text instead.
_ENV_TEXT: Final[dict[Any, str]] = {env: env.value for env in Environment}

# Column lists in MAC order (integrity.row_mac covers exactly these values, in this order).
_ENTRY_COLS: Final = (
    "id, namespace, key, environment, version, deleted, value_type, stored_value, fingerprint, "
    "created_at, created_by, updated_at, updated_by, tags, description, revision, audit_seq, purged"
)
_E_ENTRY_COLS: Final = ", ".join("e." + c.strip() for c in _ENTRY_COLS.split(","))
_N_ENTRY: Final = 18
_VERSION_COLS: Final = (
    "entry_id, version, deleted, purged, value_type, stored_value, fingerprint, "
    "created_at, created_by, change_description, audit_seq, revision"
)
_V_VERSION_COLS: Final = ", ".join("v." + c.strip() for c in _VERSION_COLS.split(","))
_N_VERSION: Final = 12
_API_KEY_COLS: Final = (
    "id, name, role, namespaces, environments, key_hash, created_at, created_by, expires_at, revoked_at, "
    "parent_id, audit_seq"
)
_K_API_KEY_COLS: Final = ", ".join("k." + c.strip() for c in _API_KEY_COLS.split(","))
_N_API_KEY: Final = 12
_AUDIT_COLS: Final = (
    "seq, id, timestamp, type, actor, namespace, key, environment, old_version, new_version, "
    "outcome, source_ip, request_id, details, prev_mac, mac, subject"
)

# The newest event about a row's subject, next to the row (integrity.is_fresh).
_ENTRY_HEAD: Final = (
    "(SELECT MAX(a.seq) FROM audit_events a "
    f"WHERE a.subject = {entry_subject_sql('e.namespace', 'e.key', 'e.environment')})"
)
_KEY_HEAD: Final = "(SELECT MAX(a.seq) FROM audit_events a WHERE a.subject = 'k:' || k.id)"

# Always one row: (head, entry columns or NULLs, mac) — a missing entry whose subject has events
# is a deleted row, told apart from one that never existed.
_SQL_GET_CURRENT: Final = (
    f"SELECT (SELECT MAX(seq) FROM audit_events WHERE subject = ?), {_E_ENTRY_COLS}, e.mac "
    "FROM (SELECT 1) AS one LEFT JOIN entries e ON e.namespace = ? AND e.environment = ? AND e.key = ?"
)
_SQL_INSERT_ENTRY: Final = f"INSERT INTO entries ({_ENTRY_COLS}, mac) VALUES ({', '.join('?' * (_N_ENTRY + 1))})"
_SQL_UPDATE_ENTRY: Final = (
    "UPDATE entries SET namespace = ?, key = ?, environment = ?, version = ?, deleted = ?, value_type = ?, "
    "stored_value = ?, fingerprint = ?, created_at = ?, created_by = ?, updated_at = ?, updated_by = ?, "
    "tags = ?, description = ?, revision = ?, audit_seq = ?, purged = ?, mac = ? WHERE id = ?"
)
_SQL_INSERT_VERSION: Final = (
    f"INSERT INTO versions ({_VERSION_COLS}, mac) VALUES ({', '.join('?' * (_N_VERSION + 1))})"
)
_SQL_VERSIONS_OF: Final = f"SELECT {_VERSION_COLS}, mac FROM versions WHERE entry_id = ? ORDER BY version DESC"
_SQL_VERSION_OF: Final = f"SELECT {_VERSION_COLS}, mac FROM versions WHERE entry_id = ? AND version = ?"
_SQL_PURGE_VERSION: Final = (
    "UPDATE versions SET purged = 1, stored_value = NULL, value_type = 'none', fingerprint = NULL, mac = ? "
    "WHERE entry_id = ? AND version = ?"
)
_SQL_ALL_ENTRIES: Final = (
    f"SELECT {_ENTRY_HEAD}, {_E_ENTRY_COLS}, e.mac FROM entries e ORDER BY e.namespace, e.key, e.environment"
)
_SQL_ALL_VERSIONS: Final = (
    f"SELECT e.namespace, e.key, e.environment, {_V_VERSION_COLS}, v.mac "
    "FROM versions v JOIN entries e ON e.id = v.entry_id ORDER BY e.namespace, e.key, e.environment, v.version"
)
_SQL_UPSERT_API_KEY: Final = (
    f"INSERT INTO api_keys ({_API_KEY_COLS}, mac) VALUES ({', '.join('?' * (_N_API_KEY + 1))}) "
    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role, "
    "namespaces = excluded.namespaces, environments = excluded.environments, key_hash = excluded.key_hash, "
    "created_at = excluded.created_at, created_by = excluded.created_by, expires_at = excluded.expires_at, "
    "revoked_at = excluded.revoked_at, parent_id = excluded.parent_id, audit_seq = excluded.audit_seq, "
    "mac = excluded.mac"
)
_SQL_API_KEYS: Final = f"SELECT {_KEY_HEAD}, {_K_API_KEY_COLS}, k.mac FROM api_keys k"
_SQL_API_KEY_BY_ID: Final = _SQL_API_KEYS + " WHERE k.id = ?"
_SQL_API_KEY_BY_HASH: Final = _SQL_API_KEYS + " WHERE k.key_hash = ?"
_SQL_API_KEYS_ORDERED: Final = _SQL_API_KEYS + " ORDER BY k.created_at, k.id"
_SQL_API_KEY_CHILDREN: Final = _SQL_API_KEYS + " WHERE k.parent_id = ?"
_SQL_LIVE_NAME: Final = (
    "SELECT 1 FROM api_keys WHERE name = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?) LIMIT 1"
)
_SQL_SEALED_VALUES: Final = "SELECT stored_value FROM versions WHERE value_type = 'secret' AND stored_value IS NOT NULL"
_SQL_AUDIT_HEAD: Final = "SELECT seq, mac FROM audit_events ORDER BY seq DESC LIMIT 1"
_SQL_INSERT_AUDIT: Final = f"INSERT INTO audit_events ({_AUDIT_COLS}) VALUES ({', '.join('?' * 17)})"
_SQL_SUBJECT_HEAD: Final = "SELECT MAX(seq) FROM audit_events WHERE subject = ?"
_SQL_ANY_SUBJECT: Final = "SELECT 1 FROM audit_events WHERE subject IS NOT NULL LIMIT 1"
_SQL_GET_META: Final = "SELECT value FROM meta WHERE name = ?"
_SQL_SET_META: Final = (
    "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)
_SQL_ADD_META: Final = "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"
_SQL_DELETE_META: Final = "DELETE FROM meta WHERE name = ?"
_SQL_SUBTREE: Final = "(namespace = ? OR (namespace > ? AND namespace < ?))"
_PENDING: Final = "integrity_pending"
_PENDING_REMEDY: Final = (
    "open it once with the master key where its directory can be written; 'llm-config doctor' says why that failed"
)


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL; SQLite answers "locked" at once (ignoring busy_timeout) while another
    process creates the same new database, so retry with backoff up to the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


def _storage_error(operation: str, exc: sqlite3.Error) -> StorageError:
    # sqlite3 messages name tables, columns and conditions, never bound parameter values.
    return StorageError(f"Storage failed while {operation}: {exc}")


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


def _new_id() -> str:
    """A random UUID (version 4), without importing `uuid` on every command's start (~2 ms)."""
    h = bytearray(os.urandom(16))
    h[6] = (h[6] & 0x0F) | 0x40
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


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


def _entry(v: Sequence[Any]) -> StoredEntry:
    tags, purged = v[13], v[17]
    return StoredEntry(
        v[0], v[1], v[2], _ENVS[v[3]], v[4], v[5] == 1, _VTYPES[v[6]], v[7], v[8], v[9], v[10], v[11], v[12],
        () if tags == "[]" else tuple(orjson.loads(tags)), v[14], v[15],
        () if purged == "[]" else tuple(orjson.loads(purged)),
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


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):  # the original error is what matters
            conn.execute("ROLLBACK")


class _Holder:
    """Lives in a thread's `threading.local`; when the thread ends it dies and closes the connection."""

    __slots__ = ("__weakref__",)


class SQLiteStorage:
    """`Storage` over one SQLite database file; safe to share between threads (one connection each).

    `path` must name a database file that exists or may be created; directory layout, file modes
    and the create/refuse decision belong to `open_storage`.
    """

    dialect: Final = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, url: str | None = None, read_only: bool = False) -> None:
        self.path = Path(path)
        self.url = url if url is not None else f"sqlite:///{self.path}"
        self.read_only = read_only
        self._uri: str | None = None
        self._lock = threading.Lock()
        # Writers of this process queue here instead of in SQLite's busy handler, which sleeps in
        # growing steps and gave concurrent PUTs a p99 of ~1 s; other processes still wait in it.
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._finalizers: list[weakref.finalize[Any, Any]] = []
        self._closed = False
        self._token_lock = threading.Lock()
        self._token_conn: sqlite3.Connection | None = None
        self._macs: RowMacs | None = None
        self._migrated_seq: int | None = None
        self._migrated_known = False
        self._failures: dict[tuple[Any, ...], str] = {}
        try:
            if read_only:
                self._open_read_only()
            else:
                conn = self._conn()
                _enable_wal(conn)
                migrate(conn, SQLITE)
        except sqlite3.Error as exc:
            self.close()
            raise StorageError(f"Could not open the store at {self.url}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _open_read_only(self) -> None:
        """Read a store whose directory cannot be written (SQLite cannot make its -wal/-shm files there):
        `mode=ro` if it can share the WAL index, else `immutable=1` (nobody can be writing it then)."""
        from urllib.parse import quote

        base = "file:" + quote(str(self.path.absolute()))
        for query in ("?mode=ro", "?immutable=1"):
            self._uri = base + query
            try:
                pending = pending_versions(self._conn(), SQLITE)
            except sqlite3.OperationalError:
                self._local = threading.local()
                continue
            if pending:
                raise StorageError(
                    f"The store at {self.url} needs a schema upgrade, which needs write access: open it once "
                    "where its directory can be written"
                )
            return
        raise StorageError(f"Could not open the store at {self.url} even read-only")

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False only so that close() may close other threads' connections;
        # each connection is otherwise used by the one thread that opened it.
        conn = sqlite3.connect(
            self._uri or self.path,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            check_same_thread=False,
            uri=self._uri is not None,
        )
        try:
            if not self.read_only:
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA secure_delete = ON")  # freed space is zeroed: a purged value leaves no copy
        except BaseException:
            conn.close()
            raise
        return conn

    def _conn(self) -> sqlite3.Connection:
        try:
            conn: sqlite3.Connection = self._local.conn
        except AttributeError:
            return self._open_thread_conn()
        return conn

    def _open_thread_conn(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise StorageError("Storage is closed")
            try:
                conn = self._connect()
            except sqlite3.Error as exc:
                raise _storage_error(f"connecting to {self.url}", exc) from exc
            holder = _Holder()
            finalizer = weakref.finalize(holder, conn.close)
            self._finalizers = [f for f in self._finalizers if f.alive]
            self._finalizers.append(finalizer)
            local = self._local
            local.conn = conn
            # one reused cursor for point reads (one row, so sqlite3 resets the statement as it
            # returns it): a cold get saves creating and freeing a cursor
            local.point = conn.cursor()
            local.holder = holder
        return conn

    def close(self) -> None:
        """Close every thread's connection; later calls raise StorageError. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            finalizers, self._finalizers = self._finalizers, []
            self._local = threading.local()
        for finalizer in finalizers:
            with contextlib.suppress(sqlite3.Error):  # closing is best effort
                finalizer()
        with self._token_lock:
            if self._token_conn is not None:
                with contextlib.suppress(sqlite3.Error):  # closing is best effort
                    self._token_conn.close()
                self._token_conn = None

    def __enter__(self) -> SQLiteStorage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- row integrity ---------------------------------------------------------------------------

    def set_row_key(self, key: bytes | None) -> None:
        """Check every row read from now on against `key` (None: rows cannot be checked)."""
        self._macs = None if key is None else RowMacs(key)

    @property
    def verifying(self) -> bool:
        """Whether rows are checked on read (a row key was handed over)."""
        return self._macs is not None

    def _migration_seq(self) -> int | None:
        if not self._migrated_known:
            row = self._conn().execute(_SQL_SUBJECT_HEAD, (MIGRATION_SUBJECT,)).fetchone()
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
        """Map a `_SQL_GET_CURRENT` row, refusing a forged, replayed or deleted entry."""
        values = row[1:_N_ENTRY + 1]
        macs = self._macs
        if values[0] is None:
            if macs is not None and row[0] is not None:
                # a crafted invalid name could spell another entry's subject: only a valid one may fail here
                validate_namespace(namespace)
                validate_key(key)
                raise self._fail(("entries", namespace, key, env.value),
                                 f"entry {where(namespace, key, env)} has audit events but no row "
                                 "(deleted outside llm-config)")
            return None
        if macs is not None:
            self._check_entry_values(macs, row[0], values, row[_N_ENTRY + 1])
        return self._mapped(("entries", namespace, key, env.value), _entry, values, values)

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
        return mapped, self._macs is not None and self._macs.ok(table, named, mac)

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
            point: sqlite3.Cursor = self._local.point
        except AttributeError:
            point = self._open_thread_conn().cursor()
        try:
            # always exactly one row (a LEFT JOIN on a constant), so the reused cursor is reset after it
            row = point.execute(_SQL_GET_CURRENT, (entry_subject(namespace, key, env_text), namespace, env_text, key)
                                ).fetchone()
        except sqlite3.Error as exc:
            raise _storage_error("reading an entry", exc) from exc
        values = row[1:_N_ENTRY + 1]
        macs = self._macs
        head = row[0]
        # the common case inline (every cold read comes here): a live row, its MAC good, no later event
        if macs is not None and head is not None and values[16] == head and values[0] is not None \
                and macs.ok("entries", values, row[_N_ENTRY + 1]):
            return _entry(values)
        return self._checked_entry(row, namespace, key, env)

    def _versions(
        self, conn: sqlite3.Connection, entry: StoredEntry, version: int | None, limit: int | None
    ) -> list[StoredVersion]:
        if version is not None:
            rows = conn.execute(_SQL_VERSION_OF, (entry.id, version)).fetchall()
        else:
            sql = _SQL_VERSIONS_OF
            params: tuple[Any, ...] = (entry.id,)
            if limit is not None:
                sql, params = sql + " LIMIT ?", (entry.id, max(limit, 0))
            rows = conn.execute(sql, params).fetchall()
        return [self._check_version(entry, row[:_N_VERSION], row[_N_VERSION]) for row in rows]

    def get_version(
        self, namespace: str, key: str, env: Environment, version: int
    ) -> StoredVersion | None:
        entry = self.get_current(namespace, key, env)
        if entry is None:
            return None
        try:
            found = self._versions(self._conn(), entry, version, None)
        except sqlite3.Error as exc:
            raise _storage_error("reading a version", exc) from exc
        return found[0] if found else None

    def history(
        self, namespace: str, key: str, env: Environment, limit: int | None = None
    ) -> list[StoredVersion]:
        entry = self.get_current(namespace, key, env)
        if entry is None:
            return []
        try:
            return self._versions(self._conn(), entry, None, limit)
        except sqlite3.Error as exc:
            raise _storage_error("reading history", exc) from exc

    def list_current(
        self,
        namespace: str,
        env: Environment,
        *,
        prefix: str = "",
        after_key: str | None = None,
        limit: int | None = None,
        recursive: bool = False,
    ) -> list[StoredEntry]:
        clauses = ["e.environment = ?", "e.deleted = 0"]
        params: list[Any] = [_ENV_TEXT.get(env, env)]
        if recursive:
            clauses.append(_SQL_SUBTREE.replace("namespace", "e.namespace"))
            params.extend(_subtree(namespace))
        else:
            clauses.append("e.namespace = ?")
            params.append(namespace)
        if prefix:
            clauses.append("e.key >= ?")
            params.append(prefix)
            upper = _successor(prefix)
            if upper is not None:
                clauses.append("e.key < ?")
                params.append(upper)
        if after_key is not None:
            if recursive:
                after_ns, sep, after_k = after_key.partition("~")
                if not sep:
                    after_ns, after_k = namespace, after_key
                clauses.append("(e.namespace > ? OR (e.namespace = ? AND e.key > ?))")
                params.extend((after_ns, after_ns, after_k))
            else:
                clauses.append("e.key > ?")
                params.append(after_key)
        order = "e.namespace, e.key" if recursive else "e.key"
        head = _ENTRY_HEAD if self._macs is not None else "NULL"
        sql = f"SELECT {head}, {_E_ENTRY_COLS}, e.mac FROM entries e WHERE {' AND '.join(clauses)} ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(limit, 0))
        try:
            rows = self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _storage_error("listing entries", exc) from exc
        macs = self._macs
        if macs is None:
            return [self._mapped(("entries", row[2], row[3], row[4]), _entry, row[1:_N_ENTRY + 1], row[1:_N_ENTRY + 1])
                    for row in rows]
        out: list[StoredEntry] = []
        for row in rows:  # a listing that meets a failing row fails whole (SPEC §2)
            values = row[1:_N_ENTRY + 1]
            self._check_entry_values(macs, row[0], values, row[_N_ENTRY + 1])
            out.append(_entry(values))
        return out

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
            rows = self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _storage_error("listing namespaces", exc) from exc
        return [row[0] for row in rows]

    def iter_entries(self) -> Iterator[tuple[StoredEntry, bool, bool] | UnreadableRow]:
        """Every entry row, unchecked: (entry, MAC ok?, fresh?) — for verify (MAC ok is False
        without a row key) — or an UnreadableRow."""
        try:
            cursor = self._conn().execute(_SQL_ALL_ENTRIES)
            for row in cursor:
                values = row[1:_N_ENTRY + 1]
                item = self._unchecked("entries", _entry, values, values, row[_N_ENTRY + 1])
                yield item if isinstance(item, UnreadableRow) else (
                    *item, is_fresh(values[16], row[0], self._migration_seq()))
        except sqlite3.Error as exc:
            raise _storage_error("reading entries", exc) from exc

    def iter_versions(self) -> Iterator[tuple[str, str, str, StoredVersion, bool] | UnreadableRow]:
        """Every version row, unchecked: (namespace, key, environment, version, MAC ok?) — for verify —
        or an UnreadableRow."""
        try:
            cursor = self._conn().execute(_SQL_ALL_VERSIONS)
            for row in cursor:
                named = row[:3 + _N_VERSION]
                item = self._unchecked("versions", _version, named[3:], named, row[3 + _N_VERSION])
                yield item if isinstance(item, UnreadableRow) else (row[0], row[1], row[2], *item)
        except sqlite3.Error as exc:
            raise _storage_error("reading versions", exc) from exc

    def sealed_values(self) -> list[str]:
        try:
            rows = self._conn().execute(_SQL_SEALED_VALUES).fetchall()
        except sqlite3.Error as exc:
            raise _storage_error("reading sealed values", exc) from exc
        return [row[0] for row in rows]

    # -- writes ----------------------------------------------------------------------------------

    def _transaction(
        self, operation: str, body: Callable[[sqlite3.Connection], Any], *, audit: bool = False, rows: bool = False,
    ) -> Any:
        """Run `body` in one `BEGIN IMMEDIATE` transaction of this thread's connection, writers queued.

        `rows`: the body writes MAC'd rows, which a store whose row MACs are still to be computed
        (integrity_pending) must not take — the one-time migration would then refuse it for good.
        """
        conn = self._conn()
        error = AuditError if audit else StorageError
        if self.read_only:
            raise error(f"Storage failed while {operation}: the store at {self.url} is open read-only (its "
                        "directory cannot be written here)")
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise error(f"Storage failed while {operation}: {exc}") from exc
            try:
                if rows and conn.execute(_SQL_GET_META, (_PENDING,)).fetchone() is not None:
                    raise IntegrityError(
                        "Integrity check failed: this older store's row MACs are not computed yet, so it takes no "
                        f"writes ({_PENDING_REMEDY})"
                    )
                result = body(conn)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                if audit:
                    raise AuditError(f"Audit event could not be written: {exc}") from exc
                raise _storage_error(operation, exc) from exc
            except BaseException:
                _rollback(conn)
                raise
        return result

    def apply(self, writes: Sequence[WriteRequest], audit_key: bytes) -> list[WriteResult]:
        if not writes:
            return []
        results: list[WriteResult] = self._transaction(
            "applying writes", lambda conn: self._apply_all(conn, writes, audit_key), rows=True
        )
        if any(w.kind is WriteKind.PURGE for w in writes):
            self._checkpoint()
        return results

    def _checkpoint(self) -> None:
        """Move the WAL into the database and truncate it, so a purged value leaves no copy there.

        Best effort, waiting at most CHECKPOINT_WAIT_MS for readers (not the 30 s busy timeout of a
        write): a reader holding an older snapshot keeps those frames until it finishes and a later
        checkpoint (SQLite's automatic one, or the next purge) overwrites them. That case is logged.
        """
        conn = self._conn()
        try:
            conn.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error:
            busy = 1
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        if busy:
            log.warning("purge: the write-ahead log could not be emptied now (a reader holds an older snapshot); "
                        "the purged value's old pages stay in it until a later checkpoint overwrites them")

    def _chain_head(self, conn: sqlite3.Connection) -> tuple[int, str]:
        head = conn.execute(_SQL_AUDIT_HEAD).fetchone()
        return (int(head[0]), str(head[1])) if head else (0, GENESIS_MAC)

    def _apply_all(
        self, conn: sqlite3.Connection, writes: Sequence[WriteRequest], audit_key: bytes
    ) -> list[WriteResult]:
        seq, prev_mac = self._chain_head(conn)
        row = conn.execute(_SQL_GET_META, ("revision",)).fetchone()
        revision = int(row[0]) if row else 0
        results: list[WriteResult] = []
        for write in writes:
            revision += 1
            seq += 1
            entry, old_version, new_version, secret, existed, details = self._apply_one(conn, write, seq, revision)
            event = _make_event(
                audit_key, seq, prev_mac,
                PendingEvent(
                    type=write.audit_type or write_event_type(write.kind, secret=secret, existed=existed),
                    actor=write.actor, namespace=write.namespace, key=write.key,
                    environment=write.environment.value, old_version=old_version, new_version=new_version,
                    source_ip=write.source_ip, request_id=write.request_id, details=details,
                    timestamp=write.timestamp,
                    subject=entry_subject(write.namespace, write.key, write.environment.value),
                ),
            )
            _insert_event(conn, event)
            prev_mac = event.mac
            results.append(WriteResult(entry=entry, old_version=old_version, audit_seq=seq))
        conn.execute(_SQL_SET_META, ("revision", str(revision)))
        return results

    def _current_for_write(self, conn: sqlite3.Connection, w: WriteRequest) -> StoredEntry | None:
        env = w.environment.value
        row = conn.execute(
            _SQL_GET_CURRENT, (entry_subject(w.namespace, w.key, env), w.namespace, env, w.key)
        ).fetchone()
        return self._checked_entry(row, w.namespace, w.key, w.environment)

    def _apply_one(
        self, conn: sqlite3.Connection, w: WriteRequest, seq: int, revision: int
    ) -> tuple[StoredEntry, int | None, int | None, bool, bool, dict[str, Any]]:
        """Apply one write; return (entry, old_version, new_version, secret, existed, details) for its event."""
        current = self._current_for_write(conn, w)
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
                conn, w, current, new_version=new_version, seq=seq, revision=revision,
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
                conn, w, current, new_version=new_version, seq=seq, revision=revision,
                deleted=True, value_type=ValueType.NONE, stored_value=None, fingerprint=None,
            )
            return entry, old_version, new_version, current.value_type is ValueType.SECRET, existed, details

        target = self._target_version(conn, w, current)
        if kind is WriteKind.ROLLBACK:
            check_plain_over_secret(w, current, target.value_type, FOR_ROLLBACK)
            entry = self._write_version(
                conn, w, current, new_version=new_version, seq=seq, revision=revision,
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
            conn.execute(_SQL_PURGE_VERSION, (mac, current.id, target.version))
            entry = replace(
                current, revision=revision,
                purged_versions=tuple(sorted({*current.purged_versions, target.version})),
            )
            self._save_entry(conn, entry, seq, insert=False)
            details["purged_version"] = target.version
            secret = target.value_type is ValueType.SECRET
            return entry, target.version, None, secret, existed, details

        raise ValidationError(f"Unknown write kind: {kind!r}")  # pragma: no cover

    def _need_macs(self) -> RowMacs:
        if self._macs is None:
            raise StorageError("Writing needs the row-integrity key (open the store with the master key)")
        return self._macs

    def _target_version(
        self, conn: sqlite3.Connection, w: WriteRequest, current: StoredEntry
    ) -> StoredVersion:
        if w.target_version is None:
            raise ValidationError(f"A {w.kind.value} needs a target version")
        found = self._versions(conn, current, w.target_version, None)
        return check_target(w, found[0] if found else None)

    def _save_entry(self, conn: sqlite3.Connection, entry: StoredEntry, seq: int, *, insert: bool) -> None:
        values = _entry_values(entry, seq)
        mac = self._need_macs().mac("entries", values)
        if insert:
            conn.execute(_SQL_INSERT_ENTRY, (*values, mac))
        else:
            conn.execute(_SQL_UPDATE_ENTRY, (*values[1:], mac, entry.id))

    def _write_version(
        self,
        conn: sqlite3.Connection,
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
                id=_new_id(),
                namespace=w.namespace,
                key=w.key,
                environment=w.environment,
                version=new_version,
                deleted=deleted,
                value_type=value_type,
                stored_value=stored_value,
                fingerprint=fingerprint,
                created_at=w.timestamp,
                created_by=w.actor,
                updated_at=w.timestamp,
                updated_by=w.actor,
                tags=tuple(w.tags) if w.tags is not None else (),
                description=w.description,
                revision=revision,
            )
        else:
            entry = replace(
                current,
                version=new_version,
                deleted=deleted,
                value_type=value_type,
                stored_value=stored_value,
                fingerprint=fingerprint,
                updated_at=w.timestamp,
                updated_by=w.actor,
                tags=tuple(w.tags) if w.tags is not None else current.tags,
                description=w.description if w.description is not None else current.description,
                revision=revision,
            )
        self._save_entry(conn, entry, seq, insert=current is None)
        version = StoredVersion(
            entry_id=entry.id, version=new_version, deleted=deleted, purged=False, value_type=value_type,
            stored_value=stored_value, fingerprint=fingerprint, created_at=w.timestamp, created_by=w.actor,
            change_description=w.change_description
            or ("Updated" if current is not None and not current.deleted else "Created"),
            audit_seq=seq, revision=revision,
        )
        values = _version_values(version)
        mac = self._need_macs().mac("versions", _version_mac_input(entry, values))
        conn.execute(_SQL_INSERT_VERSION, (*values, mac))
        return entry

    # -- audit -----------------------------------------------------------------------------------

    def append_audit(self, event: PendingEvent, audit_key: bytes) -> AuditEvent:
        return self._audited(audit_key, [event])[-1]

    def append_audit_many(self, events: Sequence[PendingEvent], audit_key: bytes) -> None:
        if events:
            self._audited(audit_key, events)

    def _audited(self, audit_key: bytes, events: Sequence[PendingEvent]) -> list[AuditEvent]:
        """Append `events` in a single BEGIN IMMEDIATE transaction."""
        built: list[AuditEvent] = self._transaction(
            "appending audit events", lambda conn: self._append_events(conn, audit_key, events), audit=True
        )
        return built

    def _append_events(
        self, conn: sqlite3.Connection, audit_key: bytes, events: Sequence[PendingEvent]
    ) -> list[AuditEvent]:
        seq, prev_mac = self._chain_head(conn)
        built: list[AuditEvent] = []
        for pending in events:
            seq += 1
            event = _make_event(audit_key, seq, prev_mac, pending)
            _insert_event(conn, event)
            prev_mac = event.mac
            built.append(event)
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
            clauses.append(_SQL_SUBTREE)
            params.extend(_subtree(query.namespace))
        sql = f"SELECT {_AUDIT_COLS} FROM audit_events WHERE {' AND '.join(clauses)} ORDER BY seq"
        if query.limit is not None:
            sql += " LIMIT ?"
            params.append(max(query.limit, 0))
        try:
            rows = self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _storage_error("reading the audit trail", exc) from exc
        return [_event(row) for row in rows]

    def audit_head(self) -> tuple[int, str] | None:
        try:
            row = self._conn().execute(_SQL_AUDIT_HEAD).fetchone()
        except sqlite3.Error as exc:
            raise _storage_error("reading the audit head", exc) from exc
        return None if row is None else (int(row[0]), str(row[1]))

    # -- API keys ----------------------------------------------------------------------------------

    def _insert_key_events(
        self, conn: sqlite3.Connection, audit_key: bytes, changes: Sequence[tuple[ApiKey, PendingEvent]]
    ) -> list[AuditEvent]:
        macs = self._need_macs()
        seq, prev_mac = self._chain_head(conn)
        built: list[AuditEvent] = []
        for record, pending in changes:
            seq += 1
            event = _make_event(audit_key, seq, prev_mac, replace(pending, subject=key_subject(record.id)))
            _insert_event(conn, event)
            values = _api_key_values(record, seq)
            conn.execute(_SQL_UPSERT_API_KEY, (*values, macs.mac("api_keys", values)))
            prev_mac = event.mac
            built.append(event)
        return built

    def create_api_key(self, record: ApiKey, event: PendingEvent, audit_key: bytes, *, now: str) -> AuditEvent:
        """Insert a new key with its `key_created` event; refuses a name already used by a live key
        (ConflictError) and a parent that was revoked or expired meanwhile (AuthenticationError: the
        caller's own key is no longer valid)."""
        def body(conn: sqlite3.Connection) -> list[AuditEvent]:
            if conn.execute(_SQL_LIVE_NAME, (record.name, now)).fetchone() is not None:
                raise ConflictError(f"An API key named {record.name!r} already exists: choose another name "
                                    "or revoke that key first")
            if record.parent_id is not None:
                row = conn.execute(_SQL_API_KEY_BY_ID, (record.parent_id,)).fetchone()
                parent = None if row is None else self._checked_key(row)
                if parent is None or parent.revoked_at is not None or (
                    parent.expires_at is not None and parent.expires_at <= now
                ):
                    raise AuthenticationError("API key invalid, expired or revoked")
            return self._insert_key_events(conn, audit_key, [(record, event)])

        created: list[AuditEvent] = self._transaction("creating an API key", body, audit=True, rows=True)
        return created[0]

    def revoke_api_keys(
        self, key_id: str, revoked_at: str, event_for: Callable[[ApiKey, bool], PendingEvent], audit_key: bytes,
    ) -> list[ApiKey]:
        """Revoke a key and every live key it created, transitively (one event each, one transaction).

        `event_for(record, cascaded)` builds each key's `key_revoked` event. Returns the revoked records
        (the first is `key_id`'s); keys already revoked are left as they are.
        """
        def body(conn: sqlite3.Connection) -> list[ApiKey]:
            row = conn.execute(_SQL_API_KEY_BY_ID, (key_id,)).fetchone()
            if row is None:
                return []
            root = self._checked_key(row)
            tree, todo, seen = [root], [root.id], {root.id}
            while todo:
                parent = todo.pop()
                for child_row in conn.execute(_SQL_API_KEY_CHILDREN, (parent,)).fetchall():
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
            self._insert_key_events(conn, audit_key, changes)
            return [record for record, _ in changes]

        revoked: list[ApiKey] = self._transaction("revoking API keys", body, audit=True, rows=True)
        return revoked

    def get_api_key(self, key_id: str) -> ApiKey | None:
        return self._one_key(_SQL_API_KEY_BY_ID, key_id)

    def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._one_key(_SQL_API_KEY_BY_HASH, key_hash)

    def _one_key(self, sql: str, param: str) -> ApiKey | None:
        try:
            row = self._conn().execute(sql, (param,)).fetchone()
        except sqlite3.Error as exc:
            raise _storage_error("reading an API key", exc) from exc
        return None if row is None else self._checked_key(row)

    def list_api_keys(self) -> list[ApiKey]:
        try:
            rows = self._conn().execute(_SQL_API_KEYS_ORDERED).fetchall()
        except sqlite3.Error as exc:
            raise _storage_error("listing API keys", exc) from exc
        return [self._checked_key(row) for row in rows]

    def iter_api_keys(self) -> Iterator[tuple[ApiKey, bool, bool] | UnreadableRow]:
        """Every key row, unchecked: (record, MAC ok?, fresh?) — for verify — or an UnreadableRow."""
        try:
            rows = self._conn().execute(_SQL_API_KEYS_ORDERED).fetchall()
        except sqlite3.Error as exc:
            raise _storage_error("listing API keys", exc) from exc
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

        def body(conn: sqlite3.Connection) -> int:
            if conn.execute(_SQL_GET_META, (_PENDING,)).fetchone() is None:
                return 0  # another process got there first
            if conn.execute(_SQL_ANY_SUBJECT).fetchone() is not None:
                raise IntegrityError(
                    "Integrity check failed: the store asks for its row MACs to be computed again, but it was "
                    "already written with them (the 'integrity_pending' setting was added outside llm-config)"
                )
            try:
                entries = [_entry(row[:_N_ENTRY]) for row in conn.execute(f"SELECT {_ENTRY_COLS} FROM entries")]
                versions = [_version(row) for row in conn.execute(f"SELECT {_VERSION_COLS} FROM versions")]
                keys = [_api_key(row) for row in conn.execute(f"SELECT {_API_KEY_COLS} FROM api_keys")]
            except _UNMAPPABLE:
                raise IntegrityError(
                    "Integrity check failed: this store's row MACs cannot be computed because a row holds values "
                    "llm-config never writes; run 'llm-config audit verify'"
                ) from None
            by_id = {e.id: e for e in entries}
            pending = replace(event, subject=MIGRATION_SUBJECT, details={
                **event.details, "entries": len(entries), "versions": len(versions), "api_keys": len(keys),
            })
            migrated = self._append_events(conn, audit_key, [pending])[0]
            seq = migrated.seq
            purged: dict[str, list[int]] = {}
            for v in versions:
                entry = by_id[v.entry_id]
                if v.purged:
                    purged.setdefault(v.entry_id, []).append(v.version)
                fp = fingerprint_of(entry.namespace, entry.key, entry.environment, v.value_type, v.stored_value)
                values = _version_values(replace(v, fingerprint=fp))
                conn.execute(
                    "UPDATE versions SET fingerprint = ?, mac = ? WHERE entry_id = ? AND version = ?",
                    (values[6], macs.mac("versions", _version_mac_input(entry, values)), v.entry_id,
                     v.version),
                )
            for e in entries:
                fp = fingerprint_of(e.namespace, e.key, e.environment, e.value_type, e.stored_value)
                fixed = replace(e, fingerprint=fp, purged_versions=tuple(sorted(purged.get(e.id, []))))
                self._save_entry(conn, fixed, seq, insert=False)
            for k in keys:
                values = _api_key_values(k, seq)
                conn.execute(_SQL_UPSERT_API_KEY, (*values, macs.mac("api_keys", values)))
            conn.execute(_SQL_DELETE_META, (_PENDING,))
            return seq

        seq: int = self._transaction("computing row MACs", body)
        self._migrated_known = False
        return seq

    # -- meta ------------------------------------------------------------------------------------

    def pending_migrations(self) -> list[int]:
        """Schema migrations this code knows that the store has not applied (none once opened, unless
        another process downgraded it)."""
        try:
            return pending_versions(self._conn(), SQLITE)
        except sqlite3.Error as exc:
            raise _storage_error("reading the schema version", exc) from exc

    def get_meta(self, name: str) -> str | None:
        try:
            row = self._conn().execute(_SQL_GET_META, (name,)).fetchone()
        except sqlite3.Error as exc:
            raise _storage_error("reading a setting", exc) from exc
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str, *, only_if_absent: bool = False) -> bool:
        try:
            cursor = self._conn().execute(
                _SQL_ADD_META if only_if_absent else _SQL_SET_META, (name, value)
            )
        except sqlite3.Error as exc:
            raise _storage_error("writing a setting", exc) from exc
        return cursor.rowcount > 0

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        conn = self._conn()
        if conn.in_transaction:  # inside one already: that one's snapshot holds
            yield
            return
        try:
            conn.execute("BEGIN")  # deferred: the first read fixes the snapshot (WAL)
        except sqlite3.Error as exc:
            raise _storage_error("starting a read snapshot", exc) from exc
        try:
            yield
        finally:
            with contextlib.suppress(sqlite3.Error):  # a read transaction has nothing to lose
                conn.execute("COMMIT")

    def change_token(self) -> int | None:
        """`PRAGMA data_version` of a dedicated connection: it changes whenever any other connection
        commits, including this process's own writes (made on the per-thread connections)."""
        with self._token_lock:
            if self._closed:
                raise StorageError("Storage is closed")
            try:
                if self._token_conn is None:
                    self._token_conn = self._connect()
                row = self._token_conn.execute("PRAGMA data_version").fetchone()
            except sqlite3.Error as exc:
                raise _storage_error("checking for changes", exc) from exc
        return int(row[0])


def _make_event(audit_key: bytes, seq: int, prev_mac: str, pending: PendingEvent) -> AuditEvent:
    """Build the next link; its MAC covers exactly what a reader loads back (`audit.mac_fields`)."""
    try:
        # Round-trip the details so the MAC covers what a reader will load back.
        stored_details = orjson.loads(orjson.dumps(pending.details, option=orjson.OPT_SORT_KEYS))
    except TypeError:
        raise ValidationError("Audit details must be a JSON object with string keys") from None
    event = AuditEvent(
        seq=seq,
        id=_new_id(),
        timestamp=pending.timestamp if pending.timestamp is not None else utc_now(),
        type=pending.type,
        actor=pending.actor,
        namespace=pending.namespace,
        key=pending.key,
        environment=pending.environment,
        old_version=pending.old_version,
        new_version=pending.new_version,
        outcome=pending.outcome,
        source_ip=pending.source_ip,
        request_id=pending.request_id,
        details=stored_details,
        prev_mac=prev_mac,
        mac="",
        subject=pending.subject,
    )
    return replace(event, mac=event_mac(audit_key, event))


def _insert_event(conn: sqlite3.Connection, event: AuditEvent) -> None:
    conn.execute(
        _SQL_INSERT_AUDIT,
        (
            event.seq, event.id, event.timestamp, event.type, event.actor, event.namespace,
            event.key, event.environment, event.old_version, event.new_version, event.outcome,
            event.source_ip, event.request_id,
            orjson.dumps(event.details, option=orjson.OPT_SORT_KEYS).decode(), event.prev_mac,
            event.mac, event.subject,
        ),
    )
