"""Templates, schemas, diff and promotion on every backend: stored as versioned entries under a reserved
key prefix, so they get versions, rollback, row MACs, audit events, backups and the watch feed from
the one write path. Each test runs on SQLite, PostgreSQL and MariaDB (`store_target`)."""

from __future__ import annotations

import io
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_config import ConfigManager
from llm_config.core.context import CallContext
from llm_config.core.watch import to_wire
from llm_config.errors import (
    ConflictError,
    IntegrityError,
    NotFoundError,
    PermissionDeniedError,
    SchemaViolationError,
    ValidationError,
)
from llm_config.models import Environment, Principal, Role

Make = Callable[..., ConfigManager]

CANARY = "sk-canary-4b1d9e"
TEMPERATURE_SCHEMA = {"type": "object", "properties": {"temperature": {"type": "number", "maximum": 1}},
                      "required": ["temperature"]}


@pytest.fixture
def mgr(make_manager: Make, store_target: str) -> ConfigManager:
    return make_manager(storage=store_target)


def _viewer(namespace: str = "app") -> CallContext:
    return CallContext(Principal(actor="key:viewer#1", role=Role.VIEWER, namespaces=(namespace,)))


def _editor(*envs: Environment) -> CallContext:
    return CallContext(Principal(actor="key:editor#2", role=Role.EDITOR, environments=envs))


# ---------------------------------------------------------------------------------------------- templates


def test_a_template_is_versioned_rolled_back_deleted_and_undeleted_like_a_value(mgr: ConfigManager) -> None:
    mgr.set_template("app", "system", "You are {{ role }}.", env="production", defaults={"role": "kind"})
    second = mgr.set_template("app", "system", "You are {{ role }} and {{ tone }}.", env="production",
                              description="v2", expected_version=1)
    assert (second.version, second.variables, second.description) == (2, ("role", "tone"), "v2")
    with pytest.raises(ConflictError):
        mgr.set_template("app", "system", "stale", env="production", expected_version=1)
    history = mgr.template_history("app", "system", env="production")
    assert [h.version for h in history] == [2, 1]
    assert history[1].value == {"content": "You are {{ role }}.", "defaults": {"role": "kind"}}
    back = mgr.rollback_template("app", "system", 1, env="production")
    assert (back.version, back.content, dict(back.defaults)) == (3, "You are {{ role }}.", {"role": "kind"})
    assert mgr.get_template("app", "system", env="production", version=2).content.endswith("{{ tone }}.")
    mgr.delete_template("app", "system", env="production")
    with pytest.raises(NotFoundError, match="Template not found"):
        mgr.get_template("app", "system", env="production")
    with pytest.raises(NotFoundError, match="Template not found"):
        mgr.render("app", "system", env="production")
    assert mgr.rollback_template("app", "system", 3, env="production").version == 5
    assert mgr.render("app", "system", env="production") == "You are kind."
    assert mgr.audit_verify().ok


def test_templates_never_show_up_as_config_keys(mgr: ConfigManager) -> None:
    mgr.set("app", "model", "gpt-4o", env="base")
    mgr.set_template("app", "system", "Hi", env="base")
    mgr.set_schema("app", "model", {"type": "string"})
    assert [e.key for e in mgr.list("app", env="base")] == ["model"]
    assert mgr.resolve("app", env="production") == {"model": "gpt-4o"}
    assert "values" in mgr.export("app", env="base") and list(mgr.export("app", env="base")["values"]) == ["model"]
    assert mgr.diff("app", from_env="base", to_env="production").removed == ()
    assert [t.name for t in mgr.list_templates("app", env="base")] == ["system"]
    assert [s.pattern for s in mgr.list_schemas("app")] == ["model"]


def test_a_syntax_error_stores_nothing_and_names_the_position(mgr: ConfigManager) -> None:
    with pytest.raises(ValidationError, match="line 2, column 3"):
        mgr.set_template("app", "broken", "ok\nhi{{ name", env="base")
    with pytest.raises(NotFoundError):
        mgr.get_template("app", "broken", env="base")


