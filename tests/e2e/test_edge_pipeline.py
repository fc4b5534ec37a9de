"""The edge as a pipeline (`server/edge/`): its steps in order, the paths it shares with the routes, and a
streamed response crossing it — chunk by chunk, headers first, counted and logged once it ends."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Match

from llm_config import metrics
from llm_config.server import paths
from llm_config.server.edge import EdgeMiddleware, respond
from llm_config.server.routes import backup, configs
from tests.e2e.conftest import LiveServer

STREAM_PATH = "/api/v1/test-stream/{name}"


def _edge(server: LiveServer) -> EdgeMiddleware:
    edge = getattr(server.app, "edge_app", None)
    assert isinstance(edge, EdgeMiddleware)
    return edge


def test_the_steps_run_in_the_documented_order(make_live_server: Callable[..., LiveServer]) -> None:
    def names(server: LiveServer) -> list[str]:
        return [f"{type(step.__self__).__name__}.{step.__name__}"  # type: ignore[attr-defined]
                for step in _edge(server).steps]

    assert names(make_live_server()) == [
        "AddressGuard.refuse", "Authenticate.check", "RateLimit.check", "CachedGet.answer", "BodyLimits.check",
        "EdgeMiddleware._forward",
    ]
    assert names(make_live_server(cors_origin=["https://console.example"]))[:3] == [
        "AddressGuard.refuse", "Cors.apply", "Authenticate.check",
    ]


@pytest.mark.parametrize("path", [
    "/api/v1/configs/app/k", "/api/v1/configs/app/-/k", "/api/v1/configs/a/b/c/-/k", "/api/v1/configs/app",
    "/api/v1/configs/app/-/", "/api/v1/configs/app/k/history", "/api/v1/configs/app/-/k/history",
    "/api/v1/configs//-/k", "/api/v1/configs/app/k/", "/api/v1/namespaces", "/api/v1/configs/a/-/b/-/k",
])
def test_the_cached_get_matches_exactly_what_the_router_routes_to_get_config(path: str) -> None:
    scope = {"type": "http", "method": "GET", "path": path, "root_path": ""}
    routed: tuple[str, dict[str, Any]] | None = None
    for route in configs.router.routes:  # in the order the app tries them
        match, child = route.matches(scope)
        if match is Match.FULL:
            name = getattr(route, "name", "")
            if name in ("get_config", "get_config_path"):
                routed = (getattr(route, "path", "").replace(":path", ""), child["path_params"])
            break
    found = paths.match_entry(path)
    if routed is None:
        assert found is None
    else:
        assert found == (routed[1]["ns"], routed[1]["key"], routed[0])


def test_the_routes_register_with_the_shared_paths() -> None:
    registered = {getattr(route, "path", "") for module in (configs, backup) for route in module.router.routes}
    for template in (paths.CONFIG_ENTRY, paths.CONFIG_ENTRY_PATH, paths.CONFIGS_NS, paths.CONFIGS_NS_PATH + "/",
                     paths.BACKUP_PATH, paths.RESTORE_PATH):
        assert template in registered, template


def test_a_restore_body_is_read_under_its_own_limit_even_without_a_length(
    make_live_server: Callable[..., LiveServer],
) -> None:
    server = make_live_server(max_restore_body=1000, max_body=100_000)

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length for anyone to check up front
        for _ in range(5):
            yield b"x" * 1000

    with server.client() as api:
        r = api.post(paths.RESTORE_PATH, content=chunks(), headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 413, r.text
    assert r.json()["message"] == "Backup larger than 1000 bytes (--max-restore-body)"


# ----------------------------------------------------------------------------- streaming


class _Stream:
    """A throwaway Server-Sent Events route: `hello`, then (once `gate` is set) an event every 0.1 s, forever."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.closed = threading.Event()

    async def events(self) -> AsyncIterator[bytes]:
        try:
            yield b"event: hello\ndata: 0\n\n"
            while not self.gate.is_set():  # nothing more until the client has seen the first event
                await asyncio.sleep(0.01)
            n = 1
            while True:
                yield f"data: {n}\n\n".encode()
                n += 1
                await asyncio.sleep(0.1)
        finally:
            self.closed.set()

    async def endpoint(self, request: Request) -> StreamingResponse:
        return StreamingResponse(self.events(), media_type="text/event-stream")


