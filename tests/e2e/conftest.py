"""Fixtures for the REST API: a real uvicorn server in a thread, on a fresh store with a fresh key."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from llm_config.core.manager import ConfigManager
from llm_config.server.app import create_app
from llm_config.server.runner import uvicorn_options
from llm_config.settings import ServeOptions


@dataclass
class LiveServer:
    """A running API server: its base URL, app, manager and options."""

    url: str
    app: FastAPI
    manager: ConfigManager
    options: ServeOptions

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)


class ServerThread:
    """uvicorn.Server running in a daemon thread (signal handlers stay with the main thread)."""

    def __init__(self, app: FastAPI, options: ServeOptions) -> None:
        kwargs = uvicorn_options(replace(options, port=0))
        kwargs["log_level"] = "warning"
        self.server = uvicorn.Server(uvicorn.Config(app, **kwargs))  # type: ignore[arg-type]
        self.thread = threading.Thread(target=self.server.run, name="llm-config-live-server", daemon=True)

    def start(self) -> int:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live server did not start")
            time.sleep(0.01)
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def make_live_server(
    make_manager: Callable[..., ConfigManager],
) -> Iterator[Callable[..., LiveServer]]:
    """Factory: start a live server (keyword args override `ServeOptions`) on the test's store."""
    running: list[ServerThread] = []

    def start(**options: Any) -> LiveServer:
        opts = ServeOptions(**options)
        manager = make_manager(cache_ttl=opts.cache_ttl)
        app = create_app(manager, opts)
        thread = ServerThread(app, opts)
        running.append(thread)
        port = thread.start()
        scheme = "https" if opts.tls_cert else "http"
        return LiveServer(url=f"{scheme}://127.0.0.1:{port}", app=app, manager=manager, options=opts)

    yield start
    for thread in running:
        thread.stop()


@pytest.fixture
def live_server(make_live_server: Callable[..., LiveServer]) -> LiveServer:
    """A live API server with default options on a fresh store."""
    return make_live_server()


@pytest.fixture
def api(live_server: LiveServer) -> Iterator[httpx.Client]:
    """An httpx client for `live_server`."""
    with live_server.client() as client:
        yield client
