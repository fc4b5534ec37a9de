"""Request spans for `serve --tracing` (the `otel` extra), around everything the server does.

The request span comes from OpenTelemetry's ASGI middleware — the one the FastAPI instrumentation
installs inside FastAPI — placed here *outside* the edge instead: inside FastAPI it would miss the
cached reads the edge answers on its own (`app.py`, `_EdgeFirst`). Its name is the method and the
route template (`GET /api/v1/configs/{namespace}/{key}`), never the raw path; the hook strips the
query string from the URL attributes (a stray `?api_key=…` must not reach a span) and masks
anything shaped like an API key in any of them (path, User-Agent, Host). Request and response headers
are never captured, whatever the `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_*` variables say.

Below it, `llm_config.tracing` adds the manager, cache and storage spans, and `carry` takes the
request's context along when a call hops to the thread pool, so one request is one trace.
"""

from __future__ import annotations

import threading
from typing import Any, Final

from fastapi import FastAPI
from starlette.types import Scope

from llm_config import tracing
from llm_config.core.manager import ConfigManager
from llm_config.errors import MissingDependencyError
from llm_config.server.telemetry import RouteTable

__all__ = ["install"]

_URL_ATTRIBUTES: Final = ("http.target", "http.url", "url.full", "url.path")
_lock = threading.Lock()
_process_provider: list[Any] = []


def _provider(version: str) -> Any:
    """This process's provider, built from the `OTEL_*` variables once and made the global one."""
    with _lock:
        if not _process_provider:
            from opentelemetry import trace

            provider = tracing.provider_from_env(version)
            if provider is not None:
                trace.set_tracer_provider(provider)
            _process_provider.append(provider)
        return _process_provider[0]


def _clean(text: str) -> str:
    return tracing.mask(text.split("?", 1)[0])


def _scrub(span: Any, _scope: Scope) -> None:
    """The request span's attributes without query strings and without anything shaped like an API key
    (a client may put one in a path, the User-Agent or the Host header)."""
    attributes = getattr(span, "attributes", None) or {}
    for name, value in list(attributes.items()):
        if name in _URL_ATTRIBUTES and isinstance(value, str):
            span.set_attribute(name, _clean(value))
        elif isinstance(value, str) and "llmc_" in value:
            span.set_attribute(name, tracing.mask(value))
    if "url.query" in attributes:
        span.set_attribute("url.query", "[redacted]")


def install(app: FastAPI, manager: ConfigManager, version: str, tracer_provider: Any = None) -> Any:
    """Trace `app`'s requests and `manager`'s work; returns the provider (None: `OTEL_SDK_DISABLED`)."""
    try:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    except ModuleNotFoundError:
        raise MissingDependencyError("opentelemetry-instrumentation-asgi", "otel") from None
    provider = tracer_provider if tracer_provider is not None else _provider(version)
    if provider is None:
        return None

    tracing.instrument(manager, provider)
    routes: RouteTable = app.state.routes

    def details(scope: Scope) -> tuple[str, dict[str, str]]:
        method = str(scope.get("method") or "HTTP")
        template = routes.template(method, str(scope.get("path") or ""))
        return f"{method} {template}", {"http.route": template}

    edge = app.edge_app  # type: ignore[attr-defined]
    middleware = OpenTelemetryMiddleware(
        edge, default_span_details=details, server_request_hook=_scrub, tracer_provider=provider,
        exclude_spans=["receive", "send"],
    )
    # no header is ever captured, whatever OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_* say (the
    # middleware falls back to them when given no list): Authorization and X-API-Key carry keys
    middleware.http_capture_headers_server_request = None
    middleware.http_capture_headers_server_response = None
    app.edge_app = middleware  # type: ignore[attr-defined]
    return provider
