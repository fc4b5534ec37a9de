"""A schema or override row soft-deleted or deleted in the database without the master key is detected
(SPEC §2: a listing that meets a failing row fails whole): writes stay refused, and `schema list` and
`resolve` fail rather than silently skip the row."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from llm_config.core.manager import ConfigManager
from llm_config.errors import IntegrityError, SchemaViolationError
from tests.sql_access import store_with_sql

BACKENDS = ["sqlite", "postgresql", "mysql"]
_WHERE = 'namespace = ? AND "key" = ?'
TAMPER = {
    "soft-delete": [f"UPDATE entries SET deleted = 1 WHERE {_WHERE}"],
    # the version rows first: PostgreSQL and MariaDB hold them to their entry with a foreign key
    "row-delete": [f"DELETE FROM versions WHERE entry_id IN (SELECT id FROM entries WHERE {_WHERE})",
                   f"DELETE FROM entries WHERE {_WHERE}"],
}


@pytest.mark.parametrize("tamper", sorted(TAMPER))
@pytest.mark.parametrize("backend", BACKENDS)
def test_tampered_schema_row_does_not_silently_disable_enforcement(
    backend: str, tamper: str, tmp_path: Path, make_manager: Callable[..., ConfigManager],
) -> None:
    with store_with_sql(backend, tmp_path) as (target, sql):
        manager = make_manager(storage=target)
        manager.set_schema("acme", "openai.model", {"type": "string", "enum": ["gpt-4o", "gpt-4o-mini"]})
        with pytest.raises(SchemaViolationError):
            manager.set("acme", "openai.model", "attacker-model")  # control: enforced
        manager.close()

        for statement in TAMPER[tamper]:  # no master key needed
            sql(statement, ("acme", "~s:openai.model"))

        reopened = make_manager(storage=target)
        try:
            written = reopened.set("acme", "openai.model", "attacker-model", env="production")
        except (IntegrityError, SchemaViolationError):
            pass  # refused: the tampered schema row is detected, or still enforced
        else:
            pytest.fail(f"schema enforcement silently disabled by a DB-only {tamper}: stored version "
                        f"{written.version} of a value the schema forbids")


@pytest.mark.parametrize("backend", BACKENDS)
def test_tampered_schema_row_is_not_silently_missing_from_schema_list(
    backend: str, tmp_path: Path, make_manager: Callable[..., ConfigManager],
) -> None:
    with store_with_sql(backend, tmp_path) as (target, sql):
        manager = make_manager(storage=target)
        manager.set_schema("acme", "openai.model", {"type": "string"})
        manager.close()
        sql(TAMPER["soft-delete"][0], ("acme", "~s:openai.model"))
        reopened = make_manager(storage=target)
        try:
            listed = reopened.list_schemas("acme")
        except IntegrityError:
            return  # a listing that meets a failing row fails whole (SPEC §2)
        pytest.fail(f"a row whose MAC fails was skipped, not refused: schema list = {listed}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_soft_deleted_override_is_not_silently_replaced_by_base_in_resolve(
    backend: str, tmp_path: Path, make_manager: Callable[..., ConfigManager],
) -> None:
    with store_with_sql(backend, tmp_path) as (target, sql):
        manager = make_manager(storage=target)
        manager.set("acme", "openai.base_url", "https://sandbox.example", env="base")
        manager.set("acme", "openai.base_url", "https://api.openai.com", env="production")
        manager.close()
        sql("UPDATE entries SET deleted = 1 WHERE namespace = ? AND \"key\" = ? AND environment = 'production'",
            ("acme", "openai.base_url"))
        reopened = make_manager(storage=target)
        with pytest.raises(IntegrityError):  # get_current refuses the row ...
            reopened.get("acme", "openai.base_url", env="production")
        try:
            resolved = reopened.resolve("acme", env="production")
        except IntegrityError:
            return  # resolve fails whole
        pytest.fail(f"resolve silently served base for a tampered production row: {resolved}")
