"""The SDK's threads and tasks: prompt close with live streams, a bounded number of streams, callbacks."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from llm_config import AsyncClient, Client
from llm_config.errors import NotFoundError
from tests.e2e.conftest import LiveServer

NS = "acme/bot"


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timeout")
        time.sleep(0.01)


@pytest.fixture
def server(make_live_server) -> LiveServer:
    return make_live_server()


def test_close_prompt_with_live_streams(server: LiveServer) -> None:
    for i in range(5):
        server.manager.set(f"n{i}", "k", i)
    c = Client(server.url, api_key=server.admin_key)
    for i in range(5):
        c.get(f"n{i}", "k")
    wait_for(lambda: len(c.status().watching) == 5)
    t0 = time.monotonic()
    c.close()
    took = time.monotonic() - t0
    print("close took", took, "threads left", [t.name for t in threading.enumerate() if "llm-config" in t.name])
    assert took < 1.0


def test_reads_of_many_namespaces_open_at_most_max_watched_streams(server: LiveServer) -> None:
    """Reads of namespaces (even missing ones: a typo, a tenant id from user input) open streams only up to
    `max_watched`; the rest are kept by `ttl`."""
    c = Client(server.url, api_key=server.admin_key, max_watched=8)
    try:
        before = threading.active_count()
        for i in range(20):
            with pytest.raises(NotFoundError):
                c.get(f"nope{i}", "k")
        time.sleep(0.5)
        assert len(c.status().watching) <= 8
        assert threading.active_count() - before <= 8 + 4  # and a few background workers
    finally:
        c.close()


def test_async_aclose_from_callback(server: LiveServer) -> None:
    server.manager.set(NS, "a", 0)

    async def main() -> None:
        c = AsyncClient(server.url, api_key=server.admin_key)
        done = asyncio.Event()

        async def cb(ch, e):
            await c.aclose()
            done.set()

        await c.get(NS, "a")
        c.on_change(NS, "a", cb)
        for _ in range(500):
            if c.status().watching:
                break
            await asyncio.sleep(0.01)
        await asyncio.to_thread(server.manager.set, NS, "a", 1)
        try:
            await asyncio.wait_for(done.wait(), 5)
        finally:
            print("http closed:", c._http.is_closed)
            assert c._http.is_closed
    asyncio.run(main())
