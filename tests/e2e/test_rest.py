"""The REST API against a real uvicorn server (SPEC §3, §5, §7, §8), as an admin API key.

Authentication, RBAC, rate limits and the other defences of SPEC §9 are in test_security*.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from llm_config.core.manager import ConfigManager
from llm_config.server.app import create_app
from llm_config.server.runner import is_loopback
from llm_config.settings import ServeOptions
from tests.e2e.conftest import LiveServer

C = "/api/v1/configs"
SENTINEL = "SENTINEL-7f3a9c"


def put(api: httpx.Client, path: str, body: Any, **kw: Any) -> httpx.Response:
    return api.put(f"{C}/{path}", json=body, **kw)


def assert_error(response: httpx.Response, status: int, *, must_not_contain: str = SENTINEL) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"}
    assert body["error"] == httpx.codes.get_reason_phrase(status)
    assert must_not_contain not in response.text
    assert "Traceback" not in response.text
    return str(body["message"])


# ----------------------------------------------------------------------------- round trips

JSON_VALUES = [
    "plain string", "", "héllo ✓ 日本", 0, -1, 42, 2**63 - 1, -(2**63), 1.5, -0.25, 1e300, True, False,
    None, [], {}, [1, "two", None, True, 2.5], {"a": {"b": [1, {"c": None}], "d": "e"}},
]


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_round_trip_of_every_json_type(api: httpx.Client, method: str) -> None:
    for i, value in enumerate(JSON_VALUES):
        r = api.request(method, f"{C}/app/k{i}", json={"value": value})
        assert r.status_code == 200, (value, r.text)
        assert r.json()["version"] == 1
        got = api.get(f"{C}/app/k{i}")
        assert got.status_code == 200
        assert json.dumps(got.json()["value"]) == json.dumps(value)
        assert got.json()["environment"] == "development"


def test_config_response_shape(live_server: LiveServer, api: httpx.Client) -> None:
    r = put(api, "app/model", {"value": "gpt", "description": "the model", "tags": ["llm", "prod"],
                               "env": "prod"})
    body = r.json()
    assert set(body) == {"id", "namespace", "key", "value", "environment", "version", "secret", "metadata"}
    assert body["environment"] == "production"
    assert body["metadata"]["tags"] == ["llm", "prod"]
    assert body["metadata"]["description"] == "the model"
    assert body["metadata"]["created_by"] == live_server.admin_actor
    assert body["metadata"]["created_at"].endswith("Z")


def test_special_characters_are_data_returned_byte_exact(api: httpx.Client) -> None:
    value = "it's; DROP TABLE x; a & b <script>alert('x')</script> \"q\" \\ \u2028"
    assert put(api, "app/tricky", {"value": value}).status_code == 200
    r = api.get(f"{C}/app/tricky", params={"env": "development", "reveal": "false"})  # & in a query string
    assert r.json()["value"] == value
    assert b"<script>alert('x')</script>" in r.content
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-content-type-options"] == "nosniff"


def test_namespace_with_slash_via_separator(api: httpx.Client) -> None:
    r = put(api, "team/app/prod/-/db.url", {"value": "postgres://x"})
    assert r.status_code == 200
    assert r.json()["namespace"] == "team/app/prod"
    assert api.get(f"{C}/team/app/prod/-/db.url").json()["value"] == "postgres://x"
    listed = api.get(f"{C}/team/app/prod/-/")
    assert [e["key"] for e in listed.json()] == ["db.url"]
    assert "team/app/prod" in api.get("/api/v1/namespaces").json()
    assert api.get(f"{C}/team/-/", params={"recursive": "true"}).json()[0]["namespace"] == "team/app/prod"
    # the one-segment form of a single-segment namespace still works, and both forms agree
    put(api, "solo/k", {"value": 1})
    assert api.get(f"{C}/solo/-/k").json() == api.get(f"{C}/solo/k").json()


# ----------------------------------------------------------------------------- secrets

def test_secret_hidden_unless_revealed(live_server: LiveServer, api: httpx.Client) -> None:
    r = put(api, "app/openai.api_key", {"value": "sk-top-secret", "secret": True})
    assert r.status_code == 200
    assert r.json()["value"] == "<encrypted>"
    assert "sk-top-secret" not in r.text
    r = api.get(f"{C}/app/openai.api_key")
    assert r.json()["value"] == "<encrypted>" and r.json()["secret"] is True
    assert "sk-top-secret" not in r.text
    r = api.get(f"{C}/app/openai.api_key", params={"reveal": "true"}, headers={"X-Request-ID": "req-reveal-1"})
    assert r.status_code == 200
    assert r.json()["value"] == "sk-top-secret"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-request-id"] == "req-reveal-1"
    events = api.get("/api/v1/audit", params={"type": "secret_accessed"}).json()
    assert len(events) == 1
    assert events[0]["request_id"] == "req-reveal-1"
    assert events[0]["actor"] == live_server.admin_actor and events[0]["source_ip"] == "127.0.0.1"
    assert "sk-top-secret" not in json.dumps(api.get("/api/v1/audit").json())
    # a plain write over a secret needs "secret": false explicitly
    assert_error(put(api, "app/openai.api_key", {"value": SENTINEL}), 409)  # its state refuses it
    assert put(api, "app/openai.api_key", {"value": "now-plain", "secret": False}).json()["secret"] is False


def test_actor_and_source_ip_never_from_client(live_server: LiveServer, api: httpx.Client) -> None:
    r = put(api, "app/k", {"value": 1}, headers={"X-Forwarded-For": "6.6.6.6"})
    assert r.json()["metadata"]["updated_by"] == live_server.admin_actor
    event = api.get("/api/v1/audit").json()[-1]
    assert event["source_ip"] == "127.0.0.1"
    assert event["request_id"] == r.headers["x-request-id"]
    for field in ("created_by", "actor", "version", "id", "updated_by"):
        message = assert_error(put(api, "app/k", {"value": 2, field: SENTINEL}), 400)
        assert field in message
    assert api.get(f"{C}/app/k").json()["version"] == 1


# ----------------------------------------------------------------------------- caching and ETags

def test_etag_and_if_none_match(api: httpx.Client) -> None:
    put(api, "app/k", {"value": "v1"})
    first = api.get(f"{C}/app/k")
    etag = first.headers["etag"]
    again = api.get(f"{C}/app/k")  # served from the cache this time
    assert again.headers["etag"] == etag and again.json() == first.json()
    for candidate in (etag, f"W/{etag}", f'"other", {etag}'):
        r = api.get(f"{C}/app/k", headers={"If-None-Match": candidate})
        assert r.status_code == 304 and r.content == b""
        assert r.headers["etag"] == etag
    assert api.get(f"{C}/app/k", headers={"If-None-Match": '"nope"'}).status_code == 200
    put(api, "app/k", {"value": "v2"})
    r = api.get(f"{C}/app/k", headers={"If-None-Match": etag})
    assert r.status_code == 200 and r.json()["value"] == "v2"
    assert r.headers["etag"] != etag
    # an old version and a revealed secret have their own tags
    old = api.get(f"{C}/app/k", params={"version": 1})
    assert old.json()["value"] == "v1" and old.headers["etag"] == etag
    put(api, "app/s", {"value": "x", "secret": True})
    hidden = api.get(f"{C}/app/s").headers["etag"]
    shown = api.get(f"{C}/app/s", params={"reveal": "true"}).headers["etag"]
    assert hidden != shown
    assert api.get(f"{C}/app/s", params={"reveal": "true"}, headers={"If-None-Match": shown}).status_code == 304


class _NoThreads:
    def submit(self, *a: Any, **kw: Any) -> Any:
        raise AssertionError("a cache hit must not hop to a thread")


def test_cache_hits_are_answered_without_a_thread_hop(live_server: LiveServer, api: httpx.Client) -> None:
    put(api, "app/hot", {"value": {"fast": True}})
    api.get(f"{C}/app/hot")
    warm = api.get(f"{C}/app/hot")  # authenticated and cached within the principal cache's 0.5 s
    pool = live_server.app.state.executor
    live_server.app.state.executor = _NoThreads()
    try:
        assert api.get(f"{C}/app/hot").json() == warm.json()
        assert api.get(f"{C}/app/-/hot", params={"env": "dev"}).json() == warm.json()
        r = api.get(f"{C}/app/hot", headers={"If-None-Match": warm.headers["etag"]})
        assert r.status_code == 304
        assert r.headers["cache-control"] == "no-store" and r.headers["x-request-id"]
    finally:
        live_server.app.state.executor = pool


# ----------------------------------------------------------------------------- compare-and-set

def test_expected_version_409_and_if_match_412_change_nothing(api: httpx.Client) -> None:
    put(api, "app/k", {"value": "v1"})
    msg = assert_error(put(api, "app/k", {"value": SENTINEL, "expected_version": 5}), 409)
    assert msg
    assert_error(put(api, "app/k", {"value": SENTINEL}, headers={"If-Match": '"5"'}), 412)
    assert_error(put(api, "app/k", {"value": SENTINEL}, headers={"If-Match": "7"}), 412)
    assert_error(put(api, "app/k", {"value": SENTINEL, "expected_version": 0}), 409)
    assert_error(api.delete(f"{C}/app/k", headers={"If-Match": "9"}), 412)
    current = api.get(f"{C}/app/k").json()
    assert current["version"] == 1 and current["value"] == "v1"
    assert len(api.get(f"{C}/app/k/history").json()) == 1
    assert put(api, "app/k", {"value": "v2"}, headers={"If-Match": '"1"'}).json()["version"] == 2
    assert put(api, "app/k", {"value": "v3", "expected_version": 2}).json()["version"] == 3
    etag = api.get(f"{C}/app/k").headers["etag"]
    assert put(api, "app/k", {"value": "v4"}, headers={"If-Match": etag}).json()["version"] == 4
    assert put(api, "app/new", {"value": 1, "expected_version": 0}).status_code == 200
    assert_error(put(api, "app/k", {"value": 1}, headers={"If-Match": "abc"}), 400)
    assert_error(put(api, "app/k", {"value": 1, "expected_version": 4}, headers={"If-Match": "3"}), 412)


def test_with_overrides_falls_back_to_base_not_development(api: httpx.Client) -> None:
    put(api, "app/model", {"value": "base-model", "env": "base"})
    put(api, "app/model", {"value": "dev-model", "env": "development"})
    r = api.get(f"{C}/app/model", params={"env": "production", "with_overrides": "true"})
    assert r.status_code == 200
    assert r.json()["value"] == "base-model" and r.json()["environment"] == "base"
    assert api.get(f"{C}/app/model", params={"env": "production"}).status_code == 404
    put(api, "app/model", {"value": "prod-model", "env": "prod"})
    r = api.get(f"{C}/app/model", params={"env": "PROD", "with_overrides": "1"})
    assert r.json()["value"] == "prod-model" and r.json()["environment"] == "production"


# ----------------------------------------------------------------------------- history, rollback, delete

def test_history_newest_first_and_rollback(api: httpx.Client) -> None:
    put(api, "app/k", {"value": "a"})
    put(api, "app/k", {"value": "b"})
    put(api, "app/k", {"value": "c", "message": "third time"})
    history = api.get(f"{C}/app/k/history").json()
    assert [h["version"] for h in history] == [3, 2, 1]
    assert [h["change_description"] for h in history] == ["third time", "Updated", "Created"]
    assert set(history[0]) == {"version", "value", "deleted", "created_at", "created_by", "change_description"}
    assert [h["version"] for h in api.get(f"{C}/app/k/history", params={"limit": 1}).json()] == [3]
    r = api.post(f"{C}/app/k/rollback/1")
    assert r.status_code == 200
    assert r.json()["version"] == 4 and r.json()["value"] == "a"
    assert api.get(f"{C}/app/k/history").json()[0]["change_description"] == "Rollback to version 1"
    assert assert_error(api.post(f"{C}/app/k/rollback/99"), 404) == "Version 99 of app/k [development] not found"
    assert_error(api.post(f"{C}/app/k/rollback/0"), 400)
    assert_error(api.get(f"{C}/app/missing/history"), 404)
    put(api, "a/b/-/k", {"value": 1})
    put(api, "a/b/-/k", {"value": 2})
    assert api.post(f"{C}/a/b/-/k/rollback/1").json()["value"] == 1
    assert len(api.get(f"{C}/a/b/-/k/history").json()) == 3


def test_delete_then_404_and_undelete(api: httpx.Client) -> None:
    put(api, "app/k", {"value": "v"})
    r = api.delete(f"{C}/app/k")
    assert r.status_code == 204 and r.content == b""
    assert_error(api.get(f"{C}/app/k"), 404)
    assert_error(api.delete(f"{C}/app/k"), 404)
    assert_error(api.delete(f"{C}/app/never"), 404)
    history = api.get(f"{C}/app/k/history").json()
    assert history[0]["deleted"] is True
    undeleted = api.post(f"{C}/app/k/rollback/1").json()
    assert undeleted["version"] == 3 and undeleted["value"] == "v"
    assert api.delete(f"{C}/a/b/-/x").status_code == 404


# ----------------------------------------------------------------------------- lists and namespaces

def test_list_pagination_with_next_cursor(api: httpx.Client) -> None:
    keys = [f"key{i:02d}" for i in range(7)]
    for k in reversed(keys):
        put(api, f"app/{k}", {"value": k})
    put(api, "app/other", {"value": 0})
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3, "prefix": "key"}
        if cursor:
            params["cursor"] = cursor
        r = api.get(f"{C}/app", params=params)
        assert r.status_code == 200
        seen += [e["key"] for e in r.json()]
        pages += 1
        cursor = r.headers.get("x-next-cursor")
        if cursor is None:
            break
    assert seen == keys and pages == 3
    assert [e["key"] for e in api.get(f"{C}/app/-/").json()] == [*keys, "other"]
    assert api.get(f"{C}/empty").json() == []
    assert_error(api.get(f"{C}/app", params={"cursor": "%%%"}), 400)
    assert_error(api.get(f"{C}/app", params={"limit": 0}), 400)


def test_recursive_list_pagination(api: httpx.Client) -> None:
    for ns in ("t", "t/a", "t/b/c"):
        for k in ("x", "y"):
            put(api, f"{ns}/-/{k}", {"value": f"{ns}:{k}"})
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 4, "recursive": "true"}
        if cursor:
            params["cursor"] = cursor
        r = api.get(f"{C}/t/-/", params=params)
        seen += [e["value"] for e in r.json()]
        cursor = r.headers.get("x-next-cursor")
        if not cursor:
            break
    assert seen == ["t:x", "t:y", "t/a:x", "t/a:y", "t/b/c:x", "t/b/c:y"]


def test_resolve(api: httpx.Client) -> None:
    put(api, "svc/a", {"value": 1, "env": "base"})
    put(api, "svc/b", {"value": 2, "env": "base"})
    put(api, "svc/b", {"value": 3, "env": "dev"})
    put(api, "svc/token", {"value": "tok", "env": "base", "secret": True})
    r = api.get("/api/v1/namespaces/svc/-/resolve", params={"env": "development"})
    assert r.json() == {"a": 1, "b": 3, "token": "<encrypted>"}
    assert api.get("/api/v1/namespaces/svc/-/resolve", params={"env": "staging"}).json()["b"] == 2
    revealed = api.get("/api/v1/namespaces/svc/-/resolve", params={"reveal": "true"})
    assert revealed.json()["token"] == "tok" and revealed.headers["cache-control"] == "no-store"
    assert api.get("/api/v1/namespaces/nothing/here/-/resolve").json() == {}
    assert_error(api.get("/api/v1/namespaces/svc/-/resolve", params={"env": "moon"}), 400)


def test_export_import_round_trip(api: httpx.Client) -> None:
    source = {"model": "gpt-4o", "temperature": 0.2, "stop": ["\n"], "extra": {"a": None}}
    for k, v in source.items():
        put(api, f"src/{k}", {"value": v})
    put(api, "src/api_key", {"value": "sk-1", "secret": True})
    r = api.get("/api/v1/namespaces/src/-/export")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["values"] == source and "secrets" not in doc
    plan = api.post("/api/v1/namespaces/dst/team/-/import", json=doc, params={"env": "staging"})
    assert plan.status_code == 200, plan.text
    assert sorted(plan.json()["created"]) == sorted(source) and plan.json()["dry_run"] is False
    back = api.get("/api/v1/namespaces/dst/team/-/export", params={"env": "staging"}).json()
    assert back["values"] == source
    again = api.post("/api/v1/namespaces/dst/team/-/import", json=doc, params={"env": "staging"}).json()
    assert sorted(again["unchanged"]) == sorted(source) and again["created"] == []
    # YAML both ways, with revealed secrets
    text = api.get("/api/v1/namespaces/src/-/export", params={"format": "yaml", "reveal": "true"})
    assert text.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(text.text)["secrets"] == {"api_key": "sk-1"}
    plan = api.post("/api/v1/namespaces/ydst/-/import", content=text.content,
                    headers={"Content-Type": "application/yaml"})
    assert plan.status_code == 200, plan.text
    assert api.get(f"{C}/ydst/api_key", params={"reveal": "true"}).json()["value"] == "sk-1"
    assert api.get(f"{C}/ydst/api_key").json()["secret"] is True
    # dry run writes nothing; flat mappings are accepted
    dry = api.post("/api/v1/namespaces/dry/-/import", json={"x": 1}, params={"dry_run": "true"}).json()
    assert dry == {"created": ["x"], "updated": [], "unchanged": [], "deleted": [], "dry_run": True}
    assert api.get(f"{C}/dry").json() == []
    # prune deletes what the document lacks
    pruned = api.post("/api/v1/namespaces/dst/team/-/import", json={"model": "gpt-4o"},
                      params={"env": "staging", "prune": "true"}).json()
    assert sorted(pruned["deleted"]) == sorted(set(source) - {"model"})
    dotenv = api.get("/api/v1/namespaces/src/-/export", params={"format": "dotenv"})
    assert dotenv.headers["content-type"].startswith("text/plain") and "MODEL=gpt-4o" in dotenv.text
    assert_error(api.post("/api/v1/namespaces/x/-/import", content=b"a: 1",
                          headers={"Content-Type": "text/plain"}), 415)
    assert_error(api.post("/api/v1/namespaces/x/-/import", json={"bad key!": SENTINEL}), 400)
    bomb = b"a: &a [1, 1]\nb: &b [*a, *a]\n"
    assert_error(api.post("/api/v1/namespaces/x/-/import", content=bomb,
                          headers={"Content-Type": "application/yaml"}), 400)
    assert_error(api.get("/api/v1/namespaces/src/-/export", params={"format": "xml"}), 400)


# ----------------------------------------------------------------------------- audit

def test_audit_list_verify_head_export(live_server: LiveServer, api: httpx.Client) -> None:
    for i in range(5):
        put(api, f"aud/k{i}", {"value": i})
    put(api, "other/k", {"value": 1})
    events = api.get("/api/v1/audit").json()
    # seq 1 is the creation of the test's admin key
    assert [e["seq"] for e in events] == list(range(1, 8))
    assert events[0]["type"] == "key_created" and all(e["type"] == "config_created" for e in events[1:])
    assert len(api.get("/api/v1/audit", params={"namespace": "aud"}).json()) == 5
    actor = live_server.admin_actor
    assert len(api.get("/api/v1/audit", params={"user": actor, "type": "config_created"}).json()) == 6
    assert api.get("/api/v1/audit", params={"user": "nobody"}).json() == []
    first = events[0]["timestamp"]
    assert len(api.get("/api/v1/audit", params={"since": first}).json()) == 7
    assert api.get("/api/v1/audit", params={"until": first}).json() == []
    assert_error(api.get("/api/v1/audit", params={"since": "yesterday"}), 400)
    # pagination: next cursor is the last seq of a full page
    page = api.get("/api/v1/audit", params={"limit": 4})
    assert [e["seq"] for e in page.json()] == [1, 2, 3, 4] and page.headers["x-next-cursor"] == "4"
    rest = api.get("/api/v1/audit", params={"limit": 4, "cursor": 4})
    assert [e["seq"] for e in rest.json()] == [5, 6, 7] and "x-next-cursor" not in rest.headers
    report = api.get("/api/v1/audit/verify").json()
    assert report["ok"] is True and report["events"] == 7 and report["problems"] == []
    head = api.get("/api/v1/audit/head").json()["head"]
    assert head.startswith("7:") and head == report["head"]
    assert api.get("/api/v1/audit/verify", params={"anchor": head}).json()["ok"] is True
    assert_error(api.get("/api/v1/audit/verify", params={"anchor": "nonsense"}), 400)
    exported = api.get("/api/v1/audit/export")
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert [e["seq"] for e in lines] == list(range(1, 8)) and all(len(e["mac"]) == 64 for e in lines)


def test_audit_of_a_fresh_store_holds_only_the_key_creation(api: httpx.Client) -> None:
    assert api.get("/api/v1/audit/head").json()["head"].startswith("1:")
    assert [e["type"] for e in api.get("/api/v1/audit").json()] == ["key_created"]


# ----------------------------------------------------------------------------- bad input

BAD_BODIES: list[tuple[str, bytes]] = [
    ("malformed", b'{"value": "SENTINEL-7f3a9c"'),
    ("nan", b'{"value": NaN, "note": "SENTINEL-7f3a9c"}'),
    ("infinity", b'{"value": [Infinity, "SENTINEL-7f3a9c"]}'),
    ("minus-infinity", b'{"value": -Infinity}'),
    ("huge-int", b'{"value": [18446744073709551616, "SENTINEL-7f3a9c"]}'),
    ("huge-expected", b'{"value": "SENTINEL-7f3a9c", "expected_version": 99999999999999999999}'),
    ("missing-value", b'{"env": "dev", "description": "SENTINEL-7f3a9c"}'),
    ("not-an-object", b'["SENTINEL-7f3a9c"]'),
    ("empty", b""),
    ("unknown-field", b'{"value": 1, "created_by": "SENTINEL-7f3a9c"}'),
    ("bad-env", b'{"value": "SENTINEL-7f3a9c", "env": "moon"}'),
    ("bad-secret-flag", b'{"value": "SENTINEL-7f3a9c", "secret": "yes"}'),
    ("bad-tags", b'{"value": "SENTINEL-7f3a9c", "tags": "a"}'),
    ("not-utf8", b'{"value": "\xff\xfe"}'),
    ("too-deep", b'{"value": ' + b"[" * 40 + b"]" * 40 + b"}"),
    ("lone-surrogate", b'{"value": "\\ud800"}'),
]


@pytest.mark.parametrize(("name", "body"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_bodies_are_400_without_echo(api: httpx.Client, name: str, body: bytes) -> None:
    r = api.put(f"{C}/app/k", content=body, headers={"Content-Type": "application/json"})
    message = assert_error(r, 400)
    if name == "bad-env":
        assert message == "Unknown environment: moon"
    assert api.get(f"{C}/app/k").status_code == 404


def test_value_nested_32_deep_is_accepted(api: httpx.Client) -> None:
    value: Any = []
    for _ in range(31):
        value = [value]
    assert put(api, "app/deep", {"value": value}).status_code == 200
    assert api.get(f"{C}/app/deep").json()["value"] == value


@pytest.mark.parametrize(("path", "expected"), [
    (f"{C}/bad%20ns/k", 400), (f"{C}/app/-bad", 400), (f"{C}/app/{'k' * 201}", 400),
    (f"{C}/a/.hidden/-/k", 400), (f"{C}/{'/'.join('s' * 9)}/-/k", 400), (f"{C}/app/k%3Cscript%3E", 400),
])
def test_bad_names_are_400(api: httpx.Client, path: str, expected: int) -> None:
    assert_error(api.get(path), expected)
    assert_error(api.put(path, json={"value": SENTINEL}), expected)


def test_bad_query_parameters_are_400_not_422(api: httpx.Client) -> None:
    put(api, "app/k", {"value": 1})
    for params in ({"version": SENTINEL}, {"version": "0"}, {"version": str(2**70)},
                   {"reveal": SENTINEL}, {"with_overrides": SENTINEL}):
        assert_error(api.get(f"{C}/app/k", params=params), 400)
    assert assert_error(api.get(f"{C}/app/k", params={"env": "moon"}), 400) == "Unknown environment: moon"
    assert_error(api.post(f"{C}/app/k/rollback/{SENTINEL}"), 400)
    assert_error(api.post(f"{C}/app/k/rollback/{2**70}"), 400)


def test_oversized_body_is_413(make_live_server: Callable[..., LiveServer]) -> None:
    server = make_live_server(max_body=64 * 1024)
    with server.client() as api:
        big = json.dumps({"value": "x" * (70 * 1024)}).encode()
        assert_error(api.put(f"{C}/app/k", content=big, headers={"Content-Type": "application/json"}), 413)

        def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed size counts
            yield b'{"value": "'
            for _ in range(80):
                yield b"y" * 1024
            yield b'"}'

        assert_error(api.put(f"{C}/app/k", content=chunks(), headers={"Content-Type": "application/json"}), 413)
        assert_error(api.post("/api/v1/namespaces/x/-/import", content=big,
                              headers={"Content-Type": "application/json"}), 413)
        assert api.get(f"{C}/app/k").status_code == 404
        small = {"value": "x" * 1024}
        assert api.put(f"{C}/app/k", json=small).status_code == 200


def test_default_body_limit_is_2_mib(api: httpx.Client) -> None:
    big = b'{"value": "' + b"x" * (2 << 20) + b'"}'
    assert_error(api.put(f"{C}/app/k", content=big, headers={"Content-Type": "application/json"}), 413)


def test_wrong_content_type_is_415(api: httpx.Client) -> None:
    body = json.dumps({"value": SENTINEL}).encode()
    for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}, {}):
        assert_error(api.put(f"{C}/app/k", content=body, headers=headers), 415)
    ok = api.put(f"{C}/app/k", content=body, headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


def test_not_found_and_method_not_allowed_use_our_shape(api: httpx.Client) -> None:
    assert_error(api.get("/api/v1/nothing"), 404)
    assert_error(api.get(f"{C}/app/missing"), 404)
    r = api.patch(f"{C}/app/k", json={"value": 1})
    assert_error(r, 405)
    assert r.headers["x-content-type-options"] == "nosniff"


def test_unexpected_errors_are_500_without_details(
    live_server: LiveServer, api: httpx.Client, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom(*a: Any, **kw: Any) -> Any:
        raise RuntimeError(f"leaky {SENTINEL}")

    monkeypatch.setattr(live_server.manager, "_history", boom)  # what the route's caller view runs
    with caplog.at_level(logging.ERROR, logger="llm_config.server"):
        r = api.get(f"{C}/app/k/history")
    assert assert_error(r, 500) == "internal error"
    assert "RuntimeError" in caplog.text and SENTINEL not in caplog.text


def test_missing_master_key_is_503(make_manager: Callable[..., ConfigManager], tmp_path: Path) -> None:
    """Without the master key no API key can be checked (the pepper is sealed): every /api call is 503."""
    owner = make_manager()
    api_key = owner.create_api_key("admin", "admin")[1]
    owner.close()
    readonly = make_manager(encryption_key=None)
    assert not readonly.has_key
    app = create_app(readonly, ServeOptions())

    async def call() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        headers = {"Authorization": f"Bearer {api_key}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
            return [
                await client.put(f"{C}/app/k", json={"value": SENTINEL}),
                await client.get("/api/v1/audit/verify"),
                await client.get(f"{C}/app/k"),
                await client.get("/health"),
            ]

    write, verify, read, health = asyncio.run(call())
    assert "LLM_CONFIG_KEY" in assert_error(write, 503)
    assert_error(verify, 503)
    assert_error(read, 503)
    assert health.status_code == 200 and health.json()["status"] == "degraded"


def test_storage_unavailable_is_503(live_server: LiveServer, api: httpx.Client) -> None:
    put(api, "app/k", {"value": SENTINEL})
    live_server.app.state.health_cache = {}
    live_server.manager.storage.close()
    assert_error(api.get(f"{C}/app/k", params={"version": 1}), 503)
    assert_error(put(api, "app/k", {"value": SENTINEL}), 503)
    assert_error(api.get("/api/v1/audit"), 503)
    assert api.get("/health").status_code == 503
    assert api.get("/health").json()["status"] == "unhealthy"
    assert api.get("/health/ready").status_code == 503


# ----------------------------------------------------------------------------- server behaviour

def test_health_and_ready(api: httpx.Client) -> None:
    r = api.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy" and body["service"] == "llm-config-manager" and body["version"]
    assert {"storage", "key", "integrity", "audit"} <= set(body["checks"])
    # the admin key the client sends has system:read: messages and counts too
    assert all({"status", "message"} <= set(c) for c in body["checks"].values())
    assert api.get("/health/ready").json() == {"status": "ready"}
    assert api.get("/health/live").json() == {"status": "alive"}


def test_security_headers_and_request_id(api: httpx.Client) -> None:
    r = api.get("/health")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert len(r.headers["x-request-id"]) == 32
    assert "cache-control" not in r.headers
    r = api.get(f"{C}/app/none", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123" and r.headers["cache-control"] == "no-store"
    r = api.get(f"{C}/app/none", headers={"X-Request-ID": "bad id\twith junk"})
    assert r.headers["x-request-id"] != "bad id\twith junk"
    assert "server" not in r.headers


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_tls_and_hsts(make_live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server = make_live_server(tls_cert=str(cert), tls_key=str(key))
    assert server.url.startswith("https://")
    with server.client(verify=False) as api:  # a throwaway self-signed certificate
        r = api.get("/health")
        assert r.status_code == 200
        assert r.headers["strict-transport-security"].startswith("max-age=")


NON_LOOPBACK = ["0.0.0.0", "::", "10.1.2.3", "192.168.0.1", "example.com", "::ffff:8.8.8.8"]  # noqa: S104


def test_loopback_hosts() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"))
    assert not any(is_loopback(h) for h in (*NON_LOOPBACK, "", "localhost.evil.com", "128.0.0.1"))


EXPECTED_ROUTES = {
    ("get", "/health"), ("get", "/health/live"), ("get", "/health/ready"), ("get", "/metrics"),
    ("get", "/api/v1/keys"), ("post", "/api/v1/keys"), ("delete", "/api/v1/keys/{key_id}"),
    ("get", "/api/v1/admin/bans"), ("delete", "/api/v1/admin/bans/{ip}"),
    ("get", "/api/v1/admin/backup"), ("post", "/api/v1/admin/restore"), ("get", "/api/v1/admin/jobs/{job_id}"),
    ("post", "/api/v1/admin/rotate-key"),
    ("get", "/api/v1/configs/{ns}/{key}"), ("put", "/api/v1/configs/{ns}/{key}"),
    ("post", "/api/v1/configs/{ns}/{key}"), ("delete", "/api/v1/configs/{ns}/{key}"),
    ("get", "/api/v1/configs/{ns}/-/{key}"), ("put", "/api/v1/configs/{ns}/-/{key}"),
    ("post", "/api/v1/configs/{ns}/-/{key}"), ("delete", "/api/v1/configs/{ns}/-/{key}"),
    ("get", "/api/v1/configs/{ns}/{key}/history"), ("get", "/api/v1/configs/{ns}/-/{key}/history"),
    ("post", "/api/v1/configs/{ns}/{key}/rollback/{version}"),
    ("post", "/api/v1/configs/{ns}/-/{key}/rollback/{version}"),
    ("get", "/api/v1/configs/{ns}"), ("get", "/api/v1/configs/{ns}/-/"),
    ("get", "/api/v1/namespaces"), ("get", "/api/v1/namespaces/{ns}/-/resolve"),
    ("get", "/api/v1/namespaces/{ns}/-/export"), ("post", "/api/v1/namespaces/{ns}/-/import"),
    ("get", "/api/v1/namespaces/{ns}/-/diff"), ("post", "/api/v1/namespaces/{ns}/-/promote"),
    ("get", "/api/v1/templates/{ns}/-/"), ("get", "/api/v1/templates/{ns}/-/{name}"),
    ("put", "/api/v1/templates/{ns}/-/{name}"), ("delete", "/api/v1/templates/{ns}/-/{name}"),
    ("post", "/api/v1/templates/{ns}/-/{name}/render"), ("get", "/api/v1/templates/{ns}/-/{name}/history"),
    ("post", "/api/v1/templates/{ns}/-/{name}/rollback/{version}"),
    ("get", "/api/v1/schemas/builtins"), ("get", "/api/v1/schemas/{ns}/-/"),
    ("get", "/api/v1/schemas/{ns}/-/{pattern}"), ("put", "/api/v1/schemas/{ns}/-/{pattern}"),
    ("delete", "/api/v1/schemas/{ns}/-/{pattern}"), ("get", "/api/v1/schemas/{ns}/-/{pattern}/history"),
    ("post", "/api/v1/schemas/{ns}/-/{pattern}/rollback/{version}"),
    ("get", "/api/v1/audit"), ("get", "/api/v1/audit/verify"), ("get", "/api/v1/audit/head"),
    ("get", "/api/v1/audit/export"), ("get", "/api/v1/watch/{ns}"),
}


def test_every_route_is_in_openapi(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    documented = {(m, p) for p, item in spec["paths"].items() for m in item if m != "parameters"}
    assert documented == EXPECTED_ROUTES
    for method, path in (("put", "/api/v1/configs/{ns}/-/{key}"), ("post", "/api/v1/configs/{ns}/{key}"),
                         ("post", "/api/v1/configs/{ns}/-/{key}/rollback/{version}"),
                         ("post", "/api/v1/namespaces/{ns}/-/import"), ("post", "/api/v1/namespaces/{ns}/-/promote")):
        assert "ErrorBody" in str(spec["paths"][path][method]["responses"]["422"]), (method, path)  # schemas
    for path, item in spec["paths"].items():
        for method, op in item.items():
            # FastAPI's own 422 is never sent (bad input is 400); ours, a schema violation, names ErrorBody
            assert "HTTPValidationError" not in str(op["responses"].get("422", "")), (method, path)
            ok = op["responses"].get("200") or op["responses"].get("201") or op["responses"].get("202") \
                or op["responses"].get("204")
            assert ok is not None, (method, path)
            if {"200", "201", "202"} & set(op["responses"]):
                assert ok.get("content"), (method, path)
            if path.startswith("/api/"):
                assert "400" in op["responses"] or "503" in op["responses"], (method, path)
                assert {"401", "403", "429"} <= set(op["responses"]), (method, path)
                assert op["security"] == [{"bearerAuth": []}, {"apiKeyHeader": []}], (method, path)
                assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
                assert "Retry-After" in op["responses"]["429"]["headers"]
            else:
                assert op["security"] == [], (method, path)
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyHeader"] == {**schemes["apiKeyHeader"], "type": "apiKey", "in": "header",
                                       "name": "X-API-Key"}
    # the hot path is served outside the router, but documented like every other operation
    hot = spec["paths"]["/api/v1/configs/{ns}/{key}"]["get"]
    assert hot["security"] and hot["responses"]["200"]["headers"]["ETag"]
    write = spec["paths"]["/api/v1/configs/{ns}/{key}"]["put"]["requestBody"]["content"]["application/json"]
    assert write["schema"]["$ref"] == "#/components/schemas/ConfigWrite"
    assert spec["components"]["schemas"]["ConfigWrite"]["required"] == ["value"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    docs = api.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_responses_carrying_an_entry_have_its_commit_order_revision(api: httpx.Client) -> None:
    first = api.put("/api/v1/configs/app/model", json={"value": "gpt-4o", "env": "production"})
    second = api.put("/api/v1/configs/app/temperature", json={"value": 0.2, "env": "production"})
    assert first.status_code == second.status_code == 200
    revision = int(first.headers["X-Config-Revision"])
    assert int(second.headers["X-Config-Revision"]) > revision > 0
    for _ in range(2):  # the route (a miss), then the edge's cached answer (a hit)
        got = api.get("/api/v1/configs/app/model", params={"env": "production"})
        assert got.status_code == 200
        assert int(got.headers["X-Config-Revision"]) == revision
        assert got.headers["ETag"] == first.headers["ETag"]
    not_modified = api.get("/api/v1/configs/app/model", params={"env": "production"},
                           headers={"If-None-Match": first.headers["ETag"]})
    assert not_modified.status_code == 304
    assert int(not_modified.headers["X-Config-Revision"]) == revision
    old = api.get("/api/v1/configs/app/model", params={"env": "production", "version": 1})
    assert int(old.headers["X-Config-Revision"]) == revision
