"""The FastAPI app: routes of SPEC §8 over one `ConfigManager`, behind the edge middleware.

ARCHITECTURE decision 1 (sync core, async edge): `EdgeMiddleware` (see `edge/`)
authenticates, rate-limits and answers cached reads on the event loop; everything else — cache
misses, reveals, writes — runs in a bounded thread pool. The FastAPI route for the hot path
serves the misses and documents the operation in `/openapi.json`, where every `/api` operation
also names the two ways to present an API key and the 401/403/429 answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Final

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_config import metrics
from llm_config.core.manager import ConfigManager
from llm_config.server.bans import RedisBanList
from llm_config.server.edge import Edge, EdgeMiddleware
from llm_config.server.errors import install_error_handlers
from llm_config.server.limits import RateLimiter, parse_rate
from llm_config.server.paths import DOCS_PATH, body_limits
from llm_config.server.routes import (
    admin,
    audit,
    backup,
    configs,
    health,
    jsonschemas,
    keys,
    namespaces,
    rotation,
    templates,
    watch,
)
from llm_config.server.routes import metrics as metrics_routes
from llm_config.server.routes.common import strict_query
from llm_config.server.routes.schemas import (
    JSON_VALUE_SCHEMA,
    ApiKeyCreate,
    ConfigWrite,
    ErrorBody,
    request_body_schemas,
)
from llm_config.server.security import BanList, IPFilter, parse_networks, parse_origins
from llm_config.server.streams import close_on_signals
from llm_config.server.telemetry import RouteTable, cache_source
from llm_config.settings import ServeOptions

__all__ = ["SECURITY_SCHEMES", "THREAD_POOL_SIZE", "create_app"]

THREAD_POOL_SIZE: Final = 32
_ROUTERS: Final = (health, metrics_routes, configs, namespaces, templates, jsonschemas, audit, keys, admin, backup,
                   rotation, watch)
CACHE_SYNC_SECONDS: Final = 1.0
# FastAPI ≥ 0.16x traces, counts and logs by itself once an OpenTelemetry provider exists; inside the
# edge it would see only the requests the edge passes on, as a second trace. Tracing is ours
# (`traces.py`, around the edge), metrics are Prometheus'.
_NO_NATIVE_TELEMETRY: Final[dict[str, Any]] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters else {})

SECURITY_SCHEMES: Final = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "llmc_…",
                   "description": "Authorization: Bearer <API key>"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                     "description": "The API key in the X-API-Key header (never in the query string)"},
}
_SECURITY: Final[list[dict[str, list[str]]]] = [{"bearerAuth": []}, {"apiKeyHeader": []}]
_RATE_HEADERS: Final = {
    "X-RateLimit-Limit": {"description": "Size of the caller's token bucket", "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "Tokens left in it", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "Seconds until it is full again", "schema": {"type": "integer"}},
}
_AUTH_RESPONSES: Final = {
    "401": ("Missing, invalid, expired or revoked API key", {"WWW-Authenticate": {
        "description": "Bearer challenge", "schema": {"type": "string"}}}),
    "403": ("Not allowed for this key, or client address refused (CIDR list or ban)", {}),
    "429": ("Rate limit exceeded", {"Retry-After": {"description": "Seconds to wait",
                                                    "schema": {"type": "integer"}}, **_RATE_HEADERS}),
}


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    sync: metrics.CacheStatsSync | None = app.state.cache_sync
    task = asyncio.create_task(_sync_forever(sync)) if sync is not None else None
    close_on_signals()  # a shutdown ends the watch streams first, or the server would wait for them
    try:
        yield
    finally:
        hub = getattr(app.state, "watch_hub", None)
        if hub is not None:
            hub.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        limiter: RateLimiter = app.state.limiter
        with contextlib.suppress(Exception):
            await limiter.aclose()
        bans: BanList = app.state.bans
        with contextlib.suppress(Exception):
            await bans.aclose()
        executor: ThreadPoolExecutor = app.state.executor
        executor.shutdown(wait=True, cancel_futures=True)
        provider = app.state.tracer_provider
        if provider is not None:
            with contextlib.suppress(Exception):
                provider.force_flush(timeout_millis=2000)  # a collector that is down must not hold the exit
        metrics.mark_process_dead(os.getpid())
        if getattr(app.state, "close_manager", False):
            manager: ConfigManager = app.state.manager
            manager.close()


async def _sync_forever(sync: metrics.CacheStatsSync) -> None:
    while True:
        await asyncio.sleep(CACHE_SYNC_SECONDS)
        sync.sync()


def _error_content() -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


def _openapi(app: FastAPI) -> dict[str, Any]:
    """OpenAPI with our error shape instead of FastAPI's 422, the body schemas and the security schemes."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes,
    )
    metrics_auth = bool(app.state.options.metrics_auth)
    for path, item in schema.get("paths", {}).items():
        protected = path.startswith("/api/") or (path == "/metrics" and metrics_auth)
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            if "HTTPValidationError" in str(responses.get("422", "")):  # FastAPI's own, never sent: ours is 400
                responses.pop("422")
            if protected:
                operation["security"] = _SECURITY
                for status, (description, headers) in _AUTH_RESPONSES.items():
                    entry = responses.setdefault(status, {"description": description, "content": _error_content()})
                    entry["description"] = description
                    if headers:
                        entry.setdefault("headers", {}).update(headers)
            else:
                operation["security"] = []
                responses.setdefault("429", {"description": _AUTH_RESPONSES["429"][0], "content": _error_content(),
                                             "headers": _AUTH_RESPONSES["429"][1]})
                responses.setdefault("403", {"description": "Client address refused (CIDR list or ban)",
                                             "content": _error_content()})
    components = schema.setdefault("components", {})
    models = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        models.pop(name, None)
    for model in (ConfigWrite, ApiKeyCreate, ErrorBody):
        doc = model.model_json_schema(ref_template="#/components/schemas/{model}")
        models.update(doc.pop("$defs", {}))
        models[model.__name__] = doc
    models.update(request_body_schemas())  # templates, schemas, promotion: their JSON values as JSONValue
    models["JSONValue"] = JSON_VALUE_SCHEMA
    models["ConfigWrite"]["properties"]["value"] = {
        "$ref": "#/components/schemas/JSONValue", "description": "Any JSON value (null allowed); required",
    }
    components["securitySchemes"] = SECURITY_SCHEMES
    app.openapi_schema = schema
    return schema


