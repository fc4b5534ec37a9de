"""End-to-end tests of the `llm-config` console script, run as a real subprocess (SPEC §4)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from llm_config.crypto.keys import generate_key

SCRIPT = Path(sys.executable).with_name("llm-config")
DB_FILE = "config.db"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Runner = Callable[..., Result]


@dataclass
class CLIEnv:
    """A private store, key and XDG config folder for one test."""

    store: Path
    key: str
    xdg: Path
    home: Path

    def environ(self, *, with_key: bool = True, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CONFIG_")}
        env["XDG_CONFIG_HOME"] = str(self.xdg)
        env["HOME"] = str(self.home)
        if with_key:
            env["LLM_CONFIG_KEY"] = self.key
        env.update(extra or {})
        return env


@pytest.fixture
def cli_env(tmp_path: Path) -> CLIEnv:
    xdg = tmp_path / "xdg"
    home = tmp_path / "home"
    xdg.mkdir()
    home.mkdir()
    return CLIEnv(store=tmp_path / "store", key=generate_key(), xdg=xdg, home=home)


@pytest.fixture
def cli(cli_env: CLIEnv) -> Runner:
    """Run `llm-config -s STORE ARGS…` with the test's key; keyword args tune the run."""

    def run(
        *args: str,
        stdin: str | None = None,
        with_key: bool = True,
        store: bool = True,
        env: dict[str, str] | None = None,
    ) -> Result:
        argv: list[str] = [str(SCRIPT)]
        if store:
            argv += ["-s", str(cli_env.store)]
        argv += list(args)
        proc = subprocess.run(
            argv,
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            env=cli_env.environ(with_key=with_key, extra=env),
            timeout=60,
            check=False,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


def ok(result: Result) -> Result:
    assert result.code == 0, f"exit {result.code}: {result.err}"
    return result


def versions(cli: Runner, ns: str, key: str, env: str = "development") -> list[int]:
    items = ok(cli("history", ns, key, "-e", env, "--format", "json")).json()
    assert isinstance(items, list)
    return [item["version"] for item in items]


# ---------------------------------------------------------------------------------- init, keygen


def test_init_creates_store_and_private_key_file_outside_it(cli: Runner, cli_env: CLIEnv) -> None:
    result = ok(cli("init", with_key=False))
    key_file = cli_env.xdg / "llm-config" / "master.key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (cli_env.store / DB_FILE).is_file()
    assert stat.S_IMODE(cli_env.store.stat().st_mode) == 0o700
    assert not any(p.name == "master.key" for p in cli_env.store.rglob("*"))
    assert str(key_file) in result.out
    assert str(cli_env.store) in result.out
    key = key_file.read_text().strip()
    assert key not in result.out + result.err
    # the written key is found by later commands without any other configuration
    ok(cli("set", "app", "greeting", "hello", with_key=False))
    assert ok(cli("get", "app", "greeting", "-o", with_key=False)).out == "hello\n"
    # a second init keeps the key file and the store
    again = ok(cli("init", with_key=False))
    assert "already exists" in again.out
    assert key_file.read_text().strip() == key


def test_init_with_configured_key_writes_no_key_file(cli: Runner, cli_env: CLIEnv) -> None:
    result = ok(cli("init"))
    assert not (cli_env.xdg / "llm-config" / "master.key").exists()
    assert "LLM_CONFIG_KEY" in result.out
    assert cli_env.key not in result.out


def test_keygen_prints_a_fresh_key_only(cli: Runner, cli_env: CLIEnv) -> None:
    first = ok(cli("keygen", store=False)).out.strip()
    second = ok(cli("keygen", store=False)).out.strip()
    assert first != second
    assert len(first) == 44 and "\n" not in first
    assert not cli_env.store.exists()


# ---------------------------------------------------------------------------------- set / get


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("hello world", "hello world"),
        ("42", 42),
        ("-1", -1),
        ("-2.5", -2.5),
        ("3.14", 3.14),
        ("true", True),
        ("false", False),
        ("null", None),
        ('[1, "two", 3.0]', [1, "two", 3.0]),
        ('{"model": "gpt-4o", "params": {"temperature": 0.2}}', {"model": "gpt-4o", "params": {"temperature": 0.2}}),
        ('"42"', "42"),
        ("it's; & <script>", "it's; & <script>"),
    ],
)
def test_set_get_round_trip(cli: Runner, arg: str, expected: object) -> None:
    assert ok(cli("set", "acme/bot", "v", arg)).out == "version 1\n"
    got = ok(cli("get", "acme/bot", "v", "--format", "json")).json()
    assert isinstance(got, dict)
    assert got["value"] == expected
    assert type(got["value"]) is type(expected)
    plain = ok(cli("get", "acme/bot", "v", "-o")).out
    shown = expected if isinstance(expected, str) else json.dumps(expected, separators=(",", ":"))
    assert plain == f"{shown}\n"


