"""Fixtures for the storage contract: every test runs against every backend in BACKENDS.

SQLite gets a store directory in the test's tmp_path; PostgreSQL a schema and MariaDB a database of the
test's own on the shared servers (tests/databases.py), dropped afterwards. `Backend.raw_execute` runs SQL
behind the storage's back, as someone with database access would.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llm_config.storage import open_storage
from llm_config.types import Storage
from tests.databases import Database, private_database

ROW_KEY = bytes(range(100, 132))
"""The row-MAC key every contract store checks with (a manager derives it from the instance secret)."""

BACKENDS = ["sqlite", "postgresql", "mysql"]


@dataclass
class Backend:
    """One backend under test, with a store of its own."""

    name: str
    tmp_path: Path
    database: Database | None = None

    @property
    def target(self) -> str:
        if self.database is not None:
            return self.database.url
        return str(self.tmp_path / "store")

    def open(self, *, create: bool = True, row_key: bytes | None = ROW_KEY) -> Storage:
        store = open_storage(self.target, create=create)
        store.set_row_key(row_key)
        return store

    def raw_execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement on a connection of our own, as an attacker with DB access would."""
        if self.name == "sqlite":
            conn = sqlite3.connect(self.tmp_path / "store" / "config.db", isolation_level=None)
            try:
                conn.execute(sql, params)
            finally:
                conn.close()
            return
        assert self.database is not None
        self.database.execute(sql, params)


    @contextmanager
    def write_lock_held(self) -> Iterator[None]:
        """Hold the store's write lock from a connection of our own (writers queue behind it)."""
        if self.database is None:
            conn = sqlite3.connect(self.tmp_path / "store" / "config.db", isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            finally:
                conn.execute("COMMIT")
                conn.close()
            return
        if self.name == "postgresql":
            import psycopg

            with psycopg.connect(self.database.url) as pg:  # a transaction until the block ends
                pg.execute("SELECT value FROM meta WHERE name = 'revision' FOR UPDATE")
                yield
            return
        import pymysql

        my = pymysql.connect(host="127.0.0.1", user="root", database=self.database.name)
        try:
            with my.cursor() as cur:
                cur.execute("START TRANSACTION")
                cur.execute("SELECT value FROM meta WHERE name = 'revision' FOR UPDATE")
                yield
                cur.execute("COMMIT")
        finally:
            my.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", tmp_path)
        return
    with private_database(request.param) as database:
        yield Backend(request.param, tmp_path, database)


@pytest.fixture
def storage(backend: Backend) -> Iterator[Storage]:
    store = backend.open(create=True)
    try:
        yield store
    finally:
        store.close()
