"""PostgreSQL dialect: psycopg 3 with psycopg-pool (the `postgres` extra; ARCHITECTURE decision 2).

Owns: the connection pool (autocommit connections, explicit transactions, server-side prepared
statements after a few uses); migrations at open under a session advisory lock named after the schema,
so replicas starting together run them once; the write lock — `SELECT … FOR UPDATE` on the `revision`
meta row, taken first in every write transaction, which also guards the audit-chain head, so writers in
any number of processes and replicas can neither lose an update nor fork the chain; `REPEATABLE READ`
read snapshots; `VACUUM` after a purge; logging the durability settings in force at open; telling
"unreachable" (503 with Retry-After, pool refills by itself) from other failures.

Never: shows the URL's password (messages use the masked URL; driver messages never carry it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import psycopg
from psycopg_pool import ConnectionPool

from llm_config.errors import StorageError, StorageUnavailableError
from llm_config.storage.migrate import POSTGRES, migrate, pending_versions, refuse_pending
from llm_config.storage.migrate import Dialect as MigrationDialect
from llm_config.storage.registry import scrub
from llm_config.storage.sql import Dialect

__all__ = ["DIALECT", "PostgresDialect"]

log = logging.getLogger("llm_config.storage")

POOL_MAX = 20
CONNECT_TIMEOUT = 5
POOL_WAIT = 2.0
"""Longest a request waits for a pooled connection: when the database is down, requests fail fast with 503."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PostgresDialect(Dialect):
    name: ClassVar[str] = "postgresql"
    paramstyle: ClassVar[str] = "format"
    begin_write: ClassVar[tuple[str, ...]] = ("BEGIN", "SELECT value FROM meta WHERE name = 'revision' FOR UPDATE")
    lock_returns_revision: ClassVar[bool] = True
    begin_snapshot: ClassVar[tuple[str, ...]] = ("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",)
    migrations: ClassVar[MigrationDialect] = POSTGRES
    errors = (psycopg.Error,)

    def __init__(self, url: str, masked: str) -> None:
        super().__init__(masked)
        self._conninfo = url
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None

    def open(self, *, upgrade: bool = True) -> None:
        """Connect once directly (a clear error for a wrong password or host), migrate, report durability,
        then start the pool."""
        try:
            with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
                self.applied = migrate(conn, POSTGRES) if upgrade else []
                if not upgrade:
                    refuse_pending(conn, POSTGRES, self.url)
                self._report_durability(conn)
        except psycopg.Error as exc:
            raise self.storage_error(f"opening the store at {self.url}", exc) from None
        self._pool = ConnectionPool(
            self._conninfo, min_size=1, max_size=POOL_MAX, open=True, timeout=POOL_WAIT, name="llm-config",
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
        )

    def _report_durability(self, conn: psycopg.Connection[Any]) -> None:
        settings = {name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                    for name in ("synchronous_commit", "fsync", "full_page_writes")}
        log.info("postgresql durability: %s", ", ".join(f"{k}={v}" for k, v in settings.items()))
        if settings["synchronous_commit"] == "off" or settings["fsync"] == "off":
            log.warning("postgresql at %s may lose acknowledged writes on a crash (synchronous_commit=%s, fsync=%s): "
                        "set both to on", self.url, settings["synchronous_commit"], settings["fsync"])
        if settings["full_page_writes"] == "off":
            log.warning("postgresql at %s has full_page_writes=off: a crash can corrupt pages", self.url)


    def read_one(self, sql: str, params: Sequence[Any]) -> Any:
        return self._read(sql, params, one=True)

    def read_all(self, sql: str, params: Sequence[Any]) -> list[Any]:
        rows: list[Any] = self._read(sql, params, one=False)
        return rows

    def _read(self, sql: str, params: Sequence[Any], *, one: bool) -> Any:
        """A read on a pooled connection; a connection the server dropped (a restart) is replaced and the
        read tried once more, after the pool has dropped its other dead connections."""
        pool = self._need_pool()
        for attempt in (0, 1):
            with pool.connection() as conn:
                try:
                    cur = conn.execute(sql, params)
                    return cur.fetchone() if one else cur.fetchall()
                except psycopg.OperationalError:
                    if attempt or not conn.broken:
                        raise
            pool.check()
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def pipeline(self, cur: Any) -> Iterator[Callable[[], None]]:
        """psycopg's pipeline mode for a write transaction: statements whose results are not read (the
        version, entry and audit rows, the revision, COMMIT) travel with the next read or the final sync,
        so a one-write transaction takes 4 round trips instead of 9."""
        with cur.connection.pipeline() as pipe:
            yield pipe.sync

    @contextlib.contextmanager
    def hold(self) -> Iterator[Any]:
        with self._need_pool().connection() as conn, conn.cursor() as cur:
            yield cur

    def after_purge(self) -> None:
        """`VACUUM` the rows a purge rewrote: their dead tuples become free space (see the README for what
        stays in free space, the WAL and backups until overwritten or recycled)."""
        try:
            with self._need_pool().connection() as conn:
                conn.execute("VACUUM versions")
                conn.execute("VACUUM entries")
        except psycopg.Error as exc:
            log.warning("purge: VACUUM after the purge failed (%s); autovacuum will reclaim the space later",
                        _first_line(exc))

    def pending_migrations(self) -> list[int]:
        with self._need_pool().connection() as conn:
            return pending_versions(conn, POSTGRES)

    def storage_error(self, operation: str, exc: BaseException) -> StorageError:
        text = scrub(_first_line(exc), self._conninfo)
        if isinstance(exc, psycopg.OperationalError):
            return StorageUnavailableError(f"Storage failed while {operation}: the database is unreachable ({text})")
        return StorageError(f"Storage failed while {operation}: {text}")



DIALECT = PostgresDialect
"""What `storage.registry` opens for this backend's URLs."""
