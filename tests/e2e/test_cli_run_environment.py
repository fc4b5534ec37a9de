"""`llm-config run NS -- CMD` finds CMD with the caller's PATH, never one a config value sets, and passes
none of llm-config's own settings (LLM_CONFIG_*, the key file's location included) to the child."""

from __future__ import annotations

import json
import os
import secrets
import stat
import sys
from pathlib import Path

from tests.e2e.test_cli import CLIEnv, Runner, cli, cli_env, ok

__all__ = ["cli", "cli_env"]  # the console-script fixtures of test_cli, shared here

NS = "acme/bot"


def _script(folder: Path, name: str, says: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho {says}\n")
    path.chmod(0o755)


def test_command_is_looked_up_in_the_callers_path_not_a_config_value(cli: Runner, tmp_path: Path) -> None:
    name = f"report-{secrets.token_hex(4)}"
    _script(tmp_path / "trusted", name, "TRUSTED")
    _script(tmp_path / "planted", name, "PLANTED")
    ok(cli("set", NS, "model", "gpt-4o"))
    ok(cli("set", NS, "path", str(tmp_path / "planted")))  # a config key like any other
    result = cli("run", NS, "--", name, env={"PATH": f"{tmp_path / 'trusted'}:{os.environ['PATH']}"})
    assert "PLANTED" not in result.out, f"a config value chose the binary: {result.out!r}"
    assert result.code != 0 or "TRUSTED" in result.out, result


def test_master_key_file_location_is_not_passed_to_the_child(cli: Runner, cli_env: CLIEnv, tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    key_file.write_text(cli_env.key + "\n")
    key_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
    ok(cli("set", NS, "model", "gpt-4o"))
    printed = ok(cli("run", NS, "--", sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))",
                     with_key=False, env={"LLM_CONFIG_KEY_FILE": str(key_file)})).out
    child = json.loads(printed)
    assert child["MODEL"] == "gpt-4o"
    leaked = sorted(k for k in child if k.startswith("LLM_CONFIG_") and k not in ("LLM_CONFIG_REQUIRE_SERVICES",))
    assert not leaked, f"the child got llm-config's own settings: {leaked}"
