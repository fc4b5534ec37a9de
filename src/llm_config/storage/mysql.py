"""MySQL/MariaDB dialect: PyMySQL with DBUtils' PooledDB (the `mysql` extra; ARCHITECTURE decision 2).

Owns: the pool (sessions in `ANSI` SQL mode — double-quoted identifiers, `||` concatenation — plus strict
tables, `READ COMMITTED`, utf8mb4); migrations at open under `GET_LOCK` named after the database (MySQL
commits DDL implicitly, so the migration files are written to be re-run after a crash); the write lock —
`SELECT … FOR UPDATE` on the `revision` meta row, first in every write transaction, which also guards
the audit-chain head; consistent-snapshot reads; `OPTIMIZE TABLE` after a purge; logging the durability
settings (`innodb_flush_log_at_trx_commit`, `sync_binlog`) at open; telling "unreachable" apart.

DBUtils' automatic reconnect-and-retry is switched off: it would re-run a statement of a broken
transaction on a fresh autocommit connection. A dead connection is found by the ping on checkout
instead, before any transaction starts on it.

Never: shows the URL's password.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit

import pymysql
from dbutils.pooled_db import PooledDB

from llm_config.errors import StorageError, StorageUnavailableError, ValidationError
from llm_config.storage.migrate import MYSQL, migrate, pending_versions, refuse_pending
from llm_config.storage.migrate import Dialect as MigrationDialect
from llm_config.storage.registry import scrub
from llm_config.storage.sql import Dialect

__all__ = ["DIALECT", "MySQLDialect"]

log = logging.getLogger("llm_config.storage")

POOL_MAX = 20
CONNECT_TIMEOUT = 5
_SESSION = (
    "SET SESSION sql_mode = 'ANSI,STRICT_ALL_TABLES,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO'",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
)
# Server gone, lost, refused, too many connections, shutting down, killed, lock wait, deadlock: retry later.
_DEADLOCK = 1213
_UNAVAILABLE = {1040, 1053, 1205, _DEADLOCK, 1927, 2003, 2006, 2013, 2055}


class _NoFailoverError(Exception):
    """Never raised: hands DBUtils an exception list that disables its reconnect-and-retry."""


def connect_args(url: str, masked: str = "given") -> dict[str, Any]:
    """PyMySQL's connect() arguments from `mysql://user:password@host:port/database?option=value`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValidationError(f"Invalid MySQL storage URL {masked}: expected "
                              "mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE (percent-encode '/', '@', ':' in "
                              "the password)") from None
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ValidationError("A MySQL storage URL must name a database: mysql://user@host/DATABASE")
    args: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "database": database,
        "charset": "utf8mb4",
        "autocommit": True,
        "connect_timeout": CONNECT_TIMEOUT,
    }
    for name, value in parse_qsl(parts.query):
        if name in {"unix_socket", "ssl_ca", "ssl_cert", "ssl_key"}:
            args[name] = value
        elif name == "ssl" and value.lower() in {"1", "true", "required"}:
            args["ssl"] = {}
        else:
            raise ValidationError(f"Unknown option {name!r} in a MySQL storage URL "
                                  "(known: unix_socket, ssl, ssl_ca, ssl_cert, ssl_key)")
    return args