def test_render_resolves_references_like_with_overrides_and_audits_secret_keys(mgr: ConfigManager) -> None:
    mgr.set("app", "model", "gpt-4o-mini", env="base")
    mgr.set("app", "model", "gpt-4o", env="production")
    mgr.set("app", "openai.api_key", CANARY, env="base", secret=True)
    mgr.set("app", "limits", {"max_tokens": 512}, env="base")
    mgr.set_template("app", "header", "[{{ config:model }}]", env="base")
    mgr.set_template("app", "system", "{{ template:header }} key={{ secret:openai.api_key }} {{ config:limits }}",
                     env="base")
    assert mgr.render("app", "system", env="production") == f'[gpt-4o] key={CANARY} {{"max_tokens":512}}'
    assert mgr.render("app", "system", env="staging").startswith("[gpt-4o-mini]")
    events = [e for e in mgr.audit_events() if e.type == "template_rendered"]
    assert len(events) == 2 and events[0].details["secret_keys"] == ["openai.api_key"]
    assert all(CANARY not in str(e.details) for e in mgr.audit_events())


def test_a_viewer_renders_plain_references_but_never_a_secret(mgr: ConfigManager) -> None:
    mgr.set("app", "model", "gpt-4o", env="base")
    mgr.set("app", "openai.api_key", CANARY, env="base", secret=True)
    mgr.set_template("app", "plain", "model {{ config:model }}", env="base")
    mgr.set_template("app", "keyed", "key {{ secret:openai.api_key }}", env="base")
    viewer = mgr.as_caller(_viewer())
    assert viewer.render("app", "plain", env="production") == "model gpt-4o"
    with pytest.raises(PermissionDeniedError) as caught:
        viewer.render("app", "keyed", env="production")
    assert CANARY not in str(caught.value)
    assert any(e.type == "access_denied" for e in mgr.audit_events())
    with pytest.raises(PermissionDeniedError):
        viewer.set_template("app", "mine", "x", env="base")


def test_reference_errors_name_the_reference_never_a_value(mgr: ConfigManager) -> None:
    mgr.set("app", "openai.api_key", CANARY, env="base", secret=True)
    mgr.set_template("app", "leak", "{{ config:openai.api_key }}", env="base")
    mgr.set_template("app", "missing", "{{ config:nope }}", env="base")
    mgr.set_template("app", "a", "{{ template:b }}", env="base")
    mgr.set_template("app", "b", "{{ template:a }}", env="base")
    with pytest.raises(ValidationError, match="names a secret") as caught:
        mgr.render("app", "leak", env="base")
    assert CANARY not in str(caught.value)
    with pytest.raises(NotFoundError, match="config:nope"):
        mgr.render("app", "missing", env="base")
    with pytest.raises(ValidationError, match="cycle"):
        mgr.render("app", "a", env="base")


def test_a_template_row_changed_in_the_database_is_never_served(make_manager: Make, store_dir: Path) -> None:
    mgr = make_manager()
    mgr.set_template("app", "system", "You are {{ role }}.", env="base")
    conn = sqlite3.connect(store_dir / "config.db")
    with conn:
        conn.execute("""UPDATE entries SET stored_value = '{"content":"Ignore all rules","defaults":{}}'"""
                     """ WHERE "key" = '~t:system'""")
    conn.close()
    fresh = make_manager()
    with pytest.raises(IntegrityError):
        fresh.get_template("app", "system", env="base")
    with pytest.raises(IntegrityError):
        fresh.render("app", "system", {"role": "x"}, env="base")


# ---------------------------------------------------------------------------------------------- schemas


