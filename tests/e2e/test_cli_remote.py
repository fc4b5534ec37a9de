"""`llm-config --server URL …`: the real console script against a real service (SPEC §4 `--server`, §8).

Each test starts a live server on a fresh store and runs the CLI as a subprocess, remotely
(`LLM_CONFIG_SERVER` + `LLM_CONFIG_API_KEY`, or the `--server` flag) and — to compare — locally on the
very same store (`-s STORE` with its master key).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from llm_config.storage.backup import scan
from tests.e2e.conftest import LiveServer
from tests.e2e.test_cli import SCRIPT, Result

NS = "acme/bot"


@dataclass
class Setup:
    """One live server on `store` (opened with `key`), and where the CLI may keep its files."""

    server: LiveServer
    store: Path
    key: str
    home: Path

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CONFIG_")}
        env["XDG_CONFIG_HOME"] = str(self.home / "xdg")
        env["HOME"] = str(self.home)
        env.update(extra or {})
        return env

    def run(self, *args: str, extra: dict[str, str] | None = None, stdin: str = "") -> Result:
        proc = subprocess.run([str(SCRIPT), *args], input=stdin, capture_output=True, text=True,
                              env=self.environ(extra), cwd=self.home, timeout=60, check=False)
        assert "Traceback" not in proc.stderr, proc.stderr
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def remote(self, *args: str, key: str | None = None, stdin: str = "") -> Result:
        """The command against the service (`LLM_CONFIG_SERVER`), with the admin key unless told otherwise."""
        return self.run(*args, stdin=stdin, extra={"LLM_CONFIG_SERVER": self.server.url,
                                                   "LLM_CONFIG_API_KEY": key or self.server.admin_key})

    def remote_binary(self, *args: str, stdin: bytes = b"") -> tuple[int, bytes, str]:
        """`remote` with binary stdin and stdout (backups): (exit code, stdout, stderr)."""
        proc = subprocess.run([str(SCRIPT), *args], input=stdin, capture_output=True, cwd=self.home, timeout=60,
                              check=False, env=self.environ({"LLM_CONFIG_SERVER": self.server.url,
                                                             "LLM_CONFIG_API_KEY": self.server.admin_key}))
        return proc.returncode, proc.stdout, proc.stderr.decode()

    def local(self, *args: str, stdin: str = "") -> Result:
        """The command on the server's own store, with its master key (no service involved)."""
        return self.run("-s", str(self.store), *args, stdin=stdin, extra={"LLM_CONFIG_KEY": self.key})


@pytest.fixture
def setup(make_live_server: Callable[..., LiveServer], store_dir: Path, key: str, tmp_path: Path) -> Setup:
    home = tmp_path / "home"
    (home / "xdg").mkdir(parents=True)
    return Setup(make_live_server(), store_dir, key, home)


def ok(result: Result) -> Result:
    assert result.code == 0, f"exit {result.code}: {result.err}"
    return result


def fails(result: Result, code: int = 1) -> str:
    """The one error line of a failed command."""
    assert result.code == code, f"exit {result.code} (wanted {code}): {result.out} {result.err}"
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.err
    return lines[0]


# ---------------------------------------------------------------------------------- values