def test_value_after_double_dash_and_from_stdin_and_file(cli: Runner, tmp_path: Path) -> None:
    ok(cli("set", "ns", "dash", "--", "-e"))
    assert ok(cli("get", "ns", "dash", "-o")).out == "-e\n"
    ok(cli("set", "ns", "piped", "-", stdin='{"a": 1}'))
    assert ok(cli("get", "ns", "piped", "--format", "json")).json()["value"] == {"a": 1}
    doc = tmp_path / "prompt.txt"
    doc.write_text("line one\nline two\n")
    ok(cli("set", "ns", "prompt", f"@{doc}"))
    assert ok(cli("get", "ns", "prompt", "--format", "json")).json()["value"] == "line one\nline two\n"
    missing = cli("set", "ns", "nofile", f"@{tmp_path / 'nope'}")
    assert missing.code == 1 and "not found" in missing.err


def test_get_json_shape(cli: Runner) -> None:
    ok(cli("set", "acme", "openai.model", "gpt-4o", "-e", "prod", "--description", "the model",
           "--tag", "llm", "--tag", "openai"))
    got = ok(cli("get", "acme", "openai.model", "-e", "production", "--format", "json")).json()
    assert isinstance(got, dict)
    assert set(got) == {"id", "namespace", "key", "value", "environment", "version", "secret", "metadata"}
    assert got["namespace"] == "acme" and got["key"] == "openai.model"
    assert got["environment"] == "production" and got["version"] == 1 and got["secret"] is False
    meta = got["metadata"]
    assert set(meta) == {"created_at", "created_by", "updated_at", "updated_by", "tags", "description"}
    assert meta["tags"] == ["llm", "openai"] and meta["description"] == "the model"
    assert meta["created_at"].endswith("Z")
    assert meta["created_by"] == meta["updated_by"] != ""
    text = ok(cli("get", "acme", "openai.model", "-e", "prod")).out
    for label in ("key:", "value:", "environment:", "version:", "secret:", "updated_at:", "updated_by:"):
        assert label in text
    assert "gpt-4o" in text


def test_get_version_and_with_overrides(cli: Runner) -> None:
    ok(cli("set", "ns", "k", "base-value", "-e", "base"))
    ok(cli("set", "ns", "k", "one"))
    ok(cli("set", "ns", "k", "two"))
    assert ok(cli("get", "ns", "k", "--version", "1", "-o")).out == "one\n"
    assert ok(cli("get", "ns", "k", "--version", "1", "--format", "json")).json()["version"] == 1
    assert ok(cli("get", "ns", "k", "-e", "staging", "-o")).out == "base-value\n"
    resolved = ok(cli("get", "ns", "k", "-e", "staging", "-o", "--format", "json")).json()
    assert resolved["environment"] == "base"
    assert cli("get", "ns", "k", "-e", "staging").code == 1


def test_secrets(cli: Runner, cli_env: CLIEnv) -> None:
    assert ok(cli("set", "ns", "api_key", "sk-very-secret", "--secret")).out == "version 1\n"
    got = ok(cli("get", "ns", "api_key", "--format", "json")).json()
    assert got["value"] == "<encrypted>" and got["secret"] is True
    assert "sk-very-secret" not in ok(cli("get", "ns", "api_key")).out
    assert ok(cli("get", "ns", "api_key", "--reveal", "-o")).out == "sk-very-secret\n"
    assert ok(cli("get", "ns", "api_key", "--reveal", "--format", "json")).json()["value"] == "sk-very-secret"
    # the plaintext never reaches the database file
    assert b"sk-very-secret" not in (cli_env.store / DB_FILE).read_bytes()
    # a plain write over a secret is refused unless --no-secret
    refused = cli("set", "ns", "api_key", "oops")
    assert refused.code == 1 and "secret" in refused.err and "oops" not in refused.err
    assert versions(cli, "ns", "api_key") == [1]
    ok(cli("set", "ns", "api_key", "now-plain", "--no-secret"))
    assert ok(cli("get", "ns", "api_key", "-o")).out == "now-plain\n"


