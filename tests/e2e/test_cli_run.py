"""`llm-config run NS [-e ENV] [--only P] [--prefix P] -- CMD…` (SPEC §4): the real console script, locally and
with `--server`, running real commands — the `openai` SDK among them — with the namespace as environment."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LiveServer
from tests.e2e.test_cli import SCRIPT, CLIEnv, Result, Runner, cli, cli_env, ok

__all__ = ["cli", "cli_env"]  # the console-script fixtures of test_cli, shared here

NS = "acme/bot"
PY = sys.executable
PRINT_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


def fails(result: Result, code: int = 1) -> str:
    """The one stderr line of a refused run (nothing on stdout: nothing ran)."""
    assert result.code == code, f"exit {result.code} (wanted {code}): {result.out} {result.err}"
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


def child_env(cli: Runner, *args: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the child of `run NS ARGS… -- python -c PRINT_ENV` sees."""
    data = json.loads(ok(cli("run", NS, *args, "--", PY, "-c", PRINT_ENV, env=env)).out)
    assert isinstance(data, dict)
    return data


def canary() -> str:
    return f"sk-test-{secrets.token_hex(16)}"


# ---------------------------------------------------------------------------------- the real openai SDK


class _FakeOpenAI(BaseHTTPRequestHandler):
    """POST /v1/chat/completions → a minimal chat.completion; records each request's path and Authorization."""

    seen: list[tuple[str, str | None, dict[str, Any]]]

    def do_POST(self) -> None:  # http.server's name
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        self.server.seen.append((self.path, self.headers.get("Authorization"), body))  # type: ignore[attr-defined]
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        answer = json.dumps({
            "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hello from the fake model"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@pytest.fixture
def fake_openai() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


OPENAI_SCRIPT = """
import openai
client = openai.OpenAI()
resp = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
print(resp.choices[0].message.content)
"""


def test_openai_sdk_gets_its_key_and_base_url_from_the_namespace(
    cli: Runner, fake_openai: ThreadingHTTPServer,
) -> None:
    pytest.importorskip("openai")
    key = canary()
    port = fake_openai.server_address[1]
    ok(cli("set", NS, "openai.api_key", key, "-e", "production", "--secret"))
    ok(cli("set", NS, "openai.base_url", f"http://127.0.0.1:{port}/v1", "-e", "production"))
    ok(cli("set", NS, "openai.base_url", "http://127.0.0.1:9/wrong", "-e", "base"))  # production's wins
    # nothing of the caller's OpenAI settings reaches the child: ours override them
    env = {"OPENAI_API_KEY": "sk-callers-own", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    result = ok(cli("run", NS, "-e", "production", "--", PY, "-c", OPENAI_SCRIPT, env=env))
    assert result.out == "hello from the fake model\n"
    seen = fake_openai.seen  # type: ignore[attr-defined]
    assert [(path, auth) for path, auth, _ in seen] == [("/v1/chat/completions", f"Bearer {key}")]
    assert seen[0][2]["model"] == "gpt-4o-mini"
    assert key not in result.out + result.err


# ---------------------------------------------------------------------------------- exit codes and signals


def test_exit_status_passes_through(cli: Runner) -> None:
    ok(cli("set", NS, "model", "gpt-4o", "-e", "base"))
    assert cli("run", NS, "--", "sh", "-c", "exit 7").code == 7
    assert cli("run", NS, "--", "sh", "-c", "exit 0").code == 0
    assert cli("run", NS, "--", "false").code == 1


def test_a_signal_that_ends_the_command_ends_llm_config_alike(cli: Runner) -> None:
    ok(cli("set", NS, "model", "gpt-4o", "-e", "base"))
    assert cli("run", NS, "--", "sh", "-c", "kill -TERM $$").code == -signal.SIGTERM
    assert cli("run", NS, "--", "sh", "-c", "kill -KILL $$").code == -signal.SIGKILL


def test_the_command_is_the_llm_config_process_and_takes_its_signals(cli: Runner, cli_env: CLIEnv) -> None:
    ok(cli("set", NS, "model", "gpt-4o", "-e", "base"))
    script = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
    proc = subprocess.Popen([str(SCRIPT), "-s", str(cli_env.store), "run", NS, "--", PY, "-c", script],
                            env=cli_env.environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        assert pid == proc.pid  # exec: the same process, no parent holding the secrets
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_sigpipe_is_not_left_ignored_for_the_command(cli: Runner) -> None:
    # Python ignores SIGPIPE; an exec'd `yes | head -1` must still die of SIGPIPE, not loop on EPIPE
    ok(cli("set", NS, "model", "gpt-4o", "-e", "base"))
    result = ok(cli("run", NS, "--", "sh", "-c", "yes | head -n 1; grep -E '^SigIgn' /proc/self/status || true"))
    assert result.out.startswith("y\n")
    ignored = [line for line in result.out.splitlines() if line.startswith("SigIgn")]
    if ignored:  # Linux: neither SIGPIPE (13) nor SIGXFSZ (25) is ignored in the child
        mask = int(ignored[0].split()[1], 16)
        assert not mask & (1 << (signal.SIGPIPE - 1)) and not mask & (1 << (signal.SIGXFSZ - 1))


# ---------------------------------------------------------------------------------- what the command sees


def test_environment_contents(cli: Runner) -> None:
    secret = canary()
    ok(cli("set", NS, "openai.api_key", secret, "-e", "production", "--secret"))
    ok(cli("set", NS, "openai.model", "gpt-4o-mini", "-e", "base"))
    ok(cli("set", NS, "openai.model", "gpt-4o", "-e", "production"))
    ok(cli("set", NS, "temperature", "0.2", "-e", "base"))
    ok(cli("set", NS, "max-tokens", "512", "-e", "base"))
    ok(cli("set", NS, "stop", '["\\n", "END"]', "-e", "base"))
    ok(cli("set", NS, "extra", '{"a": 1, "b": [true, null]}', "-e", "base"))
    ok(cli("set", NS, "flag", "false", "-e", "base"))
    ok(cli("set", NS, "greeting", "hello world\nline two", "-e", "base"))
    ok(cli("set", NS, "staging_only", "x", "-e", "staging"))

    caller = {"KEEP_ME": "kept", "OPENAI_MODEL": "callers-model"}
    seen = child_env(cli, "-e", "prod", env=caller)
    ours = {k: v for k, v in seen.items() if k in {
        "OPENAI_API_KEY", "OPENAI_MODEL", "TEMPERATURE", "MAX_TOKENS", "STOP", "EXTRA", "FLAG", "GREETING"}}
    assert ours == {
        "OPENAI_API_KEY": secret,  # the secret, decrypted for the child
        "OPENAI_MODEL": "gpt-4o",  # production's own value over base's (and over the caller's)
        "TEMPERATURE": "0.2",  # base fallback; non-strings as compact JSON
        "MAX_TOKENS": "512",
        "STOP": '["\\n","END"]',
        "EXTRA": '{"a":1,"b":[true,null]}',
        "FLAG": "false",
        "GREETING": "hello world\nline two",  # strings raw
    }
    assert "STAGING_ONLY" not in seen
    assert seen["KEEP_ME"] == "kept" and seen["PATH"] == os.environ["PATH"]  # the caller's environment is kept

    only = child_env(cli, "-e", "prod", "--only", "openai.")
    assert {k for k in only if k.startswith("OPENAI_")} == {"OPENAI_API_KEY", "OPENAI_MODEL"}
    assert "TEMPERATURE" not in only and only["OPENAI_MODEL"] == "gpt-4o"

    prefixed = child_env(cli, "-e", "prod", "--prefix", "APP_", "--only", "openai.")
    assert prefixed["APP_OPENAI_API_KEY"] == secret and prefixed["APP_OPENAI_MODEL"] == "gpt-4o"
    assert "OPENAI_MODEL" not in prefixed and "APP_TEMPERATURE" not in prefixed

    development = child_env(cli)  # the default environment: development, i.e. base here
    assert development["OPENAI_MODEL"] == "gpt-4o-mini" and "OPENAI_API_KEY" not in development


def test_llm_configs_own_credentials_are_not_passed_on(cli: Runner, cli_env: CLIEnv) -> None:
    ok(cli("set", NS, "model", "gpt-4o", "-e", "base"))
    seen = child_env(cli, env={"LLM_CONFIG_API_KEY": "lcm_not_for_the_child", "LLM_CONFIG_OTHER": "kept"})
    assert "LLM_CONFIG_KEY" not in seen and "LLM_CONFIG_API_KEY" not in seen
    assert cli_env.key not in json.dumps(seen)
    assert seen["LLM_CONFIG_OTHER"] == "kept" and seen["MODEL"] == "gpt-4o"


def test_options_after_the_command_belong_to_the_command(cli: Runner) -> None:
    ok(cli("set", NS, "model", "gpt-4o", "-e", "production"))
    ok(cli("set", NS, "model", "gpt-4o-mini", "-e", "base"))
    # without `--`, the first argument after NS starts CMD: `-e base` is the child's, not ours
    code = "import os, sys; print(os.environ['MODEL'], sys.argv[1:])"
    result = ok(cli("run", NS, "-e", "prod", PY, "-c", code, "-e", "base", "--only", "x"))
    assert result.out == "gpt-4o ['-e', 'base', '--only', 'x']\n"
    assert ok(cli("run", "--env=prod", NS, PY, "-c", code)).out == "gpt-4o []\n"
    assert ok(cli("run", NS, "-eprod", "--", PY, "-c", code, "--")).out == "gpt-4o ['--']\n"


def test_stdin_and_arguments_reach_the_command_untouched(cli: Runner) -> None:
    ok(cli("set", NS, "model", "gpt-4o", "-e", "base"))
    assert ok(cli("run", NS, "--", "cat", stdin="line one\nline two\n")).out == "line one\nline two\n"
    args = ["a b", "", "$HOME", "*", "--", "-e", "prod", "'q'"]
    shown = ok(cli("run", NS, "--", PY, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", *args)).out
    assert json.loads(shown) == args  # no shell: nothing is split, expanded or globbed


# ---------------------------------------------------------------------------------- refusals: nothing runs


def test_collision_is_an_error_naming_both_keys_and_no_value(cli: Runner, tmp_path: Path) -> None:
    secret = canary()
    ok(cli("set", NS, "a.b", secret, "-e", "production", "--secret"))
    ok(cli("set", NS, "a-b", secret + "-plain", "-e", "base"))
    marker = tmp_path / "ran"
    line = fails(cli("run", NS, "-e", "prod", "--", "touch", str(marker)))
    assert line == "error: Keys 'a-b' and 'a.b' both map to A_B"
    assert secret not in line and not marker.exists()
    # --only can leave one of them out
    assert ok(cli("run", NS, "-e", "prod", "--only", "a.", "--", "sh", "-c", 'test "$A_B" = "$0"', secret)).code == 0


def test_invalid_variable_name_is_an_error_naming_the_key(cli: Runner, tmp_path: Path) -> None:
    ok(cli("set", NS, "1abc", "v", "-e", "base"))
    marker = tmp_path / "ran"
    line = fails(cli("run", NS, "--", "touch", str(marker)))
    assert line.startswith("error: Key '1abc' maps to '1ABC', which is not a valid environment variable name")
    assert not marker.exists()
    # a prefix makes it a valid name
    assert ok(cli("run", NS, "--prefix", "APP_", "--", "sh", "-c", 'printf %s "$APP_1ABC"')).out == "v"
    # a prefix that cannot start a name is a usage error
    assert cli("run", NS, "--prefix", "9", "--", "true").code == 2
    assert cli("run", NS, "--prefix", "A-", "--", "true").code == 2


def test_a_value_with_a_nul_byte_is_an_error_naming_the_key(cli: Runner, tmp_path: Path) -> None:
    secret = canary()
    ok(cli("set", NS, "token", json.dumps(secret + "\x00tail"), "-e", "base", "--secret"))
    marker = tmp_path / "ran"
    line = fails(cli("run", NS, "--", "touch", str(marker)))
    assert line == "error: Key 'token' cannot be an environment variable: its value holds a NUL byte"
    assert secret not in line and not marker.exists()


def test_a_command_that_is_not_found_or_not_executable(cli: Runner, tmp_path: Path) -> None:
    secret = canary()
    ok(cli("set", NS, "api_key", secret, "-e", "base", "--secret"))
    missing = cli("run", NS, "--", "no-such-command-llm-config-test", "arg")
    assert (missing.code, missing.out) == (127, "")
    assert missing.err == "llm-config run: no-such-command-llm-config-test: command not found\n"
    path = cli("run", NS, "--", str(tmp_path / "nope"))
    assert (path.code, path.err) == (127, f"llm-config run: {tmp_path / 'nope'}: No such file or directory\n")
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\necho ran\n")
    plain.chmod(0o644)
    denied = cli("run", NS, "--", str(plain))
    assert (denied.code, denied.out) == (126, "")
    assert denied.err.startswith(f"llm-config run: {plain}: ") and secret not in denied.err
    assert cli("run", NS, "--", str(tmp_path)).code == 126  # a directory


def test_missing_command_is_a_usage_error(cli: Runner) -> None:
    ok(cli("set", NS, "model", "gpt-4o", "-e", "base"))
    for args in (("run", NS), ("run", NS, "--"), ("run", NS, "-e", "prod", "--"), ("run",)):
        result = cli(*args)
        assert result.code == 2 and result.out == "", args
    assert cli("run", NS, "--bogus", "--", "true").code == 2


def test_a_namespace_without_values_is_an_error_not_an_empty_run(cli: Runner, tmp_path: Path) -> None:
    ok(cli("set", NS, "model", "gpt-4o", "-e", "staging"))
    marker = tmp_path / "ran"
    assert fails(cli("run", "acme/typo", "-e", "prod", "--", "touch", str(marker))) == \
        "error: No configuration in acme/typo [production]: nothing was run"
    assert fails(cli("run", NS, "-e", "prod", "--", "touch", str(marker))) == \
        "error: No configuration in acme/bot [production]: nothing was run"
    assert fails(cli("run", NS, "-e", "staging", "--only", "openai.", "--", "touch", str(marker))) == \
        "error: No configuration in acme/bot [staging] with keys starting with 'openai.': nothing was run"
    assert not marker.exists()
    assert ok(cli("run", NS, "-e", "staging", "--", "touch", str(marker))).code == 0 and marker.exists()


def test_a_missing_store_or_key_runs_nothing(cli: Runner, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    assert cli("run", NS, "--", "touch", str(marker)).code == 1  # no store yet
    secret = canary()
    ok(cli("set", NS, "api_key", secret, "-e", "base", "--secret"))
    result = cli("run", NS, "--", "touch", str(marker), with_key=False)
    assert result.code == 1 and secret not in result.out + result.err
    assert not marker.exists()


def test_the_run_is_audited_as_a_secret_read(cli: Runner) -> None:
    ok(cli("set", NS, "api_key", canary(), "-e", "base", "--secret"))
    ok(cli("run", NS, "--", "true"))
    events = ok(cli("audit", "list", "--namespace", NS, "--format", "json")).json()
    accessed = [event for event in events if event["type"] == "secret_accessed"]
    assert len(accessed) == 1 and accessed[0]["key"] == "api_key", events


def test_run_has_help_and_stays_lean(cli: Runner, cli_env: CLIEnv) -> None:
    shown = ok(cli("run", "--help", store=False)).out
    assert shown.startswith("Usage: llm-config run [OPTIONS] NAMESPACE [--] CMD [ARG]...")
    assert "Run CMD with NAMESPACE's values as environment variables" in shown
    assert "run" in ok(cli("--help", store=False)).out.split("Commands:", 1)[1].split()
    ok(cli("set", NS, "api_key", canary(), "-e", "base", "--secret"))
    proc = subprocess.run(
        [PY, "-X", "importtime", "-m", "llm_config.cli.main", "-s", str(cli_env.store), "run", NS, "--", "true"],
        capture_output=True, text=True, env=cli_env.environ(), timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert "llm_config" in imported  # the import log did reach stderr before the exec
    assert not imported & {"fastapi", "starlette", "pydantic", "uvicorn", "granian", "httpx", "yaml", "openai"}


# ---------------------------------------------------------------------------------- --server


@pytest.fixture
def remote(make_live_server: Callable[..., LiveServer], tmp_path: Path) -> tuple[LiveServer, Callable[..., Result]]:
    server = make_live_server()
    home = tmp_path / "home"
    (home / "xdg").mkdir(parents=True)

    def run(*args: str, key: str | None = None, extra: dict[str, str] | None = None) -> Result:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CONFIG_")}
        env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / "xdg"), "LLM_CONFIG_SERVER": server.url,
                    "LLM_CONFIG_API_KEY": key or server.admin_key, **(extra or {})})
        proc = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=home,
                              timeout=60, check=False)
        assert "Traceback" not in proc.stderr, proc.stderr
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return server, run


def test_run_against_a_service(remote: tuple[LiveServer, Callable[..., Result]]) -> None:
    server, run = remote
    secret = canary()
    server.manager.set(NS, "openai.api_key", secret, env="production", secret=True)
    server.manager.set(NS, "openai.model", "gpt-4o-mini", env="base")
    code = "import os; print(os.environ['OPENAI_API_KEY'] == os.environ['WANT'], os.environ['OPENAI_MODEL'])"
    result = ok(run("run", NS, "-e", "prod", "--", PY, "-c", code, extra={"WANT": secret}))
    assert result.out == "True gpt-4o-mini\n" and secret not in result.err
    seen = json.loads(ok(run("run", NS, "-e", "prod", "--", PY, "-c", PRINT_ENV)).out)
    assert "LLM_CONFIG_API_KEY" not in seen and server.admin_key not in json.dumps(seen)
    assert run("run", NS, "-e", "prod", "--", "sh", "-c", "exit 9").code == 9
    line = fails(run("run", "acme/typo", "-e", "prod", "--", "true"))
    assert line == "error: No configuration in acme/typo [production]: nothing was run"


def test_a_key_that_cannot_read_secrets_runs_nothing(
    remote: tuple[LiveServer, Callable[..., Result]], tmp_path: Path,
) -> None:
    server, run = remote
    secret = canary()
    server.manager.set(NS, "openai.api_key", secret, env="production", secret=True)
    server.manager.set(NS, "openai.model", "gpt-4o-mini", env="base")
    viewer = server.new_key("viewer")
    marker = tmp_path / "ran"
    result = run("run", NS, "-e", "prod", "--", "touch", str(marker), key=viewer)
    line = fails(result)
    assert line.startswith("error: ") and "ermission" in line, line
    assert secret not in result.out + result.err and not marker.exists()
    # without secrets in reach, a viewer may run: plain values only
    assert ok(run("run", NS, "-e", "dev", "--", "sh", "-c", 'printf %s "$OPENAI_MODEL"', key=viewer)).out \
        == "gpt-4o-mini"
    # a key scoped to another namespace sees nothing here
    other = server.new_key("editor", namespaces=["other"])
    result = run("run", NS, "-e", "prod", "--", "touch", str(marker), key=other)
    assert result.code == 1 and not marker.exists() and secret not in result.out + result.err
