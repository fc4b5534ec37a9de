"""Helpers of `bench.backends`: a fresh database per backend (dropped afterwards, even on error), the raw
driver connections that are the floors (a SELECT by primary key, an INSERT + COMMIT into a scratch table),
the requests storage applies, and each server's version and durability settings.

The servers are the shared ones of the test suite (tests/databases.py): PostgreSQL on 127.0.0.1:5432
(user `postgres`, trust auth, database `test`; a private schema named in the URL's `search_path`) and
MariaDB on 127.0.0.1:3306 (user `root`, no password; a private database). SQLite gets a store directory.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from bench.common import db_file, raw_connect
from bench.harness import progress
from llm_config import audit
from llm_config.core.custody import place
from llm_config.models import Environment, ValueType, WriteKind, WriteRequest

__all__ = [
    "AUDIT_KEY",
    "BACKENDS",
    "ROW_KEY",
    "RawDriver",
    "fresh_database",
    "server_facts",
    "set_request",
]

BACKENDS: Final = ("sqlite", "postgresql", "mysql")
PG_ADMIN: Final = "postgresql://postgres@127.0.0.1:5432/test"
MY_HOST: Final = "127.0.0.1"
MY_PORT: Final = 3306
MY_USER: Final = "root"

# The storage-level keys (as the contract tests have them: a manager derives them from the master key).
ROW_KEY: Final = bytes(range(100, 132))
AUDIT_KEY: Final = bytes(range(32))
FP_KEY: Final = bytes(range(32, 64))

# The whole stored row (18 columns and its MAC), as storage reads it; "key" quoted for MySQL's ANSI mode.
ENTRY_COLS: Final = (
    'id, namespace, "key", environment, version, deleted, value_type, stored_value, fingerprint, '
    "created_at, created_by, updated_at, updated_by, tags, description, revision, audit_seq, purged, mac"
)
SCRATCH: Final = "bench_raw_versions"
_SCRATCH_DDL: Final = {
    "sqlite": (
        f"CREATE TABLE {SCRATCH} (entry_id TEXT NOT NULL, version INTEGER NOT NULL, value_type TEXT NOT NULL, "
        "stored_value TEXT, fingerprint TEXT, created_at TEXT NOT NULL, created_by TEXT NOT NULL, "
        "change_description TEXT NOT NULL, PRIMARY KEY (entry_id, version))"
    ),
    "postgresql": (
        f'CREATE TABLE {SCRATCH} (entry_id TEXT COLLATE "C" NOT NULL, version BIGINT NOT NULL, '
        'value_type TEXT COLLATE "C" NOT NULL, stored_value TEXT COLLATE "C", fingerprint TEXT COLLATE "C", '
        'created_at TEXT COLLATE "C" NOT NULL, created_by TEXT COLLATE "C" NOT NULL, '
        'change_description TEXT COLLATE "C" NOT NULL, PRIMARY KEY (entry_id, version))'
    ),
    "mysql": (
        f"CREATE TABLE {SCRATCH} (entry_id VARCHAR(64) NOT NULL, version BIGINT NOT NULL, "
        "value_type VARCHAR(16) NOT NULL, stored_value LONGTEXT, fingerprint VARCHAR(200), "
        "created_at VARCHAR(40) NOT NULL, created_by TEXT NOT NULL, change_description MEDIUMTEXT NOT NULL, "
        "PRIMARY KEY (entry_id, version)) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin"
    ),
}
SQLITE_BUSY_MS: Final = 30_000  # as the backend's busy timeout (storage/sqlite.py)
_BEGIN: Final = {"sqlite": "BEGIN IMMEDIATE", "postgresql": "BEGIN", "mysql": "START TRANSACTION"}
# The sessions storage's MySQL pool opens (storage/mysql.py), so the raw side parses the same SQL.
_MY_SESSION: Final = (
    "SET SESSION sql_mode = 'ANSI,STRICT_ALL_TABLES,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO'",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def set_request(ns: str, key: str, value: Any, env: Environment = Environment.PRODUCTION) -> WriteRequest:
    """A plain SET as the manager builds it (tests/contract/test_storage.py `set_req`, plain values only)."""
    text = orjson.dumps(value)
    fingerprint = audit.fingerprint(FP_KEY, place(ns, key, env), text)
    return WriteRequest(
        kind=WriteKind.SET, namespace=ns, key=key, environment=env, actor="bench", timestamp=now(),
        change_description="Updated", value_type=ValueType.PLAIN, stored_value=text.decode(),
        fingerprint=fingerprint,
        audit_details={"fingerprint": fingerprint, "fingerprint_scheme": audit.FINGERPRINT_SCHEME},
    )


def _name(tag: str) -> str:
    return f"bench_{os.getpid()}_{secrets.token_hex(3)}_{tag}"


def _my_admin() -> Any:
    import pymysql

    return pymysql.connect(host=MY_HOST, port=MY_PORT, user=MY_USER, autocommit=True)


@contextmanager
def fresh_database(backend: str, tag: str, work: Path) -> Iterator[str]:
    """The storage target of a new, empty store for `backend`: a directory under `work` (SQLite), a schema
    of its own in `test` (PostgreSQL) or a database of its own (MySQL), dropped when the block ends."""
    if backend == "sqlite":
        yield str(work / f"store-{tag}")
        return
    name = _name(tag)
    if backend == "postgresql":
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        try:
            yield f"{PG_ADMIN}?options=-csearch_path%3D{name}"
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            progress(f"dropped schema {name}")
        return
    if backend != "mysql":
        raise ValueError(backend)
    conn = _my_admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    finally:
        conn.close()
    try:
        yield f"mysql://{MY_USER}@{MY_HOST}:{MY_PORT}/{name}"
    finally:
        conn = _my_admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()
        progress(f"dropped database {name}")


class RawDriver:
    """One plain driver connection to a store's database (autocommit, one reused cursor): the floors.

    `select_entry(id)` reads the whole entry row (its 19 columns, the MAC among them) by primary key;
    `insert_commit(owner, i)` is one transaction inserting one version-sized row into the scratch table
    (`BEGIN` / `INSERT` / `COMMIT`, the driver's own round trips). SQLite's scratch table lives in a file
    of its own next to the store (as in `bench.core` row 3) with the store's settings (WAL,
    `synchronous=FULL`); the servers' in the store's own schema or database. `create_scratch()` once first.
    """

    def __init__(self, backend: str, target: str, work: Path) -> None:
        self.backend = backend
        q = "?" if backend == "sqlite" else "%s"
        self.select_sql = f"SELECT {ENTRY_COLS} FROM entries WHERE id = {q}"
        self.insert_sql = f"INSERT INTO {SCRATCH} VALUES ({', '.join([q] * 8)})"
        self._begin = _BEGIN[backend]
        self._conn: Any
        self._scratch_conn: Any
        if backend == "sqlite":
            self._conn = raw_connect(db_file(Path(target)))
            # made here, used by one writer thread of the 16 (each has its own): not shared
            self._scratch_conn = sqlite3.connect(work / "raw-scratch.db", isolation_level=None,
                                                 check_same_thread=False, timeout=SQLITE_BUSY_MS / 1000)
            self._scratch_conn.execute("PRAGMA journal_mode = WAL").fetchone()
            self._scratch_conn.execute("PRAGMA synchronous = FULL")
        elif backend == "postgresql":
            import psycopg

            self._conn = psycopg.connect(target, autocommit=True)
            self._scratch_conn = self._conn
        else:
            import pymysql

            from llm_config.storage.mysql import connect_args

            self._conn = pymysql.connect(**connect_args(target))  # autocommit, utf8mb4
            self._scratch_conn = self._conn
            with self._conn.cursor() as cur:
                for statement in _MY_SESSION:
                    cur.execute(statement)
        self.cur = self._conn.cursor()
        self.scratch_cur = self._scratch_conn.cursor()

    def create_scratch(self) -> None:
        self.scratch_cur.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
        self.scratch_cur.execute(_SCRATCH_DDL[self.backend])

    def select_entry(self, entry_id: str) -> Any:
        cur = self.cur
        cur.execute(self.select_sql, (entry_id,))
        return cur.fetchone()

    def insert_commit(self, owner: str, i: int) -> None:
        cur = self.scratch_cur
        cur.execute(self._begin)
        cur.execute(self.insert_sql, (owner, i, "plain", f'"gpt-4o-{i}"', f"fp{i:060d}",
                                      "2025-11-27T09:00:00.000000Z", "bench", "Updated"))
        cur.execute("COMMIT")

    def close(self) -> None:
        for thing in (self.cur, self.scratch_cur, self._conn, self._scratch_conn):
            with suppress(Exception):
                thing.close()


def server_facts(backend: str, target: str) -> str:
    """The server's version and the durability settings in force (what a durable commit costs)."""
    if backend == "sqlite":
        lite = sqlite3.connect(db_file(Path(target)), isolation_level=None)
        try:
            mode = lite.execute("PRAGMA journal_mode").fetchone()[0]
        finally:
            lite.close()
        return (f"SQLite {sqlite3.sqlite_version} (stdlib `sqlite3`), journal_mode={mode}, synchronous=FULL "
                "(fsync per commit)")
    if backend == "postgresql":
        import psycopg

        def show(pg: Any, name: str) -> str:
            return str(pg.execute(f"SHOW {name}").fetchone()[0])

        with psycopg.connect(target, autocommit=True) as pg:
            version = show(pg, "server_version")
            shown = {name: show(pg, name)
                     for name in ("synchronous_commit", "fsync", "wal_sync_method", "commit_delay")}
        return (f"PostgreSQL {version.split(maxsplit=1)[0]} (psycopg {psycopg.__version__}, psycopg-pool), "
                + ", ".join(f"{k}={v}" for k, v in shown.items()))
    import pymysql

    from llm_config.storage.mysql import connect_args

    conn = pymysql.connect(**connect_args(target))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@version, @@innodb_flush_log_at_trx_commit, @@sync_binlog, @@log_bin, "
                        "@@innodb_flush_method")
            version, flush, sync_binlog, log_bin, method = cur.fetchone()
    finally:
        conn.close()
    return (f"MariaDB {str(version).split('-', maxsplit=1)[0]} (PyMySQL {pymysql.__version__}, DBUtils PooledDB), "
            f"innodb_flush_log_at_trx_commit={flush}, sync_binlog={sync_binlog}, log_bin={log_bin}, "
            f"innodb_flush_method={method}")
