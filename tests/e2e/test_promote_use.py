"""diff and promotion as a user drives them — REST on a real server, the
SDK `Client` against it, and the library on a temporary store."""

from __future__ import annotations

import httpx
import pytest

from llm_config import Client
from llm_config.core.manager import ConfigManager
from tests.e2e.conftest import LiveServer, api, live_server, make_live_server

__all__ = ["api", "live_server", "make_live_server"]  # the real server fixtures, shared here

N = "/api/v1/namespaces"


def _put(api: httpx.Client, key: str, value: object, env: str) -> None:
    r = api.put(f"/api/v1/configs/app/-/{key}", json={"value": value, "env": env})
    assert r.status_code == 200, r.text


def test_rest_promote_with_an_empty_keys_list_does_not_touch_every_key(live_server: LiveServer,
                                                                       api: httpx.Client) -> None:
    """An empty key list (`{"keys": []}`, even with `"prune": true`) promotes and prunes nothing, or is a 400."""
    _put(api, "a", 1, "staging")
    _put(api, "keepme", "prod-only", "production")
    r = api.post(f"{N}/app/-/promote", json={"from": "staging", "to": "production", "keys": [], "prune": True})
    still_there = api.get("/api/v1/configs/app/-/keepme", params={"env": "production"}).status_code
    created = api.get("/api/v1/configs/app/-/a", params={"env": "production"}).status_code
    assert (r.status_code == 400) or (r.status_code == 200 and r.json()["steps"] == []), r.text
    assert still_there == 200, "an empty key selection pruned production"
    assert created == 404, "an empty key selection promoted every key"


def test_library_promote_with_keys_empty_selects_nothing(manager: ConfigManager) -> None:
    """In the library (and so the SDK), an empty key list plans no step."""
    manager.set("app", "a", 1, env="staging")
    plan = manager.promote("app", from_env="staging", to_env="production", keys=[], dry_run=True)
    assert plan.steps == (), plan.to_json()


def test_promotion_copies_an_object_value_as_it_is(manager: ConfigManager) -> None:
    """A promoted object keeps its source's key order; the comparison's canonical (sorted) form is not
    what gets written."""
    params = {"model": "gpt-4o-mini", "temperature": 0.3, "max_tokens": 512}
    manager.set("app", "llm.params", params, env="staging")
    manager.promote("app", from_env="staging", to_env="production")
    promoted = manager.get("app", "llm.params", env="production").value
    assert list(promoted) == list(params), list(promoted)


def test_client_offers_bind_as_the_readme_says(live_server: LiveServer) -> None:
    """As the README says, the SDK `Client` offers `bind(Settings, ns, env=…)` over REST like the manager."""
    pydantic = pytest.importorskip("pydantic")

    class Settings(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        model: str

    live_server.manager.set("app", "model", "gpt-4o", env="base")
    with Client(live_server.url, api_key=live_server.admin_key) as client:
        assert hasattr(client, "bind"), "Client has no bind()"
        assert client.bind(Settings, "app", env="production").model == "gpt-4o"


def test_bind_accepts_a_key_with_a_dash_through_a_field_alias(manager: ConfigManager) -> None:
    """A key with a `-` (SPEC §3: `max-tokens`) binds to a pydantic field through its alias."""
    pydantic = pytest.importorskip("pydantic")

    class Settings(pydantic.BaseModel):  # type: ignore[misc,name-defined]
        max_tokens: int = pydantic.Field(alias="max-tokens")

    manager.set("app", "max-tokens", 256, env="base")
    assert manager.bind(Settings, "app", env="production").max_tokens == 256