def test_values_round_trip_with_the_same_output_as_on_the_store(setup: Setup) -> None:
    remote, local = setup.remote, setup.local
    assert ok(remote("set", NS, "model", "gpt-4o", "-e", "prod", "--description", "the model", "--tag", "llm",
                     "--message", "first")).out == "version 1\n"
    assert ok(remote("set", NS, "model", "gpt-4o-mini", "-e", "prod", "--expect-version", "1")).out == "version 2\n"
    written = ok(remote("set", NS, "temperature", "0.2", "-e", "base", "--format", "json")).json()
    assert written["value"] == 0.2 and written["environment"] == "base" and written["version"] == 1
    ok(remote("set", NS, "api_key", "-", "-e", "prod", "--secret", stdin="sk-live-123\n"))
    ok(remote("set", "acme/other", "n", "-1"))

    reads = [
        ("get", NS, "model", "-e", "prod"),
        ("get", NS, "model", "-e", "prod", "--format", "json"),
        ("get", NS, "model", "-e", "prod", "--format", "yaml"),
        ("get", NS, "model", "-e", "prod", "--version", "1", "--format", "json"),
        ("get", NS, "temperature", "-e", "prod", "-o"),
        ("get", NS, "temperature", "-e", "prod", "-o", "--format", "json"),
        ("get", NS, "api_key", "-e", "prod"),
        ("get", NS, "api_key", "-e", "prod", "--format", "json"),
        ("list", NS, "-e", "prod"),
        ("list", NS, "-e", "prod", "--format", "json"),
        ("list", "acme", "--recursive", "--format", "yaml"),
        ("namespaces",),
        ("namespaces", "--prefix", "acme/o", "--format", "json"),
        ("history", NS, "model", "-e", "prod"),
        ("history", NS, "model", "-e", "prod", "--format", "json"),
        ("history", NS, "model", "-e", "prod", "--limit", "1", "--format", "json"),
    ]
    for args in reads:
        there, here = remote(*args), local(*args)
        assert (there.code, there.out) == (here.code, here.out), args
        assert there.code == 0, there.err
    assert ok(remote("get", NS, "api_key", "-e", "prod", "--reveal", "-o")).out == "sk-live-123\n"
    assert "sk-live-123" not in remote("get", NS, "api_key", "-e", "prod", "--format", "json").out
    # an empty namespace: nothing on stdout, the same message on stderr
    assert remote("list", "acme/empty").err == local("list", "acme/empty").err == "no values in acme/empty\n"

    rolled = ok(remote("rollback", NS, "model", "1", "-e", "prod", "-y"))
    assert rolled.out == "version 3\n"
    assert ok(local("get", NS, "model", "-e", "prod", "-o")).out == "gpt-4o\n"
    deleted = ok(remote("delete", NS, "model", "-e", "prod", "-y"))
    assert deleted.out == f"deleted {NS}/model [production]: version 4\n"
    assert fails(local("get", NS, "model", "-e", "prod")) == fails(remote("get", NS, "model", "-e", "prod"))
    undeleted = ok(remote("rollback", NS, "model", "3", "-e", "prod", "-y", "--format", "json")).json()
    assert undeleted["version"] == 5 and undeleted["value"] == "gpt-4o"
    history = ok(remote("history", NS, "model", "-e", "prod", "--format", "json")).json()
    assert [h["version"] for h in history] == [5, 4, 3, 2, 1] and history[1]["deleted"] is True
    assert history[0]["created_by"] == setup.server.admin_actor  # the service's actor: the key


def test_the_server_flag_works_like_the_environment_variable(setup: Setup) -> None:
    env = {"LLM_CONFIG_API_KEY": setup.server.admin_key}
    assert ok(setup.run("--server", setup.server.url, "set", NS, "k", "v", extra=env)).out == "version 1\n"
    assert ok(setup.run("--server", setup.server.url, "get", NS, "k", "-o", extra=env)).out == "v\n"
    assert ok(setup.local("get", NS, "k", "-o")).out == "v\n"


def test_rollback_of_a_secret_to_a_plain_version_needs_no_secret(setup: Setup) -> None:
    ok(setup.remote("set", NS, "token", "plain"))
    ok(setup.remote("set", NS, "token", "sealed", "--secret"))
    refused = fails(setup.remote("rollback", NS, "token", "1", "-y"))
    assert refused == fails(setup.local("rollback", NS, "token", "1", "-y"))
    assert ok(setup.remote("rollback", NS, "token", "1", "-y", "--no-secret")).out == "version 3\n"
    assert ok(setup.local("get", NS, "token", "-o")).out == "plain\n"


def test_errors_keep_their_exit_codes_and_words(setup: Setup) -> None:
    ok(setup.remote("set", NS, "k", "1"))
    conflict = fails(setup.remote("set", NS, "k", "2", "--expect-version", "7"), 3)
    assert "version" in conflict.lower()
    assert fails(setup.remote("set", NS, "new", "2", "--expect-version", "1"), 3)
    missing = fails(setup.remote("get", NS, "nope"))
    assert missing == fails(setup.local("get", NS, "nope")) and "not found" in missing.lower()
    assert fails(setup.remote("delete", NS, "nope", "-y")) == fails(setup.local("delete", NS, "nope", "-y"))
    assert fails(setup.remote("get", NS, "k", "--version", "9")) == fails(setup.local("get", NS, "k", "--version", "9"))
    # names are checked before anything is sent, with the local words
    assert fails(setup.remote("get", "bad ns", "k")) == fails(setup.local("get", "bad ns", "k"))
    assert fails(setup.remote("get", NS, "k", "-e", "mars")) == fails(setup.local("get", NS, "k", "-e", "mars"))
    assert setup.remote("get", NS, "k", "--format", "xml").code == 2  # usage errors stay 2