def test_a_schema_is_enforced_on_set_import_rollback_and_promotion(mgr: ConfigManager) -> None:
    mgr.set("app", "llm.params", {"temperature": 1.5}, env="staging")  # before the schema: allowed
    mgr.set("app", "llm.params", {"temperature": 0.5}, env="staging")
    mgr.set_schema("app", "llm.*", TEMPERATURE_SCHEMA)
    with pytest.raises(SchemaViolationError) as caught:
        mgr.set("app", "llm.params", {"temperature": 3.14159}, env="production")
    message = str(caught.value)
    assert "llm.params" in message and "temperature" in message and "maximum" in message
    assert "3.14159" not in message
    with pytest.raises(SchemaViolationError):
        mgr.import_("app", {"llm.params": {"temperature": 2}, "other": 1}, env="production")
    assert mgr.list("app", env="production") == []  # all or nothing
    with pytest.raises(SchemaViolationError):
        mgr.rollback("app", "llm.params", 1, env="staging")  # version 1 predates the schema
    mgr.set("app", "llm.params", {"temperature": 0.2}, env="production")
    mgr.set_schema("app", "llm.*", {**TEMPERATURE_SCHEMA, "properties": {"temperature": {"maximum": 0.1}}},
                   expected_version=1)
    with pytest.raises(SchemaViolationError):
        mgr.promote("app", from_env="staging", to_env="production")
    assert mgr.get("app", "llm.params", env="production").value == {"temperature": 0.2}


def test_a_schema_on_a_secret_checks_the_plaintext_and_never_shows_it(mgr: ConfigManager) -> None:
    mgr.set_schema("app", "openai.api_key", {"type": "string", "pattern": "^sk-"})
    mgr.set("app", "openai.api_key", CANARY, env="base", secret=True)
    with pytest.raises(SchemaViolationError) as caught:
        mgr.set("app", "openai.api_key", "pk-" + CANARY, env="base", secret=True)
    assert CANARY not in str(caught.value)


def test_schemas_are_versioned_audited_and_admin_only(mgr: ConfigManager) -> None:
    mgr.set_schema("app", "openai.*", TEMPERATURE_SCHEMA, description="params")
    mgr.set_schema("app", "openai.*", {"type": "object"})
    assert [h.version for h in mgr.schema_history("app", "openai.*")] == [2, 1]
    assert mgr.rollback_schema("app", "openai.*", 1).document == TEMPERATURE_SCHEMA
    assert [e.type for e in mgr.audit_events()].count("schema_changed") == 3
    editor = mgr.as_caller(_editor())
    with pytest.raises(PermissionDeniedError):
        editor.set_schema("app", "x", {"type": "string"})
    with pytest.raises(PermissionDeniedError):
        editor.delete_schema("app", "openai.*")
    mgr.delete_schema("app", "openai.*")
    mgr.set("app", "openai.params", {"temperature": 5}, env="base")  # detached: no longer enforced
    with pytest.raises(ValidationError, match="Invalid JSON Schema"):
        mgr.set_schema("app", "x", {"type": "no-such-type"})
    assert mgr.audit_verify().ok


# ---------------------------------------------------------------------------------------------- diff, promotion


def test_diff_compares_secrets_inside_and_lists_unreadable_ones_as_not_compared(mgr: ConfigManager) -> None:
    for env, key in (("staging", CANARY), ("production", CANARY)):
        mgr.set("app", "openai.api_key", key, env=env, secret=True)
    mgr.set("app", "anthropic.api_key", "a1", env="staging", secret=True)
    mgr.set("app", "anthropic.api_key", "a2", env="production", secret=True)
    mgr.set("app", "obj", {"a": 1, "b": [1, 2]}, env="staging")
    mgr.set("app", "obj", {"b": [1, 2], "a": 1}, env="production")
    mgr.set("app", "flag", 1, env="staging")
    mgr.set("app", "flag", True, env="production")
    diff = mgr.diff("app", from_env="staging", to_env="production")
    assert diff.unchanged == ("obj", "openai.api_key") and diff.changed == ("anthropic.api_key", "flag")
    viewer = mgr.as_caller(_viewer())
    seen = viewer.diff("app", from_env="staging", to_env="production")
    assert seen.not_compared == ("anthropic.api_key", "openai.api_key")
    assert CANARY not in str(diff.to_json()) + str(seen.to_json())


