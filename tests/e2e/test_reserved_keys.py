"""Templates (`~t:NAME`) and schemas (`~s:PATTERN`) live under a reserved prefix that no config entry point
reaches: no config key starts with `~`, so the library and every REST route (cached or not) refuse such names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from llm_config.core.manager import ConfigManager
from llm_config.errors import PermissionDeniedError, ValidationError
from tests.e2e.conftest import LiveServer
from tests.sql_access import as_role


@pytest.fixture
def schema_store(make_manager: Callable[..., ConfigManager]) -> ConfigManager:
    manager = make_manager()
    manager.set_schema("acme", "model", {"type": "string", "enum": ["gpt-4o", "gpt-4o-mini"]},
                       description="only the approved models")
    return manager


def test_viewer_cannot_read_schema_through_schema_api(schema_store: ConfigManager) -> None:
    """Control: the schema API itself refuses a viewer (system:read)."""
    with pytest.raises(PermissionDeniedError):
        as_role(schema_store, "viewer").get_schema("acme", "model")


@pytest.mark.parametrize("how", ["plain", "with_overrides", "reveal"])
def test_viewer_cannot_read_schema_row_through_config_get(schema_store: ConfigManager, how: str) -> None:
    """A config `get` of `~s:PATTERN` is refused in every form, so a viewer cannot read a schema that way."""
    viewer = as_role(schema_store, "viewer")
    ways: dict[str, dict[str, Any]] = {"plain": {"env": "base"}, "reveal": {"env": "base", "reveal": True},
                                       "with_overrides": {"env": "base", "with_overrides": True}}
    kwargs = ways[how]
    try:
        entry = viewer.get("acme", "~s:model", **kwargs)
    except (ValidationError, PermissionDeniedError):
        return  # a reserved key is not a config key
    pytest.fail(f"a viewer read the schema row through config get: {entry.key} = {entry.value!r}")


def test_owner_get_of_reserved_key_is_refused_like_any_invalid_key(schema_store: ConfigManager) -> None:
    """Even for the owner, a name outside the key grammar is refused, never looked up (SPEC §3)."""
    with pytest.raises(ValidationError):
        schema_store.get("acme", "~s:model", env="base")
    with pytest.raises(ValidationError):
        schema_store.get("acme", "~t:greeting")


def test_config_route_refuses_template_row_after_a_render(
    live_server: LiveServer, api: httpx.Client,
) -> None:
    """GET /api/v1/configs/NS/~t:NAME is 400 before and after a render has cached the template's row."""
    assert api.put("/api/v1/templates/acme/-/greeting", json={"content": "Hello {{ name }}"}).status_code == 200
    with live_server.client(live_server.new_key("viewer")) as viewer:
        # the route refuses the name (the key grammar) ...
        before = viewer.get("/api/v1/configs/acme/%7Et:greeting")
        assert before.status_code == 400, before.text
        # ... and still does once a render has put the template's row in the cache
        rendered = api.post("/api/v1/templates/acme/-/greeting/render", json={"variables": {"name": "Ada"}})
        assert rendered.status_code == 200
        for path in ("/api/v1/configs/acme/%7Et:greeting", "/api/v1/configs/acme/-/%7Et:greeting"):
            after = viewer.get(path)
            assert after.status_code == 400, f"{path} → {after.status_code} {after.text[:200]}"


def test_rest_config_entry_points_refuse_reserved_keys(live_server: LiveServer, api: httpx.Client) -> None:
    """Every config route (write, delete, rollback, history, list, import, promote) refuses `~t:`/`~s:` names,
    and export and resolve show neither."""
    assert api.put("/api/v1/schemas/acme/-/model", json={"schema": {"type": "string"}}).status_code == 200
    assert api.put("/api/v1/templates/acme/-/greeting", json={"content": "hi"}).status_code == 200
    with live_server.client(live_server.new_key("editor")) as editor:
        attempts = {
            "put": editor.put("/api/v1/configs/acme/%7Es:model", json={"value": {"schema": {}}, "env": "base"}),
            "put-path": editor.put("/api/v1/configs/acme/-/%7Et:greeting", json={"value": {"content": "x"}}),
            "delete": editor.delete("/api/v1/configs/acme/%7Es:model", params={"env": "base"}),
            "rollback": editor.post("/api/v1/configs/acme/%7Et:greeting/rollback/1"),
            "history": editor.get("/api/v1/configs/acme/%7Es:model/history", params={"env": "base"}),
            "list-prefix": editor.get("/api/v1/configs/acme", params={"prefix": "~", "env": "base"}),
            "import": editor.post("/api/v1/namespaces/acme/-/import", params={"env": "base"},
                                  json={"~s:model": {"schema": {}}}),
            "promote": editor.post("/api/v1/namespaces/acme/-/promote",
                                   json={"from": "development", "to": "staging", "keys": ["~t:greeting"]}),
        }
        assert {name: r.status_code for name, r in attempts.items()} == dict.fromkeys(attempts, 400)
        assert editor.get("/api/v1/namespaces/acme/-/export", params={"env": "base"}).json()["values"] == {}
        assert editor.get("/api/v1/namespaces/acme/-/resolve", params={"env": "base"}).json() == {}
    assert api.get("/api/v1/schemas/acme/-/model").json()["version"] == 1  # untouched