def test_expect_version_conflict_exits_3_and_changes_nothing(cli: Runner) -> None:
    ok(cli("set", "ns", "k", "v1", "--expect-version", "0"))
    ok(cli("set", "ns", "k", "v2", "--expect-version", "1"))
    conflict = cli("set", "ns", "k", "v3", "--expect-version", "1")
    assert conflict.code == 3, conflict.err
    assert conflict.err.startswith("error: ")
    assert ok(cli("get", "ns", "k", "-o")).out == "v2\n"
    assert versions(cli, "ns", "k") == [2, 1]
    assert cli("set", "ns", "new", "x", "--expect-version", "1").code == 3


def test_set_json_output(cli: Runner) -> None:
    got = ok(cli("set", "ns", "k", "[1,2]", "--format", "json")).json()
    assert got["value"] == [1, 2] and got["version"] == 1


# ---------------------------------------------------------------------------------- list, namespaces


def test_list_and_namespaces(cli: Runner) -> None:
    ok(cli("init"))
    empty = ok(cli("list", "ns", "--format", "json"))
    assert empty.json() == []
    ok(cli("set", "ns", "b", "2"))
    ok(cli("set", "ns", "a", "1"))
    ok(cli("set", "ns", "secret", "s", "--secret"))
    ok(cli("set", "ns/sub", "c", "3"))
    ok(cli("set", "other", "x", "y", "-e", "prod"))
    listed = ok(cli("list", "ns", "--format", "json")).json()
    assert isinstance(listed, list)
    assert [e["key"] for e in listed] == ["a", "b", "secret"]
    assert listed[2]["value"] == "<encrypted>"
    assert [e["key"] for e in ok(cli("list", "ns", "--prefix", "s", "--format", "json")).json()] == ["secret"]
    recursive = ok(cli("list", "ns", "--recursive", "--format", "json")).json()
    assert {(e["namespace"], e["key"]) for e in recursive} >= {("ns/sub", "c")}
    assert ok(cli("list", "other", "--format", "json")).json() == []
    assert len(ok(cli("list", "other", "-e", "production", "--format", "json")).json()) == 1
    as_yaml = yaml.safe_load(ok(cli("list", "ns", "--format", "yaml")).out)
    assert [e["key"] for e in as_yaml] == ["a", "b", "secret"]
    table = ok(cli("list", "ns")).out
    assert "KEY" in table and "a" in table
    names = ok(cli("namespaces", "--format", "json")).json()
    assert names == ["ns", "ns/sub", "other"]
    assert ok(cli("namespaces")).out.split() == ["ns", "ns/sub", "other"]


# ---------------------------------------------------------------------------------- delete, history, rollback, purge


def test_delete_history_rollback_purge(cli: Runner) -> None:
    ok(cli("set", "ns", "k", "first"))
    ok(cli("set", "ns", "k", "second"))
    ok(cli("delete", "ns", "k", "-y"))
    gone = cli("get", "ns", "k")
    assert gone.code == 1 and "not found" in gone.err.lower()
    history = ok(cli("history", "ns", "k", "--format", "json")).json()
    assert isinstance(history, list)
    assert [h["version"] for h in history] == [3, 2, 1]
    assert history[0]["deleted"] is True and history[0]["change_description"] == "Deleted"
    assert set(history[0]) == {"version", "value", "deleted", "created_at", "created_by", "change_description"}
    assert [h["version"] for h in ok(cli("history", "ns", "k", "--limit", "1", "--format", "json")).json()] == [3]
    assert cli("delete", "ns", "k", "-y").code == 1  # already deleted
    assert cli("delete", "ns", "never", "-y").code == 1
    # rollback after a delete undeletes
    assert ok(cli("rollback", "ns", "k", "1", "-y")).out == "version 4\n"
    assert ok(cli("get", "ns", "k", "-o")).out == "first\n"
    assert ok(cli("history", "ns", "k", "--format", "json")).json()[0]["change_description"] == "Rollback to version 1"
    assert cli("rollback", "ns", "k", "3", "-y").code == 1  # a tombstone
    assert cli("rollback", "ns", "k", "99", "-y").code == 1
    # purge destroys one old version's value
    ok(cli("purge", "ns", "k", "--version", "2", "-y"))
    assert cli("get", "ns", "k", "--version", "2").code == 1
    assert "second" not in ok(cli("history", "ns", "k", "--format", "json")).out