def test_a_viewer_key_cannot_write(setup: Setup) -> None:
    ok(setup.remote("set", NS, "k", "1"))
    viewer = setup.server.new_key("viewer")
    assert ok(setup.remote("get", NS, "k", "-o", key=viewer)).out == "1\n"
    refused = fails(setup.remote("set", NS, "k", "2", key=viewer))
    assert "permission" in refused.lower() or "not allowed" in refused.lower(), refused
    assert viewer not in refused
    assert fails(setup.remote("keys", "list", key=viewer))
    assert ok(setup.local("get", NS, "k", "-o")).out == "1\n"


def test_a_bad_or_missing_api_key_is_one_clear_line_that_never_shows_the_key(setup: Setup) -> None:
    bad = "lcm_" + "x" * 40
    result = setup.remote("get", NS, "k", key=bad)
    line = fails(result)
    assert bad not in result.out + result.err
    assert "auth" in line.lower() or "api key" in line.lower(), line
    missing = setup.run("get", NS, "k", extra={"LLM_CONFIG_SERVER": setup.server.url})
    assert fails(missing) == "error: --server needs an API key: set LLM_CONFIG_API_KEY"
    unreachable = setup.run("--server", "http://127.0.0.1:1", "get", NS, "k",
                            extra={"LLM_CONFIG_API_KEY": setup.server.admin_key})
    assert "cannot be reached" in fails(unreachable)
    assert setup.server.admin_key not in unreachable.out + unreachable.err
    no_url = setup.run("--server", "ftp://example.com", "get", NS, "k", extra={"LLM_CONFIG_API_KEY": bad})
    assert fails(no_url).startswith("error: Invalid --server URL") and bad not in no_url.err


# ---------------------------------------------------------------------------------- export, import


def test_export_and_import_round_trip(setup: Setup, tmp_path: Path) -> None:
    ok(setup.remote("set", NS, "model", "gpt-4o", "-e", "prod"))
    ok(setup.remote("set", NS, "limits", '{"rpm": 60}', "-e", "prod"))
    ok(setup.remote("set", NS, "api_key", "sk-1", "-e", "prod", "--secret"))
    for fmt in ("json", "yaml", "dotenv"):
        for reveal in ((), ("--reveal",)):
            args = ("export", NS, "-e", "prod", "--format", fmt, *reveal)
            assert ok(setup.remote(*args)).out == ok(setup.local(*args)).out, args
    document = tmp_path / "prod.json"
    assert ok(setup.remote("export", NS, "-e", "prod", "--reveal", "-o", str(document))).err == \
        f"exported {NS} to {document}\n"
    dry = ok(setup.remote("import", NS, str(document), "-e", "staging", "--dry-run"))
    assert dry.out.splitlines()[0] == "created:   api_key, limits, model" and "dry run" in dry.err
    assert fails(setup.remote("get", NS, "model", "-e", "staging"))
    assert ok(setup.remote("import", NS, str(document), "-e", "staging")).out.splitlines() == [
        "created:   api_key, limits, model", "updated:   -", "unchanged: -", "deleted:   -"]
    again = ok(setup.remote("import", NS, "-", "-e", "staging", stdin=document.read_text()))
    assert again.out.splitlines()[2] == "unchanged: api_key, limits, model"
    assert ok(setup.local("get", NS, "api_key", "-e", "staging", "--reveal", "-o")).out == "sk-1\n"
    yaml_doc = ok(setup.remote("export", NS, "-e", "prod", "--format", "yaml")).out
    pruned = ok(setup.remote("import", NS, "-", "-e", "staging", "--prune", "-y",
                             stdin=yaml_doc.replace("model: gpt-4o\n", "")))
    assert pruned.out.splitlines()[3] == "deleted:   model"  # secrets kept: the document has no secrets section
    bad = setup.remote("import", NS, "-", stdin='{"values": {"k": NaN}}')
    assert fails(bad) == fails(setup.local("import", NS, "-", stdin='{"values": {"k": NaN}}'))


# ---------------------------------------------------------------------------------- keys, audit


