"""OpenTelemetry tracing (`serve --tracing`, the `otel` extra): what a trace of a request shows.

A request is one trace: the server span named by method and route template, the manager operation
below it, and below that each cache tier and storage call, with namespace, key, environment and
outcome as attributes. Spans never carry a value, a secret, an API key or an error message, and
access-log lines carry the trace and span ids of their request. The spans go to an in-memory
exporter; the server is a real uvicorn server on a real store.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llm_config import tracing
from llm_config.core.manager import ConfigManager
from llm_config.errors import NotFoundError
from llm_config.server.logs import ACCESS_LOGGER
from tests.e2e.conftest import Traced, span_text

CANARY = "sk-canary-7c1e0b5a9d2f4e6b8a3c"
ENTRY_ROUTE = "/api/v1/configs/{ns}/{key}"


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def one(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{name}: {[s.name for s in spans]}"
    return found[0]


def test_a_cached_get_is_a_server_span_over_the_manager_read_over_an_l1_hit(traced: Traced) -> None:
    assert traced.client.put("/api/v1/configs/app/model", json={"value": "gpt-4o", "env": "production"}).status_code \
        == 200
    for _ in range(2):  # the first read fills L1; the key is authenticated again after a write, then cached
        assert traced.client.get("/api/v1/configs/app/model", params={"env": "production"}).status_code == 200
    traced.exporter.clear()

    answer = traced.client.get("/api/v1/configs/app/model", params={"env": "production"})

    assert answer.status_code == 200
    spans = traced.trace_of(answer)
    root = one(spans, f"GET {ENTRY_ROUTE}")
    assert root.kind is SpanKind.SERVER and root.parent is None
    assert root.attributes is not None
    assert root.attributes["http.route"] == ENTRY_ROUTE
    assert root.attributes["http.status_code"] == 200
    (operation,) = children(spans, root)
    assert operation.name == "llm_config.peek_record"
    assert dict(operation.attributes or {}) == {
        "llm_config.namespace": "app", "llm_config.key": "model", "llm_config.environment": "production",
        "llm_config.outcome": "ok",
    }
    (tier,) = children(spans, operation)
    assert tier.name == "cache.l1.get"
    assert (tier.attributes or {})["llm_config.cache.hit"] is True
    assert not [s for s in spans if s.name.startswith("storage.")], "a cached read touches no storage"


def test_a_set_is_a_server_span_over_the_manager_write_over_one_storage_commit(traced: Traced) -> None:
    traced.client.get("/api/v1/namespaces")  # the key is authenticated and cached before the measured request
    traced.exporter.clear()

    answer = traced.client.put("/api/v1/configs/app/temperature", json={"value": 0.2, "env": "staging"})

    assert answer.status_code == 200
    spans = traced.trace_of(answer)
    root = one(spans, f"PUT {ENTRY_ROUTE}")
    assert root.kind is SpanKind.SERVER
    operation = one(spans, "llm_config.set")
    assert operation.parent is not None and root.context is not None
    assert operation.parent.span_id == root.context.span_id
    assert dict(operation.attributes or {}) == {
        "llm_config.namespace": "app", "llm_config.key": "temperature", "llm_config.environment": "staging",
        "llm_config.outcome": "ok",
    }
    commit = one(spans, "storage.apply")
    assert commit.parent is not None and operation.context is not None
    assert commit.parent.span_id == operation.context.span_id
    assert (commit.attributes or {})["db.system"] == "sqlite"
    assert all(s.context is not None and s.context.trace_id == root.context.trace_id for s in spans)


def test_a_failed_operation_names_the_error_class_never_its_message(traced: Traced) -> None:
    traced.client.get("/api/v1/namespaces")
    traced.exporter.clear()
    answer = traced.client.get("/api/v1/configs/app/missing-key", params={"env": "production"})

    assert answer.status_code == 404
    operation = one(traced.trace_of(answer), "llm_config.get")
    assert (operation.attributes or {})["llm_config.outcome"] == "NotFoundError"
    assert operation.status.status_code is StatusCode.ERROR
    assert operation.status.description == "NotFoundError"
    assert not operation.events, "no exception event: its message and traceback stay out of the trace"


def test_a_query_string_never_reaches_a_span(traced: Traced) -> None:
    stray = "llmc_" + "Q" * 40
    traced.client.get("/api/v1/configs/app/model", params={"env": "production", "api_key": stray})

    for span in traced.spans():
        for name, value in (span.attributes or {}).items():
            assert stray not in str(value), name
            if name in ("http.target", "http.url"):
                assert "?" not in str(value)


def test_a_secret_and_the_api_key_appear_in_no_span_and_no_log_line(
    traced: Traced, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="llm_config")
    client = traced.client
    assert client.put("/api/v1/configs/app/openai.api_key",
                      json={"value": CANARY, "secret": True, "env": "production"}).status_code == 200
    revealed = client.get("/api/v1/configs/app/openai.api_key", params={"env": "production", "reveal": "true"})
    assert revealed.status_code == 200 and CANARY in revealed.text  # the secret did travel through the traced path
    client.get("/api/v1/namespaces/app/-/export", params={"env": "production", "reveal": "true"})
    client.get("/api/v1/configs/app", params={"env": "production"})
    client.put("/api/v1/configs/app/openai.api_key", json={"value": "not json-able?" * 2, "env": "production"})

    spans = traced.spans()
    assert len(spans) > 10
    for span in spans:
        text = span_text(span)
        assert CANARY not in text, span.name
        assert traced.admin_key not in text, span.name
    assert caplog.records, "the server logged its requests"
    for record in caplog.records:
        assert CANARY not in record.getMessage()
        assert traced.admin_key not in record.getMessage()


def test_access_log_lines_carry_the_trace_and_span_of_their_request(
    traced: Traced, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    traced.exporter.clear()

    answer = traced.client.get("/api/v1/namespaces")

    assert answer.status_code == 200
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
    (line,) = [line for line in lines if line["route"] == "/api/v1/namespaces"]
    root = [s for s in traced.spans() if s.kind is SpanKind.SERVER][-1]
    assert root.context is not None
    assert line["trace_id"] == format(root.context.trace_id, "032x")
    assert line["span_id"] == format(root.context.span_id, "016x")


def test_a_library_manager_can_be_traced_with_its_storage_calls(make_manager: Any, tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    manager: ConfigManager = make_manager(storage=str(tmp_path / "library-store"))
    tracing.instrument(manager, provider)
    manager.set("app", "model", "gpt-4o", env="production")
    exporter.clear()

    with pytest.raises(NotFoundError):
        manager.get("app", "nothing-here", env="prod")

    spans = exporter.get_finished_spans()
    root = one(spans, "llm_config.get")
    assert root.parent is None
    assert (root.attributes or {})["llm_config.environment"] == "production"  # the alias is named canonically
    read = one(spans, "storage.get_current")
    assert (read.attributes or {})["db.system"] == "sqlite"
    assert (read.attributes or {})["llm_config.key"] == "nothing-here"
    assert isinstance(manager, ConfigManager), "a traced manager is still a ConfigManager"


def test_an_l1_miss_served_by_redis_shows_both_tiers_and_no_storage_read(make_manager: Any) -> None:
    """Two managers on one store and one Redis: what one wrote and read into L2, the other (cold L1)
    reads from L2 — `cache.l1.get` missed, `cache.l2.get` hit, under the manager's read."""
    from tests.conftest import require_service

    require_service("Redis", "127.0.0.1", 6379)
    redis_url = "redis://127.0.0.1:6379/0"
    writer: ConfigManager = make_manager(redis_url=redis_url, l2_reads=True, change_check_interval=3600.0)
    writer.set("app", "model", "gpt-4o", env="production")
    writer.get("app", "model", env="production")  # fills L2
    reader: ConfigManager = make_manager(redis_url=redis_url, l2_reads=True, change_check_interval=3600.0)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.instrument(reader, provider)

    assert reader.get("app", "model", env="production").value == "gpt-4o"

    spans = exporter.get_finished_spans()
    root = one(spans, "llm_config.get")
    tiers = {s.name: (s.attributes or {})["llm_config.cache.hit"] for s in children(spans, root)
             if s.name.startswith("cache.")}
    assert tiers == {"cache.l1.get": False, "cache.l2.get": True}
    assert not [s for s in spans if s.name == "storage.get_current"], "served by Redis, not the database"