def test_destructive_commands_do_not_prompt_without_a_terminal(cli: Runner) -> None:
    ok(cli("set", "ns", "k", "v"))
    ok(cli("delete", "ns", "k"))  # stdin is a pipe: no prompt, no hang
    assert cli("get", "ns", "k").code == 1


def _on_a_terminal(cli_env: CLIEnv, args: Sequence[str], answer: bytes) -> subprocess.CompletedProcess[str]:
    """Run with stdin on a pseudo-terminal, having typed `answer` in advance."""
    master, slave = os.openpty()
    try:
        os.write(master, answer)
        return subprocess.run(
            [str(SCRIPT), "-s", str(cli_env.store), *args], stdin=slave, capture_output=True, text=True,
            env=cli_env.environ(), timeout=60, check=False,
        )
    finally:
        os.close(slave)
        os.close(master)


def test_destructive_commands_ask_on_a_terminal(cli: Runner, cli_env: CLIEnv) -> None:
    ok(cli("set", "ns", "k", "v"))
    declined = _on_a_terminal(cli_env, ["delete", "ns", "k"], b"n\n")
    assert declined.returncode == 1 and "Delete ns/k [development]" in declined.stderr
    assert "Traceback" not in declined.stderr
    assert ok(cli("get", "ns", "k", "-o")).out == "v\n"
    accepted = _on_a_terminal(cli_env, ["delete", "ns", "k"], b"y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert cli("get", "ns", "k").code == 1
    skipped = _on_a_terminal(cli_env, ["rollback", "ns", "k", "1", "-y"], b"")
    assert skipped.returncode == 0 and "?" not in skipped.stderr


# ---------------------------------------------------------------------------------- validation and errors


@pytest.mark.parametrize(
    "args",
    [
        ("set", "bad ns", "k", "v"),
        ("set", "ns/", "k", "v"),
        ("set", "../etc", "k", "v"),
        ("set", "ns", "bad/key", "v"),
        ("set", "ns", ".hidden", "v"),
        ("set", "ns", "k", "v", "-e", "qa"),
        ("set", "ns", "k", "NaN"),
        ("set", "ns", "k", "1e999"),
        ("set", "ns", "k", "99999999999999999999"),
    ],
)
def test_invalid_input_exit_1_and_nothing_stored(cli: Runner, args: Sequence[str]) -> None:
    ok(cli("init"))
    result = cli(*args)
    assert result.code == 1
    assert result.err.startswith("error: ") and len(result.err.strip().splitlines()) == 1
    assert ok(cli("namespaces", "--format", "json")).json() == []


def test_unknown_environment_message(cli: Runner) -> None:
    result = cli("get", "ns", "k", "-e", "qa")
    assert result.code == 1
    ok(cli("init"))
    result = cli("get", "ns", "k", "-e", "qa")
    assert result.code == 1 and "Unknown environment: qa" in result.err


@pytest.mark.parametrize(
    "args",
    [
        ("get", "ns", "k"),
        ("list", "ns"),
        ("namespaces",),
        ("history", "ns", "k"),
        ("export", "ns"),
        ("audit", "list"),
        ("audit", "head"),
        ("audit", "verify"),
        ("doctor",),
    ],
)
def test_reading_commands_never_create_a_store(cli: Runner, cli_env: CLIEnv, args: Sequence[str]) -> None:
    result = cli(*args)
    assert result.code == 1
    assert str(cli_env.store) in result.err
    assert not cli_env.store.exists()


def test_writes_without_a_key_say_how_to_supply_it(cli: Runner, cli_env: CLIEnv) -> None:
    missing_store = cli("set", "ns", "k", "v", with_key=False)
    assert missing_store.code == 1 and "LLM_CONFIG_KEY" in missing_store.err
    assert not (cli_env.store / DB_FILE).exists()
    ok(cli("set", "ns", "k", "v"))
    ok(cli("set", "ns", "s", "hidden", "--secret"))
    for args in (("set", "ns", "k", "w"), ("delete", "ns", "k", "-y"), ("rollback", "ns", "k", "1", "-y"),
                 ("get", "ns", "s", "--reveal"), ("audit", "verify")):
        result = cli(*args, with_key=False)
        assert result.code == 1, args
        assert "LLM_CONFIG_KEY" in result.err and "--key-file" in result.err
        assert len(result.err.strip().splitlines()) == 1
    # plain reads work without the key
    assert ok(cli("get", "ns", "k", "-o", with_key=False)).out == "v\n"
    assert ok(cli("get", "ns", "s", "--format", "json", with_key=False)).json()["value"] == "<encrypted>"
    assert len(ok(cli("list", "ns", "--format", "json", with_key=False)).json()) == 2


def test_key_file_flag_and_wrong_key(cli: Runner, cli_env: CLIEnv, tmp_path: Path) -> None:
    key_file = tmp_path / "k.key"
    key_file.write_text(cli_env.key + "\n")
    key_file.chmod(0o600)
    ok(cli("--key-file", str(key_file), "set", "ns", "s", "x", "--secret", with_key=False))
    ok(cli("--key-file", str(key_file), "set", "ns", "plain", "p", with_key=False))
    assert ok(cli("get", "ns", "s", "--reveal", "-o")).out == "x\n"
    wrong_key = {"LLM_CONFIG_KEY": generate_key()}
    wrong = cli("get", "ns", "s", "--reveal", env=wrong_key)
    assert wrong.code == 1 and wrong.err.startswith("warning: ")
    assert wrong.err.splitlines()[-1].startswith("error: Revealing a secret needs the master key: the encryption key "
                                                 "does not open this store")
    # a key of another store still reads plain values (SPEC §2), with a warning naming the key it needs
    plain = cli("get", "ns", "plain", "-o", env=wrong_key)
    assert plain.code == 0 and plain.out == "p\n" and "does not open this store" in plain.err
    # a key file others can read is refused, with the command that fixes it
    key_file.chmod(0o644)
    loose = cli("--key-file", str(key_file), "get", "ns", "s", "--reveal", with_key=False)
    assert loose.code == 1 and f"chmod 600 {key_file}" in loose.err


def test_server_flag_needs_an_api_key_and_never_touches_the_store(cli: Runner, cli_env: CLIEnv) -> None:
    # the commands against a service: tests/e2e/test_cli_remote.py
    result = cli("--server", "http://127.0.0.1:1", "get", "ns", "k")
    assert result.code == 1
    assert result.err.strip() == "error: --server needs an API key: set LLM_CONFIG_API_KEY"
    assert not cli_env.store.exists()


def test_usage_errors_exit_2(cli: Runner) -> None:
    assert cli("get", "ns").code == 2
    assert cli("get", "ns", "k", "--bogus").code == 2
    assert cli("no-such-command").code == 2
    assert cli("get", "ns", "k", "--format", "xml").code == 2


# ---------------------------------------------------------------------------------- export / import


def _seed(cli: Runner) -> None:
    ok(cli("set", "app", "model", "gpt-4o"))
    ok(cli("set", "app", "temperature", "0.2"))
    ok(cli("set", "app", "stop", '["\\n", "END"]'))
    ok(cli("set", "app", "limits", '{"max_tokens": 512}'))
    ok(cli("set", "app", "api_key", "sk-hidden", "--secret"))


def test_export_formats(cli: Runner, tmp_path: Path) -> None:
    _seed(cli)
    doc = ok(cli("export", "app")).json()
    assert doc == {
        "namespace": "app",
        "environment": "development",
        "values": {"limits": {"max_tokens": 512}, "model": "gpt-4o", "stop": ["\n", "END"], "temperature": 0.2},
    }
    revealed = ok(cli("export", "app", "--reveal")).json()
    assert revealed["secrets"] == {"api_key": "sk-hidden"}
    as_yaml = yaml.safe_load(ok(cli("export", "app", "--format", "yaml")).out)
    assert as_yaml == doc
    dotenv = ok(cli("export", "app", "--format", "dotenv")).out
    assert "MODEL=gpt-4o" in dotenv and "TEMPERATURE=0.2" in dotenv and "API_KEY" not in dotenv
    target = tmp_path / "out.json"
    ok(cli("export", "app", "--reveal", "-o", str(target)))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text())["secrets"] == {"api_key": "sk-hidden"}


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_import_round_trip_and_reimport_is_unchanged(cli: Runner, tmp_path: Path, fmt: str) -> None:
    _seed(cli)
    exported = tmp_path / f"doc.{fmt}"
    ok(cli("export", "app", "--reveal", "--format", fmt, "-o", str(exported)))
    result = ok(cli("import", "copy", str(exported), "-e", "staging"))
    assert "created:" in result.out and "model" in result.out
    copy = ok(cli("export", "copy", "-e", "staging", "--reveal")).json()
    original = ok(cli("export", "app", "--reveal")).json()
    assert copy["values"] == original["values"]
    assert copy["secrets"] == original["secrets"]
    assert ok(cli("get", "copy", "api_key", "-e", "staging", "--format", "json")).json()["secret"] is True
    again = ok(cli("import", "copy", str(exported), "-e", "staging", "--format", fmt))
    assert "created:   -" in again.out and "updated:   -" in again.out
    assert versions(cli, "copy", "model", "staging") == [1]
    # re-importing into the source namespace changes nothing either
    ok(cli("import", "app", str(exported)))
    assert versions(cli, "app", "model") == [1]


