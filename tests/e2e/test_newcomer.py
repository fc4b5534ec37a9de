"""What a new user met on a fresh clone — each finding of that review replayed: import and export
files, parsing of values, serve's start, errors that must be one clear line, and the OpenAPI
document's answers. CLI runs are the real console script; REST runs a real server."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from llm_config.core.manager import ConfigManager
from llm_config.crypto.keys import generate_key
from llm_config.errors import ValidationError
from tests.e2e.conftest import LiveServer
from tests.e2e.test_cli import SCRIPT, CLIEnv, Result, Runner, cli, cli_env, ok

C = "/api/v1/configs"
N = "/api/v1/namespaces"
__all__ = ["cli", "cli_env"]  # the console-script fixtures of test_cli, shared here


def one_line_error(result: Result, code: int = 1) -> str:
    assert result.code == code, (result.code, result.err)
    lines = [line for line in result.err.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    assert "unexpected" not in lines[0] and "Traceback" not in result.err
    return lines[0]


# ----------------------------------------------------------------------------- import can never store a secret in clear

@pytest.mark.parametrize("doc", [
    {"secrets": {"openai.api_key": "sk-no-values-section"}},
    {"namespace": "acme", "secrets": {"openai.api_key": "sk-no-values-section"}},
])
def test_a_secrets_section_is_always_sealed(cli: Runner, tmp_path: Path, doc: dict[str, object]) -> None:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(doc))
    ok(cli("import", "acme", str(path)))
    entry = ok(cli("get", "acme", "openai.api_key", "--format", "json")).json()
    assert entry["secret"] is True and entry["value"] == "<encrypted>"
    assert ok(cli("list", "acme", "--format", "json")).json()[0]["key"] == "openai.api_key"  # no key "secrets"


@pytest.mark.parametrize(("doc", "names"), [
    ({"namespace": "acme", "environment": "development", "value": {"model": "x"}}, "'value'"),  # a typo'd export
    ({"values": {"a": 1}, "extra": 1}, "'extra'"),
    ({"values": ["not", "an", "object"]}, "'values' must be an object"),
    ({"secrets": "sk-plain"}, "'secrets' must be an object"),
    ({"environment": 3, "values": {}}, "'environment' must be a string"),
])
def test_a_malformed_export_document_imports_nothing_and_names_the_problem(
    cli: Runner, tmp_path: Path, doc: dict[str, object], names: str
) -> None:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(doc))
    assert names in one_line_error(cli("import", "acme", str(path)))
    assert ok(cli("list", "acme", "--format", "json")).json() == []


def test_the_same_rules_over_rest_and_in_the_library(
    live_server: LiveServer, api: httpx.Client, make_manager: Callable[..., ConfigManager]
) -> None:
    r = api.post(f"{N}/acme/-/import", json={"secrets": {"k": "sk-rest"}})
    assert r.status_code == 200 and r.json()["created"] == ["k"]
    assert api.get(f"{C}/acme/k").json()["secret"] is True
    bad = api.post(f"{N}/acme/-/import", json={"namespace": "acme", "value": {"a": 1}})
    assert bad.status_code == 400 and "'value'" in bad.json()["message"]
    with pytest.raises(ValidationError, match="unknown top-level"):
        live_server.manager.import_("acme", {"environment": "dev", "valeus": {"a": 1}})


def test_a_plain_value_replaces_a_secret_in_an_import_only_with_no_secret(cli: Runner, tmp_path: Path) -> None:
    ok(cli("set", "acme", "token", "sk-1", "--secret"))
    path = tmp_path / "flat.json"
    path.write_text(json.dumps({"token": "now-plain", "other": 1}))
    message = one_line_error(cli("import", "acme", str(path)))
    assert "token" in message and "--no-secret" in message and "pass --secret" not in message
    assert ok(cli("list", "acme", "--format", "json")).json()[0]["key"] == "token"  # nothing imported
    ok(cli("import", "acme", str(path), "--no-secret"))
    assert ok(cli("get", "acme", "token", "-o")).out == "now-plain\n"
    ok(cli("import", "acme", str(path), "--secret"))  # --secret seals every value of the file
    assert ok(cli("get", "acme", "other", "--format", "json")).json()["secret"] is True


# ----------------------------------------------------------------------------- -o FILE

def test_output_files_are_new_private_files_never_a_device_or_a_link_target(cli: Runner, tmp_path: Path) -> None:
    ok(cli("set", "acme", "model", "gpt-4o"))
    target = tmp_path / "export.json"
    target.write_text("old")
    target.chmod(0o644)
    ok(cli("export", "acme", "-o", str(target)))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and json.loads(target.read_text())["values"] == {
        "model": "gpt-4o"}
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    victim.chmod(0o644)
    link = tmp_path / "link.json"
    link.symlink_to(victim)
    assert "symbolic link" in one_line_error(cli("export", "acme", "-o", str(link)))
    assert victim.read_text() == "untouched" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    devnull_mode = stat.S_IMODE(os.stat("/dev/null").st_mode)
    assert "not a regular file" in one_line_error(cli("audit", "export", "-o", "/dev/null"))
    assert stat.S_IMODE(os.stat("/dev/null").st_mode) == devnull_mode
    missing = tmp_path / "nodir" / "x"
    assert f"Cannot write {missing}" in one_line_error(cli("export", "acme", "-o", str(missing)))
    assert json.loads(ok(cli("export", "acme", "-o", "-")).out)["values"] == {"model": "gpt-4o"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


# ----------------------------------------------------------------------------- values that start with "-"

@pytest.mark.parametrize(("args", "stored"), [
    (["-1"], -1), (["-5e2"], -500.0), (["-1e-3"], -0.001), (["-likeprod"], "-likeprod"), (["-yes"], "-yes"),
    (["--", "-e"], "-e"), (["-e", "prod", "--", "--secret"], "--secret"), (["-x", "-e", "prod"], "-x"),
])
def test_a_value_may_start_with_a_dash(cli: Runner, args: list[str], stored: object) -> None:
    entry = ok(cli("set", "acme", "flag", *args, "--format", "json")).json() if "--" not in args else \
        ok(cli("set", "acme", "flag", *args)).out
    env = "production" if "prod" in args else "development"
    got = ok(cli("get", "acme", "flag", "-e", env, "--format", "json")).json()
    assert got["value"] == stored and got["environment"] == env, entry


@pytest.mark.parametrize("args", [["--help"], ["v", "--help"], ["--help", "v"]])
def test_help_after_the_names_is_help_and_stores_nothing(cli: Runner, args: list[str]) -> None:
    result = ok(cli("set", "acme", "flag", *args))
    assert "Usage:" in result.out
    assert cli("get", "acme", "flag").code != 0  # nothing stored, not even the string "--help"


def test_stdin_loses_exactly_one_trailing_newline_and_files_stay_byte_exact(cli: Runner, tmp_path: Path) -> None:
    ok(cli("set", "acme", "key", "-", "--secret", stdin="sk-x\n"))
    assert ok(cli("get", "acme", "key", "--reveal", "-o")).out == "sk-x\n"  # the value, printed with a newline
    assert ok(cli("get", "acme", "key", "--reveal", "--format", "json")).json()["value"] == "sk-x"
    ok(cli("set", "acme", "two", "-", stdin="line\n\n"))
    assert ok(cli("get", "acme", "two", "--format", "json")).json()["value"] == "line\n"
    path = tmp_path / "prompt.txt"
    path.write_bytes(b"You are helpful.\n")
    ok(cli("set", "acme", "prompt", f"@{path}"))
    assert ok(cli("get", "acme", "prompt", "--format", "json")).json()["value"] == "You are helpful.\n"


# ----------------------------------------------------------------------------- errors a user should never see

def test_numbers_are_range_checked_as_usage_errors(cli: Runner) -> None:
    ok(cli("set", "acme", "k", "1"))
    for args in (("audit", "list", "--limit", "99999999999999999999"), ("audit", "list", "--limit", "0"),
                 ("history", "acme", "k", "--limit", "0"), ("get", "acme", "k", "--version", "0"),
                 ("rollback", "acme", "k", "99999999999999999999", "-y")):
        result = cli(*args)
        assert result.code == 2 and "Error:" in result.err and "unexpected" not in result.err, args


def test_unknown_filter_values_are_refused_with_the_valid_ones(cli: Runner) -> None:
    ok(cli("set", "acme", "k", "1"))
    result = cli("audit", "list", "--type", "bogus")
    assert result.code == 2 and "config_created" in result.err


def test_unknown_filter_values_are_refused_over_rest(api: httpx.Client) -> None:
    r = api.get("/api/v1/audit/export", params={"format": "csv"})
    assert r.status_code == 400
    r = api.get("/api/v1/audit", params={"type": "bogus"})
    assert r.status_code == 400


def test_a_redis_url_in_the_environment_does_not_break_other_commands(cli: Runner) -> None:
    env = {"LLM_CONFIG_REDIS_URL": "redis://127.0.0.1:1/0"}
    ok(cli("set", "acme", "k", "1", env=env))
    assert ok(cli("get", "acme", "k", "-o", env=env)).out == "1\n"


def test_a_store_path_that_is_a_file_says_so(cli: Runner, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = cli("-s", str(afile), "get", "acme", "k", store=False)
    assert "is a file, not a store directory" in one_line_error(result)


def test_a_read_only_store_is_readable(cli: Runner, cli_env: CLIEnv) -> None:
    ok(cli("set", "acme", "k", "v"))
    ok(cli("set", "acme", "s", "sk-1", "--secret"))
    frozen = _freeze(cli_env.store)
    try:
        got = cli("get", "acme", "k", "-o")
        assert got.code == 0 and got.out == "v\n" and "read-only" in got.err
        assert ok(cli("list", "acme", "--format", "json")).json()[0]["key"] == "k"
        write = cli("set", "acme", "k", "w")
        assert str(cli_env.store) in one_line_error(write) and "read-only" in write.err
        reveal = cli("get", "acme", "s", "--reveal")  # a reveal must be audited first: it fails closed
        assert reveal.code == 1 and "read-only" in reveal.err
    finally:
        _thaw(cli_env.store, frozen)


def _freeze(directory: Path) -> str:
    """Make a directory unwritable even for root (the immutable attribute), or by mode otherwise."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(directory)], capture_output=True, check=False).returncode == 0:
            return "chattr"
        pytest.skip("root, and the file system has no immutable attribute: nothing makes a directory read-only")
    directory.chmod(0o500)
    return "chmod"


