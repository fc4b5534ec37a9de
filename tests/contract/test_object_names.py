"""Template names and schema patterns on every backend (tests/conftest.py `store_target`: SQLite, a private
PostgreSQL schema, a private MariaDB database): they are stored as the entry key `~t:NAME` / `~s:PATTERN`
in a 200-character column (MariaDB's `VARCHAR(200)`), so they are at most 197 characters — the longest is
stored everywhere, a longer one is a clear validation error, never a storage failure."""

from __future__ import annotations

import pytest

from llm_config.core.manager import ConfigManager
from llm_config.errors import ValidationError
from llm_config.names import OBJECT_NAME_MAX


@pytest.mark.parametrize("kind", ["template", "schema"])
def test_the_longest_name_is_stored_on_every_backend_and_a_longer_one_refused(store_target: str, key: str,
                                                                              kind: str) -> None:
    manager = ConfigManager.open(store_target, encryption_key=key, actor="tester")
    try:
        if kind == "template":
            name = "t" * OBJECT_NAME_MAX
            manager.set_template("app", name, "hi {{ who }}", env="base")
            assert manager.render("app", name, {"who": "you"}, env="production") == "hi you"
            with pytest.raises(ValidationError, match="at most 197 characters"):
                manager.set_template("app", name + "t", "hi", env="base")
        else:
            pattern = "s" * (OBJECT_NAME_MAX - 1) + "*"
            manager.set_schema("app", pattern, {"type": "integer"})
            assert [s.pattern for s in manager.list_schemas("app")] == [pattern]
            with pytest.raises(ValidationError, match="1-197 characters"):
                manager.set_schema("app", "s" + pattern, {"type": "integer"})
    finally:
        manager.close()