def test_import_from_stdin_dry_run_and_prune(cli: Runner) -> None:
    ok(cli("set", "ns", "old", "1"))
    ok(cli("set", "ns", "keep", "1"))
    dry = ok(cli("import", "ns", "-", "--prune", "--dry-run", stdin='{"keep": 2, "new": "x"}'))
    assert "deleted:   old" in dry.out and "dry run" in dry.err
    assert ok(cli("get", "ns", "old", "-o")).out == "1\n"
    ok(cli("import", "ns", "-", "--prune", "-y", stdin='{"keep": 2, "new": "x"}'))
    assert cli("get", "ns", "old").code == 1
    assert ok(cli("get", "ns", "keep", "-o")).out == "2\n"
    assert ok(cli("get", "ns", "new", "-o")).out == "x\n"


def test_import_with_one_bad_key_imports_nothing(cli: Runner, tmp_path: Path) -> None:
    doc = tmp_path / "bad.json"
    doc.write_text(json.dumps({"good": 1, "also.good": "x", "bad key": 2}))
    result = cli("import", "ns", str(doc))
    assert result.code == 1 and result.err.startswith("error: ")
    assert ok(cli("list", "ns", "--format", "json")).json() == []


@pytest.mark.parametrize("text", ["[" * 20_000, "a:\n" + "".join("  " * i + "b:\n" for i in range(1, 600)),
                                  "[" * 600 + "]" * 600, "a: &x [1]\nb: *x\n"])
