"""Diff and promotion between environments over REST against a real server (SPEC §4, §8).

A diff names keys only — secrets are compared inside the server and never shown, and go to
`not_compared` for a caller who may not read them; a promotion is planned (dry run), then applied with
that plan as one transaction of compare-and-set writes: a target that moved since is 409 and a value that
breaks a schema 422, both with nothing written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import LiveServer
from tests.e2e.test_rest import SENTINEL, assert_error

C = "/api/v1/configs"
N = "/api/v1/namespaces"
SECRET_A = "sk-same-3f9e2d"
SECRET_B = "sk-dev-only-81c4aa"
SECRET_C = "sk-prod-old-77d210"
SECRETS = (SECRET_A, SECRET_B, SECRET_C)


def put(api: httpx.Client, key: str, value: Any, env: str, ns: str = "app", **extra: Any) -> None:
    r = api.put(f"{C}/{ns}/-/{key}", json={"value": value, "env": env, **extra})
    assert r.status_code == 200, r.text


def diff(api: httpx.Client, source: str, target: str, ns: str = "app") -> httpx.Response:
    return api.get(f"{N}/{ns}/-/diff", params={"from": source, "to": target})


def promote(api: httpx.Client, ns: str = "app", **body: Any) -> httpx.Response:
    body.setdefault("from", "development")
    body.setdefault("to", "production")
    return api.post(f"{N}/{ns}/-/promote", json=body)


def no_secret_in(*responses: httpx.Response) -> None:
    for r in responses:
        for secret in SECRETS:
            assert secret not in r.text, (r.request.url, r.text[:300])


def current(api: httpx.Client, key: str, env: str = "production", ns: str = "app") -> dict[str, Any] | None:
    r = api.get(f"{C}/{ns}/-/{key}", params={"env": env})
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    entry: dict[str, Any] = r.json()
    return entry


@pytest.fixture
def key_for(live_server: LiveServer) -> Iterator[Any]:
    clients: list[httpx.Client] = []

    def make(role: str, **scope: Any) -> httpx.Client:
        client = live_server.client(live_server.new_key(role, **scope))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def seeded(api: httpx.Client) -> httpx.Client:
    """development: a b c s_same s_diff s_new; production: b c d s_same s_diff; base: z (never compared)."""
    put(api, "a", "only-dev", "development")
    put(api, "b", {"same": [1, 2]}, "development")
    put(api, "b", {"same": [1, 2]}, "production")
    put(api, "c", 1, "development")
    put(api, "c", 1.5, "production")
    put(api, "d", "only-prod", "production")
    put(api, "s_same", SECRET_A, "development", secret=True)
    put(api, "s_same", SECRET_A, "production", secret=True)
    put(api, "s_diff", SECRET_B, "development", secret=True)
    put(api, "s_diff", SECRET_C, "production", secret=True)
    put(api, "z", "base value", "base")
    return api


def test_diff_shape_and_secrets_compared_without_being_shown(seeded: httpx.Client) -> None:
    api = seeded
    r = diff(api, "development", "production")
    assert r.status_code == 200, r.text
    assert r.json() == {"added": ["a"], "removed": ["d"], "changed": ["c", "s_diff"],
                        "unchanged": ["b", "s_same"], "not_compared": []}
    assert r.headers["cache-control"] == "no-store"
    reverse = diff(api, "prod", "DEV").json()  # aliases, any case
    assert reverse["added"] == ["d"] and reverse["removed"] == ["a"]
    # each environment's own entries: base is neither resolved into them nor compared
    base = diff(api, "base", "production").json()
    assert base["added"] == ["z"] and "z" not in json.dumps(diff(api, "development", "production").json())
    assert diff(api, "staging", "edge").json() == {"added": [], "removed": [], "changed": [], "unchanged": [],
                                                   "not_compared": []}
    no_secret_in(r, api.get("/api/v1/audit"), api.get("/api/v1/audit/export"))


def test_a_viewer_gets_secrets_as_not_compared(seeded: httpx.Client, key_for: Any) -> None:
    viewer = key_for("viewer")
    r = diff(viewer, "development", "production")
    assert r.status_code == 200, r.text
    assert r.json() == {"added": ["a"], "removed": ["d"], "changed": ["c"], "unchanged": ["b"],
                        "not_compared": ["s_diff", "s_same"]}
    no_secret_in(r)
    # and may not promote at all: refused before the body is read (it is not even JSON)
    assert_error(viewer.post(f"{N}/app/-/promote", content=b"{nope",
                             headers={"content-type": "application/json"}), 403)
    assert_error(promote(viewer, dry_run=True), 403)


def test_dry_run_then_apply_with_the_plan(live_server: LiveServer, seeded: httpx.Client) -> None:
    api = seeded
    planned = promote(api, dry_run=True)
    assert planned.status_code == 200, planned.text
    plan = planned.json()
    assert plan["applied"] is False and plan["namespace"] == "app"
    assert plan["from"] == "development" and plan["to"] == "production"
    assert [(s["key"], s["action"], s["target_version"], s["secret"]) for s in plan["steps"]] == [
        ("a", "create", 0, False), ("c", "update", 1, False), ("s_diff", "update", 1, True)]
    assert plan["unchanged"] == ["b", "s_same"]
    assert current(api, "a") is None  # a dry run writes nothing
    no_secret_in(planned)

    applied = promote(api, plan=plan)
    assert applied.status_code == 200, applied.text
    result = applied.json()
    assert result["applied"] is True and result["id"] == plan["id"] and result["steps"] == plan["steps"]
    no_secret_in(applied)
    a, c, s_diff = current(api, "a"), current(api, "c"), current(api, "s_diff")
    assert a is not None and (a["value"], a["version"]) == ("only-dev", 1)
    assert c is not None and (c["value"], c["version"]) == (1, 2)
    assert s_diff is not None and s_diff["secret"] is True and s_diff["version"] == 2
    assert s_diff["value"] == "<encrypted>"
    revealed = api.get(f"{C}/app/-/s_diff", params={"env": "production", "reveal": "true"}).json()
    assert revealed["value"] == SECRET_B  # re-sealed for its new place, readable there
    assert current(api, "d") is not None  # not pruned
    history = api.get(f"{C}/app/-/c/history", params={"env": "production"}).json()
    assert history[0]["change_description"] == f"Promoted from development ({plan['id']})"
    # one audit event per key, each naming the promotion
    events = [e for e in api.get("/api/v1/audit").json() if e["details"].get("promotion_id") == plan["id"]]
    assert sorted((e["key"], e["type"]) for e in events) == [
        ("a", "config_created"), ("c", "config_updated"), ("s_diff", "secret_modified")]
    assert all(e["actor"] == live_server.admin_actor and e["environment"] == "production" for e in events)
    # now equal: a second promotion has nothing to do
    again = promote(api).json()
    assert again["steps"] == [] and "a" in again["unchanged"]
    assert diff(api, "development", "production").json()["removed"] == ["d"]


def test_a_plan_is_refused_with_409_once_the_target_moved(seeded: httpx.Client) -> None:
    api = seeded
    plan = promote(api, dry_run=True).json()
    put(api, "c", "changed meanwhile", "production")
    r = promote(api, plan=plan)
    message = assert_error(r, 409)
    assert "c" in message and "nothing was written" in message
    assert current(api, "a") is None  # not even the keys that did not move
    c = current(api, "c")
    assert c is not None and c["value"] == "changed meanwhile" and c["version"] == 2
    # a source that moved counts too
    plan = promote(api, dry_run=True).json()
    put(api, "a", "newer", "development")
    assert_error(promote(api, plan=plan), 409)
    assert current(api, "a") is None
    # a plan for something else is not a plan for this
    assert_error(promote(api, plan={**plan, "namespace": "other"}), 400)
    assert_error(promote(api, plan={**plan, "to": "staging"}), 400)
    # without a plan, the promotion plans and applies at once
    assert promote(api).json()["applied"] is True
    a = current(api, "a")
    assert a is not None and a["value"] == "newer"


def test_prune_and_keys(seeded: httpx.Client) -> None:
    api = seeded
    only = promote(api, keys=["a"])
    assert only.status_code == 200 and [s["key"] for s in only.json()["steps"]] == ["a"]
    c = current(api, "c")
    assert c is not None and c["value"] == 1.5
    assert "nope" in assert_error(promote(api, keys=["nope"]), 404)
    plan = promote(api, prune=True, dry_run=True).json()
    assert [(s["key"], s["action"]) for s in plan["steps"]] == [("c", "update"), ("d", "delete"),
                                                                ("s_diff", "update")]
    delete_step = next(s for s in plan["steps"] if s["action"] == "delete")
    assert delete_step["source_version"] is None and delete_step["target_version"] == 1
    applied = promote(api, prune=True, plan=plan)
    assert applied.status_code == 200, applied.text
    assert current(api, "d") is None
    history = api.get(f"{C}/app/-/d/history", params={"env": "production"}).json()
    assert history[0]["deleted"] is True and history[0]["change_description"].startswith("Promoted from development")
    assert diff(api, "development", "production").json() == {
        "added": [], "removed": [], "changed": [], "unchanged": ["a", "b", "c", "s_diff", "s_same"],
        "not_compared": []}


def test_a_schema_violation_is_422_and_nothing_is_written(seeded: httpx.Client) -> None:
    api = seeded
    # attached after the values were written: existing values are not re-checked, promoted ones are
    assert api.put("/api/v1/schemas/app/-/c", json={"schema": {"type": "string"}}).status_code == 200
    message = assert_error(promote(api, dry_run=True), 422)  # the plan says what applying it would meet
    assert "c" in message and "type" in message
    assert current(api, "a") is None and current(api, "s_diff") is not None
    s_diff = api.get(f"{C}/app/-/s_diff", params={"env": "production", "reveal": "true"}).json()
    assert s_diff["value"] == SECRET_C and s_diff["version"] == 1
    assert_error(promote(api), 422)
    # the other keys may still go, one by one
    assert promote(api, keys=["a", "s_diff"]).status_code == 200


def test_environment_scopes_and_roles(api: httpx.Client, key_for: Any) -> None:
    put(api, "k", "from staging", "staging")
    put(api, "k", "from base", "base")
    staging_editor = key_for("editor", environments=["staging"])
    # staging → production: may read the source, may not write the target
    assert_error(promote(staging_editor, **{"from": "staging", "to": "production"}), 403)
    assert_error(promote(staging_editor, **{"from": "staging", "to": "production", "dry_run": True}), 403)
    assert current(api, "k") is None
    # reading development is outside its scope too; base is every environment's default, readable
    assert_error(diff(staging_editor, "development", "staging"), 403)
    assert_error(promote(staging_editor, **{"from": "development", "to": "staging"}), 403)
    assert diff(staging_editor, "base", "staging").status_code == 200
    # within its scope it promotes: base → staging
    r = promote(staging_editor, **{"from": "base", "to": "staging"})
    assert r.status_code == 200, r.text
    k = current(api, "k", env="staging")
    assert k is not None and k["value"] == "from base"
    denied = [e for e in api.get("/api/v1/audit", params={"type": "access_denied"}).json()
              if e["actor"].startswith("key:editor")]
    assert any(e["environment"] == "production" for e in denied)
    # a key limited to another namespace is refused before its body is read
    other = key_for("editor", namespaces=["other"])
    assert_error(other.post(f"{N}/app/-/promote", content=b"garbage", headers={"content-type": "application/json"}),
                 403)
    assert_error(diff(other, "development", "production"), 403)
    # an editor without limits may promote secrets (it reads and writes them); an auditor may diff only
    auditor = key_for("auditor")
    assert diff(auditor, "development", "production").status_code == 200
    assert_error(promote(auditor, dry_run=True), 403)


def test_bad_diff_and_promote_requests_are_4xx_never_500(seeded: httpx.Client) -> None:
    api = seeded
    cases: list[tuple[httpx.Response, int]] = [
        (diff(api, "development", "development"), 400),
        (diff(api, "dev", "development"), 400),
        (diff(api, "moon", "production"), 400),
        (api.get(f"{N}/app/-/diff", params={"from": "development"}), 400),
        (api.get(f"{N}/app/-/diff", params={"from": "development", "to": "production", "env": "x"}), 400),
        (api.get(f"{N}/bad ns/-/diff", params={"from": "development", "to": "production"}), 400),
        (promote(api, **{"to": "development"}), 400),
        (promote(api, **{"to": "moon"}), 400),
        (api.post(f"{N}/app/-/promote", json={"from": "development"}), 400),
        (promote(api, extra=SENTINEL), 400),
        (promote(api, keys="a"), 400),
        (promote(api, keys=["bad key"]), 400),
        (promote(api, prune="yes"), 400),
        (promote(api, plan={"steps": [{"action": "explode"}]}), 400),
        (promote(api, plan=[SENTINEL]), 400),
        (api.post(f"{N}/app/-/promote", params={"dry_run": "true"}, json={"from": "dev", "to": "prod"}), 400),
        (api.post(f"{N}/app/-/promote", content=b"{", headers={"content-type": "application/json"}), 400),
        (api.post(f"{N}/app/-/promote", content=b"", headers={"content-type": "application/json"}), 400),
        (api.post(f"{N}/app/-/promote", content=b"{}", headers={"content-type": "text/plain"}), 415),
    ]
    for response, status in cases:
        assert_error(response, status)
    assert current(api, "a") is None


def test_a_plan_step_with_an_object_for_action_is_400(seeded: httpx.Client) -> None:
    api = seeded
    plan = promote(api, dry_run=True).json()
    plan["steps"][0]["action"] = {"create": True}
    assert_error(promote(api, plan=plan), 400)
