"""`llm_config.Client` / `AsyncClient` against a live server (uvicorn in a thread, a fresh SQLite store).

Every shared method gives what the embedded manager gives on the same data, and raises the same
exception classes; cached reads send no request (counted with an httpx event hook); a write anywhere
reaches `on_change` and the cache through the watch stream; a revoked key ends the stream and the next
call raises; a service that is down at start is served from the encrypted snapshot; moving the wall
clock changes no freshness decision.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import socket
import statistics
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import time_machine

from llm_config import AsyncClient, Client, wire
from llm_config.client import SnapshotWarning
from llm_config.core.manager import ConfigManager
from llm_config.errors import (
    AuthenticationError,
    ConflictError,
    LLMConfigError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    SecretOverwriteError,
    StorageUnavailableError,
    ValidationError,
)
from llm_config.models import Entry, Environment, HistoryItem
from llm_config.server.routes.watch import WatchSettings
from tests.e2e.conftest import LiveServer, serve_in_thread, server_options

NS = "acme/bot"
PROD, BASE, DEV = Environment.PRODUCTION, Environment.BASE, Environment.DEVELOPMENT


class Counter:
    """Counts the requests a client sends (an httpx request hook), by path."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> None:
        with self.lock:
            self.paths.append(request.url.path)

    def hooks(self) -> dict[str, list[Callable[..., Any]]]:
        return {"request": [self]}

    def count(self, fragment: str = "/api/v1/configs") -> int:
        with self.lock:
            return sum(fragment in p for p in self.paths)


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


_HELD: list[socket.socket] = []