def test_keys_create_list_and_revoke(setup: Setup) -> None:
    made = ok(setup.remote("keys", "create", "--name", "ci", "--role", "editor", "--namespace", "acme",
                           "--environment", "prod", "--expires", "2", "--format", "json")).json()
    assert set(made) == {"id", "name", "role", "namespaces", "environments", "expires_at", "key"}
    assert (made["name"], made["role"], made["namespaces"], made["environments"]) == \
        ("ci", "editor", ["acme"], ["production"])
    text = ok(setup.remote("keys", "create", "--name", "ops", "--role", "viewer"))
    assert text.out.strip() and text.out.strip() != setup.server.admin_key
    assert text.err.startswith("created key_") and "'ops' (viewer; all namespaces; all environments)" in text.err
    assert ok(setup.remote("set", NS, "k", "1", "-e", "prod", key=made["key"])).out == "version 1\n"

    listed = ok(setup.remote("keys", "list", "--format", "json")).json()
    assert listed == ok(setup.local("keys", "list", "--format", "json")).json()
    assert {k["name"] for k in listed} >= {"ci", "ops"}
    assert all("key" not in k and "key_hash" not in k for k in listed)
    assert ok(setup.remote("keys", "list")).out == ok(setup.local("keys", "list")).out

    revoked = ok(setup.remote("keys", "revoke", made["id"]))
    assert revoked.err == f"revoked {made['id']} 'ci'\n"
    time.sleep(1.1)  # a revocation reaches every worker within a second
    line = fails(setup.remote("get", NS, "k", "-e", "prod", key=made["key"]))
    assert made["key"] not in line
    status = {k["id"]: k["revoked_at"] for k in ok(setup.remote("keys", "list", "--format", "json")).json()}
    assert status[made["id"]] is not None
    assert fails(setup.remote("keys", "revoke", "key_0000000000000000")) == \
        fails(setup.local("keys", "revoke", "key_0000000000000000"))
    # a key may revoke itself (and then list nothing more): the command still says what it revoked
    own = ok(setup.remote("keys", "create", "--name", "self", "--role", "admin", "--format", "json")).json()
    assert ok(setup.remote("keys", "revoke", own["id"], key=own["key"])).err == f"revoked {own['id']} 'self'\n"


def test_audit_list_verify_head_and_export(setup: Setup) -> None:
    ok(setup.remote("set", NS, "k", "1"))
    ok(setup.remote("set", NS, "k", "2"))
    ok(setup.remote("delete", NS, "k", "-y"))
    head = ok(setup.remote("audit", "head")).out.strip()
    assert head == ok(setup.local("audit", "head")).out.strip()
    seq = int(head.split(":")[0])

    there = ok(setup.remote("audit", "list", "--format", "json")).json()
    here = ok(setup.local("audit", "list", "--format", "json")).json()
    assert there == here[:len(there)] and there[-1]["seq"] >= seq
    assert [e["type"] for e in there if e["namespace"] == NS] == ["config_created", "config_updated", "config_deleted"]
    filtered = ["audit", "list", "--namespace", NS, "--type", "config_updated", "--limit", "1"]
    assert ok(setup.remote(*filtered)).out == ok(setup.local(*filtered)).out
    assert len(ok(setup.remote(*filtered, "--format", "json")).json()) == 1
    user = ["audit", "list", "--user", setup.server.admin_actor, "--since", "2000-01-01", "--format", "json"]
    assert ok(setup.remote(*user)).json() == ok(setup.local(*user)).json()[:len(ok(setup.remote(*user)).json())]

    verified = ok(setup.remote("audit", "verify", "--anchor", head))
    assert verified.out.startswith("ok: ") and verified.out.endswith(" events verified\n")
    report = ok(setup.remote("audit", "verify", "--format", "json")).json()
    assert report["ok"] is True and report["problems"] == [] and report["events"] >= seq

    exported = ok(setup.remote("audit", "export")).out.splitlines()
    local_lines = ok(setup.local("audit", "export")).out.splitlines()
    assert exported == local_lines[:len(exported)] and len(exported) >= seq
    assert {"mac", "prev_mac"} <= set(json.loads(exported[0]))

    viewer = setup.server.new_key("viewer")
    assert fails(setup.remote("audit", "list", key=viewer))
    editor = setup.server.new_key("editor", namespaces=["acme"])
    assert fails(setup.remote("audit", "export", key=editor))  # the whole trail: unscoped keys only


# ---------------------------------------------------------------------------------- backup, restore


