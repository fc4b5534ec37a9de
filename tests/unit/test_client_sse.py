"""Faults in the watch stream's data, read by the real client code through `httpx.MockTransport` (the only
thing mocked here is what arrives on the wire): malformed events are logged, counted and skipped, replays
after a reconnect are deduplicated, the reconnect resumes from the last revision, and nothing escapes
the watch thread or task."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent

from llm_config import AsyncClient, Client, wire
from llm_config.client._base import ClientCore
from llm_config.client.watch import StreamEnd, decode
from llm_config.errors import AuthenticationError
from llm_config.models import Entry

URL = "http://127.0.0.1:1"
KEY = "llmc_" + "t" * 43


def sse(event: str, data: str, id: str | None = None) -> bytes:
    head = f"id: {id}\n" if id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


def change(revision: int, key: str = "a", kind: str = "set") -> bytes:
    return sse("change", f'{{"revision": {revision}, "namespace": "ns", "key": "{key}", '
               f'"environment": "production", "version": 1, "kind": "{kind}"}}', str(revision))


FIRST = b"".join([
    sse("hello", '{"epoch": "E1", "revision": 5}', "5"),
    b": keepalive\n\n",
    sse("change", "{not json", "6"),
    change(6, kind="explode"),
    sse("change", '{"revision": "6"}', "6"),
    sse("mystery", "{}"),  # a newer server's event type: ignored, not counted
    change(6),
])
SECOND = b"".join([sse("hello", '{"epoch": "E1", "revision": 6}', "6"), change(6), change(7, key="b")])


class Wire:
    """Answers the watch route with scripted streams; every other request with a 404 body."""

    def __init__(self, streams: list[bytes]) -> None:
        self.streams = streams
        self.watch_params: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()  # streams wait until the test has subscribed everything
        self.gate.set()

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/v1/watch/"):
            assert request.headers["authorization"] == f"Bearer {KEY}"
            assert self.gate.wait(10)
            with self.lock:
                self.watch_params.append(dict(request.url.params))
                n = len(self.watch_params)
            if n <= len(self.streams):
                return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=self.streams[n - 1])
            return httpx.Response(404, json={"error": "Not Found", "message": "no watch route"})
        return httpx.Response(404, json={"error": "Not Found", "message": "Config not found"})

    async def ahandle(self, request: httpx.Request) -> httpx.Response:
        return self.handle(request)


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_decode_skips_and_counts_malformed_events() -> None:
    core = ClientCore(URL, KEY)
    w = core.want_watch("ns")
    assert w is not None
    assert decode(core, w, ServerSentEvent("change", "{")) is None
    assert decode(core, w, ServerSentEvent("change", '{"revision": 1}')) is None
    assert decode(core, w, ServerSentEvent("hello", '{"epoch": 5, "revision": 1}')) is None
    assert decode(core, w, ServerSentEvent("resync", "[]")) is None
    assert decode(core, w, ServerSentEvent("ping", "{")) is None  # unknown type: not counted
    assert w.malformed == 4 and core.status().malformed_events == 4
    hello = decode(core, w, ServerSentEvent("hello", '{"epoch": "0", "revision": 3}', "3"))
    assert hello == wire.WatchHello("0", 3)
    end = decode(core, w, ServerSentEvent("error", '{"error": "Unauthorized", "message": "API key revoked"}'))
    assert isinstance(end, StreamEnd) and isinstance(end.error, AuthenticationError)


def test_the_sync_client_skips_bad_events_deduplicates_replays_and_resumes(caplog: pytest.LogCaptureFixture) -> None:
    script = Wire([FIRST, SECOND])
    script.gate.clear()
    seen: list[tuple[int, str, Entry | None]] = []
    caplog.set_level(logging.WARNING, "llm_config.client")
    client = Client(URL, api_key=KEY, transport=httpx.MockTransport(script.handle), retries=0)
    try:
        client.on_change("ns", "a", lambda c, e: 1 / 0)  # a failing callback is logged and swallowed
        client.on_change("ns", "*", lambda c, e: seen.append((c.revision, c.key, e)))
        script.gate.set()
        wait_for(lambda: client.status().watch_errors != ())
        assert [(r, k) for r, k, _ in seen] == [(6, "a"), (7, "b")]  # once each, in order
        assert all(e is None for _, _, e in seen)  # the entry could not be read (404): None
        assert script.watch_params[0] == {}  # the first stream starts from now
        assert script.watch_params[1] == {"since": "6", "epoch": "E1"}
        assert script.watch_params[2] == {"since": "7", "epoch": "E1"}
        status = client.status()
        assert status.malformed_events == 3 and status.last_revision == 7
        assert status.watch_errors == (("ns", "NotFoundError: no watch route"),)
        assert "raised ZeroDivisionError" in caplog.text
        assert sum("malformed change event" in r.getMessage() for r in caplog.records) == 3
    finally:
        client.close()


def test_a_stream_that_is_not_event_stream_is_retried_not_fatal() -> None:
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(200, headers={"content-type": "text/html"}, content=b"<html>")
        if len(calls) == 2:
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=SECOND)
        return httpx.Response(401, json={"error": "Unauthorized", "message": "API key revoked"})

    seen: list[int] = []
    client = Client(URL, api_key=KEY, transport=httpx.MockTransport(handle), retries=0)
    try:
        client.on_change("ns", "b", lambda c, e: seen.append(c.revision))
        wait_for(lambda: client.status().watch_errors != ())
        assert seen == [7]
        assert client.status().watch_errors == (("ns", "AuthenticationError: API key revoked"),)
    finally:
        client.close()


def test_the_async_client_does_the_same() -> None:
    script = Wire([FIRST, SECOND])

    async def main() -> list[tuple[int, str]]:
        seen: list[tuple[int, str]] = []

        async def record(c: wire.WatchChange, e: Entry | None) -> None:
            await asyncio.sleep(0)
            seen.append((c.revision, c.key))

        async with AsyncClient(URL, api_key=KEY, transport=httpx.MockTransport(script.ahandle), retries=0) as client:
            client.on_change("ns", "*", record)
            client.on_change("ns", "*", lambda c, e: 1 / 0)
            deadline = time.monotonic() + 10
            while client.status().watch_errors == ():
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            assert client.status().malformed_events == 3
        return seen

    assert asyncio.run(main()) == [(6, "a"), (7, "b")]
    assert script.watch_params[1] == {"since": "6", "epoch": "E1"}


def test_a_broken_callback_entry_or_odd_event_never_kills_the_thread() -> None:
    weird: Any = [
        sse("hello", '{"epoch": "E", "revision": 1}', "1"),
        sse("change", '{"revision": 2, "namespace": "other", "key": "a", "environment": "production", '
                      '"version": 1, "kind": "set"}', "2"),  # not this stream's namespace: ignored
        sse("change", '{"revision": 3, "namespace": "ns", "key": "a", "environment": "nowhere", '
                      '"version": 1, "kind": "set"}', "3"),  # unknown environment: malformed
        sse("resync", '{"reason": "epoch", "epoch": "F", "revision": 9}', "9"),
        change(10),
    ]
    script = Wire([b"".join(weird)])
    seen: list[int] = []
    client = Client(URL, api_key=KEY, transport=httpx.MockTransport(script.handle), retries=0)
    try:
        client.on_change("ns", "*", lambda c, e: seen.append(c.revision))
        wait_for(lambda: client.status().watch_errors != ())
        assert seen == [10]
        assert client.status().malformed_events == 1 and client.status().epoch == "F"
        assert script.watch_params[1] == {"since": "10", "epoch": "F"}
    finally:
        client.close()