def _thaw(directory: Path, how: str) -> None:
    if how == "chattr":
        subprocess.run(["chattr", "-i", str(directory)], check=True)
    else:
        directory.chmod(0o700)


def test_doctor_is_unhealthy_while_a_ciphertext_needs_a_key_not_in_the_keyring(cli: Runner, cli_env: CLIEnv) -> None:
    old = generate_key()
    ok(cli("set", "acme", "s", "sk-old", "--secret", env={"LLM_CONFIG_KEY": f"{cli_env.key},{old}"}))
    # seal one more under the old key: it comes first now
    ok(cli("set", "acme", "t", "sk-t", "--secret", env={"LLM_CONFIG_KEY": f"{old},{cli_env.key}"}))
    result = cli("doctor")
    assert result.code == 1 and "cannot be opened" in result.out
    assert ok(cli("doctor", env={"LLM_CONFIG_KEY": f"{cli_env.key},{old}"})).code == 0


def test_rest_messages_say_what_is_wrong(api: httpx.Client, live_server: LiveServer) -> None:
    assert "must be a string" in api.put(f"{C}/acme/k", json={"value": 1, "description": 3}).json()["message"]
    r = api.post("/api/v1/keys", json={"name": "x", "role": "viewer", "expires_days": 0})
    assert r.status_code == 400
    with pytest.raises(ValidationError, match="greater than 0"):
        live_server.manager.create_api_key("x", "viewer", expires_days=0)
    bad_name = api.get(f"{C}/acme/bad name").json()["message"]
    assert "Invalid key" in bad_name and "^[" not in bad_name and "pattern" not in bad_name
    no_separator = api.get(f"{C}/acme/chatbot/openai.model")
    assert no_separator.status_code == 404 and "/api/v1/configs/acme/chatbot/-/openai.model" in \
        no_separator.json()["message"]


