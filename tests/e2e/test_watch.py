"""GET /api/v1/watch (SPEC §8): changes as standard Server-Sent Events, in commit order, resumable.

Each test reads the stream with httpx-sse, the way any SSE client would, from a thread that hands the
events to the test through a queue.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from llm_config.core.manager import ConfigManager
from llm_config.server.routes.watch import WatchSettings
from tests.e2e.conftest import LiveServer


class Watcher:
    """One open watch stream; `next()` returns its events (keep-alive comments are not events)."""

    def __init__(self, server: LiveServer, path: str, *, key: str | None = None,
                 headers: dict[str, str] | None = None, **params: Any) -> None:
        self.events: queue.Queue[ServerSentEvent | BaseException | None] = queue.Queue()
        self.raw_lines: list[str] = []
        self._client = server.client(key if key is not None else True, timeout=httpx.Timeout(10, read=None))
        self._path = path
        self._params = {k: v for k, v in params.items() if v is not None}
        self._headers = headers or {}
        self.status: int | None = None
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._opened.wait(10), "the stream did not open"

    def _run(self) -> None:
        try:
            with connect_sse(self._client, "GET", self._path, params=self._params, headers=self._headers) as source:
                self.content_type = source.response.headers.get("content-type", "")
                self.response_headers = source.response.headers
                if source.response.status_code != 200:
                    source.response.read()
                    self.body = source.response.json()
                self.status = source.response.status_code
                self._opened.set()
                if self.status != 200:
                    return
                for event in source.iter_sse():
                    self.events.put(event)
        except BaseException as exc:  # closing the client ends the read
            self.events.put(exc)
        finally:
            self._opened.set()
            self.events.put(None)

    def next(self, timeout: float = 10.0) -> ServerSentEvent:
        item = self.events.get(timeout=timeout)
        if item is None or isinstance(item, BaseException):
            raise AssertionError(f"stream ended: {item!r}")
        return item

    def changes(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        out = []
        while len(out) < count:
            event = self.next(timeout)
            assert event.event == "change", event
            data = orjson.loads(event.data)
            assert int(event.id) == data["revision"]
            out.append(data)
        return out

    def quiet(self, seconds: float) -> None:
        """Nothing arrives for `seconds`."""
        with pytest.raises(queue.Empty):
            item = self.events.get(timeout=seconds)
            raise AssertionError(f"unexpected: {item!r}")

    def ended(self, timeout: float = 10.0) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        self._thread.join(5)
        self._client.close()


@pytest.fixture
def server(make_live_server: Callable[..., LiveServer]) -> LiveServer:
    srv = make_live_server()
    srv.app.state.watch = WatchSettings(keepalive=15, auth_check=0.2, poll=0.05)
    return srv


@pytest.fixture
def watchers(server: LiveServer) -> Iterator[list[Watcher]]:
    opened: list[Watcher] = []
    yield opened
    hub = getattr(server.app.state, "watch_hub", None)
    if hub is not None:
        hub.close()  # the server ends the streams (a client cannot interrupt a blocking read)
    for w in opened:
        w.close()


def _watch(watchers: list[Watcher], server: LiveServer, ns: str = "app", **kw: Any) -> Watcher:
    w = Watcher(server, f"/api/v1/watch/{ns}", **kw)
    watchers.append(w)
    return w


def _hello(w: Watcher) -> dict[str, Any]:
    event = w.next()
    assert event.event == "hello"
    data: dict[str, Any] = orjson.loads(event.data)
    assert int(event.id) == data["revision"]
    return data


@pytest.fixture
def admin(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def test_every_kind_of_change_arrives_in_commit_order_with_its_revision(server: LiveServer, admin: httpx.Client,
                                                                        watchers: list[Watcher]) -> None:
    api = admin
    w = _watch(watchers, server)
    assert w.status == 200 and w.content_type.startswith("text/event-stream")
    assert w.response_headers["cache-control"] == "no-store"
    hello = _hello(w)
    assert hello["epoch"] and hello["revision"] == server.manager.feed.current()

    revisions = []
    r = api.put("/api/v1/configs/app/-/model", json={"value": "gpt-4o", "env": "production"})
    revisions.append(int(r.headers["x-config-revision"]))
    r = api.put("/api/v1/configs/app/-/model", json={"value": "gpt-4.1", "env": "production"})
    revisions.append(int(r.headers["x-config-revision"]))
    r = api.post("/api/v1/configs/app/-/model/rollback/1", params={"env": "production"})
    revisions.append(int(r.headers["x-config-revision"]))
    deleted = api.delete("/api/v1/configs/app/-/model", params={"env": "production"})
    assert deleted.status_code == 204
    revisions.append(int(deleted.headers["x-config-revision"]))
    server.manager.purge("app", "model", 2, env="production")

    got = w.changes(5)
    assert [(c["key"], c["environment"], c["version"], c["kind"]) for c in got] == [
        ("model", "production", 1, "set"), ("model", "production", 2, "set"), ("model", "production", 3, "rollback"),
        ("model", "production", 4, "delete"), ("model", "production", 2, "purge"),  # the version purged
    ]
    assert [c["revision"] for c in got[:4]] == revisions
    assert [c["revision"] for c in got] == sorted({c["revision"] for c in got})
    assert all("value" not in c for c in got)  # a change names what moved, never the value


def test_env_streams_that_environment_and_base_only(server: LiveServer, watchers: list[Watcher]) -> None:
    w = _watch(watchers, server, env="production")
    _hello(w)
    for env in ("staging", "base", "development", "production"):
        server.manager.set("app", "k", env, env=env)
    assert [c["environment"] for c in w.changes(2)] == ["base", "production"]
    w.quiet(0.3)


def test_other_namespaces_only_with_recursive(server: LiveServer, watchers: list[Watcher]) -> None:
    flat = _watch(watchers, server, "team/app")
    deep = _watch(watchers, server, "team/app", recursive="true")
    _hello(flat)
    _hello(deep)
    server.manager.set("team/app/sub", "k", 1)
    server.manager.set("team/apple", "k", 1)  # a prefix, not a sub-namespace
    server.manager.set("team/app", "k", 1)
    assert [c["namespace"] for c in deep.changes(2)] == ["team/app/sub", "team/app"]
    assert [c["namespace"] for c in flat.changes(1)] == ["team/app"]


def test_resume_from_since_or_last_event_id_misses_and_repeats_nothing(server: LiveServer,
                                                                      watchers: list[Watcher]) -> None:
    mgr = server.manager
    for i in range(5):
        mgr.set("app", f"k{i}", i)
    middle = mgr.get("app", "k2").revision
    by_query = _watch(watchers, server, since=middle)
    by_header = _watch(watchers, server, headers={"Last-Event-ID": str(middle)})
    for w in (by_query, by_header):
        assert _hello(w)["revision"] == middle
        assert [c["key"] for c in w.changes(2)] == ["k3", "k4"]
        w.quiet(0.2)


def test_a_stream_far_behind_reads_storage_then_the_ring(server: LiveServer, watchers: list[Watcher],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("llm_config.server.streams.RING", 8)
    live = _watch(watchers, server)  # starts the hub with a ring of 8
    _hello(live)
    mgr = server.manager
    for i in range(30):
        mgr.set("app", f"k{i}", i)
    assert len(live.changes(30)) == 30
    late = _watch(watchers, server, since=0)
    _hello(late)
    assert [c["key"] for c in late.changes(30)] == [f"k{i}" for i in range(30)]
    mgr.set("app", "after", 1)
    assert late.changes(1)[0]["key"] == "after"


def test_a_revision_ahead_of_the_store_or_another_epoch_gets_resync(server: LiveServer,
                                                                   watchers: list[Watcher]) -> None:
    server.manager.set("app", "k", 1)
    current = server.manager.feed.current()
    ahead = _watch(watchers, server, since=current + 100)
    hello = _hello(ahead)
    event = ahead.next()
    assert event.event == "resync"
    assert orjson.loads(event.data) == {"reason": "ahead", "epoch": hello["epoch"], "revision": current}
    assert int(event.id) == current

    other = _watch(watchers, server, since=1, epoch="another-epoch")
    _hello(other)
    event = other.next()
    assert event.event == "resync" and orjson.loads(event.data)["reason"] == "epoch"
    server.manager.set("app", "k", 2)
    assert other.changes(1)[0]["version"] == 2  # and it goes on from there


def test_a_restore_while_streaming_sends_resync(server: LiveServer, watchers: list[Watcher], tmp_path: Any) -> None:
    mgr = server.manager
    mgr.set("app", "k", 1)
    w = _watch(watchers, server)
    before = _hello(w)["epoch"]
    backup = tmp_path / "b.llmc"
    with backup.open("wb") as out:
        mgr.backup(out)
    with backup.open("rb") as stream:
        mgr.restore(stream, force=True)
    event = w.next(timeout=10)
    assert event.event == "resync"
    data = orjson.loads(event.data)
    assert data["reason"] == "epoch" and data["epoch"] != before


def test_a_key_sees_only_what_it_may_read(server: LiveServer, watchers: list[Watcher]) -> None:
    prod_viewer = server.new_key("viewer", namespaces=["app"], environments=["production"])
    w = _watch(watchers, server, key=prod_viewer)
    _hello(w)
    for env in ("staging", "production", "base"):
        server.manager.set("app", "k", env, env=env)
    assert [c["environment"] for c in w.changes(2)] == ["production", "base"]  # a scope always reads base
    w.quiet(0.3)

    other_ns = server.new_key("viewer", namespaces=["elsewhere"])
    refused = _watch(watchers, server, key=other_ns)
    assert refused.status == 403 and refused.body["error"] == "Forbidden"
    staging_only = server.new_key("viewer", environments=["staging"])
    assert _watch(watchers, server, key=staging_only, env="production").status == 403


def test_a_revoked_key_ends_its_stream(server: LiveServer, admin: httpx.Client, watchers: list[Watcher]) -> None:
    created = admin.post("/api/v1/keys", json={"name": "watcher", "role": "viewer"}).json()
    w = _watch(watchers, server, key=created["key"])
    _hello(w)
    assert admin.delete(f"/api/v1/keys/{created['id']}").status_code in (200, 204)
    event = w.next(timeout=10)
    assert event.event == "error"
    assert orjson.loads(event.data)["error"] == "Unauthorized"
    assert w.ended()
    again = _watch(watchers, server, key=created["key"])
    assert again.status == 401


def test_keepalive_comments_keep_an_idle_stream_open(server: LiveServer) -> None:
    server.app.state.watch = WatchSettings(keepalive=0.1, auth_check=5, poll=0.05)
    with server.client(timeout=httpx.Timeout(10, read=5)) as api, \
            api.stream("GET", "/api/v1/watch/app") as response:
        lines = []
        for line in response.iter_lines():
            lines.append(line)
            if lines.count(": keepalive") >= 3:
                break
    assert lines[:2] == [f"id: {server.manager.feed.current()}", "event: hello"]


def test_many_streams_do_not_take_a_thread_each(server: LiveServer, admin: httpx.Client,
                                               watchers: list[Watcher]) -> None:
    from llm_config.server.app import THREAD_POOL_SIZE

    def sent() -> float:  # the process's counter: other tests' streams counted into it too
        line = next((x for x in admin.get("/metrics").text.splitlines()
                     if x.startswith('llm_config_watch_events_total{event="change"}')), None)
        return float(line.split()[-1]) if line else 0.0

    before = sent()
    streams = [_watch(watchers, server) for _ in range(THREAD_POOL_SIZE + 8)]
    for w in streams:
        _hello(w)
    server.manager.set("app", "k", 1)
    for w in streams:
        assert w.changes(1)[0]["key"] == "k"
    assert admin.get("/health/live").status_code == 200  # the pool still answers
    assert f"llm_config_watch_streams {float(len(streams))}" in admin.get("/metrics").text
    assert sent() - before == len(streams)


@pytest.mark.parametrize(("params", "headers", "why"), [
    ({"since": "-1"}, {}, "since"),
    ({"since": "x"}, {}, "since"),
    ({"env": "nope"}, {}, "env"),
    ({"epoch": "a b"}, {}, "epoch"),
    ({"verbose": "1"}, {}, "verbose"),
    ({}, {"Last-Event-ID": "abc"}, "Last-Event-ID"),
])
def test_bad_parameters_are_400(admin: httpx.Client, params: dict[str, str], headers: dict[str, str],
                                why: str) -> None:
    r = admin.get("/api/v1/watch/app", params=params, headers=headers)
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"error", "message"}
    assert admin.get("/api/v1/watch/-bad").status_code in (400, 404)


def test_no_key_is_401_before_anything_streams(server: LiveServer) -> None:
    with server.client(None) as anonymous:
        assert anonymous.get("/api/v1/watch/app").status_code == 401


def test_changes_written_by_another_process_are_streamed(server: LiveServer, watchers: list[Watcher],
                                                         make_manager: Callable[..., ConfigManager]) -> None:
    w = _watch(watchers, server)
    _hello(w)
    other = make_manager()  # another process's manager on the same SQLite store: the hub's poll finds it
    started = time.monotonic()
    other.set("app", "from-elsewhere", 1)
    assert w.changes(1)[0]["key"] == "from-elsewhere"
    assert time.monotonic() - started < 5


def test_a_stream_ends_after_max_seconds_and_resumes_without_a_gap(server: LiveServer,
                                                                  watchers: list[Watcher]) -> None:
    server.app.state.watch = WatchSettings(keepalive=15, auth_check=5, poll=0.05, max_seconds=0.5)
    first = _watch(watchers, server)
    _hello(first)
    server.manager.set("app", "a", 1)
    seen = first.changes(1)[0]["revision"]
    assert first.ended(5)
    server.manager.set("app", "b", 1)  # while nobody watches
    again = _watch(watchers, server, headers={"Last-Event-ID": str(seen)})
    _hello(again)
    assert [c["key"] for c in again.changes(1)] == ["b"]


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_a_change_written_on_one_replica_is_streamed_by_another(
    backend: str, make_live_server: Callable[..., LiveServer], make_manager: Callable[..., ConfigManager],
) -> None:
    from tests.databases import private_database

    with private_database(backend) as database:
        a = make_live_server(manager=make_manager(storage=database.url))
        b = make_live_server(manager=make_manager(storage=database.url))
        b.app.state.watch = WatchSettings(poll=0.05)
        opened: list[Watcher] = []
        try:
            w = Watcher(b, "/api/v1/watch/app", key=b.new_key("viewer"))
            opened.append(w)
            _hello(w)
            with a.client() as api:
                revisions = [int(api.put(f"/api/v1/configs/app/-/k{i}", json={"value": i}).headers["x-config-revision"])
                             for i in range(20)]
            got = w.changes(20)
            assert [c["revision"] for c in got] == revisions
            assert [c["key"] for c in got] == [f"k{i}" for i in range(20)]
        finally:
            hub = getattr(b.app.state, "watch_hub", None)
            if hub is not None:
                hub.close()
            for w in opened:
                w.close()


def test_a_change_row_removed_behind_our_back_makes_every_stream_resync(
    server: LiveServer, watchers: list[Watcher], caplog: pytest.LogCaptureFixture,
) -> None:
    """Change rows carry no MAC, but every write takes the next revision and adds its row in the same
    transaction: a database writer who deletes one (to keep a client on a stale value) leaves a gap, and
    the streams are told to reload instead of missing it."""
    import sqlite3

    w = _watch(watchers, server)
    _hello(w)
    server.manager.set("app", "a", 1)
    assert w.changes(1)[0]["key"] == "a"
    db = sqlite3.connect(server.manager.storage.url.removeprefix("sqlite:///"))
    # the attacker's timing: the row of the next write goes before the hub reads it
    with db:
        db.execute("CREATE TRIGGER hide AFTER INSERT ON changes WHEN NEW.\"key\" = 'b' "
                   "BEGIN DELETE FROM changes WHERE revision = NEW.revision; END")
    server.manager.set("app", "b", 1)
    event = w.next()
    assert event.event == "resync"
    assert orjson.loads(event.data)["reason"] == "expired"
    with db:
        db.execute("DROP TRIGGER hide")
    db.close()
    server.manager.set("app", "c", 1)
    assert w.changes(1)[0]["key"] == "c"
