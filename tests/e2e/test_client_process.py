"""A watching `Client` across restarts of a real `llm-config serve` process on SQLite.

1,000 writes land in the store while the service is stopped and started again on the same port (the
writer is another process's manager on the same SQLite file, as a CLI or a second replica would be): the
client's callbacks see every change exactly once, in revision order — it resumes with `since=` and the
epoch after each reconnect and deduplicates any replay.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from llm_config import Client, wire
from llm_config.core.manager import ConfigManager
from llm_config.crypto.keys import generate_key
from llm_config.models import Entry

NS = "resume/test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortTakenError(Exception):
    """`serve` refused to start: its port was taken."""


class ServeProcess:
    """`llm-config serve` on a fixed port, to stop (or kill) and start again."""

    def __init__(self, store: Path, key_file: Path, log: Path) -> None:
        self.store, self.key_file, self.log = store, key_file, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, deadline: float = 60.0) -> None:
        for _ in range(3 if self.starts == 0 else 1):
            try:
                self._start(deadline)
                return
            except PortTakenError:  # another test's server took the free port first: a new one (first start only)
                if self.starts > 1:
                    raise
                self.starts = 0
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
        raise AssertionError("no free port for serve")

    def _start(self, deadline: float) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CONFIG_")}
        cmd = [sys.executable, "-m", "llm_config.cli.main", "-s", str(self.store), "--key-file", str(self.key_file),
               "serve", "--port", str(self.port), "--rate-limit-key", "0", "--rate-limit-ip", "0"]
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        self.starts += 1
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                tail = self.log.read_text()[-2000:]
                if "in use" in tail.lower():
                    raise PortTakenError(tail)
                raise AssertionError(f"serve exited with {self.proc.returncode}: {tail}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError("serve did not become ready")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServeProcess, ConfigManager, str]]:
    key_file = tmp_path / "master.key"
    key_file.write_text(generate_key())
    key_file.chmod(0o600)
    store = tmp_path / "store"
    mgr = ConfigManager.open(str(store), key_file=str(key_file), actor="writer")
    _, token = mgr.create_api_key("watcher", "viewer")
    serve = ServeProcess(store, key_file, tmp_path / "serve.log")
    serve.start()
    try:
        yield serve, mgr, token
    finally:
        serve.stop()
        mgr.close()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def run_restarts(serve: ServeProcess, mgr: ConfigManager, token: str, *, sig: int, writes: int = 1000,
                 restarts: tuple[int, ...] = (300, 650)) -> None:
    """Write `writes` changes while the service is stopped with `sig` and started again at each count in
    `restarts`; assert the client's callbacks saw each exactly once, in order."""
    seen: list[int] = []
    entries: list[Entry | None] = []
    lock = threading.Lock()

    def on_change(change: wire.WatchChange, entry: Entry | None) -> None:
        with lock:
            seen.append(change.revision)
            entries.append(entry)

    watch_opens: list[str] = []
    with Client(serve.url, api_key=token, retries=1, backoff=0.02, timeout=2,
                event_hooks={"request": [lambda r: watch_opens.append(r.url.path)
                                         if "/watch/" in r.url.path else None]}) as client:
        client.on_change(NS, "*", on_change)
        wait_for(lambda: client.status().watching == (NS,), 15, "the stream")
        written: list[int] = []
        failure: list[BaseException] = []

        def writer() -> None:
            try:
                for n in range(writes):
                    written.append(mgr.set(NS, f"k{n % 37}", n, env="production").revision)
                    if n % 50 == 0:
                        time.sleep(0.01)
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=writer)
        thread.start()
        for at in restarts:
            wait_for(lambda at=at: len(written) >= at or not thread.is_alive(), 60, f"{at} writes")  # type: ignore[misc]
            serve.stop(sig)
            time.sleep(0.3)  # writes go on while the service is down
            serve.start()
        thread.join(120)
        assert not failure, failure
        assert len(written) == writes
        wait_for(lambda: len(seen) >= writes, 60, "every change")
        time.sleep(0.3)  # nothing more (no duplicate) arrives
        with lock:
            assert seen == written  # every change, once, in commit order
        assert len(watch_opens) >= 2  # it did reconnect (one reconnect may span two restarts)
        status = client.status()
        assert status.watching == (NS,) and status.last_revision == written[-1]
        assert status.malformed_events == 0
        last = client.get(NS, f"k{(writes - 1) % 37}", env="production")
        assert last.value == writes - 1


def test_resume_after_restarts_misses_and_repeats_nothing(served: tuple[ServeProcess, ConfigManager, str]) -> None:
    serve, mgr, token = served
    run_restarts(serve, mgr, token, sig=signal.SIGTERM)
