"""Fixtures for the storage contract: every test runs against every backend in BACKENDS.

To add a backend, append its name to BACKENDS and teach `Backend.target`, `Backend.raw_execute`
(SQL run behind the storage's back, e.g. to tamper with the audit trail) and `Backend.cleanup`
about it — e.g. a fresh PostgreSQL database or MySQL schema per test.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llm_config.storage import open_storage
from llm_config.types import Storage

ROW_KEY = bytes(range(100, 132))
"""The row-MAC key every contract store checks with (a manager derives it from the instance secret)."""

BACKENDS = ["sqlite"]  # later: "postgresql", "mysql"


@dataclass
class Backend:
    """One backend under test, with a store of its own."""

    name: str
    tmp_path: Path

    @property
    def target(self) -> str:
        if self.name == "sqlite":
            return str(self.tmp_path / "store")
        raise NotImplementedError(self.name)

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
        raise NotImplementedError(self.name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return Backend(request.param, tmp_path)


@pytest.fixture
def storage(backend: Backend) -> Iterator[Storage]:
    store = backend.open(create=True)
    try:
        yield store
    finally:
        store.close()
