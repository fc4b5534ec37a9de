"""kill -9 a writer mid-stream and prove the store kept every acknowledged write, and nothing torn.

A write is acknowledged when `ConfigManager.set` has returned: that is the durability promise a
user relies on. After SIGKILLs at arbitrary moments the store must open, hold every acknowledged
(key, version, value), have contiguous versions, a verifying audit chain, and accept new writes.
"""

from __future__ import annotations

import os
import random
import selectors
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_config.core.manager import ConfigManager
from llm_config.errors import NotFoundError

pytestmark = pytest.mark.faults

NS = "crash/test"

_SET_WRITER = """
import sys
from llm_config.core.manager import ConfigManager

store, key, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
with ConfigManager.open(store, encryption_key=key, actor="crash-writer") as manager:
    print("ready", flush=True)
    i = start
    while True:
        entry = manager.set("crash/test", f"k{i % 5}", i)
        print(f"ack {entry.key} {entry.version} {entry.value}", flush=True)
        i += 1
"""

_IMPORT_WRITER = """
import sys
from llm_config.core.manager import ConfigManager

store, key, first = sys.argv[1], sys.argv[2], int(sys.argv[3])
doc = {f"key{j:03d}": {"n": j, "text": "x" * 200} for j in range(200)}
with ConfigManager.open(store, encryption_key=key, actor="crash-importer") as manager:
    print("ready", flush=True)
    n = first
    while True:
        print(f"begin imp{n}", flush=True)
        manager.import_(f"crash/imp{n}", doc)
        print(f"done imp{n}", flush=True)
        n += 1
"""


def _run_until_killed(
    script: Path, args: list[str], *, max_lines: int | None, delay: float, timeout: float = 60.0
) -> list[str]:
    """Start a writer, read its complete stdout lines, SIGKILL it after `max_lines` lines or `delay`
    seconds from its 'ready' line (whichever comes first); return every complete line it printed."""
    err_path = script.with_suffix(".stderr")
    with err_path.open("wb") as err_file:
        proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=err_file)
    assert proc.stdout is not None
    lines: list[str] = []
    buffer = b""
    ready_at: float | None = None
    hard_deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    try:
        while True:
            now = time.monotonic()
            if now > hard_deadline:
                proc.kill()
                proc.wait(30)
                pytest.fail(f"writer never became ready: {err_path.read_text()[-2000:]}")
            if ready_at is not None and (
                now - ready_at >= delay or (max_lines is not None and len(lines) >= max_lines)
            ):
                break
            for _ in sel.select(0.01):
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:  # spurious wake-up: nothing to read yet
                    continue
                if chunk == b"":  # EOF before we killed it
                    proc.wait(30)
                    pytest.fail(f"writer exited by itself (code {proc.returncode}): "
                                f"{err_path.read_text()[-2000:]}")
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    line = raw.decode()
                    if line == "ready":
                        ready_at = time.monotonic()
                    else:
                        lines.append(line)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        # whatever it managed to print before dying is acknowledged too
        os.set_blocking(fd, True)
        while chunk := os.read(fd, 65536):
            buffer += chunk
        lines += [raw.decode() for raw in buffer.split(b"\n")[:-1] if raw != b"ready"]
    finally:
        sel.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return lines


def test_acknowledged_writes_survive_kill_9(
    tmp_path: Path, store_target: str, key: str, make_manager: Callable[..., ConfigManager]
) -> None:
    rng = random.Random()
    script = tmp_path / "set_writer.py"
    script.write_text(_SET_WRITER)
    make_manager(storage=store_target).close()  # the store exists before the first crash
    acks: list[tuple[str, int, int]] = []
    for run in range(4):  # first run + 3 restarts, each killed
        by_count = run % 2 == 0
        lines = _run_until_killed(
            script, [store_target, key, str(run * 1_000_000)],
            max_lines=200 if by_count else None,
            delay=60.0 if by_count else rng.uniform(0.3, 1.5),
        )
        run_acks = []
        for line in lines:
            word, k, version, value = line.split(" ")
            assert word == "ack", line
            run_acks.append((k, int(version), int(value)))
        assert run_acks, f"run {run}: the writer acknowledged nothing before it was killed"
        acks += run_acks

    manager = make_manager(storage=store_target)
    acked_by_key: dict[str, dict[int, int]] = defaultdict(dict)
    for k, version, value in acks:
        assert version not in acked_by_key[k], f"version {version} of {k} acknowledged twice"
        acked_by_key[k][version] = value
    for k in (f"k{j}" for j in range(5)):
        try:
            history = manager.history(NS, k)
        except NotFoundError:
            assert k not in acked_by_key, f"{k} was acknowledged but does not exist"
            continue
        stored = {h.version: h.value for h in history}
        versions = sorted(stored)
        assert versions == list(range(1, len(versions) + 1)), f"{k}: versions not contiguous: {versions}"
        assert not any(h.deleted for h in history)
        for version, value in acked_by_key[k].items():
            assert stored.get(version) == value, f"{k} v{version}: acknowledged {value}, stored {stored.get(version)}"
    report = manager.audit_verify()
    assert report.ok, report.problems
    after = manager.set(NS, "after-crash", "ok")
    assert after.version == 1
    assert manager.get(NS, "after-crash").value == "ok"
    assert manager.audit_verify().ok


def test_import_is_all_or_nothing_under_kill_9(
    tmp_path: Path, store_target: str, key: str, make_manager: Callable[..., ConfigManager]
) -> None:
    rng = random.Random()
    script = tmp_path / "import_writer.py"
    script.write_text(_IMPORT_WRITER)
    make_manager(storage=store_target).close()
    begun: list[str] = []
    finished: set[str] = set()
    for run in range(3):
        lines = _run_until_killed(
            script, [store_target, key, str(run * 1000)], max_lines=None, delay=rng.uniform(0.1, 1.0),
        )
        for line in lines:
            word, ns = line.split(" ")
            (begun.append if word == "begin" else finished.add)(ns)
    assert begun, "no import ever started"
    manager = make_manager(storage=store_target)
    for name in begun:
        count = len(manager.list(f"crash/{name}"))
        if name in finished:
            assert count == 200, f"{name} finished but holds {count} keys"
        else:  # the one in flight when the writer died
            assert count in (0, 200), f"{name} was torn by kill -9: {count} of 200 keys"
        if count:
            entry = manager.get(f"crash/{name}", "key123")
            assert entry.value == {"n": 123, "text": "x" * 200}
            assert entry.version == 1
    report = manager.audit_verify()
    assert report.ok, report.problems
    assert manager.set(f"crash/{begun[-1]}", "after-crash", 1).value == 1
