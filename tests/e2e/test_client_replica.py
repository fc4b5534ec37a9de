"""A change written by another process reaches the client, and its refetch gets the new value: the
server's watch reader drops what it read about from its own cache before telling anyone (its cache poll
runs on its own clock), so the refetch is never served — or 304'd — the old value and kept for good."""

from __future__ import annotations

import time

import pytest

from llm_config import Client
from tests.databases import private_database

NS = "acme/bot"


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_change_from_another_process_is_served_after_its_event(backend, make_manager, make_live_server) -> None:
    with private_database(backend) as db:
        served = make_manager(storage=db.url, cache_ttl=30)
        other = make_manager(storage=db.url, cache_ttl=30)  # another process (a second replica, a CLI)
        other.set(NS, "k", 0)
        server = make_live_server(manager=served, cache_ttl=30)
        c = Client(server.url, api_key=server.admin_key)
        try:
            c.get(NS, "k")
            deadline = time.monotonic() + 10
            while not c.status().watching and time.monotonic() < deadline:
                time.sleep(0.01)
            stale = 0
            for i in range(1, 16):
                other.set(NS, "k", i)
                time.sleep(0.4)  # far longer than both 0.1 s polls: everything has settled
                got = c.get(NS, "k").value
                if got != i:
                    stale += 1
            assert stale == 0, f"{stale}/15 writes left the client serving a stale value while status() said live"
        finally:
            c.close()
