"""Fixtures for the REST API: a real uvicorn server in a thread, on a fresh store with a fresh key.

Every server gets an unrestricted admin API key (`LiveServer.admin_key`); `LiveServer.client()`
sends it unless told otherwise. Rate limits are off unless a test asks for them (a test suite
sends requests faster than any real client should).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from llm_config.core.manager import ConfigManager
from llm_config.server.app import create_app
from llm_config.server.runner import uvicorn_options
from llm_config.settings import ServeOptions

ADMIN_NAME = "test-admin"


@dataclass
class LiveServer:
    """A running API server: its base URL, app, manager, options and an admin API key."""

    url: str
    app: FastAPI
    manager: ConfigManager
    options: ServeOptions
    admin_key: str

    @property
    def admin_actor(self) -> str:
        """How the audit trail names the admin key: `key:<name>#<id>`."""
        return next(k.actor for k in self.manager.list_api_keys() if k.name == ADMIN_NAME and not k.revoked_at)

    def client(self, key: str | bool | None = True, **kw: Any) -> httpx.Client:
        """An httpx client sending `key` (True: the admin key; None/False: no key)."""
        headers = dict(kw.pop("headers", {}))
        token = self.admin_key if key is True else key or None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kw.setdefault("timeout", 30)
        return httpx.Client(base_url=self.url, headers=headers, **kw)

    def new_key(self, role: str = "admin", name: str | None = None, **kw: Any) -> str:
        """A fresh API key made directly by the manager (as the local owner)."""
        return self.manager.create_api_key(name or f"{role}-{time.monotonic_ns()}", role, **kw)[1]


class ServerThread:
    """uvicorn.Server running in a daemon thread (signal handlers stay with the main thread)."""

    def __init__(self, app: FastAPI, options: ServeOptions) -> None:
        kwargs = uvicorn_options(replace(options, port=0))
        kwargs["log_level"] = "warning"
        self.app = app
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
        hub = getattr(self.app.state, "watch_hub", None)
        if hub is not None:  # as `serve` does: open watch streams end first
            hub.close()
        self.server.should_exit = True
        self.thread.join(timeout=15)


def serve_in_thread(
    manager: ConfigManager, options: ServeOptions, *, redis_url: str | None = None,
) -> tuple[ServerThread, LiveServer]:
    """Start `create_app(manager, options)` on a free port, with a fresh admin key."""
    admin_key = manager.create_api_key(ADMIN_NAME, "admin")[1] if not _has_admin(manager) else ""
    app = create_app(manager, options, redis_url=redis_url)
    thread = ServerThread(app, options)
    port = thread.start()
    scheme = "https" if options.tls_cert else "http"
    server = LiveServer(url=f"{scheme}://127.0.0.1:{port}", app=app, manager=manager, options=options,
                        admin_key=admin_key)
    return thread, server


def _has_admin(manager: ConfigManager) -> bool:
    return any(k.name == ADMIN_NAME for k in manager.list_api_keys())


def server_options(**options: Any) -> ServeOptions:
    """ServeOptions for a test server: rate limits off unless given."""
    options.setdefault("rate_limit_key", "0")
    options.setdefault("rate_limit_ip", "0")
    return ServeOptions(**options)


@pytest.fixture
def make_live_server(
    make_manager: Callable[..., ConfigManager],
) -> Iterator[Callable[..., LiveServer]]:
    """Factory: start a live server (keyword args override `ServeOptions`) on the test's store."""
    running: list[ServerThread] = []

    def start(*, redis_url: str | None = None, manager: ConfigManager | None = None, **options: Any) -> LiveServer:
        opts = server_options(**options)
        mgr = manager if manager is not None else make_manager(cache_ttl=opts.cache_ttl, audit_reads=opts.audit_reads)
        thread, server = serve_in_thread(mgr, opts, redis_url=redis_url)
        running.append(thread)
        return server

    yield start
    for thread in running:
        thread.stop()


@pytest.fixture
def live_server(make_live_server: Callable[..., LiveServer]) -> LiveServer:
    """A live API server with default options (rate limits off) on a fresh store."""
    return make_live_server()


@pytest.fixture
def api(live_server: LiveServer) -> Iterator[httpx.Client]:
    """An httpx client for `live_server`, sending its admin key."""
    with live_server.client() as client:
        yield client


@pytest.fixture
def anon(live_server: LiveServer) -> Iterator[httpx.Client]:
    """An httpx client for `live_server` without any key."""
    with live_server.client(key=None) as client:
        yield client


# ------------------------------------------------------------------ tracing (serve --tracing)


class Traced:
    """A live server whose spans land in `exporter`, and an admin client."""

    def __init__(self, manager: ConfigManager, exporter: InMemorySpanExporter, url: str, admin_key: str) -> None:
        self.manager = manager
        self.exporter = exporter
        self.url = url
        self.admin_key = admin_key
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30)

    def spans(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.exporter.get_finished_spans())

    def trace_of(self, request: Any) -> list[ReadableSpan]:
        """The spans of the one request made since the exporter was cleared: one trace, one server span."""
        del request
        spans = self.spans()
        (root,) = [s for s in spans if s.kind is SpanKind.SERVER]
        assert root.context is not None
        return [s for s in spans if s.context is not None and s.context.trace_id == root.context.trace_id]


def start_traced(make_manager: Any) -> tuple[Traced, ServerThread]:
    """A live server on a fresh store whose spans go to an in-memory exporter (stop the thread after)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    manager: ConfigManager = make_manager()
    admin_key = manager.create_api_key("tracing-admin", "admin")[1]
    options = server_options()
    app = create_app(manager, options, tracer_provider=provider)
    thread = ServerThread(app, options)
    port = thread.start()
    return Traced(manager, exporter, f"http://127.0.0.1:{port}", admin_key), thread


@pytest.fixture
def traced(make_manager: Any) -> Iterator[Traced]:
    server, thread = start_traced(make_manager)
    yield server
    server.client.close()
    thread.stop()


def span_text(span: ReadableSpan) -> str:
    """Everything a span exports, as text."""
    return json.dumps(json.loads(span.to_json()), sort_keys=True)