def test_import_of_a_deep_or_aliased_document_is_one_clean_error(cli: Runner, tmp_path: Path, text: str) -> None:
    doc = tmp_path / "deep.yaml"
    doc.write_text(text)
    result = cli("import", "ns", str(doc), "--format", "yaml")
    assert result.code == 1 and result.err.startswith("error: Invalid YAML"), result.err
    assert "unexpected" not in result.err and "Traceback" not in result.err


def test_rolling_a_secret_back_to_a_plain_version_needs_no_secret(cli: Runner) -> None:
    ok(cli("set", "ns", "token", "plain-once"))
    ok(cli("set", "ns", "token", "sk-now", "--secret"))
    refused = cli("rollback", "ns", "token", "1", "-y")
    assert refused.code == 1 and "--no-secret" in refused.err
    assert ok(cli("get", "ns", "token", "--format", "json")).json()["secret"] is True
    ok(cli("rollback", "ns", "token", "1", "-y", "--no-secret"))
    assert ok(cli("get", "ns", "token", "-o")).out == "plain-once\n"


# ---------------------------------------------------------------------------------- audit, doctor


def test_audit_list_head_verify(cli: Runner) -> None:
    ok(cli("set", "ns", "k", "v1"))
    ok(cli("set", "ns", "k", "v2"))
    ok(cli("set", "other", "s", "x", "--secret"))
    ok(cli("delete", "ns", "k", "-y"))
    events = ok(cli("audit", "list", "--format", "json")).json()
    assert isinstance(events, list)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert [e["type"] for e in events][-4:] == ["config_created", "config_updated", "secret_modified", "config_deleted"]
    keys = {"seq", "id", "timestamp", "type", "actor", "namespace", "key", "environment", "old_version",
            "new_version", "outcome", "source_ip", "request_id", "details"}
    assert all(set(e) == keys for e in events)
    assert "x" not in json.dumps([e["details"] for e in events if e["key"] == "s"]).replace("\\", "")
    only_ns = ok(cli("audit", "list", "--namespace", "ns", "--format", "json")).json()
    assert {e["namespace"] for e in only_ns} == {"ns"}
    typed = ok(cli("audit", "list", "--type", "config_deleted", "--format", "json")).json()
    assert len(typed) == 1
    assert len(ok(cli("audit", "list", "--limit", "2", "--format", "json")).json()) == 2
    assert ok(cli("audit", "list", "--since", "2999-01-01", "--format", "json")).json() == []
    assert ok(cli("audit", "list", "--until", "2000-01-01T00:00:00Z", "--format", "json")).json() == []
    assert cli("audit", "list", "--since", "yesterday").code == 1
    assert "config_created" in ok(cli("audit", "list")).out
    head = ok(cli("audit", "head")).out.strip()
    seq, mac = head.split(":")
    assert int(seq) == events[-1]["seq"] and len(mac) == 64
    verified = ok(cli("audit", "verify"))
    assert verified.out.strip() == f"ok: {len(events)} events verified"
    ok(cli("audit", "verify", "--anchor", head))
    assert cli("audit", "verify", "--anchor", "nonsense").code == 1
    report = ok(cli("audit", "verify", "--format", "json")).json()
    assert report["ok"] is True


