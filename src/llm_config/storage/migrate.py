"""Schema migrations: numbered SQL files per dialect, each applied once, in order.

Owns: finding `storage/migrations/<dialect>/NNN_name.sql`, the `schema_migrations` table that records
applied versions, and applying the pending files each in its own transaction under the database's
migration lock (SQLite `BEGIN IMMEDIATE`; PostgreSQL a session advisory lock, MySQL `GET_LOCK`, both
named after the schema), so re-running it, or running it from two processes or replicas at once,
applies every file exactly once.

Never: touches entries, versions or audit rows outside a migration file, builds SQL from input, or
needs more than a DB-API connection in autocommit mode (it issues BEGIN/COMMIT itself). Drivers'
exceptions propagate; the backend wraps them in `StorageError`.

Migration files hold plain statements separated by a `;` at the end of a line; `--` comment lines are
ignored. (MySQL commits DDL implicitly, so its files must keep each statement re-runnable.)
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from llm_config.errors import StorageError
from llm_config.times import utc_now

__all__ = [
    "MYSQL",
    "POSTGRES",
    "SQLITE",
    "Dialect",
    "Migration",
    "load_migrations",
    "migrate",
    "migration_lock",
    "pending_versions",
    "refuse_pending",
    "split_statements",
]

_FILE_NAME = re.compile(r"(\d{3,})_([A-Za-z0-9_]+)\.sql")


class _Cursor(Protocol):
    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class _Connection(Protocol):
    def cursor(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one database spells the few statements the runner needs."""

    name: str  # directory under storage/migrations
    begin: tuple[str, ...]  # open a transaction that holds the migration lock
    table_exists: str  # returns a row iff schema_migrations exists
    create_table: str  # CREATE TABLE IF NOT EXISTS schema_migrations
    latest: int  # the newest migration file of this dialect (a test keeps it true)
    placeholder: str = "?"
    lock: tuple[str, ...] = ()  # taken (outside a transaction) before looking at what is pending
    unlock: tuple[str, ...] = ()


SQLITE = Dialect(
    name="sqlite",
    begin=("BEGIN IMMEDIATE",),
    table_exists="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
    create_table=(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    ),
    latest=4,
)

_PG_LOCK_KEY = "hashtext('llm-config:migrate:' || current_schema())"
POSTGRES = Dialect(
    name="postgres",
    begin=("BEGIN",),
    table_exists=(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
        "AND table_name = 'schema_migrations'"
    ),
    create_table=(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version BIGINT NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    ),
    latest=2,
    placeholder="%s",
    lock=(f"SELECT pg_advisory_lock({_PG_LOCK_KEY})",),
    unlock=(f"SELECT pg_advisory_unlock({_PG_LOCK_KEY})",),
)

