"""A store on each backend with a way to run SQL behind llm-config's back (an attacker with database access)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llm_config.core.context import CallContext
from llm_config.core.manager import ConfigManager
from llm_config.models import Environment, Principal, Role

SQL = Callable[[str, Sequence[Any]], object]

REPO = Path(__file__).resolve().parents[1]


def child_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a child Python that imports the same `llm_config` (and `tests`) as this process."""
    import os

    import llm_config

    source = str(Path(llm_config.__file__).resolve().parents[1])
    return {**{k: v for k, v in os.environ.items() if not k.startswith("LLM_CONFIG_")},
            "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "PYTHONPATH": os.pathsep.join([source, str(REPO)])}


@contextmanager
def store_with_sql(backend: str, tmp_path: Path) -> Iterator[tuple[str, SQL]]:
    """(storage target, run-SQL-as-an-attacker) for `backend` ("sqlite", "postgresql" or "mysql")."""
    if backend == "sqlite":
        store = tmp_path / "store"

        def run(sql: str, params: Sequence[Any] = ()) -> object:
            with sqlite3.connect(store / "config.db") as conn:
                return conn.execute(sql, tuple(params)).fetchall()

        yield str(store), run
        return
    from tests.databases import private_database

    with private_database(backend) as database:
        yield database.url, database.execute


def as_role(manager: ConfigManager, role: str, *, namespaces: tuple[str, ...] = (),
            environments: tuple[Environment, ...] = ()) -> Any:
    """The manager's methods as an API key of `role` would call them (what every REST route does)."""
    principal = Principal(f"key:{role}-review#key_review", Role(role), namespaces, environments, "key_review")
    return manager.as_caller(CallContext(principal, "203.0.113.7", "req-review"))