def _http_count(method: str, route: str, status: int) -> float:
    for metric in metrics.HTTP_REQUESTS.collect():
        for sample in metric.samples:
            labels = sample.labels
            if sample.name.endswith("_total") and (labels["method"], labels["route"], labels["status"]) == \
                    (method, route, str(status)):
                return float(sample.value)
    return 0.0


@pytest.mark.parametrize("with_empty_body", [False, True], ids=["get", "get-with-content-length-0"])
def test_a_streamed_response_crosses_the_edge_chunk_by_chunk(
    make_live_server: Callable[..., LiveServer], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    with_empty_body: bool,
) -> None:
    # a body timeout far shorter than the stream: it bounds the (empty) body, never the response
    server = make_live_server(body_timeout=1.5, rate_limit_key="1000:1000")
    stream = _Stream()
    server.app.add_api_route(STREAM_PATH, stream.endpoint, methods=["GET"])
    logged: list[tuple[Any, ...]] = []
    unexpected: list[str] = []
    real_access_line = respond.access_line
    monkeypatch.setattr(respond, "access_line", lambda *a: (logged.append(a), real_access_line(*a)))
    monkeypatch.setattr(respond, "log_unexpected", lambda exc, where: unexpected.append(f"{where}: {exc!r}"))
    before = _http_count("GET", STREAM_PATH, 200)
    headers = {"X-Request-ID": "stream-1"} | ({"Content-Length": "0"} if with_empty_body else {})

    with caplog.at_level(logging.INFO, logger="llm_config"), server.client() as api:
        with api.stream("GET", "/api/v1/test-stream/s1", headers=headers, timeout=5) as r:
            # the status and every header the edge adds arrive before the route has sent its second event
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["cache-control"] == "no-store"
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-frame-options"] == "DENY"
            assert "content-security-policy" in r.headers
            assert r.headers["x-request-id"] == "stream-1"
            assert r.headers["x-ratelimit-limit"] == "1000"
            received = r.iter_raw()
            assert next(received) == b"event: hello\ndata: 0\n\n"  # not buffered: the route is waiting for us
            stream.gate.set()
            seen = b""
            started = time.monotonic()
            while time.monotonic() - started < 2.0:  # past the body timeout: still streaming
                seen += next(received)
            assert seen.startswith(b"data: 1\n\ndata: 2\n\n") and seen.count(b"\n\n") >= 5
        # leaving the block closes the connection: the client is gone while the stream runs forever
        assert stream.closed.wait(5), "the stream was not ended when its client left"
        deadline = time.monotonic() + 5
        while not logged and time.monotonic() < deadline:
            time.sleep(0.02)

    assert [entry[:3] for entry in logged] == [("GET", STREAM_PATH, 200)]  # one access line, once it ended
    assert logged[0][4] == "stream-1" and logged[0][3] >= 2000  # its duration is the stream's
    assert _http_count("GET", STREAM_PATH, 200) == before + 1
    assert unexpected == []
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


def test_a_stream_is_refused_like_any_request_before_it_starts(make_live_server: Callable[..., LiveServer]) -> None:
    server = make_live_server()
    stream = _Stream()
    server.app.add_api_route(STREAM_PATH, stream.endpoint, methods=["GET"])
    with server.client(key=None) as anon:
        r = anon.get("/api/v1/test-stream/s1")
    assert r.status_code == 401 and r.headers["cache-control"] == "no-store"
    assert not stream.closed.is_set()  # the route never ran
