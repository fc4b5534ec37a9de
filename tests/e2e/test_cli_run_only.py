"""`llm-config run` as a user drives it — the real console script on a real
SQLite store, and against a real server with `--server`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import LiveServer, make_live_server
from tests.e2e.test_cli import SCRIPT, CLIEnv, Runner, cli, cli_env, ok

__all__ = ["cli", "cli_env", "make_live_server"]  # the real fixtures, shared here

NS = "acme/bot"
PY = sys.executable


def test_a_key_named_path_does_not_make_the_command_unfindable(cli: Runner) -> None:
    """A key `path` becomes the child's PATH, but the command is found with the caller's PATH (as `env` does);
    a refusal instead must name the key `path` and PATH."""
    ok(cli("set", NS, "path", "/opt/app/bin", "-e", "base"))
    result = cli("run", NS, "-e", "dev", "--", "sh", "-c", 'printf %s "$PATH"')
    if result.code != 0:  # refusing is fine too, if the one line says which key did it
        assert "'path'" in result.err and "PATH" in result.err, f"exit {result.code}: {result.err.strip()}"
    else:
        assert result.out == "/opt/app/bin"


def test_run_only_decrypts_and_audits_only_the_keys_it_passes(cli: Runner) -> None:
    """`run --only openai.` reveals and audits only the keys it passes: a secret outside the selection is
    never decrypted, so no `secret_accessed` event names it."""
    ok(cli("set", NS, "stripe.key", "sk_live_not_for_this_app", "-e", "base", "--secret"))
    ok(cli("set", NS, "openai.model", "gpt-4o-mini", "-e", "base"))
    assert ok(cli("run", NS, "-e", "dev", "--only", "openai.", "--", "sh", "-c",
                  'printf %s "$OPENAI_MODEL"')).out == "gpt-4o-mini"
    events = ok(cli("audit", "list", "--namespace", NS, "--type", "secret_accessed", "--format", "json")).json()
    assert [e["key"] for e in events] == [], events


def test_run_only_with_a_viewer_key_runs_plain_keys(make_live_server: Callable[..., LiveServer],
                                                     tmp_path: Path) -> None:
    """Over `--server`, a viewer's `run --only openai.` runs with the plain keys it selects, although another
    key of the namespace is a secret the viewer may not read."""
    server = make_live_server()
    server.manager.set(NS, "stripe.key", "sk_live_not_for_this_app", env="base", secret=True)
    server.manager.set(NS, "openai.model", "gpt-4o-mini", env="base")
    viewer = server.new_key("viewer")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CONFIG_")}
    env.update({"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "LLM_CONFIG_SERVER": server.url,
                "LLM_CONFIG_API_KEY": viewer})
    proc = subprocess.run([str(SCRIPT), "run", NS, "-e", "prod", "--only", "openai.", "--", "sh", "-c",
                           'printf %s "$OPENAI_MODEL"'], capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "gpt-4o-mini"


def test_run_does_not_hand_the_key_file_location_to_the_child(cli: Runner, cli_env: CLIEnv, tmp_path: Path) -> None:
    """The child gets its namespace's values, not the key: LLM_CONFIG_KEY_FILE is withheld like
    LLM_CONFIG_KEY and LLM_CONFIG_API_KEY."""
    key_file = tmp_path / "master.key"
    key_file.write_text(cli_env.key)
    key_file.chmod(0o600)
    ok(cli("set", NS, "model", "gpt-4o-mini", "-e", "base"))
    out = ok(cli("run", NS, "-e", "dev", "--", PY, "-c",
                 "import os; print(os.environ.get('LLM_CONFIG_KEY_FILE', '-'))",
                 with_key=False, env={"LLM_CONFIG_KEY_FILE": str(key_file)})).out
    assert out.strip() == "-", f"the child was told where the master key is: {out.strip()}"


