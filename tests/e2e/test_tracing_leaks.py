"""`serve --tracing` against what an attacker or a careless client tries to get into a span.

API keys pasted into a path or a header are masked, no header is captured whatever the OTEL_*
variables say, a watch stream's hub belongs to no request's trace, and two managers in one process
send their spans to their own providers. Each test runs a real uvicorn server
(`tests/e2e/conftest.py`'s `ServerThread`) with an in-memory
exporter, as tests/e2e/test_tracing.py does, and holds the promise: spans name namespaces, keys,
environments and outcomes only, never a secret or an API key, and one request is one trace.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from llm_config import tracing
from tests.e2e.conftest import Traced, span_text, start_traced


def leaks(spans: tuple[ReadableSpan, ...], needle: str) -> list[str]:
    return [f"{s.name}: {span_text(s)[:400]}" for s in spans if needle in span_text(s)]


def test_an_api_key_pasted_into_a_config_path_is_masked_in_every_span(traced: Traced) -> None:
    """Attack: a client (or a script building URLs from variables) puts an API key where a key name
    goes, `GET /api/v1/configs/app/llmc_…`. The request span's URL attributes are masked by
    traces._scrub, but the edge's `peek_record` and the route's `get` span copy the raw path segment
    into `llm_config.key`. Expected: no span carries the API key (masked as `llmc_[redacted]`, as
    the access log and the URL attributes do)."""
    traced.client.get("/api/v1/namespaces")
    traced.exporter.clear()
    stray = traced.admin_key  # a real API key, `llmc_…`, valid as a key name
    traced.client.get(f"/api/v1/configs/app/{stray}", params={"env": "production"})
    traced.client.get(f"/api/v1/configs/{stray}/model", params={"env": "production"})

    assert traced.spans()
    assert leaks(traced.spans(), stray) == []


def test_an_api_key_in_the_user_agent_or_host_header_never_reaches_a_span(traced: Traced) -> None:
    """Attack: the ASGI instrumentation copies `User-Agent` (http.user_agent / user_agent.original)
    and `Host` (http.server_name) into the request span; traces._scrub masks only URL attributes.
    A client that puts its key in a header other than Authorization (a CLI banner, a proxy) ships
    it to the trace backend. Expected: headers are never captured (traces.py says so) — at least
    nothing shaped like an API key reaches a span."""
    traced.client.get("/api/v1/namespaces")
    traced.exporter.clear()
    stray = traced.admin_key
    traced.client.get("/api/v1/namespaces", headers={"User-Agent": f"deploy-bot/1.0 ({stray})"})
    traced.client.get("/api/v1/namespaces", headers={"Host": f"{stray}.example"})

    assert traced.spans()
    assert leaks(traced.spans(), stray) == []


def test_the_authorization_header_never_reaches_a_span_whatever_the_otel_variables_say(
    make_manager: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Attack/misconfiguration: `serve --tracing` is configured "by the standard OTEL_* variables";
    the ASGI middleware also reads OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST, and an
    operator setting it to `.*` (a common debugging recipe) makes every request span carry
    `http.request.header.authorization` = `Bearer llmc_…`. Expected: the server never captures
    request headers (traces.py: "Request and response headers are never captured"); the API key
    stays out of every span."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", ".*")
    server, thread = start_traced(make_manager)
    try:
        server.client.get("/api/v1/namespaces")
        assert server.spans()
        assert leaks(server.spans(), server.admin_key) == []
    finally:
        server.client.close()
        thread.stop()


def test_a_watch_stream_does_not_adopt_the_hub_into_its_trace(traced: Traced) -> None:
    """Attack: the watch hub's poll task is created (asyncio.create_task) inside the first watch
    request, so it inherits that request's context and `carry` hands it to every later feed read:
    for the life of the process the hub's storage reads — prompted by other clients' writes in
    other namespaces — are recorded as children of the first watcher's request, long after it ended.
    Expected: one request, one trace — no span starts in a request's trace after that request's
    server span has ended."""
    traced.client.get("/api/v1/namespaces")
    with traced.client.stream("GET", "/api/v1/watch/app", params={"env": "production"},
                            timeout=10) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: hello"):
                break
    time.sleep(0.5)
    watch_roots = [s for s in traced.spans() if s.kind is SpanKind.SERVER and "watch" in s.name]
    assert watch_roots, [s.name for s in traced.spans()]
    root = watch_roots[0]
    assert root.context is not None and root.end_time is not None
    traced.client.put("/api/v1/configs/other/model", json={"value": "x", "env": "production"})
    time.sleep(1.0)

    late = [s.name for s in traced.spans() if s.context is not None and s.context.trace_id == root.context.trace_id
            and s.start_time is not None and s.start_time > root.end_time]
    assert late == []


def test_two_managers_in_one_process_each_send_spans_to_their_own_provider(make_manager: Any, tmp_path: Any) -> None:
    """Attack/misuse: `instrument(manager, provider)` keeps one tracer per process (`_TRACER`), so a
    library user (or a multi-tenant host) who instruments manager A with provider A and then
    manager B with provider B silently routes A's spans — namespaces, keys of tenant A — to B's
    exporter. Expected: each manager's spans go to the provider it was instrumented with."""
    exporter_a, exporter_b = InMemorySpanExporter(), InMemorySpanExporter()
    provider_a, provider_b = TracerProvider(), TracerProvider()
    provider_a.add_span_processor(SimpleSpanProcessor(exporter_a))
    provider_b.add_span_processor(SimpleSpanProcessor(exporter_b))
    manager_a = make_manager(storage=str(tmp_path / "a"))
    manager_b = make_manager(storage=str(tmp_path / "b"))
    tracing.instrument(manager_a, provider_a)
    tracing.instrument(manager_b, provider_b)
    exporter_a.clear()
    exporter_b.clear()

    manager_a.set("tenant-a", "model", "gpt-4o", env="production")

    assert [s.name for s in exporter_b.get_finished_spans()] == []
    assert "llm_config.set" in [s.name for s in exporter_a.get_finished_spans()]