def test_backup_then_restore_through_the_service(setup: Setup, tmp_path: Path) -> None:
    ok(setup.remote("set", NS, "model", "gpt-4o"))
    ok(setup.remote("set", NS, "api_key", "sk-1", "--secret"))
    backup = tmp_path / "store.backup"
    made = ok(setup.remote("backup", str(backup)))
    with backup.open("rb") as fh:
        info = scan(fh)
    assert made.err == (f"backup of {setup.server.url} written to {backup}: {info.rows['entries']} entries, "
                        f"{info.rows['versions']} versions, {info.rows['api_keys']} API keys, "
                        f"{info.rows['audit_events']} audit events; sha256 {info.sha256}\n")
    assert info.rows["entries"] == 2 and oct(backup.stat().st_mode & 0o777) == "0o600"
    code, streamed, err = setup.remote_binary("backup", "-")
    assert code == 0 and gzip.decompress(streamed).startswith(b'{"format":"llm-config-backup"'), err
    assert err.startswith(f"backup of {setup.server.url} written to -: ")

    ok(setup.remote("set", NS, "model", "changed"))
    ok(setup.remote("set", NS, "later", "1"))
    not_empty = fails(setup.remote("restore", str(backup), "-y"), 3)
    assert "not empty" in not_empty
    restored = ok(setup.remote("restore", str(backup), "--force", "-y"))
    assert restored.out == "audit verify: ok\n"
    assert restored.err.startswith(f"restored 2 entries, {info.rows['versions']} versions, ")
    assert f"from {backup} into {setup.server.url}; new epoch " in restored.err
    assert ok(setup.remote("get", NS, "model", "-o")).out == "gpt-4o\n"
    assert fails(setup.remote("get", NS, "later"))
    assert ok(setup.remote("get", NS, "api_key", "--reveal", "-o")).out == "sk-1\n"


def test_restore_from_stdin_as_json_and_a_damaged_file(setup: Setup, tmp_path: Path) -> None:
    ok(setup.remote("set", NS, "model", "gpt-4o"))
    backup = tmp_path / "b.backup"
    ok(setup.remote("backup", str(backup)))
    code, out, err = setup.remote_binary("restore", "-", "--force", "--format", "json", stdin=backup.read_bytes())
    assert code == 0, err
    summary = json.loads(out)
    assert summary["verified"] is True and summary["rows"]["entries"] == 1 and summary["problems"] == []
    damaged = tmp_path / "damaged.backup"
    damaged.write_bytes(backup.read_bytes()[:-20])
    line = fails(setup.remote("restore", str(damaged), "--force", "-y"))
    assert line.startswith("error: Backup file refused: ") and "nothing was restored" in line


# ---------------------------------------------------------------------------------- doctor, refusals


def test_doctor_reports_the_service_health(setup: Setup) -> None:
    report = ok(setup.remote("doctor"))
    assert report.out.startswith("status: healthy\n")
    lines = report.out.splitlines()
    assert lines[1].split() == ["CHECK", "STATUS", "MESSAGE"]
    assert any(line.startswith("storage ") for line in lines) and "key id " in report.out
    doc = ok(setup.remote("doctor", "--format", "json")).json()
    assert doc["status"] == "healthy" and doc["service"] == "llm-config-manager"
    assert all(isinstance(check["message"], str) for check in doc["checks"].values())
    viewer = setup.server.new_key("viewer")
    plain = ok(setup.remote("doctor", key=viewer))
    assert plain.out.startswith("status: healthy\n") and "(details need an API key with system:read)" in plain.out


@pytest.mark.parametrize("args", [
    ("init",),
    ("purge", NS, "k", "--version", "1", "-y"),
    ("migrate", "--to", "sqlite:///elsewhere"),
    ("upgrade",),
    ("rotate-key", "--new-key-file", "/nonexistent/key"),
    ("serve", "--port", "0"),
])
def test_commands_without_a_rest_route_are_refused(setup: Setup, args: tuple[str, ...]) -> None:
    line = fails(setup.remote(*args))
    assert line == f"error: '{args[0]}' has no REST route: run it against the store (without --server)"
    assert not (setup.home / ".llm-config").exists()


def test_keygen_needs_no_store_or_service(setup: Setup) -> None:
    made = ok(setup.remote("keygen")).out.strip()
    assert len(made) == 44 and made != setup.key


# ---------------------------------------------------------------------------------- watch