def hold_port(url: str) -> None:
    """Bind (without listening) the port of a stopped server: connecting is refused, as to a dead service,
    and no server another test starts can take the port meanwhile."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    _HELD.append(sock)


@pytest.fixture(autouse=True)
def _release_ports() -> Iterator[None]:
    yield
    while _HELD:
        _HELD.pop().close()


@pytest.fixture
def server(make_live_server: Callable[..., LiveServer]) -> LiveServer:
    srv = make_live_server()
    srv.app.state.watch = WatchSettings(keepalive=15, auth_check=0.2, poll=0.05)
    return srv


@pytest.fixture
def make_client(server: LiveServer) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(**kw: Any) -> Client:
        kw.setdefault("api_key", server.admin_key)
        client = Client(kw.pop("url", server.url), **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()


def seed(mgr: ConfigManager) -> None:
    """A namespace with base/production values, a secret, a deleted key, history, tags, a sub-namespace."""
    mgr.set(NS, "openai.model", "gpt-4o", env="base", description="the model", tags=["llm"])
    mgr.set(NS, "openai.model", "gpt-4.1", env="production")
    mgr.set(NS, "openai.model", "gpt-4.1-mini", env="production", message="cheaper")
    mgr.set(NS, "openai.api_key", "sk-prod-123", env="production", secret=True)
    mgr.set(NS, "openai.params", {"temperature": 0.2, "stop": ["\n"], "n": 2**62}, env="production")
    mgr.set(NS, "limits.rpm", 600, env="base")
    mgr.set(NS, "gone", True, env="production")
    mgr.delete(NS, "gone", env="production")
    mgr.set(f"{NS}/eval", "dataset", "v3", env="production")
    mgr.set("other", "k", None, env="development")


def no_revision(entries: list[Entry]) -> list[Entry]:
    return [dataclasses.replace(e, revision=0) for e in entries]


# ---------------------------------------------------------------------------------------------- parity


def test_every_read_matches_the_embedded_manager(server: LiveServer, client: Client) -> None:
    mgr = server.manager
    seed(mgr)
    for key in ("openai.model", "openai.api_key", "openai.params", "limits.rpm"):
        for env in (BASE, PROD, DEV):
            for with_overrides in (False, True):
                for reveal in (False, True):
                    try:
                        expected: Entry | type[LLMConfigError] = mgr.get(
                            NS, key, env=env, with_overrides=with_overrides, reveal=reveal)
                    except LLMConfigError as exc:
                        expected = type(exc)
                    try:
                        got: Entry | type[LLMConfigError] = client.get(
                            NS, key, env=env.value, with_overrides=with_overrides, reveal=reveal)
                    except LLMConfigError as exc:
                        got = type(exc)
                    assert got == expected, (key, env, with_overrides, reveal)
    for version in (1, 2):
        assert client.get(NS, "openai.model", env="prod", version=version) == \
            mgr.get(NS, "openai.model", env="production", version=version)
    assert client.get(NS, "openai.api_key", env="production").value == "<encrypted>"
    assert client.get(NS, "openai.api_key", env="production", reveal=True).value == "sk-prod-123"
    for env in (BASE, PROD, DEV):
        assert no_revision(client.list(NS, env=env)) == no_revision(mgr.list(NS, env=env))
        assert no_revision(client.list(NS, env=env, prefix="openai.")) == no_revision(
            mgr.list(NS, env=env, prefix="openai."))
        assert no_revision(client.list(NS, env=env, recursive=True)) == no_revision(
            mgr.list(NS, env=env, recursive=True))
        for nested in (False, True):
            for reveal in (False, True):
                assert client.resolve(NS, env=env, nested=nested, reveal=reveal) == \
                    mgr.resolve(NS, env=env, nested=nested, reveal=reveal)
    for key, env in (("openai.model", PROD), ("gone", PROD), ("openai.api_key", PROD)):
        assert client.history(NS, key, env=env) == mgr.history(NS, key, env=env)
        assert client.history(NS, key, env=env, limit=1) == mgr.history(NS, key, env=env, limit=1)
    assert client.namespaces() == mgr.namespaces()
    assert client.namespaces("acme") == mgr.namespaces("acme")
    assert client.list("nothing/here") == mgr.list("nothing/here") == []


def _shape(entry: Entry) -> tuple[Any, ...]:
    """What two writes of the same thing by different callers share (not identity, time or actor)."""
    m = entry.metadata
    return (entry.namespace, entry.value, entry.environment, entry.version, entry.secret, m.tags, m.description)


def test_every_write_matches_the_embedded_manager(server: LiveServer, client: Client) -> None:
    mgr = server.manager
    actor = server.admin_actor
    pairs: list[tuple[Entry, Entry]] = []
    for name, api in (("remote", client), ("local", mgr)):
        pairs.append((api.set(NS, f"{name}.a", {"x": 1}, env="production", tags=["t1", "t2"], description="d",
                              message="first"), api.set(NS, f"{name}.a", {"x": 2}, env="production",
                                                        expected_version=1)))
        pairs.append((api.set(NS, f"{name}.s", "sk-1", env="staging", secret=True),
                      api.set(NS, f"{name}.s", "plain", env="staging", secret=False)))
        pairs.append((api.delete(NS, f"{name}.a", env="production"),
                      api.rollback(NS, f"{name}.a", 2, env="production")))
        pairs.append((api.set(NS, f"{name}.new", 0, env="edge", expected_version=0),
                      api.delete(NS, f"{name}.new", env="edge", expected_version=1)))
    remote, local = pairs[:4], pairs[4:]
    for (r1, r2), (l1, l2) in zip(remote, local, strict=True):
        assert _shape(r1) == _shape(l1) and _shape(r2) == _shape(l2)
    # what the client returned is what the store now says (identity, times, actor, revision)
    tombstone = remote[2][0]
    assert tombstone.value is None and tombstone.version == 3
    history = mgr.history(NS, "remote.a", env="production")
    assert history[1].deleted and history[1].version == 3
    assert tombstone.metadata.updated_at == history[1].created_at
    assert tombstone.metadata.updated_by == actor == history[1].created_by
    assert tombstone.id == mgr.get(NS, "remote.a", env="production").id
    rolled = remote[2][1]
    assert rolled == mgr.get(NS, "remote.a", env="production")
    assert rolled.revision > 0 and rolled.metadata.updated_by == actor
    assert mgr.history(NS, "remote.a", env="production")[0].change_description == "Rollback to version 2"
    assert mgr.history(NS, "remote.a", env="production")[-1].change_description == "first"
    local_tombstone = local[2][0]
    assert (tombstone.metadata.created_at <= tombstone.metadata.updated_at) and \
        (local_tombstone.metadata.tags == tombstone.metadata.tags)


def _outcome(fn: Callable[[], object]) -> type[BaseException] | None:
    try:
        fn()
    except LLMConfigError as exc:
        return type(exc)
    return None


def test_errors_are_the_managers_exception_classes(server: LiveServer, client: Client,
                                                   make_client: Callable[..., Client]) -> None:
    mgr = server.manager
    mgr.set(NS, "k", 1, env="production")
    mgr.set(NS, "dead", 1, env="production")
    mgr.delete(NS, "dead", env="production")
    mgr.set(NS, "was-plain", "p", env="production")
    mgr.set(NS, "was-plain", "s", env="production", secret=True)
    cases: list[Callable[[Any], object]] = [
        lambda api: api.set(NS, "was-plain", "plain over a secret", env="production"),
        lambda api: api.rollback(NS, "was-plain", 1, env="production"),
        lambda api: api.get(NS, "missing", env="production"),
        lambda api: api.get(NS, "k", env="production", version=9),
        lambda api: api.get(NS, "dead", env="production"),
        lambda api: api.set(NS, "k", 2, env="production", expected_version=7),
        lambda api: api.set(NS, "k", 2, env="production", expected_version=0),
        lambda api: api.delete(NS, "k", env="production", expected_version=7),
        lambda api: api.delete(NS, "missing", env="production"),
        lambda api: api.delete(NS, "dead", env="production"),
        lambda api: api.rollback(NS, "k", 9, env="production"),
        lambda api: api.rollback(NS, "missing", 1, env="production"),
        lambda api: api.history(NS, "missing", env="production"),
        lambda api: api.get("bad//ns", "k"),
        lambda api: api.get(NS, "bad key"),
        lambda api: api.get(NS, "k", env="qa"),
        lambda api: api.set(NS, "k", float("nan"), env="production"),
        lambda api: api.set(NS, "k", 2**64, env="production"),
        lambda api: api.list(NS, env="production", prefix="a b"),
    ]
    for n, case in enumerate(cases):
        expected = _outcome(lambda case=case: case(mgr))  # type: ignore[misc]
        assert expected is not None, n
        assert _outcome(lambda case=case: case(client)) is expected, n  # type: ignore[misc]
    assert _outcome(lambda: client.get(NS, "k", env="production", version=9)) is NotFoundError
    assert _outcome(lambda: client.set(NS, "k", 2, env="production", expected_version=7)) is ConflictError
    assert _outcome(lambda: client.set(NS, "was-plain", "x", env="production")) is SecretOverwriteError
    viewer = make_client(api_key=server.new_key("viewer"))
    assert viewer.get(NS, "k", env="production").value == 1
    assert _outcome(lambda: viewer.set(NS, "k", 3, env="production")) is PermissionDeniedError
    assert _outcome(lambda: viewer.delete(NS, "k", env="production")) is PermissionDeniedError
    assert _outcome(lambda: viewer.rollback(NS, "k", 1, env="production")) is PermissionDeniedError
    scoped = make_client(api_key=server.new_key("editor", namespaces=["elsewhere"]))
    assert _outcome(lambda: scoped.get(NS, "k", env="production")) is PermissionDeniedError
    bad = make_client(api_key="llmc_" + "x" * 43)
    assert _outcome(lambda: bad.get(NS, "k", env="production")) is AuthenticationError
    assert _outcome(bad.namespaces) is AuthenticationError
    with pytest.raises(NotFoundError) as caught:
        client.get(NS, "missing", env="production")
    assert (caught.value.namespace, caught.value.key, caught.value.environment) == (NS, "missing", "production")


def test_a_cached_get_sends_no_request(server: LiveServer, make_client: Callable[..., Client]) -> None:
    server.manager.set(NS, "k", "v", env="production")
    counter = Counter()
    client = make_client(event_hooks=counter.hooks())
    client.get(NS, "k", env="production")
    wait_for(lambda: client.status().watching == (NS,), what="the stream")
    # a first read whose answer crossed the stream's hello is checked once more (a 304): settle it
    first = client.get(NS, "k", env="production")
    sent = counter.count()
    for _ in range(1000):
        assert client.get(NS, "k", env="production") is first
    assert client.get(NS, "k", env=PROD) is first
    assert client.get(NS, "k", env="PROD") is first  # an alias: no request either
    assert counter.count() == sent
    assert client.resolve(NS, env="production") == {"k": "v"}
    sent = counter.count("/api/v1")
    assert client.resolve(NS, env="production") == {"k": "v"}
    assert client.list(NS, env="production")[0].value == "v"
    sent_after_list = counter.count("/api/v1")
    assert client.list(NS, env="production")[0].value == "v"
    assert counter.count("/api/v1") == sent_after_list == sent + 1
    assert client.status().cached_entries == 3


def test_without_watching_ttl_and_etag_revalidation(server: LiveServer, make_client: Callable[..., Client]) -> None:
    server.manager.set(NS, "k", "v1", env="production")
    counter = Counter()
    client = make_client(watch=False, ttl=0.2, event_hooks=counter.hooks())
    assert client.get(NS, "k", env="production").value == "v1"
    assert client.get(NS, "k", env="production").value == "v1"
    assert counter.count() == 1 and counter.count("/watch") == 0
    time.sleep(0.25)
    assert client.get(NS, "k", env="production").value == "v1"  # revalidated: 304
    assert counter.count() == 2
    server.manager.set(NS, "k", "v2", env="production")
    time.sleep(0.25)
    assert client.get(NS, "k", env="production").value == "v2"
    with pytest.raises(ValueError, match="watch=False"):
        client.on_change(NS, "*", lambda c, e: None)


def test_stale_while_revalidate(server: LiveServer, make_client: Callable[..., Client]) -> None:
    server.manager.set(NS, "k", "v1", env="production")
    client = make_client(watch=False, ttl=0.1, max_stale=30)
    assert client.get(NS, "k", env="production").value == "v1"
    server.manager.set(NS, "k", "v2", env="production")
    time.sleep(0.15)
    assert client.get(NS, "k", env="production").value == "v1"  # served stale, revalidated behind
    wait_for(lambda: client.get(NS, "k", env="production").value == "v2", what="the background revalidation")


def test_read_your_writes(client: Client) -> None:
    client.set(NS, "k", 1, env="production")
    assert client.get(NS, "k", env="production").value == 1
    client.set(NS, "k", 2, env="production")
    assert client.get(NS, "k", env="production").value == 2
    client.delete(NS, "k", env="production")
    with pytest.raises(NotFoundError):
        client.get(NS, "k", env="production")
    client.rollback(NS, "k", 1, env="production")
    assert client.get(NS, "k", env="production").value == 1


def test_list_follows_every_page(server: LiveServer, make_client: Callable[..., Client]) -> None:
    for n in range(7):
        server.manager.set(NS, f"k{n}", n, env="production")
    counter = Counter()
    client = make_client(page_size=3, event_hooks=counter.hooks())
    assert [e.value for e in client.list(NS, env="production")] == list(range(7))
    assert counter.count() == 3
    assert [e.value for e in client.list(NS, env="production", recursive=True)] == list(range(7))


# ---------------------------------------------------------------------------------------------- watching


def test_a_write_elsewhere_reaches_on_change_and_the_cache(server: LiveServer, make_client: Callable[..., Client],
                                                           record_property: Callable[[str, object], None]) -> None:
    server.manager.set(NS, "openai.model", "m0", env="production")
    server.manager.set(NS, "openai.model", "base0", env="base")
    counter = Counter()
    reader = make_client(event_hooks=counter.hooks())
    writer = make_client(watch=False)
    assert reader.get(NS, "openai.model", env="production").value == "m0"
    assert reader.get(NS, "openai.model", env="staging", with_overrides=True).value == "base0"
    events: list[tuple[wire.WatchChange, Entry | None, Any]] = []
    arrived = threading.Event()

    def on_change(change: wire.WatchChange, entry: Entry | None) -> None:
        # a callback reading through the client sees the new value, without a request
        before = counter.count()
        seen = reader.get(NS, change.key, env=change.environment) if entry is not None else None
        events.append((change, entry, (seen, counter.count() - before)))
        arrived.set()

    sub = reader.on_change(NS, "openai.*", on_change)
    wait_for(lambda: reader.status().watching == (NS,), what="the stream")
    latencies = []
    for n in range(1, 21):
        arrived.clear()
        started = time.perf_counter()
        written = writer.set(NS, "openai.model", f"m{n}", env="production")
        assert arrived.wait(10)
        latencies.append(time.perf_counter() - started)
        change, entry, (seen, requests) = events[-1]
        assert change.revision == written.revision and change.kind == "set" and change.version == written.version
        assert entry == written and seen == written and requests == 0
        assert reader.get(NS, "openai.model", env="production") == written
    record_property("propagation_ms_p50", round(statistics.median(latencies) * 1000, 2))
    record_property("propagation_ms_max", round(max(latencies) * 1000, 2))
    # a base change refreshes every environment's override copy
    arrived.clear()
    writer.set(NS, "openai.model", "base1", env="base")
    assert arrived.wait(10)
    assert reader.get(NS, "openai.model", env="staging", with_overrides=True).value == "base1"
    arrived.clear()
    writer.delete(NS, "openai.model", env="production")
    assert arrived.wait(10)
    assert events[-1][0].kind == "delete" and events[-1][1] is None
    with pytest.raises(NotFoundError):
        reader.get(NS, "openai.model", env="production")
    assert reader.get(NS, "openai.model", env="production", with_overrides=True).value == "base1"
    sub()
    count = len(events)
    writer.set(NS, "openai.other", 1, env="production")
    writer.set(NS, "unrelated", 1, env="production")
    time.sleep(0.3)
    assert len(events) == count


def test_a_revoked_key_closes_the_stream_and_the_next_call_raises(server: LiveServer,
                                                                   make_client: Callable[..., Client]) -> None:
    server.manager.set(NS, "k", 1, env="production")
    record, token = server.manager.create_api_key("short-lived", "viewer")
    client = make_client(api_key=token)
    assert client.get(NS, "k", env="production").value == 1
    wait_for(lambda: client.status().watching == (NS,), what="the stream")
    server.manager.revoke_api_key(record.id)
    wait_for(lambda: client.status().watch_errors != (), what="the error event")
    status = client.status()
    assert status.watching == () and status.cached_entries == 0
    assert status.watch_errors[0][0] == NS and "AuthenticationError" in status.watch_errors[0][1]
    with pytest.raises(AuthenticationError):
        client.get(NS, "k", env="production")


def test_a_restore_resyncs_the_cache_and_reports_what_changed(server: LiveServer, make_client: Callable[..., Client],
                                                              tmp_path: Path) -> None:
    mgr = server.manager
    mgr.set(NS, "k", "before", env="production")
    backup = tmp_path / "b.llmc"
    with backup.open("wb") as out:
        mgr.backup(out)
    mgr.set(NS, "k", "after", env="production")
    client = make_client()
    seen: list[tuple[wire.WatchChange, Entry | None]] = []
    client.on_change(NS, "k", lambda c, e: seen.append((c, e)))
    assert client.get(NS, "k", env="production").value == "after"
    wait_for(lambda: client.status().watching == (NS,), what="the stream")
    epoch = client.status().epoch
    with backup.open("rb") as stream:
        mgr.restore(stream, force=True)
    wait_for(lambda: client.status().epoch != epoch, what="the resync")
    wait_for(lambda: bool(seen), what="the callback")
    assert client.get(NS, "k", env="production").value == "before"
    assert seen[-1][1] is not None and seen[-1][1].value == "before"


# ---------------------------------------------------------------------------------------------- offline


def test_a_service_down_at_start_is_served_from_the_snapshot(make_manager: Callable[..., ConfigManager],
                                                             tmp_path: Path) -> None:
    snapshot_key = base64.b64encode(os.urandom(32)).decode()
    path = tmp_path / "client" / "snapshot"
    mgr = make_manager()
    mgr.set(NS, "openai.model", "gpt-4o", env="production")
    mgr.set(NS, "openai.api_key", "sk-1", env="production", secret=True)
    thread, srv = serve_in_thread(mgr, server_options())
    try:
        with Client(srv.url, api_key=srv.admin_key, snapshot_path=path, snapshot_key=snapshot_key) as online:
            online.get(NS, "openai.model", env="production")
            online.get(NS, "openai.api_key", env="production", reveal=True)
            online.resolve(NS, env="production")
    finally:
        thread.stop()
    hold_port(srv.url)  # no other test's server may take the port while this one expects nobody there
    assert b"sk-1" not in path.read_bytes() and b"gpt-4o" not in path.read_bytes()
    with Client(srv.url, api_key=srv.admin_key, snapshot_path=path, snapshot_key=snapshot_key, retries=0,
                connect_timeout=1) as offline:
        assert offline.get(NS, "openai.model", env="production").value == "gpt-4o"
        assert offline.get(NS, "openai.api_key", env="production", reveal=True).value == "sk-1"
        assert offline.resolve(NS, env="production") == {"openai.api_key": "<encrypted>", "openai.model": "gpt-4o"}
        status = offline.status()
        assert (status.connected, status.source) == (False, "snapshot")
        assert status.snapshot_age_seconds is not None and 0 <= status.snapshot_age_seconds < 60
        assert status.staleness_seconds >= status.snapshot_age_seconds
        assert "cannot reach" in (status.last_error or "")
        with pytest.raises(StorageUnavailableError, match=srv.url):
            offline.get(NS, "never-read", env="production")
    # another snapshot key: warned about, not used
    with pytest.warns(SnapshotWarning, match="authentication failed"), \
            Client(srv.url, api_key=srv.admin_key, snapshot_path=path, retries=0,
                   snapshot_key=base64.b64encode(os.urandom(32)).decode()) as other, \
            pytest.raises(StorageUnavailableError):
        other.get(NS, "openai.model", env="production")


def test_a_connection_loss_keeps_serving_the_cache(make_manager: Callable[..., ConfigManager]) -> None:
    mgr = make_manager()
    mgr.set(NS, "k", "v", env="production")
    thread, srv = serve_in_thread(mgr, server_options())
    stopped = False
    try:
        with Client(srv.url, api_key=srv.admin_key, ttl=0.05, retries=0) as client:
            assert client.get(NS, "k", env="production").value == "v"
            wait_for(lambda: client.status().watching == (NS,), what="the stream")
            thread.stop()
            stopped = True
            hold_port(srv.url)
            wait_for(lambda: client.status().watching == (), what="the stream to drop")
            time.sleep(0.1)  # past ttl: the next read tries the service, fails, serves the cache
            assert client.get(NS, "k", env="production").value == "v"
            status = client.status()
            assert (status.connected, status.source) == (False, "cache") and status.staleness_seconds > 0
    finally:
        if not stopped:
            thread.stop()


def test_nothing_cached_and_no_service_names_the_url(tmp_path: Path) -> None:
    counter = Counter()
    with Client("http://127.0.0.1:9", api_key="llmc_" + "k" * 43, retries=2, backoff=0.01,
                event_hooks=counter.hooks()) as client:
        with pytest.raises(StorageUnavailableError) as caught:
            client.get(NS, "k")
        assert "http://127.0.0.1:9" in caught.value.message and "llmc_" not in caught.value.message
        assert counter.count() == 3  # a read is retried
        with pytest.raises(StorageUnavailableError):
            client.set(NS, "k", 1)
        assert counter.count() == 4  # a blind write is not
        with pytest.raises(StorageUnavailableError):
            client.set(NS, "k", 1, expected_version=0)
        assert counter.count() == 7  # a compare-and-set is


def test_rate_limits_are_retried_after_retry_after_for_reads_only(make_live_server: Callable[..., LiveServer]) -> None:
    server = make_live_server(rate_limit_key="1:1")
    server.manager.set(NS, "k", 1, env="production")
    counter = Counter()
    with Client(server.url, api_key=server.admin_key, watch=False, ttl=0, event_hooks=counter.hooks()) as client:
        started = time.monotonic()
        for _ in range(3):
            assert client.get(NS, "k", env="production").value == 1
        assert counter.count() > 3 and time.monotonic() - started >= 0.5  # 429s were waited out
        sent = counter.count()
        with pytest.raises(RateLimitedError) as caught:
            for n in range(3):
                client.set(NS, "k", n, env="production")
        assert caught.value.retry_after > 0
        assert counter.count() - sent <= 3  # each blind write sent once


def test_clock_skew_changes_no_freshness_decision(server: LiveServer, make_client: Callable[..., Client]) -> None:
    server.manager.set(NS, "k", "v", env="production")
    counter = Counter()
    client = make_client(watch=False, ttl=30, event_hooks=counter.hooks())
    assert client.get(NS, "k", env="production").value == "v"
    with time_machine.travel(time.time() + 86_400 * 365, tick=True):
        assert client.get(NS, "k", env="production").value == "v"
        staleness_ahead = client.status().staleness_seconds
    with time_machine.travel(time.time() - 86_400 * 365, tick=True):
        assert client.get(NS, "k", env="production").value == "v"
        staleness_behind = client.status().staleness_seconds
    assert counter.count() == 1  # still fresh, whatever the wall clock says
    assert 0 <= staleness_ahead < 30 and 0 <= staleness_behind < 30


# ---------------------------------------------------------------------------------------------- async


def test_the_async_client_matches_the_manager_and_watches(server: LiveServer) -> None:
    mgr = server.manager
    seed(mgr)

    async def main() -> None:
        async with AsyncClient(server.url, api_key=server.admin_key) as api:
            for key in ("openai.model", "openai.api_key", "limits.rpm"):
                assert await api.get(NS, key, env="production", with_overrides=True) == \
                    mgr.get(NS, key, env="production", with_overrides=True)
            assert no_revision(await api.list(NS, env="production")) == no_revision(mgr.list(NS, env="production"))
            assert await api.resolve(NS, env="production", nested=True) == \
                mgr.resolve(NS, env="production", nested=True)
            assert await api.history(NS, "openai.model", env="production") == \
                mgr.history(NS, "openai.model", env="production")
            assert await api.namespaces() == mgr.namespaces()
            with pytest.raises(NotFoundError):
                await api.get(NS, "missing", env="production")
            with pytest.raises(ConflictError):
                await api.set(NS, "openai.model", "x", env="production", expected_version=99)
            got: asyncio.Queue[tuple[wire.WatchChange, Entry | None]] = asyncio.Queue()

            async def on_change(change: wire.WatchChange, entry: Entry | None) -> None:
                await got.put((change, entry))

            api.on_change(NS, "openai.model", on_change)
            deadline = time.monotonic() + 10
            while api.status().watching != (NS,):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            written = await asyncio.to_thread(mgr.set, NS, "openai.model", "gpt-5", env="production")
            change, entry = await asyncio.wait_for(got.get(), 10)
            assert change.revision == written.revision and entry is not None and entry.value == "gpt-5"
            assert (await api.get(NS, "openai.model", env="production")).value == "gpt-5"
            tomb = await api.delete(NS, "openai.model", env="production")
            assert tomb.value is None and tomb.version == written.version + 1
            rolled = await api.rollback(NS, "openai.model", written.version, env="production")
            assert rolled == mgr.get(NS, "openai.model", env="production")
            assert isinstance((await api.history(NS, "openai.model", env="production"))[0], HistoryItem)

    asyncio.run(main())


def test_closing_is_prompt_and_idempotent(server: LiveServer) -> None:
    client = Client(server.url, api_key=server.admin_key)
    client.on_change(NS, "*", lambda c, e: None)
    wait_for(lambda: client.status().watching == (NS,), what="the stream")
    started = time.monotonic()
    client.close()
    client.close()
    assert time.monotonic() - started < 3
    assert client.status().closed
    with pytest.raises(RuntimeError, match="closed"):
        client.get(NS, "k")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not [t for t in threading.enumerate() if t.name.startswith("llm-config-watch")]


def test_writes_with_bad_arguments_fail_before_sending(client: Client) -> None:
    with pytest.raises(ValidationError):
        client.set(NS, "k", 1, tags="one")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        client.history(NS, "k", limit=0)
    with pytest.raises(ValidationError):
        client.rollback(NS, "k", 0)


def test_an_environment_scoped_key_watches_what_it_may_read(server: LiveServer,
                                                            make_client: Callable[..., Client]) -> None:
    mgr = server.manager
    mgr.set(NS, "k", "p1", env="production")
    mgr.set(NS, "k", "b1", env="base")
    client = make_client(api_key=server.new_key("viewer", namespaces=[NS], environments=["production"]))
    assert client.get(NS, "k", env="production").value == "p1"
    assert client.get(NS, "k", env="base").value == "b1"  # a scope always reads base
    seen: list[tuple[str, str]] = []
    client.on_change(NS, "*", lambda c, e: seen.append((c.environment.value, c.key)))
    wait_for(lambda: client.status().watching == (NS,), what="the stream")
    mgr.set(NS, "k", "s1", env="staging")  # not visible to this key: never announced
    mgr.set(NS, "k", "p2", env="production")
    mgr.set(NS, "k", "b2", env="base")
    wait_for(lambda: len(seen) >= 2, what="the changes")
    assert seen == [("production", "k"), ("base", "k")]
    assert client.get(NS, "k", env="production").value == "p2"
    assert client.get(NS, "k", env="base").value == "b2"
    with pytest.raises(PermissionDeniedError):
        client.get(NS, "k", env="staging")


def test_unhashable_arguments_are_refused_like_the_manager_does(client: Client) -> None:
    with pytest.raises(ValidationError):
        client.get(["acme"], "k")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        client.get(NS, {"k": 1})  # type: ignore[arg-type]


def test_any_other_route_through_request_and_stream(server: LiveServer, client: Client) -> None:
    keys = client.request("GET", "/api/v1/keys").json()
    assert any(k["name"] == "test-admin" for k in keys)
    created = client.request("POST", "/api/v1/keys", json={"name": "made-by-sdk", "role": "viewer"}).json()
    assert created["key"].startswith("llmc_")
    with pytest.raises(NotFoundError):
        client.request("DELETE", "/api/v1/keys/key_0000000000000000")
    assert client.request("GET", "/health", raise_for_status=False).status_code == 200
    for bad in ("http://elsewhere/api/v1/keys", "//elsewhere/x", "api/v1/keys"):
        with pytest.raises(ValueError, match="path"):
            client.request("GET", bad)
    with client.stream("GET", "/api/v1/admin/backup") as response:
        backup = b"".join(response.iter_bytes())
    assert backup[:2] == b"\x1f\x8b"  # gzip
    viewer = Client(server.url, api_key=created["key"])
    try:
        with pytest.raises(PermissionDeniedError), viewer.stream("GET", "/api/v1/admin/backup"):
            pass
    finally:
        viewer.close()

    async def main() -> None:
        async with AsyncClient(server.url, api_key=server.admin_key) as api:
            assert any(k["name"] == "made-by-sdk" for k in (await api.request("GET", "/api/v1/keys")).json())
            with pytest.raises(NotFoundError):
                await api.request("DELETE", "/api/v1/keys/key_0000000000000000")
            async with api.stream("GET", "/api/v1/admin/backup") as response:
                data = b"".join([chunk async for chunk in response.aiter_bytes()])
            assert data[:2] == b"\x1f\x8b"
            with pytest.raises(ValueError, match="path"):
                await api.request("GET", "https://elsewhere/")

    asyncio.run(main())