def test_audit_export_jsonl(cli: Runner, tmp_path: Path) -> None:
    ok(cli("set", "ns", "k", "v"))
    lines = ok(cli("audit", "export")).out.splitlines()
    records = [json.loads(line) for line in lines]
    assert records and all("mac" in r and "prev_mac" in r for r in records)
    target = tmp_path / "audit.jsonl"
    ok(cli("audit", "export", "--format", "jsonl", "-o", str(target)))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text().splitlines() == lines


def test_tampered_audit_row_fails_verify(cli: Runner, cli_env: CLIEnv) -> None:
    ok(cli("set", "ns", "k", "v1"))
    ok(cli("set", "ns", "k", "v2"))
    head = ok(cli("audit", "head")).out.strip()
    with sqlite3.connect(cli_env.store / DB_FILE) as conn:
        conn.execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = (SELECT MIN(seq) FROM audit_events)")
    conn.close()
    result = cli("audit", "verify")
    assert result.code == 1
    assert "MAC mismatch" in result.err
    assert result.out == ""
    assert cli("audit", "verify", "--anchor", head).code == 1
    doctor = cli("doctor")
    assert doctor.code == 1 and "unhealthy" in doctor.out


def test_doctor(cli: Runner) -> None:
    ok(cli("set", "ns", "k", "v"))
    result = ok(cli("doctor"))
    assert "storage" in result.out and "healthy" in result.out
    report = ok(cli("doctor", "--format", "json")).json()
    assert report["status"] == "healthy"
    assert set(report["checks"]) >= {"storage", "key", "audit"}
    keyless = ok(cli("doctor", "--format", "json", with_key=False)).json()
    assert keyless["status"] == "degraded"


def test_doctor_checks_redis_when_given_one(cli: Runner) -> None:
    ok(cli("set", "ns", "k", "v"))
    down = ok(cli("--redis-url", "redis://127.0.0.1:1/0", "doctor", "--format", "json")).json()
    assert down["status"] == "degraded"  # a cache problem is not a data problem: exit 0
    assert "redis unavailable" in down["checks"]["cache"]["message"]


# ---------------------------------------------------------------------------------- help, version


