"""`template`, `schema`, `diff` and `promote` as the real console script runs them on a local store:
outputs, exit codes (1 errors, 2 usage, 3 conflicts) and one-line errors that never show a value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_cli import Runner, cli, cli_env, ok
from tests.e2e.test_newcomer import one_line_error

__all__ = ["cli", "cli_env"]

CANARY = "sk-cli-canary-77"


def test_template_set_get_render_history_rollback_delete(cli: Runner, tmp_path: Path) -> None:
    ok(cli("set", "app", "model", "gpt-4o", "-e", "base"))
    prompt = tmp_path / "system.txt"
    prompt.write_text('You are {{ persona }} on {{ config:model }}.\nExample: {"a": 1} and \\{{ literal }}\n')
    assert ok(cli("template", "set", "app", "system", f"@{prompt}", "-e", "prod", "--default", "persona=kind",
                  "--description", "system prompt")).out.strip() == "version 1"
    shown = ok(cli("template", "get", "app", "system", "-e", "production", "--format", "json")).json()
    assert shown["variables"] == ["persona"] and shown["defaults"] == {"persona": "kind"}
    assert shown["content"] == prompt.read_text()
    rendered = ok(cli("template", "render", "app", "system", "-e", "prod")).out
    assert rendered == 'You are kind on gpt-4o.\nExample: {"a": 1} and {{ literal }}\n'
    assert ok(cli("template", "render", "app", "system", "-e", "prod", "--var", "persona=a pirate")).out.startswith(
        "You are a pirate")
    ok(cli("template", "set", "app", "system", "v2 {{ x }}", "-e", "prod"))
    history = ok(cli("template", "history", "app", "system", "-e", "prod", "--format", "json")).json()
    assert [h["version"] for h in history] == [2, 1]
    ok(cli("template", "rollback", "app", "system", "1", "-e", "prod", "-y"))
    listed = ok(cli("template", "list", "app", "-e", "prod", "--format", "json")).json()
    assert [(t["name"], t["version"]) for t in listed] == [("system", 3)]
    ok(cli("template", "delete", "app", "system", "-e", "prod", "-y"))
    assert "Template not found" in one_line_error(cli("template", "get", "app", "system", "-e", "prod"))
    assert ok(cli("list", "app", "-e", "base", "--format", "json")).json()[0]["key"] == "model"  # no template rows


def test_template_errors_are_one_line_with_positions_and_every_missing_name(cli: Runner, tmp_path: Path) -> None:
    line = one_line_error(cli("template", "set", "app", "bad", "ok\n  {{ na me }}", "-e", "base"))
    assert "line 2, column" in line
    assert "Template not found" in one_line_error(cli("template", "get", "app", "bad", "-e", "base"))
    ok(cli("template", "set", "app", "t", "{{ a }} {{ b }} {{ c }}", "-e", "base"))
    assert "Missing template variables: a, c" in one_line_error(
        cli("template", "render", "app", "t", "-e", "base", "--var", "b=1"))
    assert "Unknown template variables: z" in one_line_error(
        cli("template", "render", "app", "t", "-e", "base", "--var", "a=1", "--var", "b=2", "--var", "c=3",
            "--var", "z=4"))
    assert ok(cli("template", "render", "app", "t", "-e", "base", "--var", "a=1", "--var", "b=[1,2]", "--var",
                  "c=x", "--var", "z=4", "--allow-extra")).out == "1 [1,2] x"  # exactly: no newline added
    variables = tmp_path / "vars.json"
    variables.write_text(json.dumps({"a": {"k": "v"}, "b": 2, "c": "from file"}))
    assert ok(cli("template", "render", "app", "t", "-e", "base", "--vars-file", str(variables), "--var",
                  "c=flag")).out == '{"k":"v"} 2 flag'
    assert one_line_error(cli("template", "render", "app", "t", "-e", "base", "--var", "novalue")).count(
        "VAR=VALUE") == 1
    ok(cli("set", "app", "k", CANARY, "-e", "base", "--secret"))
    ok(cli("template", "set", "app", "leak", "{{ config:k }}", "-e", "base"))
    line = one_line_error(cli("template", "render", "app", "leak", "-e", "base"))
    assert "names a secret" in line and CANARY not in line


def test_schema_commands_and_a_refused_write_naming_key_path_and_rule(cli: Runner, tmp_path: Path) -> None:
    names = ok(cli("schema", "builtins")).out.split()
    assert "openai-chat" in names and "anthropic-messages" in names and len(names) == 9
    assert {b["name"] for b in ok(cli("schema", "builtins", "--format", "json")).json()} == set(names)
    ok(cli("schema", "set", "app", "claude.*", "--builtin", "anthropic-messages"))
    line = one_line_error(cli("set", "app", "claude.params", '{"model": "claude-x", "temperature": 1.23456}',
                              "-e", "prod"))
    assert "claude.params" in line and "max_tokens" in line and "1.23456" not in line
    ok(cli("set", "app", "claude.params", '{"model": "claude-x", "temperature": 0.5, "max_tokens": 100}', "-e",
           "prod"))
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"type": "string", "maxLength": 5}))
    ok(cli("schema", "set", "app", "short", f"@{schema}"))
    assert "maxLength" in one_line_error(cli("set", "app", "short", "toolong", "-e", "base"))
    listed = ok(cli("schema", "list", "app", "--format", "json")).json()
    assert [(s["pattern"], s["builtin"]) for s in listed] == [("claude.*", "anthropic-messages"), ("short", None)]
    schema.write_text('{"type": "nonsense"}')
    assert "Invalid JSON Schema" in one_line_error(cli("schema", "set", "app", "short", f"@{schema}"))
    assert cli("schema", "set", "app", "short").code == 2  # neither a file nor --builtin
    assert "openai-chat" in one_line_error(cli("schema", "set", "app", "x", "--builtin", "gpt-9"))
    ok(cli("schema", "delete", "app", "short", "-y"))
    ok(cli("set", "app", "short", "toolong now", "-e", "base"))
    assert [h["version"] for h in ok(cli("schema", "history", "app", "short", "--format", "json")).json()] == [2, 1]


def test_diff_and_promote_with_a_plan_and_prune(cli: Runner) -> None:
    ok(cli("set", "app", "model", "gpt-4o", "-e", "staging"))
    ok(cli("set", "app", "openai.api_key", CANARY, "-e", "staging", "--secret"))
    ok(cli("set", "app", "legacy", "1", "-e", "prod"))
    diff = ok(cli("diff", "app", "--from", "staging", "--to", "prod", "--format", "json")).json()
    assert diff == {"added": ["model", "openai.api_key"], "removed": ["legacy"], "changed": [], "unchanged": [],
                    "not_compared": []}
    plan = ok(cli("promote", "app", "--from", "staging", "--to", "prod", "--dry-run"))
    assert "create  model" in plan.out and "dry run" in plan.err and "legacy" not in plan.out
    assert ok(cli("list", "app", "-e", "prod", "--format", "json")).json()[0]["key"] == "legacy"
    done = ok(cli("promote", "app", "--from", "staging", "--to", "prod", "--prune", "-y", "--format", "json")).json()
    assert done["applied"] and [s["action"] for s in done["steps"]] == ["delete", "create", "create"]
    assert ok(cli("get", "app", "openai.api_key", "-e", "prod", "--reveal", "-o")).out.strip() == CANARY
    assert ok(cli("diff", "app", "--from", "staging", "--to", "prod", "--format", "json")).json()["changed"] == []
    again = ok(cli("promote", "app", "--from", "staging", "--to", "prod", "-y"))
    assert "nothing to change" in again.out
    out = ok(cli("diff", "app", "--from", "staging", "--to", "prod")).out
    assert CANARY not in out and "unchanged:" in out


def test_promote_usage_errors(cli: Runner) -> None:
    assert cli("promote", "app", "--from", "staging").code == 2
    assert "two different environments" in one_line_error(cli("promote", "app", "--from", "prod", "--to",
                                                               "production", "-y"))
    assert "Unknown environment" in one_line_error(cli("diff", "app", "--from", "qa", "--to", "prod"))
    ok(cli("set", "app", "a", "1", "-e", "staging"))
    assert "not in app [staging]" in one_line_error(cli("promote", "app", "--from", "staging", "--to", "prod",
                                                        "--key", "b", "-y"))


@pytest.mark.parametrize("fmt", ["text", "json", "yaml"])
def test_template_get_formats(cli: Runner, fmt: str) -> None:
    ok(cli("template", "set", "app", "t", "Hi {{ name }}", "-e", "base"))
    out = ok(cli("template", "get", "app", "t", "-e", "base", "--format", fmt)).out
    assert "Hi {{ name }}" in out