def _edge(app: FastAPI, manager: ConfigManager, options: ServeOptions, redis_url: str | None) -> Edge:
    limiter = RateLimiter(parse_rate(options.rate_limit_key, "rate-limit-key"),
                          parse_rate(options.rate_limit_ip, "rate-limit-ip"),
                          redis_url=redis_url, prefix=options.redis_prefix)
    bans = RedisBanList(redis_url, prefix=options.redis_prefix, ban_loopback=options.ban_loopback) \
        if redis_url else BanList(ban_loopback=options.ban_loopback)
    app.state.limiter = limiter
    app.state.bans = bans
    return Edge(
        manager=manager,
        executor=lambda: app.state.executor,
        max_body=options.max_body,
        tls=bool(options.tls_cert),
        limiter=limiter,
        bans=bans,
        ip_filter=IPFilter(parse_networks(options.allow_cidr, "allow-cidr"),
                           parse_networks(options.deny_cidr, "deny-cidr")),
        trusted_proxies=parse_networks(options.trusted_proxy, "trusted-proxy"),
        metrics_auth=options.metrics_auth,
        cors_origins=parse_origins(options.cors_origin),
        access_log=options.access_log,
        routes=app.state.routes,
        body_timeout=options.body_timeout,
        body_limits=body_limits(options),
    )


class _EdgeFirst(FastAPI):
    """FastAPI with the edge outside everything else.

    Added with `add_middleware`, the edge would run behind FastAPI's per-request telemetry check
    and the three middlewares Starlette puts in front of user middleware (~8 µs per request,
    measured); a cached GET answered at the edge needs none of them. Requests the edge passes on
    take FastAPI's full path.
    """

    edge_app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.edge_app is not None:
            scope["app"] = self
            await self.edge_app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _inner(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_app(manager: ConfigManager, options: ServeOptions, *, redis_url: str | None = None,
               tracer_provider: Any = None) -> FastAPI:
    """The REST API over `manager` (which the caller keeps owning unless `app.state.close_manager`).

    `redis_url` shares the rate-limit buckets (see `limits.py`), the failed-authentication counts and
    the bans (see `bans.py`) between workers and replicas. With `options.tracing` (or a
    `tracer_provider` of the caller's) requests and the manager's work are traced (`traces.py`).
    """
    app = _EdgeFirst(
        title="llm-config-manager",
        version=health.service_version(),
        description="Versioned configuration and encrypted secrets for LLM applications (SPEC §8). Every "
                    "/api route needs an API key (Authorization: Bearer or X-API-Key) and answers with "
                    "X-RateLimit-Limit/Remaining/Reset.",
        docs_url=DOCS_PATH,
        redoc_url=None,
        lifespan=_lifespan,
        redirect_slashes=False,
        **_NO_NATIVE_TELEMETRY,
    )
    app.state.manager = manager
    app.state.options = options
    app.state.executor = ThreadPoolExecutor(max_workers=THREAD_POOL_SIZE, thread_name_prefix="llm-config-api")
    app.state.close_manager = False
    app.state.watch = watch.WatchSettings()
    source = cache_source(manager)
    audit_head = metrics.AuditHeadCollector(lambda: (head[0] if (head := manager.storage.audit_head()) else 0))
    if metrics.multiprocess_dir() is not None:
        app.state.cache_sync = metrics.CacheStatsSync(source)
        app.state.metric_collectors = [audit_head]
    else:
        app.state.cache_sync = None
        app.state.metric_collectors = [metrics.CacheStatsCollector(source), audit_head]
    install_error_handlers(app)
    app.state.routes = RouteTable(route for module in _ROUTERS for route in module.router.routes)
    for module in _ROUTERS:
        app.include_router(module.router, dependencies=[Depends(strict_query)])
    app.edge_app = EdgeMiddleware(app._inner, edge=_edge(app, manager, options, redis_url))
    app.state.tracer_provider = None
    if options.tracing or tracer_provider is not None:
        from llm_config.server import traces  # the `otel` extra, imported only when asked for

        app.state.tracer_provider = traces.install(app, manager, app.version, tracer_provider)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
