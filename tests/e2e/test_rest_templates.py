"""Templates and schemas over REST against a real server (SPEC §6, §7, §8).

Templates: the version round trip, strict rendering with variables, defaults and `config:` / `secret:`
references, the permissions of a render that uses secrets and its audit event (keys, never values),
include cycles, the watch feed. Schemas: the built-ins, enforcement (422 naming key, path and rule, never
the value), patterns with `*` and `?`, admin-only changes, auditor reads, versions and audit events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from llm_config.core.schemas import BUILTIN_NAMES
from llm_config.server.routes.watch import WatchSettings
from tests.e2e.conftest import LiveServer
from tests.e2e.test_rest import SENTINEL, assert_error
from tests.e2e.test_watch import Watcher

T = "/api/v1/templates"
S = "/api/v1/schemas"
C = "/api/v1/configs"
SECRET = "sk-live-5e3c7a1f9d"


def tput(api: httpx.Client, ns: str, name: str, body: dict[str, Any]) -> httpx.Response:
    return api.put(f"{T}/{ns}/-/{name}", json=body)


def render(api: httpx.Client, ns: str, name: str, **body: Any) -> httpx.Response:
    return api.post(f"{T}/{ns}/-/{name}/render", json=body)


def audit(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    r = api.get("/api/v1/audit", params=params)
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()
    return events


@pytest.fixture
def key_for(live_server: LiveServer) -> Iterator[Any]:
    """`key_for(role, **scope)` → an httpx client with a fresh key of that role (closed at the end)."""
    clients: list[httpx.Client] = []

    def make(role: str, **scope: Any) -> httpx.Client:
        client = live_server.client(live_server.new_key(role, **scope))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# ============================================================================================ templates

def test_template_set_get_list_history_rollback_delete_round_trip(api: httpx.Client) -> None:
    first = tput(api, "acme/bot", "greeting", {"content": "Hello {{ name }}, I am {{ bot }}.",
                                              "defaults": {"bot": "Ada"}, "description": "the greeting"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert {k: body[k] for k in ("namespace", "name", "environment", "version", "content", "variables",
                                 "defaults", "description")} == {
        "namespace": "acme/bot", "name": "greeting", "environment": "development", "version": 1,
        "content": "Hello {{ name }}, I am {{ bot }}.", "variables": ["name", "bot"], "defaults": {"bot": "Ada"},
        "description": "the greeting"}
    assert body["updated_by"].startswith("key:") and body["updated_at"].endswith("Z")

    second = tput(api, "acme/bot", "greeting", {"content": "Hi {{ name }}", "message": "shorter",
                                               "expected_version": 1})
    assert second.status_code == 200 and second.json()["version"] == 2
    assert second.json()["variables"] == ["name"] and second.json()["defaults"] == {}
    assert_error(tput(api, "acme/bot", "greeting", {"content": "x", "expected_version": 1}), 409)
    # another environment is another template
    assert tput(api, "acme/bot", "greeting", {"content": "Prod {{ name }}", "env": "prod"}).json()["version"] == 1

    live = api.get(f"{T}/acme/bot/-/greeting")
    assert live.status_code == 200 and live.json()["content"] == "Hi {{ name }}"
    old = api.get(f"{T}/acme/bot/-/greeting", params={"version": 1})
    assert old.json()["version"] == 1 and old.json()["content"] == "Hello {{ name }}, I am {{ bot }}."
    assert api.get(f"{T}/acme/bot/-/greeting", params={"env": "production"}).json()["content"] == "Prod {{ name }}"
    assert_error(api.get(f"{T}/acme/bot/-/greeting", params={"version": 9}), 404)

    tput(api, "acme/bot", "farewell", {"content": "Bye"})
    listed = api.get(f"{T}/acme/bot/-/")
    assert listed.status_code == 200
    assert [(t["name"], t["version"]) for t in listed.json()] == [("farewell", 1), ("greeting", 2)]
    assert [t["name"] for t in api.get(f"{T}/acme/bot/-/", params={"env": "production"}).json()] == ["greeting"]
    assert api.get(f"{T}/acme/other/-/").json() == []
    # templates are not config keys: neither the config list nor resolve sees them
    assert api.get(f"{C}/acme/bot/-/").json() == []
    assert api.get("/api/v1/namespaces/acme/bot/-/resolve").json() == {}

    history = api.get(f"{T}/acme/bot/-/greeting/history")
    assert history.status_code == 200
    items = history.json()
    assert [i["version"] for i in items] == [2, 1]
    assert items[0]["value"] == {"content": "Hi {{ name }}", "defaults": {}}
    assert items[0]["change_description"] == "shorter" and items[1]["change_description"] == "Created"
    assert [i["version"] for i in api.get(f"{T}/acme/bot/-/greeting/history", params={"limit": 1}).json()] == [2]

    rolled = api.post(f"{T}/acme/bot/-/greeting/rollback/1")
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["version"] == 3 and rolled.json()["defaults"] == {"bot": "Ada"}
    assert rolled.json()["content"] == "Hello {{ name }}, I am {{ bot }}."
    assert_error(api.post(f"{T}/acme/bot/-/greeting/rollback/99"), 404)

    assert_error(api.delete(f"{T}/acme/bot/-/greeting", params={"expected_version": 2}), 409)
    deleted = api.delete(f"{T}/acme/bot/-/greeting", params={"expected_version": 3})
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(api.get(f"{T}/acme/bot/-/greeting"), 404)
    assert_error(render(api, "acme/bot", "greeting", variables={"name": "x"}), 404)
    assert_error(api.delete(f"{T}/acme/bot/-/greeting"), 404)
    assert [t["name"] for t in api.get(f"{T}/acme/bot/-/").json()] == ["farewell"]
    after = api.get(f"{T}/acme/bot/-/greeting/history").json()
    assert after[0]["version"] == 4 and after[0]["deleted"] is True
    undeleted = api.post(f"{T}/acme/bot/-/greeting/rollback/3")
    assert undeleted.json()["version"] == 5
    assert api.get(f"{T}/acme/bot/-/greeting").json()["content"] == "Hello {{ name }}, I am {{ bot }}."
    # the production template was never touched
    assert api.get(f"{T}/acme/bot/-/greeting", params={"env": "production"}).json()["version"] == 1


def test_a_syntax_error_is_400_with_its_position_and_stores_nothing(api: httpx.Client) -> None:
    message = assert_error(tput(api, "app", "broken", {"content": "line one\nHi {{ first name }}!"}), 400)
    assert "line 2" in message and "column" in message
    assert_error(api.get(f"{T}/app/-/broken"), 404)
    assert_error(api.get(f"{T}/app/-/broken/history"), 404)
    assert api.get(f"{T}/app/-/").json() == []
    # defaults for variables the text does not use are refused too
    message = assert_error(tput(api, "app", "broken", {"content": "Hi {{ name }}", "defaults": {"nmae": "x"}}), 400)
    assert "nmae" in message
    assert_error(api.get(f"{T}/app/-/broken"), 404)
    # an escaped brace pair is literal text
    assert tput(api, "app", "escaped", {"content": r"JSON: \{{ not a tag }}"}).status_code == 200
    assert render(api, "app", "escaped").json() == {"text": "JSON: {{ not a tag }}"}


def test_render_with_variables_defaults_config_and_secret(api: httpx.Client) -> None:
    assert api.put(f"{C}/app/-/model", json={"value": "gpt-4o", "env": "production"}).status_code == 200
    assert api.put(f"{C}/app/-/limits", json={"value": {"max": 3}, "env": "base"}).status_code == 200
    assert api.put(f"{C}/app/-/api_key", json={"value": SECRET, "secret": True, "env": "production"}).status_code == 200
    content = ("{{ greeting }}, {{ user }}! model={{ config:model }} limits={{ config:limits }} "
               "key={{ secret:api_key }} n={{ n }}")
    r = tput(api, "app", "prompt", {"content": content, "env": "production", "defaults": {"greeting": "Hello"}})
    assert r.status_code == 200, r.text
    assert r.json()["variables"] == ["greeting", "user", "n"]  # references excluded
    assert SECRET not in r.text

    rendered = render(api, "app", "prompt", env="production", variables={"user": "Ann", "n": [1, True, None]})
    assert rendered.status_code == 200, rendered.text
    assert rendered.json() == {"text": f'Hello, Ann! model=gpt-4o limits={{"max":3}} key={SECRET} n=[1,true,null]'}
    assert rendered.headers["cache-control"] == "no-store"
    # a supplied value beats the default; base supplies what production lacks
    again = render(api, "app", "prompt", env="prod", variables={"user": "Bo", "n": 2, "greeting": "Hey"})
    assert again.json()["text"].startswith("Hey, Bo! model=gpt-4o")
    # a reference that does not resolve is 404 naming the key
    tput(api, "app", "dangling", {"content": "{{ config:nothing.here }}"})
    assert "nothing.here" in assert_error(render(api, "app", "dangling"), 404)


def _named(message: str, what: str) -> set[str]:
    """The names a render error lists after `Missing` / `Unknown template variables:`."""
    for part in message.split("; "):
        if part.startswith(f"{what} template variables: "):
            return {name.strip() for name in part.split(": ", 1)[1].split(",")}
    return set()


def test_missing_and_unknown_variables_are_400_naming_all(api: httpx.Client) -> None:
    tput(api, "app", "t", {"content": "{{ a }} {{ b }} {{ c }}", "defaults": {"c": "C"}})
    message = assert_error(render(api, "app", "t", variables={}), 400)
    assert _named(message, "Missing") == {"a", "b"} and _named(message, "Unknown") == set()
    message = assert_error(render(api, "app", "t", variables={"a": 1, "b": 2, "zz": 3, "yy": SENTINEL}), 400)
    assert _named(message, "Unknown") == {"yy", "zz"} and _named(message, "Missing") == set()
    extra = render(api, "app", "t", variables={"a": 1, "b": 2, "zz": 3}, allow_extra=True)
    assert extra.status_code == 200 and extra.json() == {"text": "1 2 C"}
    # missing and unknown together, in one answer
    message = assert_error(render(api, "app", "t", variables={"b": 1, "zz": 3}), 400)
    assert _named(message, "Missing") == {"a"} and _named(message, "Unknown") == {"zz"}


def test_render_needs_secret_read_only_for_secret_references(live_server: LiveServer, api: httpx.Client,
                                                             key_for: Any) -> None:
    api.put(f"{C}/app/-/model", json={"value": "gpt-4o"})
    api.put(f"{C}/app/-/api_key", json={"value": SECRET, "secret": True})
    tput(api, "app", "plain", {"content": "model {{ config:model }} for {{ who }}"})
    tput(api, "app", "withsecret", {"content": "key {{ secret:api_key }} model {{ config:model }}"})
    viewer = key_for("viewer")
    ok = render(viewer, "app", "plain", variables={"who": "me"})
    assert ok.status_code == 200 and ok.json()["text"] == "model gpt-4o for me"
    assert viewer.get(f"{T}/app/-/withsecret").status_code == 200  # reading the text reveals no secret
    denied = render(viewer, "app", "withsecret", variables={})
    message = assert_error(denied, 403, must_not_contain=SECRET)
    assert "secret" in message
    refusals = [e for e in audit(api, type="access_denied") if e["key"] == "api_key"]
    assert refusals and refusals[-1]["details"].get("permission") in ("secret:read", None)
    assert refusals[-1]["actor"] != live_server.admin_actor
    # a viewer cannot write templates: refused before the body is read (it is not even JSON)
    assert_error(viewer.put(f"{T}/app/-/plain", content=b"{not json",
                            headers={"content-type": "application/json"}), 403)

    editor = key_for("editor")
    rendered = render(editor, "app", "withsecret")
    assert rendered.status_code == 200 and rendered.json()["text"] == f"key {SECRET} model gpt-4o"
    events = audit(api, type="template_rendered")
    assert len(events) == 1  # the plain render and the refused one are not template_rendered events
    event = events[0]
    assert event["namespace"] == "app" and event["key"] == "withsecret" and event["environment"] == "development"
    assert event["details"]["secret_keys"] == ["api_key"] and event["actor"].startswith("key:editor")
    assert event["outcome"] == "success"
    # the value is nowhere in the trail: not in the list, not in the export
    assert SECRET not in json.dumps(audit(api))
    exported = api.get("/api/v1/audit/export")
    assert exported.status_code == 200 and SECRET not in exported.text
    assert "template_rendered" in exported.text


def test_an_editor_scoped_to_one_environment_renders_only_there(api: httpx.Client, key_for: Any) -> None:
    tput(api, "app", "t", {"content": "x", "env": "production"})
    tput(api, "app", "t", {"content": "y", "env": "staging"})
    staging = key_for("editor", environments=["staging"])
    assert render(staging, "app", "t", env="staging").json() == {"text": "y"}
    assert_error(render(staging, "app", "t", env="production"), 403)
    assert_error(staging.get(f"{T}/app/-/t", params={"env": "production"}), 403)
    assert_error(tput(staging, "app", "t", {"content": "z", "env": "production"}), 403)
    assert api.get(f"{T}/app/-/t", params={"env": "production"}).json()["version"] == 1
    other_ns = key_for("editor", namespaces=["elsewhere"])
    assert_error(other_ns.put(f"{T}/app/-/t", content=b"garbage", headers={"content-type": "application/json"}), 403)
    assert_error(other_ns.get(f"{T}/app/-/"), 403)


def test_includes_render_and_a_cycle_is_400_naming_it(api: httpx.Client) -> None:
    tput(api, "app", "signature", {"content": "-- {{ team }}", "defaults": {"team": "Ops"}})
    tput(api, "app", "mail", {"content": "Dear {{ name }}\n{{ template:signature }}"})
    assert render(api, "app", "mail", variables={"name": "Kim"}).json() == {"text": "Dear Kim\n-- Ops"}
    tput(api, "app", "alpha", {"content": "A {{ template:beta }}"})
    tput(api, "app", "beta", {"content": "B {{ template:gamma }}"})
    tput(api, "app", "gamma", {"content": "C {{ template:alpha }}"})
    message = assert_error(render(api, "app", "alpha"), 400)
    assert "cycle" in message
    assert all(name in message for name in ("alpha", "beta", "gamma"))
    assert "template:missing" not in message
    tput(api, "app", "holey", {"content": "{{ template:missing }}"})
    assert "missing" in assert_error(render(api, "app", "holey"), 404)


def test_bad_template_requests_are_4xx_never_500(api: httpx.Client) -> None:
    tput(api, "app", "t", {"content": "{{ v }}"})
    cases: list[tuple[httpx.Response, int]] = [
        (api.get(f"{T}/app/-/t", params={"envv": "prod"}), 400),          # unknown query parameter
        (api.get(f"{T}/app/-/", params={"version": 1}), 400),             # inapplicable one
        (api.delete(f"{T}/app/-/t", params={"version": 1}), 400),         # never "delete the current one"
        (api.put(f"{T}/app/-/t", json={"content": "x", "actor": SENTINEL}), 400),
        (api.put(f"{T}/app/-/t", json={"value": "x"}), 400),
        (api.put(f"{T}/app/-/t", json={"content": 5}), 400),
        (api.put(f"{T}/app/-/t", json={"content": "x", "env": "moon"}), 400),
        (api.put(f"{T}/app/-/t", json={"content": "{{ v }}", "defaults": [SENTINEL]}), 400),
        (api.put(f"{T}/app/-/t", content=b'{"content": "x", "content": "y"}',
                 headers={"content-type": "application/json"}), 400),   # duplicate keys
        (api.put(f"{T}/app/-/t", content=b"{", headers={"content-type": "application/json"}), 400),
        (api.put(f"{T}/app/-/t", content=b"", headers={"content-type": "application/json"}), 400),
        (api.put(f"{T}/app/-/t", content=b'{"content": "x"}', headers={"content-type": "text/plain"}), 415),
        (api.put(f"{T}/app/-/bad name", json={"content": "x"}), 400),
        (api.put(f"{T}/bad ns/-/t", json={"content": "x"}), 400),
        (api.get(f"{T}/app/-/t", params={"env": "moon"}), 400),
        (api.post(f"{T}/app/-/t/render", json={"variables": [1]}), 400),
        (api.post(f"{T}/app/-/t/render", json={"variables": {"v": 1}, "allow_extra": "yes"}), 400),
        (api.post(f"{T}/app/-/t/render", json={"variables": {"v": 1}, "extra": 1}), 400),
        (api.post(f"{T}/app/-/t/render", json={"variables": {"v": 1}, "env": "moon"}), 400),
        (api.post(f"{T}/app/-/t/render", content=b'{"variables": {"v": NaN}}',
                  headers={"content-type": "application/json"}), 400),
        (api.post(f"{T}/app/-/t/rollback/0"), 400),
        (api.post(f"{T}/app/-/t/rollback/x"), 400),
        (api.get(f"{T}/app/-/t/history", params={"limit": 0}), 400),
        (api.get(f"{T}/app/-/nothing"), 404),
    ]
    for response, status in cases:
        assert_error(response, status)
    assert api.get(f"{T}/app/-/t").json()["version"] == 1


def test_a_template_change_arrives_in_the_watch_feed(live_server: LiveServer, api: httpx.Client) -> None:
    live_server.app.state.watch = WatchSettings(keepalive=15, auth_check=0.2, poll=0.05)
    watcher = Watcher(live_server, "/api/v1/watch/app")
    try:
        assert watcher.next().event == "hello"
        tput(api, "app", "greeting", {"content": "Hi"})
        tput(api, "app", "greeting", {"content": "Hello"})
        api.delete(f"{T}/app/-/greeting")
        api.put(f"{S}/app/-/model.*", json={"schema": {"type": "string"}})
        changes = watcher.changes(4)
        assert [(c["kind"], c["key"], c["version"], c["environment"]) for c in changes] == [
            ("template", "greeting", 1, "development"), ("template", "greeting", 2, "development"),
            ("template", "greeting", 3, "development"), ("schema", "model.*", 1, "base")]
        assert all("content" not in orjson.dumps(c).decode() for c in changes)
    finally:
        hub = getattr(live_server.app.state, "watch_hub", None)
        if hub is not None:
            hub.close()
        watcher.close()


# ============================================================================================ schemas

def test_builtins_are_listed_for_any_key(api: httpx.Client, key_for: Any) -> None:
    r = api.get(f"{S}/builtins")
    assert r.status_code == 200
    assert [b["name"] for b in r.json()] == list(BUILTIN_NAMES)
    assert all(isinstance(b["description"], str) and b["description"] for b in r.json())
    assert key_for("viewer", namespaces=["x"]).get(f"{S}/builtins").json() == r.json()
    assert_error(api.get(f"{S}/builtins", params={"x": 1}), 400)


def test_a_custom_schema_is_enforced_with_422_naming_key_path_and_rule(api: httpx.Client) -> None:
    schema = {"type": "object", "properties": {"temperature": {"type": "number", "maximum": 2}},
              "required": ["temperature"]}
    r = api.put(f"{S}/app/-/llm.params", json={"schema": schema, "description": "sampling"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k: body[k] for k in ("namespace", "pattern", "version", "schema", "builtin", "description")} == {
        "namespace": "app", "pattern": "llm.params", "version": 1, "schema": schema, "builtin": None,
        "description": "sampling"}
    bad = api.put(f"{C}/app/-/llm.params", json={"value": {"temperature": 7.5, "note": SENTINEL}, "env": "prod"})
    message = assert_error(bad, 422)
    assert "llm.params" in message and "temperature" in message and "maximum" in message
    assert "7.5" not in message
    message = assert_error(api.put(f"{C}/app/-/llm.params", json={"value": SENTINEL}), 422)
    assert "type" in message
    assert_error(api.get(f"{C}/app/-/llm.params", params={"env": "prod"}), 404)  # nothing stored
    good = api.put(f"{C}/app/-/llm.params", json={"value": {"temperature": 0.7}, "env": "prod"})
    assert good.status_code == 200
    assert api.put(f"{C}/app/-/other", json={"value": SENTINEL}).status_code == 200  # not matched
    # every environment of the namespace, and other namespaces not at all
    assert_error(api.put(f"{C}/app/-/llm.params", json={"value": {}, "env": "base"}), 422)
    assert api.put(f"{C}/other/-/llm.params", json={"value": {}}).status_code == 200
    # a rollback to a value that no longer satisfies the schema is refused too
    api.put(f"{C}/app/-/later", json={"value": "text"})
    api.put(f"{S}/app/-/later", json={"schema": {"type": "integer"}})
    api.put(f"{C}/app/-/later", json={"value": 5})
    assert_error(api.post(f"{C}/app/-/later/rollback/1"), 422, must_not_contain='"text"')


def test_a_builtin_schema_by_name(api: httpx.Client) -> None:
    r = api.put(f"{S}/app/-/claude.params", json={"builtin": "anthropic-messages"})
    assert r.status_code == 200, r.text
    assert r.json()["builtin"] == "anthropic-messages" and r.json()["schema"]["type"] == "object"
    message = assert_error(api.put(f"{C}/app/-/claude.params", json={
        "value": {"model": "claude-sonnet-4", "max_tokens": 1024, "temperature": 1.5}}), 422)
    assert "claude.params" in message and "temperature" in message
    ok = api.put(f"{C}/app/-/claude.params", json={
        "value": {"model": "claude-sonnet-4", "max_tokens": 1024, "temperature": 0.5}})
    assert ok.status_code == 200, ok.text
    message = assert_error(api.put(f"{S}/app/-/x", json={"builtin": "gpt-17"}), 400)
    assert "anthropic-messages" in message  # the known names are listed


def test_invalid_schema_bodies_are_400_and_store_nothing(api: httpx.Client) -> None:
    for body in ({"schema": {"type": 5}}, {"schema": {"$ref": "https://example.com/s.json"}},
                 {"schema": {"type": "string"}, "builtin": "openai-chat"}, {}, {"schema": [1]},
                 {"schema": {"type": "string"}, "unknown": 1}, {"builtin": 5}):
        assert_error(api.put(f"{S}/app/-/k", json=body), 400)
    assert_error(api.get(f"{S}/app/-/k"), 404)
    assert api.get(f"{S}/app/-/").json() == []
    assert_error(api.put(f"{S}/app/-/bad[x]", json={"schema": {}}), 400)
    assert_error(api.get(f"{S}/app/-/k", params={"env": "prod"}), 400)  # schemas take no environment
    assert_error(api.put(f"{S}/app/-/k", content=b"{", headers={"content-type": "application/json"}), 400)


def test_schemas_are_admin_only_to_change_and_auditors_read_them(api: httpx.Client, key_for: Any) -> None:
    assert api.put(f"{S}/app/-/k", json={"schema": {"type": "string"}}).status_code == 200
    editor = key_for("editor")
    # refused before the body is read: it is not even JSON
    assert_error(editor.put(f"{S}/app/-/k", content=b"{oops", headers={"content-type": "application/json"}), 403)
    assert_error(editor.put(f"{S}/app/-/k", json={"schema": {}}), 403)
    assert_error(editor.delete(f"{S}/app/-/k"), 403)
    assert_error(editor.post(f"{S}/app/-/k/rollback/1"), 403)
    assert_error(editor.get(f"{S}/app/-/k"), 403)
    auditor = key_for("auditor")
    assert auditor.get(f"{S}/app/-/k").json()["version"] == 1
    assert [s["pattern"] for s in auditor.get(f"{S}/app/-/").json()] == ["k"]
    assert [i["version"] for i in auditor.get(f"{S}/app/-/k/history").json()] == [1]
    assert_error(auditor.put(f"{S}/app/-/k", json={"schema": {}}), 403)
    assert_error(auditor.delete(f"{S}/app/-/k"), 403)
    scoped_admin = key_for("admin", namespaces=["elsewhere"])
    assert_error(scoped_admin.put(f"{S}/app/-/k", json={"schema": {}}), 403)
    assert api.get(f"{S}/app/-/k").json()["schema"] == {"type": "string"}
    denied = [e for e in audit(api, type="access_denied") if e["namespace"] == "app"]
    assert len(denied) >= 5


def test_patterns_with_star_and_question_mark(api: httpx.Client) -> None:
    assert api.put(f"{S}/app/-/openai.*", json={"schema": {"type": "object"}}).status_code == 200
    assert api.put(f"{S}/app/-/model%3F", json={"schema": {"type": "string"}}).status_code == 200  # `model?`
    assert api.put(f"{S}/app/-/%2A.limit", json={"schema": {"type": "integer"}}).status_code == 200  # `*.limit`
    assert [s["pattern"] for s in api.get(f"{S}/app/-/").json()] == ["*.limit", "model?", "openai.*"]
    assert api.get(f"{S}/app/-/model%3F").json()["pattern"] == "model?"
    assert_error(api.put(f"{C}/app/-/openai.chat.params", json={"value": "not an object"}), 422)
    assert api.put(f"{C}/app/-/openai.chat.params", json={"value": {}}).status_code == 200
    assert_error(api.put(f"{C}/app/-/model1", json={"value": 1}), 422)
    assert api.put(f"{C}/app/-/model12", json={"value": 1}).status_code == 200  # `?` is one character
    assert api.put(f"{C}/app/-/model", json={"value": 1}).status_code == 200
    message = assert_error(api.put(f"{C}/app/-/x.limit", json={"value": "many"}), 422)
    assert "*.limit" in message
    # a key matching two patterns must satisfy both
    api.put(f"{S}/app/-/gemini.limit", json={"schema": {"type": "number", "minimum": 10}})
    assert "minimum" in assert_error(api.put(f"{C}/app/-/gemini.limit", json={"value": 5}), 422)
    assert "integer" in assert_error(api.put(f"{C}/app/-/gemini.limit", json={"value": 10.5}), 422)
    assert api.put(f"{C}/app/-/gemini.limit", json={"value": 50}).status_code == 200


def test_schema_history_rollback_delete_and_audit(live_server: LiveServer, api: httpx.Client) -> None:
    v1 = {"type": "string"}
    v2 = {"type": "string", "maxLength": 3}
    assert api.put(f"{S}/app/-/name", json={"schema": v1}).json()["version"] == 1
    assert api.put(f"{S}/app/-/name", json={"schema": v2, "expected_version": 1}).json()["version"] == 2
    assert_error(api.put(f"{S}/app/-/name", json={"schema": v1, "expected_version": 1}), 409)
    assert_error(api.put(f"{C}/app/-/name", json={"value": "toolong"}), 422)
    history = api.get(f"{S}/app/-/name/history").json()
    assert [(i["version"], i["value"]) for i in history] == [(2, {"schema": v2}), (1, {"schema": v1})]
    assert api.get(f"{S}/app/-/name", params={"version": 1}).json()["schema"] == v1
    rolled = api.post(f"{S}/app/-/name/rollback/1")
    assert rolled.status_code == 200 and rolled.json()["version"] == 3 and rolled.json()["schema"] == v1
    assert api.put(f"{C}/app/-/name", json={"value": "toolong"}).status_code == 200
    assert_error(api.delete(f"{S}/app/-/name", params={"expected_version": 2}), 409)
    assert api.delete(f"{S}/app/-/name", params={"expected_version": 3}).status_code == 204
    assert_error(api.get(f"{S}/app/-/name"), 404)
    assert api.put(f"{C}/app/-/name", json={"value": 12}).status_code == 200  # no schema any more
    assert api.get(f"{S}/app/-/").json() == []
    assert api.post(f"{S}/app/-/name/rollback/2").json()["version"] == 5  # reattached
    assert_error(api.put(f"{C}/app/-/name", json={"value": 12}), 422)
    assert_error(api.get(f"{S}/app/-/nothing/history"), 404)

    events = audit(api, type="schema_changed")
    # the event names the schema by its stored key (`~s:` + the pattern), or by the pattern alone
    assert [(e["key"].removeprefix("~s:"), e["new_version"]) for e in events] == [("name", v) for v in (1, 2, 3, 4, 5)]
    assert all(e["namespace"] == "app" and e["actor"] == live_server.admin_actor for e in events)
    assert api.get("/api/v1/audit/verify").json()["ok"] is True