COMMANDS = [
    ("init",), ("keygen",), ("set",), ("get",), ("list",), ("namespaces",), ("delete",), ("history",),
    ("rollback",), ("purge",), ("export",), ("import",), ("audit",), ("audit", "list"), ("audit", "verify"),
    ("audit", "head"), ("audit", "export"), ("doctor",), ("serve",), ("keys",), ("keys", "create"),
    ("keys", "list"), ("keys", "revoke"), ("backup",), ("restore",), ("migrate",), ("upgrade",), ("rotate-key",),
    ("watch",), ("run",), ("diff",), ("promote",), ("template",), ("template", "set"), ("template", "get"),
    ("template", "list"), ("template", "render"), ("template", "history"), ("template", "rollback"),
    ("template", "delete"), ("schema",), ("schema", "set"), ("schema", "get"), ("schema", "list"),
    ("schema", "delete"), ("schema", "history"), ("schema", "rollback"), ("schema", "builtins"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(cli: Runner, command: tuple[str, ...]) -> None:
    result = ok(cli(*command, "--help", store=False))
    assert result.out.startswith("Usage: llm-config")
    lines = [line for line in result.out.splitlines()[1:] if line.strip()]
    assert lines and not lines[0].lstrip().startswith("Options:")  # a description comes first


def test_root_help_lists_exactly_the_commands_in_scope(cli: Runner) -> None:
    out = ok(cli("--help", store=False)).out
    listed = out.split("Commands:", 1)[1].split("\n\n")[0]
    names = {line.split()[0] for line in listed.splitlines() if line.strip()}
    assert names == {c[0] for c in COMMANDS}


def test_version(cli: Runner) -> None:
    assert ok(cli("--version", store=False)).out.startswith("llm-config ")


def test_get_imports_no_web_stack(cli: Runner, cli_env: CLIEnv) -> None:
    ok(cli("set", "ns", "k", "v"))
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "llm_config.cli.main", "-s", str(cli_env.store),
         "get", "ns", "k"],
        capture_output=True, text=True, env=cli_env.environ(), timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert not imported & {"fastapi", "starlette", "pydantic", "uvicorn", "granian", "rich", "yaml", "typer"}


# ---------------------------------------------------------------------------------- keys


def test_keys_create_list_revoke(cli: Runner, cli_env: CLIEnv) -> None:
    ok(cli("init"))
    created = ok(cli("keys", "create", "--name", "ci", "--role", "editor", "--namespace", "acme",
                     "--environment", "dev", "--expires", "30", "--format", "json")).json()
    assert set(created) == {"id", "name", "role", "namespaces", "environments", "expires_at", "key"}
    assert created["key"].startswith("llmc_") and created["environments"] == ["development"]
    text = ok(cli("keys", "create", "--name", "plain", "--role", "viewer"))
    assert text.out.strip().startswith("llmc_") and "not shown again" in text.err
    listed = ok(cli("keys", "list", "--format", "json")).json()
    assert [k["name"] for k in listed] == ["ci", "plain"]
    assert created["key"] not in json.dumps(listed) and "key_hash" not in listed[0]
    ok(cli("keys", "revoke", created["id"]))
    assert ok(cli("keys", "list", "--format", "json")).json()[0]["revoked_at"] is not None
    raw = (cli_env.store / DB_FILE).read_bytes()
    assert created["key"].encode() not in raw
    events = ok(cli("audit", "list", "--format", "json")).json()
    assert [e["type"] for e in events].count("key_created") == 2 and events[-1]["type"] == "key_revoked"


@pytest.mark.parametrize(("args", "message"), [
    (("--name", "x", "--role", "root"), "Invalid value for '--role'"),
    (("--name", "x", "--role", "viewer", "--namespace", "bad ns"), "Invalid namespace"),
    (("--name", "x", "--role", "viewer", "--environment", "qa"), "Unknown environment: qa"),
    (("--name", "x", "--role", "viewer", "--expires", "0"), "Invalid value for '--expires'"),
    (("--name", "", "--role", "viewer"), "Invalid key name"),
])
def test_keys_create_bad_input(cli: Runner, args: tuple[str, ...], message: str) -> None:
    ok(cli("init"))
    result = cli("keys", "create", *args)
    assert result.code in (1, 2) and message in result.err
    assert ok(cli("keys", "list", "--format", "json")).json() == []


def test_keys_revoke_unknown_is_exit_1(cli: Runner) -> None:
    ok(cli("init"))
    result = cli("keys", "revoke", "key_nope")
    assert result.code == 1 and "API key not found" in result.err
