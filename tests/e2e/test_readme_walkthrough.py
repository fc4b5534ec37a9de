"""The README's walk-through ("Managing an LLM application's configuration") run as written: every
command in its block, in order, with the exit code its comment announces (0 when none), against a fresh
store — so the README cannot drift from what the CLI does."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.e2e.test_cli import CLIEnv, cli_env

__all__ = ["cli_env"]

README = Path(__file__).resolve().parents[2] / "README.md"
_EXIT = re.compile(r"\s+#\s*exit (\d+)\b.*$")
SECRET = "sk-test-walkthrough"


def walkthrough() -> list[tuple[str, int]]:
    """(command, expected exit code) for each command line of the walk-through block."""
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- walkthrough:begin -->", 1)[1].split("<!-- walkthrough:end -->", 1)[0]
    body = block.split("```sh\n", 1)[1].split("```", 1)[0]
    steps = []
    for line in body.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        found = _EXIT.search(line)
        steps.append((_EXIT.sub("", line), int(found.group(1)) if found else 0))
    return steps


def test_every_command_of_the_readme_walkthrough_does_what_it_says(cli_env: CLIEnv, tmp_path: Path) -> None:
    bin_dir = str(Path(sys.executable).parent)
    env = cli_env.environ(extra={"PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
                                 "LLM_CONFIG_STORAGE": str(cli_env.store)})
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    steps = walkthrough()
    assert len(steps) >= 15 and any(cmd.startswith("llm-config run ") for cmd, _ in steps)
    outputs: dict[str, str] = {}
    for command, expected in steps:
        assert shlex.split(command)[0] == "llm-config", command
        proc = subprocess.run(["bash", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == expected, f"{command}\nexit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert SECRET not in proc.stdout + proc.stderr, command  # not even `run` shows it
        assert "Traceback" not in proc.stderr, command
        outputs[command] = proc.stdout + proc.stderr
    said = "\n".join(outputs.values())
    assert "You are a support agent for Acme Corp. Answer in English." in said
    assert "Missing template variables: persona" in said
    assert "llm.params" in said and "/temperature" in said and "not allowed" in said
    assert "https://api.openai.com/v1/" in said
    assert '{"model":"gpt-4o-mini","temperature":0.3,"max_tokens":512}' in said  # promoted as written
    assert "openai-chat" in said
