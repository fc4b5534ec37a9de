"""Private databases on the shared PostgreSQL and MariaDB for one test each (ARCHITECTURE decision 9).

PostgreSQL: a schema of its own in database `test` (the URL sets `search_path`); MariaDB: a database of
its own. Both are dropped when the test ends. When a server is unreachable the test is skipped — or, with
LLM_CONFIG_REQUIRE_SERVICES=1 (CI), fails.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.conftest import require_service

PG_HOST, PG_PORT = "127.0.0.1", 5432
MY_HOST, MY_PORT = "127.0.0.1", 3306
PG_ADMIN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"
SERVER_BACKENDS = ("postgresql", "mysql")


@dataclass
class Database:
    """One private database: its storage URL and a way to run SQL behind llm-config's back."""

    backend: str
    name: str
    url: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one statement (autocommit) as an attacker or operator with database access would."""
        if self.backend == "postgresql":
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                cur = conn.execute(sql.replace("?", "%s"), params)
                return cur.fetchall() if cur.description else []
        import pymysql

        conn = pymysql.connect(host=MY_HOST, port=MY_PORT, user="root", database=self.name, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_mode = 'ANSI'")
                cur.execute(sql.replace("?", "%s"), tuple(params) or None)
                return list(cur.fetchall())
        finally:
            conn.close()


def _new_name() -> str:
    return f"t_{os.getpid()}_{secrets.token_hex(4)}"


@contextmanager
def private_database(backend: str) -> Iterator[Database]:
    """A fresh, empty database for `backend` ("postgresql" or "mysql"), dropped afterwards."""
    name = _new_name()
    if backend == "postgresql":
        require_service("PostgreSQL", PG_HOST, PG_PORT)
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        try:
            yield Database(backend, name, f"{PG_ADMIN}?options=-csearch_path%3D{name}")
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        return
    if backend != "mysql":
        raise ValueError(backend)
    require_service("MariaDB", MY_HOST, MY_PORT)
    import pymysql

    conn = pymysql.connect(host=MY_HOST, port=MY_PORT, user="root", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    finally:
        conn.close()
    try:
        yield Database(backend, name, f"mysql://root@{MY_HOST}:{MY_PORT}/{name}")
    finally:
        conn = pymysql.connect(host=MY_HOST, port=MY_PORT, user="root", autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()
