"""The remote client under faults: `kill -9` of the serve process under a watching client (it serves its
cache meanwhile and resumes without a missed or repeated change), and offline snapshots that must not be
used (another snapshot key, another API key, a crash in the middle of writing one)."""

from __future__ import annotations

import base64
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_config import Client
from llm_config.client import SnapshotWarning
from llm_config.core.manager import ConfigManager
from tests.e2e.test_client_process import NS, ServeProcess, run_restarts, served, wait_for

pytestmark = pytest.mark.faults

__all__ = ["served"]  # the fixture, re-used


def new_snapshot_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_kill_9_under_a_watching_client_then_resume(served: tuple[ServeProcess, ConfigManager, str]) -> None:
    serve, mgr, token = served
    run_restarts(serve, mgr, token, sig=signal.SIGKILL, writes=1000, restarts=(200, 500, 800))


def test_the_cache_is_served_while_killed_and_catches_up_after(
        served: tuple[ServeProcess, ConfigManager, str]) -> None:
    serve, mgr, token = served
    mgr.set(NS, "k", "v1", env="production")
    with Client(serve.url, api_key=token, retries=0, timeout=1, ttl=0.1) as client:
        assert client.get(NS, "k", env="production").value == "v1"
        wait_for(lambda: client.status().watching == (NS,), 15, "the stream")
        serve.stop(signal.SIGKILL)
        mgr.set(NS, "k", "v2", env="production")  # written while the service is dead
        wait_for(lambda: client.status().watching == (), 15, "the stream to drop")
        time.sleep(0.15)
        assert client.get(NS, "k", env="production").value == "v1"  # the cache, any age
        assert client.status().source == "cache"
        serve.start()
        wait_for(lambda: client.status().watching == (NS,), 30, "the stream to resume")
        wait_for(lambda: client.get(NS, "k", env="production").value == "v2", 15, "the missed change")
        assert client.status().source == "live"


@pytest.fixture
def snapshot(served: tuple[ServeProcess, ConfigManager, str], tmp_path: Path) -> Iterator[tuple[Path, str]]:
    serve, mgr, token = served
    mgr.set(NS, "k", "v1", env="production")
    path, key = tmp_path / "snap" / "cache.snapshot", new_snapshot_key()
    with Client(serve.url, api_key=token, snapshot_path=path, snapshot_key=key) as client:
        client.get(NS, "k", env="production")
    serve.stop(signal.SIGKILL)
    with socket.socket() as hold:  # the port stays refused: no other test's server may take it meanwhile
        hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hold.bind(("127.0.0.1", serve.port))
        yield path, key


def test_a_snapshot_under_another_key_is_never_used(served: tuple[ServeProcess, ConfigManager, str],
                                                     snapshot: tuple[Path, str]) -> None:
    serve, _, token = served
    path, key = snapshot
    with pytest.warns(SnapshotWarning, match="authentication failed"), \
            Client(serve.url, api_key=token, snapshot_path=path, snapshot_key=new_snapshot_key(), retries=0) as other:
        assert other.status().cached_entries == 0
    # that client wrote its own (empty) snapshot over it at close: the first key no longer opens it either
    with pytest.warns(SnapshotWarning), Client(serve.url, api_key=token, snapshot_path=path, snapshot_key=key,
                                               retries=0) as first:
        assert first.status().cached_entries == 0


def test_a_snapshot_of_another_api_key_is_never_used(served: tuple[ServeProcess, ConfigManager, str],
                                                      snapshot: tuple[Path, str]) -> None:
    serve, mgr, _ = served
    path, key = snapshot
    _, other_token = mgr.create_api_key("someone-else", "viewer")
    with pytest.warns(SnapshotWarning, match="authentication failed"), \
            Client(serve.url, api_key=other_token, snapshot_path=path, snapshot_key=key, retries=0) as other:
        assert other.status().cached_entries == 0


def test_a_crash_while_writing_a_snapshot_leaves_the_last_one(served: tuple[ServeProcess, ConfigManager, str],
                                                              snapshot: tuple[Path, str]) -> None:
    serve, _, token = served
    path, key = snapshot
    (path.parent / f".{path.name}.abc123.tmp").write_bytes(b"half a snap")  # a writer died before its rename
    with Client(serve.url, api_key=token, snapshot_path=path, snapshot_key=key, retries=0, connect_timeout=1) as c:
        assert c.get(NS, "k", env="production").value == "v1"
        assert c.status().source == "snapshot"
