"""`backup`, `restore`, `migrate --to`, `upgrade` and `serve --no-upgrade` from the command line, on every
backend: exit codes, one-line errors, nothing lost, nothing secret on screen."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_cli import SCRIPT, CLIEnv, Result

SECRET = "sk-cli-secret-value-42"


def _run(env: CLIEnv, store: str, *args: str, stdin: bytes | None = None, reveals: bool = False) -> Result:
    proc = subprocess.run([str(SCRIPT), "-s", store, *args], input=stdin or b"", capture_output=True,
                          env=env.environ(), timeout=120, check=False)
    result = Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
    assert "Traceback" not in result.err, result.err
    assert SECRET not in (result.err if reveals else result.out + result.err)
    return result


@pytest.fixture
def env(tmp_path: Path) -> CLIEnv:
    from llm_config.crypto.keys import generate_key

    (tmp_path / "xdg").mkdir()
    (tmp_path / "home").mkdir()
    return CLIEnv(store=tmp_path / "store", key=generate_key(), xdg=tmp_path / "xdg", home=tmp_path / "home")


def test_backup_restore_and_migrate_across_backends(env: CLIEnv, store_target: str, tmp_path: Path) -> None:
    origin = str(tmp_path / "origin")
    assert _run(env, origin, "set", "app", "model", "gpt-4o", "-e", "production").code == 0
    assert _run(env, origin, "set", "app", "api_key", SECRET, "--secret").code == 0
    backup = tmp_path / "store.backup"
    made = _run(env, origin, "backup", str(backup))
    assert made.code == 0, made.err
    assert "2 entries" in made.err and "sha256" in made.err
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    assert SECRET.encode() not in gzip.decompress(backup.read_bytes())

    restored = _run(env, store_target, "restore", str(backup), "--format", "json")
    assert restored.code == 0, restored.err
    assert '"verified": true' in restored.out
    got = _run(env, store_target, "get", "app", "api_key", "--reveal", "-o", reveals=True)
    assert got.code == 0 and got.out == SECRET + "\n"

    again = _run(env, store_target, "restore", str(backup))
    assert again.code == 3 and again.err.startswith("error: The target store is not empty")
    assert _run(env, store_target, "restore", str(backup), "--force", "-y").code == 0

    home = str(tmp_path / "home-again")
    moved = _run(env, store_target, "migrate", "--to", home)
    assert moved.code == 0, moved.err
    assert "verified" in moved.out
    model = _run(env, home, "get", "app", "model", "-e", "production", "-o")
    assert model.out == "gpt-4o\n"


def test_restore_refuses_a_damaged_file_with_one_line(env: CLIEnv, tmp_path: Path) -> None:
    origin = str(tmp_path / "origin")
    _run(env, origin, "set", "app", "k", "v")
    backup = tmp_path / "b.gz"
    assert _run(env, origin, "backup", str(backup)).code == 0
    truncated = tmp_path / "cut.gz"
    truncated.write_bytes(backup.read_bytes()[:-20])
    target = str(tmp_path / "target")
    result = _run(env, target, "restore", str(truncated))
    assert result.code == 1
    assert result.err.count("\n") == 1 and result.err.startswith("error: Backup file refused")
    missing = _run(env, target, "restore", str(tmp_path / "nope.gz"))
    assert missing.code == 1 and "not found" in missing.err
    via_stdin = _run(env, target, "restore", "-", stdin=backup.read_bytes())
    assert via_stdin.code == 0, via_stdin.err


def test_backup_to_stdout_restores(env: CLIEnv, tmp_path: Path) -> None:
    origin = str(tmp_path / "origin")
    _run(env, origin, "set", "app", "k", "v")
    made = subprocess.run([str(SCRIPT), "-s", origin, "backup", "-"], capture_output=True, env=env.environ(),
                          timeout=60, check=True)
    assert made.stdout[:2] == b"\x1f\x8b"  # gzip
    target = str(tmp_path / "target")
    assert _run(env, target, "restore", "-", stdin=made.stdout).code == 0
    assert _run(env, target, "get", "app", "k", "-o").out == "v\n"


def test_upgrade_and_serve_no_upgrade(env: CLIEnv, store_target: str) -> None:
    # a new deployment whose migration Job has not run: replicas started with --no-upgrade refuse to serve
    proc = subprocess.run([str(SCRIPT), "-s", store_target, "serve", "--no-upgrade", "--port", "0"],
                          capture_output=True, text=True, env=env.environ(), timeout=60, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "needs schema migration(s) 1" in proc.stderr and "llm-config upgrade" in proc.stderr
    first = _run(env, store_target, "upgrade")
    assert first.code == 0, first.err
    assert "applied migration(s) 1" in first.out
    second = _run(env, store_target, "upgrade")
    assert second.code == 0 and "up to date" in second.out
