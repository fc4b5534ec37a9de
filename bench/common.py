"""Sizes of a run, raw-sqlite3 helpers and the SQL the baselines run (the physical floors)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "ENTRY_COLS",
    "RAW_GET",
    "RAW_HISTORY",
    "RAW_LIST",
    "RAW_LIST_VALUES",
    "Sizes",
    "db_file",
    "raw_connect",
]

# The whole stored row, as the SQLite backend reads it (its 18 columns and their MAC), by the same
# unique index (namespace, environment, key); what the backend adds on top is ours to account for.
ENTRY_COLS: Final = (
    "id, namespace, key, environment, version, deleted, value_type, stored_value, fingerprint, "
    "created_at, created_by, updated_at, updated_by, tags, description, revision, audit_seq, purged, mac"
)
RAW_GET: Final = f"SELECT {ENTRY_COLS} FROM entries WHERE namespace = ? AND environment = ? AND key = ?"
RAW_HISTORY: Final = (
    "SELECT v.entry_id, v.version, v.deleted, v.purged, v.value_type, v.stored_value, v.fingerprint, "
    "v.created_at, v.created_by, v.change_description, v.audit_seq, v.revision, v.mac "
    "FROM versions v JOIN entries e ON e.id = v.entry_id "
    "WHERE e.namespace = ? AND e.environment = ? AND e.key = ? ORDER BY v.version DESC"
)
RAW_LIST: Final = (
    f"SELECT {ENTRY_COLS} FROM entries WHERE namespace = ? AND environment = ? AND deleted = 0 ORDER BY key"
)
RAW_LIST_VALUES: Final = (
    "SELECT key, value_type, stored_value FROM entries "
    "WHERE namespace = ? AND environment = ? AND deleted = 0 ORDER BY key"
)


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much work each measurement does; `quick()` is the smoke-test variant."""

    rounds: int = 7
    hit_n: int = 200_000
    dict_n: int = 1_000_000
    cold_n: int = 20_000
    set_n: int = 300
    history_n: int = 300
    list_n: int = 40
    resolve_n: int = 400
    cli_runs: int = 30
    scale_sample: int = 1_000
    scale_hit_n: int = 200_000
    scale_cold_n: int = 20_000
    max_entries: int = 1_000_000

    @classmethod
    def quick(cls, max_entries: int) -> Sizes:
        return cls(
            rounds=3, hit_n=20_000, dict_n=100_000, cold_n=2_000, set_n=30, history_n=30, list_n=5,
            resolve_n=40, cli_runs=5, scale_sample=200, scale_hit_n=20_000, scale_cold_n=2_000,
            max_entries=max_entries,
        )


def db_file(store: Path) -> Path:
    """The database file of a directory store (storage/base.py: `<store dir>/config.db`)."""
    return store / "config.db"


def raw_connect(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection set up like the backend's: autocommit, WAL, synchronous=FULL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL").fetchone()
    conn.execute("PRAGMA synchronous = FULL")
    return conn
