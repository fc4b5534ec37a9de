"""The FastAPI app: routes of SPEC §8 over one `ConfigManager`, and the edge middleware.

ARCHITECTURE decision 1 (sync core, async edge): a plain `GET /api/v1/configs/...` whose entry is in
the manager's L1 cache is answered by `EdgeMiddleware` directly on the event loop (`manager.peek()`
and orjson, no thread hop, no router); everything else — cache misses, reveals, writes — runs in a
bounded thread pool. The FastAPI route for the same path serves the misses and documents the
operation in `/openapi.json`.

The middleware also owns what every response shares: the request id, security headers,
`Cache-Control: no-store` on `/api`, the body-size limit, and the last-resort 500.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import unquote_plus

import orjson
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_config.core.manager import ConfigManager
from llm_config.errors import ValidationError
from llm_config.server.errors import error_body, install_error_handlers, log_unexpected, status_and_message
from llm_config.server.routes import audit, configs, health, namespaces
from llm_config.server.routes.common import REQUEST_ID_KEY, entry_etag, etag_matches
from llm_config.server.routes.schemas import ConfigWrite
from llm_config.settings import ServeOptions, Settings, load_settings

__all__ = ["THREAD_POOL_SIZE", "EdgeMiddleware", "app_from_env", "create_app"]

THREAD_POOL_SIZE: Final = 32
DRAIN_LIMIT: Final = 64 << 20  # read (and drop) at most this much of an oversized body before answering 413

_CONFIGS_PREFIX: Final = "/api/v1/configs/"
_SINGLE: Final = re.compile(r"/api/v1/configs/([^/]+)/([^/]+)")
_MULTI: Final = re.compile(r"/api/v1/configs/(.+)/-/([^/]+)")
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_BODYLESS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

_COMMON_HEADERS: Final = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_NO_STORE: Final = (b"cache-control", b"no-store")
_HSTS: Final = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


class _BodyTooLargeError(Exception):
    """Raised by the limited receive channel; becomes a 413."""


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class EdgeMiddleware:
    """Request id, security headers, body limit, cache-hit fast path and last-resort 500 (pure ASGI)."""

    def __init__(self, app: ASGIApp, *, manager: ConfigManager, max_body: int, tls: bool) -> None:
        self.app = app
        self.manager = manager
        self.max_body = max_body
        self._base = list(_COMMON_HEADERS) + ([_HSTS] if tls else [])
        self._api = [*self._base, _NO_STORE]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        rid = incoming.decode("latin-1") if incoming and _REQUEST_ID.fullmatch(incoming.decode("latin-1")) \
            else secrets.token_hex(16)
        scope[REQUEST_ID_KEY] = rid
        path: str = scope["path"]
        extra = [*(self._api if path.startswith("/api/") else self._base), (b"x-request-id", rid.encode())]
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        method: str = scope["method"]
        try:
            if method == "GET" and path.startswith(_CONFIGS_PREFIX) and await self._cached_get(
                scope, path, send_with_headers
            ):
                return
            declared = _header(scope, b"content-length")
            if method not in _BODYLESS or declared is not None or _header(scope, b"transfer-encoding"):
                if declared is not None:
                    if not declared.isdigit():
                        await _send_error(send_with_headers, 400, "Invalid Content-Length")
                        return
                    if int(declared) > self.max_body:
                        await self._drain(receive)
                        await _send_error(send_with_headers, 413, self._too_large())
                        return
                receive = self._limited(receive)
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            if started:  # too late for an error response: log (without the text) and drop the connection
                log_unexpected(exc, f"{method} (response already started)")
                return
            if isinstance(exc, _BodyTooLargeError):
                await _send_error(send_with_headers, 413, self._too_large())
                return
            status, message, _ = status_and_message(exc)
            if status == 500:
                log_unexpected(exc, method)
            await _send_error(send_with_headers, status, message)

    def _too_large(self) -> str:
        return f"Request body larger than {self.max_body} bytes"

    def _limited(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.max_body

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLargeError
            return message

        return limited

    async def _drain(self, receive: Receive) -> None:
        """Read and drop the body so the client sees our 413 instead of a reset connection."""
        drained = 0
        while drained <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _cached_get(self, scope: Scope, path: str, send: Send) -> bool:
        """Answer a plain GET of one config from L1 on the event loop; False to take the slow path."""
        if self.manager.audit_reads:
            return False
        match = _SINGLE.fullmatch(path) or _MULTI.fullmatch(path)
        if match is None:
            return False
        query: bytes = scope.get("query_string", b"")
        if not query:
            env = "development"
        elif query.startswith(b"env=") and b"&" not in query:
            env = query[4:].decode("latin-1")
            if "%" in env or "+" in env:
                env = unquote_plus(env)
        else:
            return False
        try:
            entry = self.manager.peek(match.group(1), match.group(2), env)
        except ValidationError:
            return False  # the route reports it
        if entry is None:
            return False
        etag = entry_etag(entry, False)
        inm = _header(scope, b"if-none-match")
        if inm is not None and etag_matches(inm.decode("latin-1"), etag):
            await send({"type": "http.response.start", "status": 304,
                        "headers": [(b"etag", etag.encode())]})
            await send({"type": "http.response.body", "body": b""})
            return True
        body = orjson.dumps(entry.to_json())
        await send({
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"etag", etag.encode()),
            ],
        })
        await send({"type": "http.response.body", "body": body})
        return True


async def _send_error(send: Send, status: int, message: str) -> None:
    body = error_body(status, message)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    executor: ThreadPoolExecutor = app.state.executor
    executor.shutdown(wait=True, cancel_futures=True)
    if getattr(app.state, "close_manager", False):
        manager: ConfigManager = app.state.manager
        manager.close()


def _openapi(app: FastAPI) -> dict[str, Any]:
    """OpenAPI with our error shape instead of FastAPI's 422, and the write-body schema."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes,
    )
    for item in schema.get("paths", {}).values():
        for operation in item.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    write = ConfigWrite.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(write.pop("$defs", {}))
    components["ConfigWrite"] = write
    app.openapi_schema = schema
    return schema


def create_app(manager: ConfigManager, options: ServeOptions) -> FastAPI:
    """The REST API over `manager` (which the caller keeps owning unless `app.state.close_manager`)."""
    app = FastAPI(
        title="llm-config-manager",
        version=health.service_version(),
        description="Versioned configuration and encrypted secrets for LLM applications (SPEC §8).",
        docs_url="/docs",
        redoc_url=None,
        lifespan=_lifespan,
        redirect_slashes=False,
    )
    app.state.manager = manager
    app.state.options = options
    app.state.executor = ThreadPoolExecutor(max_workers=THREAD_POOL_SIZE, thread_name_prefix="llm-config-api")
    app.state.close_manager = False
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(configs.router)
    app.include_router(namespaces.router)
    app.include_router(audit.router)
    app.add_middleware(EdgeMiddleware, manager=manager, max_body=options.max_body, tls=bool(options.tls_cert))
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """App factory for worker processes: settings from `LLM_CONFIG_*` (set by `serve`), own manager."""
    settings = load_settings(Settings, {})
    options = load_settings(ServeOptions, {})
    manager = ConfigManager.open(  # the key: LLM_CONFIG_KEY / LLM_CONFIG_KEY_FILE as `serve` set them
        settings.storage, redis_url=settings.redis_url, create=True, cache_ttl=options.cache_ttl,
        audit_reads=options.audit_reads,
    )
    app = create_app(manager, options)
    app.state.close_manager = True
    return app