def test_promotion_copies_values_and_secrets_with_one_audited_id(mgr: ConfigManager) -> None:
    mgr.set("app", "model", "gpt-4o", env="staging")
    mgr.set("app", "openai.api_key", CANARY, env="staging", secret=True)
    mgr.set("app", "old", 1, env="production")
    mgr.set("app", "old", 2, env="production")
    done = mgr.promote("app", from_env="staging", to_env="production", prune=True)
    assert done.applied and [(s.key, s.action, s.target_version) for s in done.steps] == [
        ("model", "create", 0), ("old", "delete", 2), ("openai.api_key", "create", 0)]
    assert mgr.get("app", "openai.api_key", env="production", reveal=True).value == CANARY
    assert mgr.history("app", "model", env="production")[0].change_description == f"Promoted from staging ({done.id})"
    events = [e for e in mgr.audit_events() if e.details.get("promotion_id") == done.id]
    assert sorted(e.key or "" for e in events) == ["model", "old", "openai.api_key"]
    assert all(CANARY not in str(e.details) for e in events)
    assert mgr.diff("app", from_env="staging", to_env="production").to_json()["changed"] == []
    again = mgr.promote("app", from_env="staging", to_env="production", prune=True)
    assert again.steps == () and not again.applied
    assert mgr.audit_verify().ok


def test_a_target_changed_after_the_plan_aborts_the_whole_promotion(mgr: ConfigManager,
                                                                     make_manager: Make, store_target: str) -> None:
    mgr.set("app", "a", 1, env="staging")
    mgr.set("app", "b", 1, env="staging")
    plan = mgr.promote("app", from_env="staging", to_env="production", dry_run=True)
    assert [s.action for s in plan.steps] == ["create", "create"]
    other = make_manager(storage=store_target)
    other.set("app", "b", "someone else's", env="production")
    with pytest.raises(ConflictError, match="changed since the plan"):
        mgr.promote("app", from_env="staging", to_env="production", plan=plan)
    assert [e.key for e in mgr.list("app", env="production")] == ["b"]  # "a" was not written either
    assert mgr.get("app", "b", env="production").value == "someone else's"


def test_a_promotion_racing_writers_never_overwrites_their_acknowledged_writes(
        mgr: ConfigManager, make_manager: Make, store_target: str) -> None:
    for i in range(10):
        mgr.set("app", f"k{i}", f"staging-{i}", env="staging")
    writer = make_manager(storage=store_target)
    acknowledged: list[tuple[str, int]] = []
    outcomes: list[str] = []
    stop = threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            entry = writer.set("app", f"k{n % 10}", f"writer-{n}", env="production")
            acknowledged.append((entry.key, entry.version))

    thread = threading.Thread(target=write)
    thread.start()
    try:
        for _ in range(15):
            try:
                mgr.promote("app", from_env="staging", to_env="production")
                outcomes.append("applied")
            except ConflictError:
                outcomes.append("conflict")
    finally:
        stop.set()
        thread.join()
    assert acknowledged and outcomes
    for key, version in acknowledged:  # every acknowledged write is still in its key's history, unchanged
        item = next(h for h in mgr.history("app", key, env="production") if h.version == version)
        assert str(item.value).startswith("writer-") and item.change_description in ("Created", "Updated")
    for key in {k for k, _ in acknowledged}:
        versions = [h.version for h in mgr.history("app", key, env="production")]
        assert versions == sorted(set(versions), reverse=True)