def test_cli_messages_say_what_is_wrong(cli: Runner) -> None:
    ok(cli("set", "acme", "v", "1"))
    ok(cli("set", "acme", "v", "2"))
    ok(cli("delete", "acme", "v", "-y"))
    assert "is a deletion" in one_line_error(cli("rollback", "acme", "v", "3", "-y"))


def test_a_405_names_every_method_of_the_path(api: httpx.Client) -> None:
    r = api.put("/api/v1/keys", json={})
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "POST"}


def test_unknown_or_inapplicable_query_parameters_are_400_and_lose_nothing(api: httpx.Client) -> None:
    api.put(f"{C}/acme/k", json={"value": 1})
    api.put(f"{C}/acme/k", json={"value": 2})
    r = api.delete(f"{C}/acme/k", params={"version": 1})
    assert r.status_code == 400 and "version" in r.json()["message"]
    assert api.get(f"{C}/acme/k").json()["value"] == 2  # the live value survived
    assert api.get(f"{C}/acme/k", params={"env": "dev", "bogus": "1"}).status_code == 400
    assert api.get(f"{C}/acme/k?env=dev&env=prod").status_code == 400  # given twice: ambiguous
    assert api.get("/health", params={"x": "1"}).status_code == 400


# ----------------------------------------------------------------------------- serve