class MySQLDialect(Dialect):
    name: ClassVar[str] = "mysql"
    paramstyle: ClassVar[str] = "format"
    begin_write: ClassVar[tuple[str, ...]] = (
        "START TRANSACTION", "SELECT value FROM meta WHERE name = 'revision' FOR UPDATE",
    )
    lock_returns_revision: ClassVar[bool] = True
    begin_snapshot: ClassVar[tuple[str, ...]] = (
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
    )
    migrations: ClassVar[MigrationDialect] = MYSQL
    errors = (pymysql.err.MySQLError,)

    def __init__(self, url: str, masked: str) -> None:
        super().__init__(masked)
        self._args = connect_args(url, masked)
        self._url = url
        self._pool: PooledDB | None = None

    def upsert(self, table: str, columns: Sequence[str], key: str) -> str:
        cols = ", ".join(columns)
        marks = ", ".join("?" * len(columns))
        sets = ", ".join(f"{c} = VALUES({c})" for c in columns if c != key)
        return f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON DUPLICATE KEY UPDATE {sets}"

    def insert_ignore(self, table: str, columns: Sequence[str], key: str) -> str:
        return f"INSERT IGNORE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"

    def open(self, *, upgrade: bool = True) -> None:
        try:
            conn = pymysql.connect(**self._args)
        except pymysql.err.MySQLError as exc:
            raise self.storage_error(f"opening the store at {self.url}", exc) from None
        try:
            with conn.cursor() as cur:
                for statement in _SESSION:
                    cur.execute(statement)
            if upgrade:
                self.applied = migrate(conn, MYSQL)
            else:
                refuse_pending(conn, MYSQL, self.url)
            self._report_durability(conn)
        except pymysql.err.MySQLError as exc:
            raise self.storage_error(f"opening the store at {self.url}", exc) from None
        finally:
            conn.close()
        self._pool = PooledDB(
            creator=pymysql, mincached=1, maxcached=POOL_MAX, maxconnections=POOL_MAX, blocking=True,
            setsession=list(_SESSION), reset=False, failures=_NoFailoverError, ping=1, **self._args,
        )

    def _report_durability(self, conn: Any) -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT @@innodb_flush_log_at_trx_commit, @@sync_binlog, @@log_bin")
            flush, sync_binlog, log_bin = cur.fetchone()
        log.info("mysql durability: innodb_flush_log_at_trx_commit=%s, sync_binlog=%s, log_bin=%s",
                 flush, sync_binlog, log_bin)
        if int(flush) != 1:
            log.warning("mysql at %s may lose acknowledged writes on a crash (innodb_flush_log_at_trx_commit=%s): "
                        "set it to 1", self.url, flush)
        if int(log_bin) and int(sync_binlog) != 1:
            log.warning("mysql at %s may lose binlog entries of acknowledged writes on a crash (sync_binlog=%s): "
                        "set it to 1", self.url, sync_binlog)


    @contextlib.contextmanager
    def hold(self) -> Iterator[Any]:
        conn = self._need_pool().connection()
        try:
            cur = conn.cursor()
            try:
                yield cur
            finally:
                cur.close()
        finally:
            conn.close()  # back to the pool

    def after_purge(self) -> None:
        """Rebuild the tables a purge rewrote (`OPTIMIZE TABLE`), so the old value's pages are not reused
        in place; see the README for what stays in the redo log, the binlog and backups."""
        try:
            with self.hold() as cur:
                cur.execute("OPTIMIZE TABLE versions, entries")
                cur.fetchall()
        except pymysql.err.MySQLError as exc:
            log.warning("purge: OPTIMIZE TABLE after the purge failed (%s)", exc.args[-1] if exc.args else exc)

    def aborts_transaction(self, exc: BaseException) -> bool:
        """A deadlock victim (1213): InnoDB has rolled back the whole transaction; a later statement of the
        batch would run in a new one, and the earlier tickets' writes would be acknowledged yet gone."""
        args: tuple[Any, ...] = getattr(exc, "args", ())
        return bool(args) and args[0] == _DEADLOCK

    def pending_migrations(self) -> list[int]:
        conn = self._need_pool().connection()
        try:
            return pending_versions(conn, MYSQL)
        finally:
            conn.close()

    def storage_error(self, operation: str, exc: BaseException) -> StorageError:
        args: tuple[Any, ...] = getattr(exc, "args", ())
        code = args[0] if args and isinstance(args[0], int) else None
        text = str(args[1]) if len(args) > 1 and str(args[1]) else str(exc) or type(exc).__name__
        text = scrub(text, self._url)
        if code in _UNAVAILABLE or isinstance(exc, pymysql.err.InterfaceError):
            return StorageUnavailableError(f"Storage failed while {operation}: the database is unreachable ({text})")
        return StorageError(f"Storage failed while {operation}: {text}")



DIALECT = MySQLDialect
"""What `storage.registry` opens for this backend's URLs."""