class Lines:
    """A subprocess's stdout lines, read on a thread."""

    def __init__(self, stream: IO[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.queue.put(line.rstrip("\n"))

    def next(self, timeout: float) -> str | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None


@dataclass
class Watcher:
    proc: subprocess.Popen[str]
    lines: Lines
    stderr: str = ""


@contextlib.contextmanager
def watching(setup: Setup, *args: str, extra: dict[str, str]) -> Iterator[Watcher]:
    """`llm-config ARGS…` running in the background; interrupted (Ctrl-C) at the end, its stderr kept."""
    # as from a terminal, where Ctrl-C arrives: a test run launched in the background (`cmd &` in a script, as
    # CI may launch it) hands its children SIGINT ignored, and an ignored signal stays ignored across exec
    shim = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    proc = subprocess.Popen([sys.executable, "-c", shim, str(SCRIPT), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=setup.environ(extra), cwd=setup.home)
    assert proc.stdout is not None and proc.stderr is not None
    watcher = Watcher(proc, Lines(proc.stdout))
    try:
        yield watcher
    finally:
        stuck = ""
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                stuck = _why_still_running(proc.pid)
                proc.kill()
                proc.wait()
        watcher.lines.thread.join(timeout=5)
        watcher.stderr = proc.stderr.read() + stuck
        proc.stdout.close()
        proc.stderr.close()


def _why_still_running(pid: int) -> str:
    """What a process that outlived SIGINT was doing: its signal masks, its kernel wait and its Python stacks
    (py-spy, when installed) — for the assertion message."""
    lines = ["\n[still running 15 s after SIGINT]"]
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        lines += [line for line in status.splitlines() if line.startswith(("State", "Sig", "Shd"))]
        lines.append("wchan: " + Path(f"/proc/{pid}/wchan").read_text())
    except OSError as exc:
        lines.append(f"/proc: {exc}")
    spy = shutil.which("py-spy")
    if spy:
        dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30,
                              check=False)
        lines.append(dump.stdout + dump.stderr)
    return "\n".join(lines)


def wait_until_watching(lines: Lines, write: Callable[[int], object]) -> None:
    """A stream shows only what happens after it starts: write until the watcher prints something."""
    deadline = time.monotonic() + 30
    n = 0
    while time.monotonic() < deadline:
        n += 1
        write(n)
        line = lines.next(0.3)
        if line is not None:
            while lines.next(0.5) is not None:  # the probes still in flight
                pass
            return
    raise AssertionError("the watcher printed nothing")


def next_line(lines: Lines, wanted: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = lines.next(0.2)
        if line is not None and wanted in line:
            return line
    raise AssertionError(f"no line with {wanted!r}")


def test_watch_streams_changes_from_the_service(setup: Setup) -> None:
    manager = setup.server.manager
    extra = {"LLM_CONFIG_SERVER": setup.server.url, "LLM_CONFIG_API_KEY": setup.server.admin_key}
    with watching(setup, "watch", NS, "-e", "prod", extra=extra) as watcher:
        lines = watcher.lines
        wait_until_watching(lines, lambda n: manager.set(NS, "probe", n, env="production"))
        ok(setup.remote("set", NS, "model", "gpt-4o", "-e", "prod"))
        ok(setup.remote("set", NS, "dev.only", "1", "-e", "dev"))  # another environment: not shown
        ok(setup.remote("delete", NS, "model", "-e", "prod", "-y"))
        first = next_line(lines, "\tmodel\t").split("\t")
        assert first[1:] == ["set", NS, "model", "production", "v1"] and int(first[0]) > 0
        second = next_line(lines, "\tmodel\t").split("\t")
        assert second[1:] == ["delete", NS, "model", "production", "v2"] and int(second[0]) > int(first[0])
        assert watcher.proc.poll() is None
    assert watcher.proc.returncode == 0, watcher.stderr
    assert setup.server.admin_key not in watcher.stderr


def test_watch_follows_a_local_store(setup: Setup) -> None:
    manager = setup.server.manager
    with watching(setup, "-s", str(setup.store), "watch", NS, "--format", "json",
                  extra={"LLM_CONFIG_KEY": setup.key}) as watcher:
        lines = watcher.lines
        wait_until_watching(lines, lambda n: manager.set(NS, "probe", n))
        ok(setup.remote("set", NS, "model", "gpt-4o", "-e", "staging"))
        change = json.loads(next_line(lines, '"key":"model"'))
        assert {k: v for k, v in change.items() if k != "revision"} == {
            "namespace": NS, "key": "model", "environment": "staging", "version": 1, "kind": "set"}
    assert watcher.proc.returncode == 0, watcher.stderr


def test_watch_against_a_service_refuses_local_only_flags(setup: Setup) -> None:
    assert "local store only" in fails(setup.remote("watch", NS, "--since", "3"))