def _serve(cli: Runner, *args: str, env: dict[str, str] | None = None) -> Result:
    return cli("serve", *args, env=env)


def test_serve_refuses_a_busy_port_in_one_line(cli: Runner) -> None:
    ok(cli("init"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve(cli, "--port", str(port))
    assert f"Port {port} on 127.0.0.1 is already in use" in one_line_error(result)
    assert "listening" not in result.err


def test_serve_refuses_swapped_tls_material_in_one_line(cli: Runner, tmp_path: Path) -> None:
    from tests.e2e.test_rest import _self_signed

    cert, key = _self_signed(tmp_path)
    ok(cli("init"))
    result = _serve(cli, "--port", "0", "--tls-cert", str(key), "--tls-key", str(cert))
    assert "do not load together" in one_line_error(result)


def test_serve_refuses_to_start_without_a_key_that_opens_the_store(cli: Runner) -> None:
    ok(cli("set", "acme", "k", "1"))
    assert "--key-file, LLM_CONFIG_KEY" in one_line_error(cli("serve", "--port", "0", with_key=False))
    wrong = cli("serve", "--port", "0", env={"LLM_CONFIG_KEY": generate_key()})
    assert wrong.code == 1 and "listening" not in wrong.err
    assert wrong.err.splitlines()[-1].startswith("error: serve needs the master key: the encryption key does "
                                                 "not open this store")


def test_the_cli_script_is_the_one_under_test() -> None:
    assert SCRIPT.exists()


def test_doctor_warns_while_the_first_admin_key_file_exists(cli: Runner, cli_env: CLIEnv) -> None:
    ok(cli("set", "acme", "k", "1"))
    assert "initial_admin_key" not in ok(cli("doctor")).out
    (cli_env.store / "initial-admin-key").write_text("llmc_x\n")
    report = cli("doctor", "--format", "json")
    check = json.loads(report.out)["checks"]["initial_admin_key"]
    assert report.code == 0 and check["status"] == "degraded" and "delete the file" in check["message"]