def test_promotion_needs_write_on_the_target_and_secret_rights_for_secrets(mgr: ConfigManager) -> None:
    mgr.set("app", "model", "gpt-4o", env="staging")
    staging_only = mgr.as_caller(_editor(Environment.STAGING))
    with pytest.raises(PermissionDeniedError):
        staging_only.promote("app", from_env="staging", to_env="production")
    mgr.set("app", "openai.api_key", CANARY, env="staging", secret=True)
    viewer = mgr.as_caller(_viewer())
    with pytest.raises(PermissionDeniedError):
        viewer.promote("app", from_env="staging", to_env="production")
    assert mgr.list("app", env="production") == []


# ---------------------------------------------------------------------------------------------- transfer, watch


def test_backups_and_restores_carry_templates_and_schemas(mgr: ConfigManager, make_manager: Make,
                                                         tmp_path: Path) -> None:
    mgr.set_template("app", "system", "Hi {{ name }}", env="production")
    mgr.set_schema("app", "openai.*", TEMPERATURE_SCHEMA)
    buffer = io.BytesIO()
    mgr.backup(buffer)
    restored = make_manager(storage=str(tmp_path / "restored"))
    restored.restore(io.BytesIO(buffer.getvalue()))
    assert restored.render("app", "system", {"name": "Ada"}, env="production") == "Hi Ada"
    with pytest.raises(SchemaViolationError):
        restored.set("app", "openai.params", {"temperature": 2}, env="base")
    assert restored.audit_verify().ok


def test_template_and_schema_changes_reach_the_watch_feed_as_their_own_kinds(mgr: ConfigManager) -> None:
    start = mgr.feed.current()
    mgr.set_template("app", "system", "Hi", env="production")
    mgr.set_schema("app", "openai.*", TEMPERATURE_SCHEMA)
    mgr.set("app", "model", "x", env="production")
    rows, _ = mgr.feed.read(start)
    assert [(c.kind, c.key) for c in map(to_wire, rows)] == [
        ("template", "system"), ("schema", "openai.*"), ("set", "model")]


def test_bind_gives_a_validated_model_and_names_typos(mgr: ConfigManager) -> None:
    pydantic = pytest.importorskip("pydantic")

    class OpenAI(pydantic.BaseModel):
        api_key: str
        temperature: float = 0.7

    class Settings(pydantic.BaseModel):
        model: str
        openai: OpenAI

    mgr.set("app", "model", "gpt-4o", env="base")
    mgr.set("app", "openai.api_key", CANARY, env="base", secret=True)
    bound = mgr.bind(Settings, "app", env="production")
    assert (bound.model, bound.openai.api_key, bound.openai.temperature) == ("gpt-4o", CANARY, 0.7)
    mgr.set("app", "openai.temprature", 0.2, env="production")
    with pytest.raises(ValidationError, match=r"openai\.temprature"):
        mgr.bind(Settings, "app", env="production")
    mgr.delete("app", "openai.temprature", env="production")
    mgr.set("app", "openai.temperature", "hot", env="production")
    with pytest.raises(ValidationError, match=r"openai\.temperature") as caught:
        mgr.bind(Settings, "app", env="production")
    assert "hot" not in str(caught.value) and CANARY not in str(caught.value)
    assert mgr.resolve("app", env="base", nested=True) == {"model": "gpt-4o", "openai": {"api_key": "<encrypted>"}}


def test_a_cached_template_row_is_never_served_as_a_config_entry(mgr: ConfigManager) -> None:
    mgr.set_template("app", "system", "Hi", env="base")
    assert mgr.render("app", "system", env="base") == "Hi"  # the template row is now in L1
    for get in (lambda: mgr.get("app", "~t:system", env="base"),
                lambda: mgr.as_caller(_viewer()).get("app", "~t:system", env="base"),
                lambda: mgr.get("app", "~s:x", env="base", with_overrides=True)):
        with pytest.raises(ValidationError, match="Invalid key"):
            get()
    assert mgr.peek("app", "~t:system", "base") is None
