"""SQLite backend: the `Storage` Protocol of `llm_config.types` over stdlib sqlite3.

Owns: the static SQL of the SQLite dialect; per-thread connections (WAL, `synchronous=FULL`, 30 s busy
timeout, autocommit with explicit transactions); one `BEGIN IMMEDIATE` transaction per `apply` that
holds the compare-and-set checks, version rows, current rows, the watch revision counter (meta row
`revision`) and the audit-chain append (ARCHITECTURE decisions 2, 3, 6, 7).

Never: sees a plaintext secret (secret values arrive sealed and leave sealed), builds SQL from input
(statements are static; list/audit queries only combine fixed fragments), or puts a stored value, a
request value or a ciphertext into an error message or a log line.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from llm_config.audit import GENESIS_MAC, compute_mac, write_event_type
from llm_config.errors import (
    AuditError,
    ConflictError,
    NotFoundError,
    StorageError,
    ValidationError,
)
from llm_config.models import (
    ApiKey,
    AuditEvent,
    Environment,
    Role,
    StoredEntry,
    StoredVersion,
    ValueType,
    WriteKind,
    WriteRequest,
    WriteResult,
)
from llm_config.storage.migrate import SQLITE, migrate
from llm_config.types import AuditQuery

__all__ = ["BUSY_TIMEOUT_SECONDS", "SQLiteStorage"]

BUSY_TIMEOUT_SECONDS: Final = 30.0

_ENVS: Final = {env.value: env for env in Environment}
_VTYPES: Final = {vt.value: vt for vt in ValueType}
# Binding a str-enum makes sqlite3 look for an adapter first (~0.5 us); bind the plain text instead.
_ENV_TEXT: Final[dict[Any, str]] = {env: env.value for env in Environment}

_ENTRY_COLS: Final = (
    "id, namespace, key, environment, version, deleted, value_type, stored_value, fingerprint, "
    "created_at, created_by, updated_at, updated_by, tags, description, revision"
)
_VERSION_COLS: Final = (
    "v.entry_id, v.version, v.deleted, v.purged, v.value_type, v.stored_value, v.fingerprint, "
    "v.created_at, v.created_by, v.change_description, v.audit_seq, v.revision"
)
_AUDIT_COLS: Final = (
    "seq, id, timestamp, type, actor, namespace, key, environment, old_version, new_version, "
    "outcome, source_ip, request_id, details, prev_mac, mac"
)

_SQL_GET_CURRENT: Final = (
    f"SELECT {_ENTRY_COLS} FROM entries WHERE namespace = ? AND environment = ? AND key = ?"
)
_SQL_INSERT_ENTRY: Final = (
    f"INSERT INTO entries ({_ENTRY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQL_UPDATE_ENTRY: Final = (
    "UPDATE entries SET version = ?, deleted = ?, value_type = ?, stored_value = ?, fingerprint = ?, "
    "updated_at = ?, updated_by = ?, tags = ?, description = ?, revision = ? WHERE id = ?"
)
_SQL_INSERT_VERSION: Final = (
    "INSERT INTO versions (entry_id, version, deleted, purged, value_type, stored_value, fingerprint, "
    "created_at, created_by, change_description, audit_seq, revision) "
    "VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQL_GET_VERSION_BY_ID: Final = (
    f"SELECT {_VERSION_COLS} FROM versions v WHERE v.entry_id = ? AND v.version = ?"
)
_SQL_GET_VERSION: Final = (
    f"SELECT {_VERSION_COLS} FROM versions v JOIN entries e ON e.id = v.entry_id "
    "WHERE e.namespace = ? AND e.environment = ? AND e.key = ? AND v.version = ?"
)
_SQL_HISTORY: Final = (
    f"SELECT {_VERSION_COLS} FROM versions v JOIN entries e ON e.id = v.entry_id "
    "WHERE e.namespace = ? AND e.environment = ? AND e.key = ? ORDER BY v.version DESC"
)
_SQL_PURGE_VERSION: Final = (
    "UPDATE versions SET purged = 1, stored_value = NULL, value_type = 'none', fingerprint = NULL "
    "WHERE entry_id = ? AND version = ?"
)
_SQL_VERSION_REFS: Final = (
    "SELECT e.namespace, e.key, e.environment, v.version, v.audit_seq "
    "FROM versions v JOIN entries e ON e.id = v.entry_id "
    "ORDER BY e.namespace, e.key, e.environment, v.version"
)
_API_KEY_COLUMNS: Final = (
    "id, name, role, namespaces, environments, key_hash, created_at, created_by, expires_at, revoked_at"
)
_SQL_UPSERT_API_KEY: Final = (
    f"INSERT INTO api_keys ({_API_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, role = excluded.role, "
    "namespaces = excluded.namespaces, environments = excluded.environments, "
    "expires_at = excluded.expires_at, revoked_at = excluded.revoked_at"
)
_SQL_API_KEY_BY_ID: Final = f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE id = ?"
_SQL_API_KEY_BY_HASH: Final = f"SELECT {_API_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?"
_SQL_API_KEYS: Final = f"SELECT {_API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
_SQL_SEALED_VALUES: Final = "SELECT stored_value FROM versions WHERE value_type = 'secret' AND stored_value IS NOT NULL"
_SQL_AUDIT_HEAD: Final = "SELECT seq, mac FROM audit_events ORDER BY seq DESC LIMIT 1"
_SQL_INSERT_AUDIT: Final = (
    f"INSERT INTO audit_events ({_AUDIT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQL_GET_META: Final = "SELECT value FROM meta WHERE name = ?"
_SQL_SET_META: Final = (
    "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)
_SQL_ADD_META: Final = "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"
_SQL_SUBTREE: Final = "(namespace = ? OR (namespace > ? AND namespace < ?))"


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


def _api_key(row: Any) -> ApiKey:
    return ApiKey(
        id=row[0], name=row[1], role=Role(row[2]), namespaces=tuple(orjson.loads(row[3])),
        environments=tuple(Environment(e) for e in orjson.loads(row[4])), key_hash=row[5],
        created_at=row[6], created_by=row[7], expires_at=row[8], revoked_at=row[9],
    )


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


def _encode_tags(tags: Sequence[str]) -> str:
    return orjson.dumps(list(tags)).decode() if tags else "[]"


def _entry(row: Any) -> StoredEntry:
    tags = row[13]
    return StoredEntry(
        row[0],
        row[1],
        row[2],
        _ENVS[row[3]],
        row[4],
        row[5] == 1,
        _VTYPES[row[6]],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
        row[12],
        () if tags == "[]" else tuple(orjson.loads(tags)),
        row[14],
        row[15],
    )


def _version(row: Any) -> StoredVersion:
    return StoredVersion(
        row[0],
        row[1],
        row[2] == 1,
        row[3] == 1,
        _VTYPES[row[4]],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
    )


def _event(row: Any) -> AuditEvent:
    return AuditEvent(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
        row[12],
        orjson.loads(row[13]),
        row[14],
        row[15],
    )


def _where(namespace: str, key: str, env: Environment) -> str:
    return f"{namespace}/{key} [{env.value}]"


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

    def __init__(self, path: str | os.PathLike[str], *, url: str | None = None) -> None:
        self.path = Path(path)
        self.url = url if url is not None else f"sqlite:///{self.path}"
        self._lock = threading.Lock()
        # Writers of this process queue here instead of in SQLite's busy handler, which sleeps in
        # growing steps and gave concurrent PUTs a p99 of ~1 s; other processes still wait in it.
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._finalizers: list[weakref.finalize[Any, Any]] = []
        self._closed = False
        self._token_lock = threading.Lock()
        self._token_conn: sqlite3.Connection | None = None
        try:
            conn = self._conn()
            _enable_wal(conn)
            migrate(conn, SQLITE)
        except sqlite3.Error as exc:
            self.close()
            raise StorageError(f"Could not open the store at {self.url}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # check_same_thread=False only so that close() may close other threads' connections;
        # each connection is otherwise used by the one thread that opened it.
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
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
                raise _storage_error("connecting", exc) from exc
            holder = _Holder()
            finalizer = weakref.finalize(holder, conn.close)
            self._finalizers = [f for f in self._finalizers if f.alive]
            self._finalizers.append(finalizer)
            local = self._local
            local.conn = conn
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

    # -- reads -----------------------------------------------------------------------------------

    def get_current(self, namespace: str, key: str, env: Environment) -> StoredEntry | None:
        try:
            row = self._conn().execute(_SQL_GET_CURRENT, (namespace, _ENV_TEXT.get(env, env), key)).fetchone()
        except sqlite3.Error as exc:
            raise _storage_error("reading an entry", exc) from exc
        return None if row is None else _entry(row)

    def get_version(
        self, namespace: str, key: str, env: Environment, version: int
    ) -> StoredVersion | None:
        try:
            row = self._conn().execute(
                _SQL_GET_VERSION, (namespace, _ENV_TEXT.get(env, env), key, version)
            ).fetchone()
        except sqlite3.Error as exc:
            raise _storage_error("reading a version", exc) from exc
        return None if row is None else _version(row)

    def history(
        self, namespace: str, key: str, env: Environment, limit: int | None = None
    ) -> list[StoredVersion]:
        sql = _SQL_HISTORY
        params: tuple[Any, ...] = (namespace, _ENV_TEXT.get(env, env), key)
        if limit is not None:
            sql += " LIMIT ?"
            params += (max(limit, 0),)
        try:
            rows = self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _storage_error("reading history", exc) from exc
        return [_version(row) for row in rows]

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
        clauses = ["environment = ?", "deleted = 0"]
        params: list[Any] = [_ENV_TEXT.get(env, env)]
        if recursive:
            clauses.append(_SQL_SUBTREE)
            params.extend(_subtree(namespace))
        else:
            clauses.append("namespace = ?")
            params.append(namespace)
        if prefix:
            clauses.append("key >= ?")
            params.append(prefix)
            upper = _successor(prefix)
            if upper is not None:
                clauses.append("key < ?")
                params.append(upper)
        if after_key is not None:
            if recursive:
                after_ns, sep, after_k = after_key.partition("\x00")
                if not sep:
                    after_ns, after_k = namespace, after_key
                clauses.append("(namespace > ? OR (namespace = ? AND key > ?))")
                params.extend((after_ns, after_ns, after_k))
            else:
                clauses.append("key > ?")
                params.append(after_key)
        order = "namespace, key" if recursive else "key"
        sql = f"SELECT {_ENTRY_COLS} FROM entries WHERE {' AND '.join(clauses)} ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(limit, 0))
        try:
            rows = self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _storage_error("listing entries", exc) from exc
        return [_entry(row) for row in rows]

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

    def version_audit_refs(self) -> list[tuple[str, str, str, int, int]]:
        try:
            rows = self._conn().execute(_SQL_VERSION_REFS).fetchall()
        except sqlite3.Error as exc:
            raise _storage_error("reading version references", exc) from exc
        return [(row[0], row[1], row[2], row[3], row[4]) for row in rows]

    def sealed_values(self) -> list[str]:
        try:
            rows = self._conn().execute(_SQL_SEALED_VALUES).fetchall()
        except sqlite3.Error as exc:
            raise _storage_error("reading sealed values", exc) from exc
        return [row[0] for row in rows]

    # -- writes ----------------------------------------------------------------------------------

    def apply(self, writes: Sequence[WriteRequest], audit_key: bytes) -> list[WriteResult]:
        if not writes:
            return []
        conn = self._conn()
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _storage_error("starting a write", exc) from exc
            try:
                results = self._apply_all(conn, writes, audit_key)
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                raise _storage_error("applying writes", exc) from exc
            except BaseException:
                _rollback(conn)
                raise
        return results

    def _apply_all(
        self, conn: sqlite3.Connection, writes: Sequence[WriteRequest], audit_key: bytes
    ) -> list[WriteResult]:
        head = conn.execute(_SQL_AUDIT_HEAD).fetchone()
        seq, prev_mac = (int(head[0]), str(head[1])) if head else (0, GENESIS_MAC)
        row = conn.execute(_SQL_GET_META, ("revision",)).fetchone()
        revision = int(row[0]) if row else 0
        results: list[WriteResult] = []
        for write in writes:
            revision += 1
            seq += 1
            entry, old_version, new_version, secret, existed = self._apply_one(
                conn, write, seq, revision
            )
            event = _make_event(
                audit_key,
                seq,
                prev_mac,
                timestamp=write.timestamp,
                type=write.audit_type
                or write_event_type(write.kind, secret=secret, existed=existed),
                actor=write.actor,
                namespace=write.namespace,
                key=write.key,
                environment=write.environment.value,
                old_version=old_version,
                new_version=new_version,
                outcome="success",
                source_ip=write.source_ip,
                request_id=write.request_id,
                details=write.audit_details,
            )
            _insert_event(conn, event)
            prev_mac = event.mac
            results.append(WriteResult(entry=entry, old_version=old_version, audit_seq=seq))
        conn.execute(_SQL_SET_META, ("revision", str(revision)))
        return results

    def _apply_one(
        self, conn: sqlite3.Connection, w: WriteRequest, seq: int, revision: int
    ) -> tuple[StoredEntry, int | None, int | None, bool, bool]:
        """Apply one write; return (entry, old_version, new_version, secret, existed) for its event."""
        row = conn.execute(_SQL_GET_CURRENT, (w.namespace, w.environment.value, w.key)).fetchone()
        current = None if row is None else _entry(row)
        if (
            w.refuse_plain_over_secret and w.kind is WriteKind.SET and w.value_type is not ValueType.SECRET
            and current is not None and not current.deleted and current.value_type is ValueType.SECRET
        ):
            raise ValidationError(
                f"{_where(w.namespace, w.key, w.environment)} is a secret: pass --secret (secret=True) to "
                "update it, or --no-secret (secret=False) to store it in plain text",
                namespace=w.namespace, key=w.key, environment=w.environment.value,
            )
        _check_expected(w, current)
        existed = current is not None and not current.deleted
        old_version = current.version if current is not None else None
        new_version = (current.version if current is not None else 0) + 1
        kind = w.kind

        if kind is WriteKind.SET:
            if w.value_type is ValueType.NONE or w.stored_value is None:
                raise ValidationError(f"A set of {_where(w.namespace, w.key, w.environment)} needs a value")
            secret = w.value_type is ValueType.SECRET or (
                current is not None and current.value_type is ValueType.SECRET
            )
            entry = self._write_version(
                conn, w, current, new_version=new_version, seq=seq, revision=revision,
                deleted=False, value_type=w.value_type, stored_value=w.stored_value,
                fingerprint=w.fingerprint,
            )
            return entry, old_version, new_version, secret, existed

        if current is None or (kind is WriteKind.DELETE and current.deleted):
            raise NotFoundError(
                f"Config not found: {_where(w.namespace, w.key, w.environment)}",
                namespace=w.namespace, key=w.key, environment=w.environment.value,
            )

        if kind is WriteKind.DELETE:
            entry = self._write_version(
                conn, w, current, new_version=new_version, seq=seq, revision=revision,
                deleted=True, value_type=ValueType.NONE, stored_value=None, fingerprint=None,
            )
            return entry, old_version, new_version, current.value_type is ValueType.SECRET, existed

        target = self._target_version(conn, w, current)
        if kind is WriteKind.ROLLBACK:
            entry = self._write_version(
                conn, w, current, new_version=new_version, seq=seq, revision=revision,
                deleted=False, value_type=target.value_type, stored_value=target.stored_value,
                fingerprint=target.fingerprint,
            )
            secret = ValueType.SECRET in (target.value_type, current.value_type)
            return entry, old_version, new_version, secret, existed

        if kind is WriteKind.PURGE:
            if target.version == current.version and not current.deleted:
                raise ValidationError(
                    f"Cannot purge the current version {target.version} of "
                    f"{_where(w.namespace, w.key, w.environment)}: delete the key or write a newer "
                    "version first",
                    namespace=w.namespace, key=w.key, environment=w.environment.value,
                    version=target.version,
                )
            conn.execute(_SQL_PURGE_VERSION, (current.id, target.version))
            secret = target.value_type is ValueType.SECRET
            return current, target.version, None, secret, existed

        raise ValidationError(f"Unknown write kind: {kind!r}")  # pragma: no cover

    @staticmethod
    def _target_version(
        conn: sqlite3.Connection, w: WriteRequest, current: StoredEntry
    ) -> StoredVersion:
        if w.target_version is None:
            raise ValidationError(f"A {w.kind.value} needs a target version")
        row = conn.execute(_SQL_GET_VERSION_BY_ID, (current.id, w.target_version)).fetchone()
        target = None if row is None else _version(row)
        if target is None or target.deleted or target.purged:
            raise NotFoundError(
                f"Version {w.target_version} not found",
                namespace=w.namespace, key=w.key, environment=w.environment.value,
                version=w.target_version,
            )
        return target

    @staticmethod
    def _write_version(
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
                id=str(uuid.uuid4()),
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
            conn.execute(
                _SQL_INSERT_ENTRY,
                (
                    entry.id, entry.namespace, entry.key, entry.environment.value, entry.version,
                    int(deleted), value_type.value, stored_value, fingerprint, entry.created_at,
                    entry.created_by, entry.updated_at, entry.updated_by, _encode_tags(entry.tags),
                    entry.description, revision,
                ),
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
            conn.execute(
                _SQL_UPDATE_ENTRY,
                (
                    new_version, int(deleted), value_type.value, stored_value, fingerprint,
                    entry.updated_at, entry.updated_by, _encode_tags(entry.tags), entry.description,
                    revision, entry.id,
                ),
            )
        conn.execute(
            _SQL_INSERT_VERSION,
            (
                entry.id, new_version, int(deleted), value_type.value, stored_value, fingerprint,
                w.timestamp, w.actor,
                w.change_description or ("Updated" if current is not None and not current.deleted else "Created"),
                seq, revision,
            ),
        )
        return entry

    # -- audit -----------------------------------------------------------------------------------

    def append_audit(
        self,
        *,
        type: str,
        actor: str,
        audit_key: bytes,
        namespace: str | None = None,
        key: str | None = None,
        environment: str | None = None,
        old_version: int | None = None,
        new_version: int | None = None,
        outcome: str = "success",
        source_ip: str | None = None,
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
        timestamp: str | None = None,
    ) -> AuditEvent:
        return self._audited((), audit_key, {
            "type": type, "actor": actor, "namespace": namespace, "key": key, "environment": environment,
            "old_version": old_version, "new_version": new_version, "outcome": outcome, "source_ip": source_ip,
            "request_id": request_id, "details": details, "timestamp": timestamp,
        })

    def append_audit_many(self, events: Sequence[dict[str, Any]], audit_key: bytes) -> None:
        if events:
            self._audited((), audit_key, *events)

    def _audited(
        self, statements: Sequence[tuple[str, tuple[Any, ...]]], audit_key: bytes, *events: dict[str, Any]
    ) -> AuditEvent:
        """Run `statements` and append the audit events in a single BEGIN IMMEDIATE transaction;
        returns the last event."""
        conn = self._conn()
        with self._write_lock:
            return self._audited_locked(conn, statements, audit_key, events)

    def _audited_locked(
        self, conn: sqlite3.Connection, statements: Sequence[tuple[str, tuple[Any, ...]]], audit_key: bytes,
        events: Sequence[dict[str, Any]],
    ) -> AuditEvent:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise AuditError(f"Audit event could not be written: {exc}") from exc
        try:
            for sql, params in statements:
                conn.execute(sql, params)
            head = conn.execute(_SQL_AUDIT_HEAD).fetchone()
            seq, prev_mac = (int(head[0]), str(head[1])) if head else (0, GENESIS_MAC)
            for event in events:
                seq += 1
                environment = event.get("environment")
                timestamp = event.get("timestamp")
                details = event.get("details")
                built = _make_event(
                    audit_key,
                    seq,
                    prev_mac,
                    timestamp=timestamp if timestamp is not None else _utc_now(),
                    type=event["type"],
                    actor=event["actor"],
                    namespace=event.get("namespace"),
                    key=event.get("key"),
                    environment=None if environment is None else str(environment),
                    old_version=event.get("old_version"),
                    new_version=event.get("new_version"),
                    outcome=event.get("outcome", "success"),
                    source_ip=event.get("source_ip"),
                    request_id=event.get("request_id"),
                    details=details if details is not None else {},
                )
                _insert_event(conn, built)
                prev_mac = built.mac
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            raise AuditError(f"Audit event could not be written: {exc}") from exc
        except BaseException:
            _rollback(conn)
            raise
        return built

    # -- API keys ----------------------------------------------------------------------------------

    def save_api_key(self, record: ApiKey, *, audit_key: bytes, event: dict[str, Any]) -> AuditEvent:
        row = (
            record.id, record.name, record.role.value, orjson.dumps(list(record.namespaces)).decode(),
            orjson.dumps([e.value for e in record.environments]).decode(), record.key_hash, record.created_at,
            record.created_by, record.expires_at, record.revoked_at,
        )
        return self._audited([(_SQL_UPSERT_API_KEY, row)], audit_key, event)

    def get_api_key(self, key_id: str) -> ApiKey | None:
        return self._one_key(_SQL_API_KEY_BY_ID, key_id)

    def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._one_key(_SQL_API_KEY_BY_HASH, key_hash)

    def _one_key(self, sql: str, param: str) -> ApiKey | None:
        try:
            row = self._conn().execute(sql, (param,)).fetchone()
        except sqlite3.Error as exc:
            raise _storage_error("reading an API key", exc) from exc
        return None if row is None else _api_key(row)

    def list_api_keys(self) -> list[ApiKey]:
        try:
            rows = self._conn().execute(_SQL_API_KEYS).fetchall()
        except sqlite3.Error as exc:
            raise _storage_error("listing API keys", exc) from exc
        return [_api_key(row) for row in rows]

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

    # -- meta ------------------------------------------------------------------------------------

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


def _check_expected(w: WriteRequest, current: StoredEntry | None) -> None:
    expected = w.expected_version
    if expected is None:
        return
    if expected == 0:  # noqa: SIM108 - two readable rules beat one long ternary
        ok = current is None or current.deleted
    else:
        ok = current is not None and current.version == expected
    if not ok:
        actual = current.version if current is not None else 0
        raise ConflictError(
            f"Version conflict on {_where(w.namespace, w.key, w.environment)}: "
            f"expected {expected}, current {actual}",
            current_version=actual,
            namespace=w.namespace,
            key=w.key,
            environment=w.environment.value,
        )


def _make_event(
    audit_key: bytes,
    seq: int,
    prev_mac: str,
    *,
    timestamp: str,
    type: str,
    actor: str,
    namespace: str | None,
    key: str | None,
    environment: str | None,
    old_version: int | None,
    new_version: int | None,
    outcome: str,
    source_ip: str | None,
    request_id: str | None,
    details: dict[str, Any],
) -> AuditEvent:
    """Build the next link; its MAC covers exactly `AuditEvent.to_json()` of what is stored."""
    try:
        # Round-trip the details so the MAC covers what a reader will load back.
        stored_details = orjson.loads(orjson.dumps(details, option=orjson.OPT_SORT_KEYS))
    except TypeError:
        raise ValidationError("Audit details must be a JSON object with string keys") from None
    event = AuditEvent(
        seq=seq,
        id=str(uuid.uuid4()),
        timestamp=timestamp,
        type=type,
        actor=actor,
        namespace=namespace,
        key=key,
        environment=environment,
        old_version=old_version,
        new_version=new_version,
        outcome=outcome,
        source_ip=source_ip,
        request_id=request_id,
        details=stored_details,
        prev_mac=prev_mac,
        mac="",
    )
    return replace(event, mac=compute_mac(audit_key, prev_mac, event.to_json()))


def _insert_event(conn: sqlite3.Connection, event: AuditEvent) -> None:
    conn.execute(
        _SQL_INSERT_AUDIT,
        (
            event.seq, event.id, event.timestamp, event.type, event.actor, event.namespace,
            event.key, event.environment, event.old_version, event.new_version, event.outcome,
            event.source_ip, event.request_id,
            orjson.dumps(event.details, option=orjson.OPT_SORT_KEYS).decode(), event.prev_mac,
            event.mac,
        ),
    )
