"""`llm-config rotate-key (--new-key-file F | --new-key B64)` (SPEC §2) from the command line: exit codes,
one-line errors, a summary naming key ids and counts only, and afterwards a store the new key alone opens."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from llm_config.crypto.aead import key_id
from llm_config.crypto.keys import generate_key
from tests.e2e.test_cli import SCRIPT, CLIEnv, Result

SECRET = "sk-cli-rotation-secret-77"


def _kid(key: str) -> str:
    return key_id(base64.b64decode(key))


def _run(env: CLIEnv, store: str, *args: str, keys: str | None = None, reveals: bool = False) -> Result:
    extra = {"LLM_CONFIG_KEY": keys} if keys is not None else None
    proc = subprocess.run([str(SCRIPT), "-s", store, *args], input=b"", capture_output=True,
                          env=env.environ(with_key=keys is None or bool(keys), extra=extra), timeout=120, check=False)
    result = Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
    assert "Traceback" not in result.err, result.err
    assert SECRET not in (result.err if reveals else result.out + result.err)
    return result


@pytest.fixture
def env(tmp_path: Path) -> CLIEnv:
    (tmp_path / "xdg").mkdir()
    (tmp_path / "home").mkdir()
    return CLIEnv(store=tmp_path / "store", key=generate_key(), xdg=tmp_path / "xdg", home=tmp_path / "home")


def _key_file(path: Path, key: str, mode: int = 0o600) -> Path:
    path.write_text(key + "\n")
    path.chmod(mode)
    return path


def test_rotate_key_from_a_file_then_the_new_key_alone_opens_the_store(
    env: CLIEnv, store_target: str, tmp_path: Path,
) -> None:
    for i in range(3):
        assert _run(env, store_target, "set", "app", "api_key", f"{SECRET}-{i}", "--secret").code == 0
    assert _run(env, store_target, "set", "app", "model", "gpt-4o").code == 0
    new = generate_key()
    done = _run(env, store_target, "rotate-key", "--new-key-file", str(_key_file(tmp_path / "new.key", new)),
                "--batch-size", "2")
    assert done.code == 0, done.err
    assert f"re-sealed 3 secret version(s) under key id {_kid(new)} in 2 batch(es)" in done.out
    assert f"from key id {_kid(env.key)}: 3" in done.out and "instance secret re-sealed" in done.out
    assert new not in done.out + done.err and env.key not in done.out + done.err
    got = _run(env, store_target, "get", "app", "api_key", "--reveal", "-o", keys=new, reveals=True)
    assert got.code == 0 and got.out == f"{SECRET}-2\n"
    old_version = _run(env, store_target, "get", "app", "api_key", "--version", "1", "--reveal", "-o", keys=new,
                       reveals=True)
    assert old_version.code == 0 and old_version.out == f"{SECRET}-0\n"
    doctor = _run(env, store_target, "doctor", keys=new)
    assert doctor.code == 0, doctor.out
    assert f"key id {_kid(new)} seals 4 ciphertexts" in doctor.out
    assert f"key id {_kid(env.key)} seals" not in doctor.out  # the old key seals nothing: it can go
    again = _run(env, store_target, "rotate-key", "--new-key", new, "--format", "json", keys=new)
    assert again.code == 0, again.err
    assert json.loads(again.out) | {"by_key_id": {}} == {
        "new_key_id": _kid(new), "resealed": 0, "by_key_id": {}, "instance_secret": False, "batches": 0,
        "passes": 1, "changed": 0, "remaining": 0, "problems": [], "complete": True}


def test_bad_input_is_exit_1_with_one_line(env: CLIEnv, tmp_path: Path) -> None:
    store = str(env.store)
    assert _run(env, store, "set", "app", "api_key", SECRET, "--secret").code == 0
    new = generate_key()
    cases = [
        ((), "exactly one of --new-key-file FILE or --new-key B64"),
        (("--new-key", new, "--new-key-file", str(_key_file(tmp_path / "a.key", new))), "exactly one of"),
        (("--new-key", "not-base64!"), "Invalid encryption key: not base64"),
        (("--new-key", base64.b64encode(b"\x07" * 32).decode()), "weak key"),
        (("--new-key-file", str(_key_file(tmp_path / "open.key", new, 0o644))), "chmod 600"),
        (("--new-key-file", str(tmp_path / "missing.key")), "Key file not found"),
        (("--new-key-file", str(_key_file(tmp_path / "two.key", f"{new},{generate_key()}"))), "several keys"),
    ]
    for args, message in cases:
        result = _run(env, store, "rotate-key", *args)
        assert result.code == 1, (args, result)
        assert result.err.startswith("error: ") and message in result.err, (args, result.err)
        assert result.err.count("\n") == 1 and new not in result.err
    no_key = _run(env, store, "rotate-key", "--new-key", new, keys="")
    assert no_key.code == 1 and "needs the master key" in no_key.err
    missing = _run(env, str(tmp_path / "nowhere"), "rotate-key", "--new-key", new)
    assert missing.code == 1 and "nowhere" in missing.err
    assert _run(env, store, "get", "app", "api_key", "--reveal", "-o", reveals=True).out == SECRET + "\n"


def test_values_no_key_of_ours_opens_are_reported_and_exit_1(env: CLIEnv) -> None:
    store = str(env.store)
    other, new = generate_key(), generate_key()
    assert _run(env, store, "set", "app", "mine", SECRET, "--secret").code == 0
    assert _run(env, store, "set", "app", "theirs", SECRET, "--secret", keys=f"{other},{env.key}").code == 0
    result = _run(env, store, "rotate-key", "--new-key", new)
    assert result.code == 1
    assert "re-sealed 1 secret version(s)" in result.out
    assert "1 value(s) could not be re-sealed, so the old key must stay" in result.err
    assert f"sealed by key id {_kid(other)}" in result.err