MYSQL = Dialect(
    name="mysql",
    begin=("START TRANSACTION",),
    table_exists=(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = 'schema_migrations'"
    ),
    create_table=(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT NOT NULL PRIMARY KEY, "
        "name VARCHAR(200) NOT NULL, applied_at VARCHAR(40) NOT NULL) ENGINE = InnoDB"
    ),
    latest=2,
    placeholder="%s",
    lock=("SELECT GET_LOCK(CONCAT('llm-config:migrate:', DATABASE()), 600)",),
    unlock=("SELECT RELEASE_LOCK(CONCAT('llm-config:migrate:', DATABASE()))",),
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered migration file."""

    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        return split_statements(self.sql)


def split_statements(sql: str) -> list[str]:
    """Split a migration file into statements at lines ending with `;`, dropping `--` comment lines."""
    statements: list[str] = []
    buffer: list[str] = []
    for line in sql.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        buffer.append(line)
        if stripped.endswith(";"):
            statements.append("\n".join(buffer).strip().rstrip(";").strip())
            buffer = []
    if buffer:
        statements.append("\n".join(buffer).strip())
    return [statement for statement in statements if statement]


def load_migrations(dialect: str) -> list[Migration]:
    """The migration files of a dialect, ordered by version; duplicate versions are an error."""
    from importlib import resources  # ~5 ms: only when a migration may be pending

    folder = resources.files("llm_config.storage").joinpath("migrations", dialect)
    found: dict[int, Migration] = {}
    if not folder.is_dir():
        return []
    for item in folder.iterdir():
        match = _FILE_NAME.fullmatch(item.name)
        if match is None:
            continue
        version = int(match.group(1))
        if version in found:
            raise StorageError(f"Two {dialect} migrations share version {version}")
        found[version] = Migration(version, match.group(2), item.read_text(encoding="utf-8"))
    return [found[version] for version in sorted(found)]


def _applied(cursor: _Cursor, dialect: Dialect) -> set[int]:
    cursor.execute(dialect.table_exists)
    if cursor.fetchone() is None:
        return set()
    cursor.execute("SELECT version FROM schema_migrations")
    return {int(row[0]) for row in cursor.fetchall()}


def _rollback(cursor: _Cursor) -> None:
    with contextlib.suppress(Exception):  # the original error is what matters
        cursor.execute("ROLLBACK")


def refuse_pending(conn: _Connection, dialect: Dialect, url: str) -> None:
    """For `serve --no-upgrade`: a StorageError naming the pending migrations, if any."""
    pending = pending_versions(conn, dialect)
    if pending:
        raise StorageError(
            f"The store at {url} needs schema migration(s) {', '.join(map(str, pending))} and --no-upgrade was "
            "given: run 'llm-config upgrade' once (e.g. as a Kubernetes Job), then start the servers"
        )


def pending_versions(conn: _Connection, dialect: Dialect = SQLITE) -> list[int]:
    """Versions of the migrations this code knows that the database has not applied (cheap: one read)."""
    done = _applied(conn.cursor(), dialect)
    if done == set(range(1, dialect.latest + 1)):
        return []
    return [m.version for m in load_migrations(dialect.name) if m.version not in done]


def migrate(conn: _Connection, dialect: Dialect = SQLITE) -> list[int]:
    """Apply every pending migration of `dialect`; return the versions applied by this call.

    Cheap when nothing is pending (one or two reads, no lock). Each file runs in its own transaction
    together with its `schema_migrations` row; the applied set is re-read under the lock, so a
    concurrent runner that got there first makes this one skip the file.
    """
    cursor: _Cursor = conn.cursor()
    done = _applied(cursor, dialect)
    if done == set(range(1, dialect.latest + 1)):
        return []  # the common case: up to date, without reading the migration files
    with migration_lock(cursor, dialect):
        return _apply_pending(cursor, dialect)


def migration_lock(cursor: _Cursor, dialect: Dialect) -> contextlib.AbstractContextManager[None]:
    """Hold the migration lock on `cursor`'s connection for a block (also: creating the first admin key
    of a server database, so replicas starting together create one)."""

    @contextlib.contextmanager
    def held() -> Any:
        for statement in dialect.lock:
            cursor.execute(statement)
            got = cursor.fetchall()
            if got and got[0][0] == 0:  # MySQL GET_LOCK timed out (PostgreSQL's waits, answering NULL)
                raise StorageError("Timed out waiting for the migration lock: another process holds it; "
                                   "retry when its migration or setup is done")
        try:
            yield
        finally:
            for statement in dialect.unlock:
                with contextlib.suppress(Exception):  # a lost connection releases it anyway
                    cursor.execute(statement)
                    cursor.fetchall()

    return held()


def _apply_pending(cursor: _Cursor, dialect: Dialect) -> list[int]:
    done = _applied(cursor, dialect)  # again, under the lock
    migrations = load_migrations(dialect.name)
    if done:
        newest_known = migrations[-1].version if migrations else 0
        if max(done) > newest_known:
            raise StorageError(
                f"The store's schema (version {max(done)}) is newer than this llm-config supports "
                f"(version {newest_known}): upgrade llm-config"
            )
    pending = [migration for migration in migrations if migration.version not in done]
    applied: list[int] = []
    mark = dialect.placeholder
    for migration in pending:
        for statement in dialect.begin:
            cursor.execute(statement)
        try:
            cursor.execute(dialect.create_table)
            cursor.execute(f"SELECT 1 FROM schema_migrations WHERE version = {mark}", (migration.version,))
            if cursor.fetchone() is None:
                for statement in migration.statements():
                    cursor.execute(statement)
                cursor.execute(
                    f"INSERT INTO schema_migrations (version, name, applied_at) VALUES ({mark}, {mark}, {mark})",
                    (
                        migration.version,
                        migration.name,
                        utc_now(),
                    ),
                )
                applied.append(migration.version)
            cursor.execute("COMMIT")
        except BaseException:
            _rollback(cursor)
            raise
    return applied
