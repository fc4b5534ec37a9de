"""SQLite dialect: the embedded default store, over stdlib sqlite3 (ARCHITECTURE decision 2).

Owns: per-thread connections (WAL, `synchronous=FULL`, `secure_delete`, 30 s busy timeout, autocommit
with explicit transactions, one reused cursor for point reads); `BEGIN IMMEDIATE` write transactions,
taken under an advisory file lock (`<db>-lock`) so writers of several processes queue in the kernel and
wake as soon as the lock is free instead of sleeping in SQLite's busy handler; change detection through
`PRAGMA data_version`; emptying the write-ahead log after a purge; opening a store read-only where its
directory cannot be written. Queries and write rules live in `llm_config.storage.sql`.

Never: builds SQL from input or puts a value into a message.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

from llm_config.errors import StorageError
from llm_config.storage.migrate import SQLITE, migrate, pending_versions, refuse_pending
from llm_config.storage.migrate import Dialect as MigrationDialect
from llm_config.storage.sql import Dialect, SQLStorage

__all__ = ["BUSY_TIMEOUT_SECONDS", "CHECKPOINT_WAIT_MS", "SQLiteDialect", "open_sqlite"]

log = logging.getLogger("llm_config.storage")

BUSY_TIMEOUT_SECONDS: Final = 30.0
CHECKPOINT_WAIT_MS: Final = 1000
"""How long a purge waits for readers to let it empty the write-ahead log."""


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


class _Holder:
    """Lives in a thread's `threading.local`; when the thread ends it dies and closes the connection."""

    __slots__ = ("__weakref__",)


class SQLiteDialect(Dialect):
    """One database file; one connection per thread (sqlite3 connections are not shared)."""

    name: ClassVar[str] = "sqlite"
    change_poll_seconds: ClassVar[float | None] = None  # PRAGMA data_version: a local read, ~4 µs
    begin_write: ClassVar[tuple[str, ...]] = ("BEGIN IMMEDIATE",)
    begin_snapshot: ClassVar[tuple[str, ...]] = ("BEGIN",)  # deferred: the first read fixes the snapshot (WAL)
    migrations: ClassVar[MigrationDialect] = SQLITE
    errors = (sqlite3.Error,)

    def __init__(self, path: Path, url: str, *, read_only: bool) -> None:
        super().__init__(url)
        self.path = path
        self.read_only = read_only
        self._uri: str | None = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._finalizers: list[weakref.finalize[Any, Any]] = []
        self._closed = False
        self._token_lock = threading.Lock()
        self._token_conn: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    # -- opening ---------------------------------------------------------------------------------

    def open(self, *, upgrade: bool = True) -> None:
        if self.read_only:
            self._open_read_only()
        else:
            conn = self._conn()
            _enable_wal(conn)
            if upgrade:
                self.applied = migrate(conn, SQLITE)
            else:
                refuse_pending(conn, SQLITE, self.url)

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
                raise self.storage_error(f"connecting to {self.url}", exc) from exc
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

    def read_one(self, sql: str, params: Sequence[Any]) -> Any:
        try:
            point: sqlite3.Cursor = self._local.point
        except AttributeError:
            self._open_thread_conn()
            point = self._local.point
        return point.execute(sql, params).fetchone()

    def read_all(self, sql: str, params: Sequence[Any]) -> list[Any]:
        return self._conn().execute(sql, params).fetchall()

    @contextlib.contextmanager
    def hold(self) -> Iterator[Any]:
        cursor = self._conn().cursor()
        try:
            yield cursor
        finally:
            cursor.close()

    @contextlib.contextmanager
    def write_guard(self) -> Iterator[object]:
        """An exclusive `flock` on `<db>-lock` for the write transaction: writers in other processes
        block in the kernel and wake the moment it is released (no blind busy-handler sleeps)."""
        fd = self._lock_fd
        if fd is None:
            with self._lock:
                if self._lock_fd is None:
                    try:
                        self._lock_fd = os.open(f"{self.path}-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                    except OSError as exc:
                        raise StorageError(f"Storage failed while locking {self.url} for writing: "
                                           f"{exc.strerror}") from None
                fd = self._lock_fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield None
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            finalizers, self._finalizers = self._finalizers, []
            self._local = threading.local()
            if self._lock_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._lock_fd)
                self._lock_fd = None
        for finalizer in finalizers:
            with contextlib.suppress(sqlite3.Error):  # closing is best effort
                finalizer()
        with self._token_lock:
            if self._token_conn is not None:
                with contextlib.suppress(sqlite3.Error):  # closing is best effort
                    self._token_conn.close()
                self._token_conn = None

    # -- what SQLite does differently ------------------------------------------------------------------

    def after_purge(self) -> None:
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

    def change_token(self) -> int | None:
        """`PRAGMA data_version` of a dedicated connection: it changes whenever any other connection
        commits, including this process's own writes (made on the per-thread connections)."""
        with self._token_lock:
            if self._closed:
                raise StorageError("Storage is closed")
            if self._token_conn is None:
                self._token_conn = self._connect()
            row = self._token_conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def pending_migrations(self) -> list[int]:
        return pending_versions(self._conn(), SQLITE)


def open_sqlite(path: str | os.PathLike[str], *, url: str | None = None, read_only: bool = False,
                upgrade: bool = True) -> SQLStorage:
    """Open (creating, and migrating unless `read_only` or not `upgrade`) the database file at `path`."""
    path = Path(path)
    dialect = SQLiteDialect(path, url if url is not None else f"sqlite:///{path}", read_only=read_only)
    try:
        dialect.open(upgrade=upgrade)
    except sqlite3.Error as exc:
        dialect.close()
        raise StorageError(f"Could not open the store at {dialect.url}: {exc}") from exc
    except BaseException:
        dialect.close()
        raise
    return SQLStorage(dialect, read_only=read_only)
