"""The edge: one pure-ASGI middleware in front of FastAPI that every request crosses.

In this order (SPEC §8, §9):

1. request id; client address (`X-Forwarded-For` only from `--trusted-proxy` peers);
2. CIDR allow/deny lists → 403, then bans → 403 (before anything else looks at the request);
3. CORS preflight, when `--cors-origin` is set (Starlette's CORSMiddleware, exactly those origins);
4. `/api` (and `/metrics` with `--metrics-auth`): a key in the query string → 400; the API key from
   `Authorization: Bearer` or `X-API-Key` → principal (a principal-cache hit stays on the event
   loop, anything else goes to the thread pool) or 401 with `WWW-Authenticate`; failures count
   towards a ban;
5. rate limits: per key for authenticated requests, per client address for the rest → 429;
6. the hot path (ARCHITECTURE decision 1): a plain `GET /api/v1/configs/...` whose entry is in the
   manager's L1 cache and which `peek(..., principal=)` allows is answered right here — no thread
   hop, no router; everything else goes to FastAPI with the principal in the scope;
7. on the way out: security headers, `Cache-Control: no-store` on `/api`, HSTS with TLS,
   `X-RateLimit-*`, metrics by route template, one access-log line, and the last-resort 500.
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
import secrets
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar
from urllib.parse import unquote_plus

from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_config import metrics
from llm_config.core.manager import ConfigManager
from llm_config.errors import AuthenticationError, KeyMissingError, ValidationError
from llm_config.models import Principal
from llm_config.server.auth import WWW_AUTHENTICATE, cached_principal, extract_token
from llm_config.server.errors import (
    CLIENT_CLOSED,
    LOGGED_KEY,
    HTTPError,
    client_gone,
    error_body,
    log_unexpected,
    status_and_message,
)
from llm_config.server.limits import BucketScope, LimitResult, RateLimiter
from llm_config.server.logs import access_line, get_logger
from llm_config.server.routes.backup import RESTORE_PATH
from llm_config.server.routes.common import (
    CLIENT_IP_KEY,
    PRINCIPAL_KEY,
    REQUEST_ID_KEY,
    ROUTE_KEY,
    etag_matches,
)
from llm_config.server.security import Ban, BanList, IPFilter, Network, client_address, query_carries_key
from llm_config.server.telemetry import (
    UNMATCHED,
    RouteTable,
    env_label,
    record_http,
    record_operation,
    record_rbac,
)

__all__ = ["DRAIN_LIMIT", "Edge", "EdgeMiddleware"]

T = TypeVar("T")

DRAIN_LIMIT: Final = 64 << 20

_CONFIGS_PREFIX: Final = "/api/v1/configs/"
_SINGLE: Final = re.compile(r"/api/v1/configs/([^/]+)/([^/]+)")
_MULTI: Final = re.compile(r"/api/v1/configs/(.+)/-/([^/]+)")
_SINGLE_TEMPLATE: Final = "/api/v1/configs/{ns}/{key}"
_MULTI_TEMPLATE: Final = "/api/v1/configs/{ns}/-/{key}"
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_BODYLESS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_PUBLIC_DOCS: Final = ("/docs", "/docs/oauth2-redirect")

_COMMON_HEADERS: Final = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_CSP: Final = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'")
_NO_STORE: Final = (b"cache-control", b"no-store")
_HSTS: Final = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
_CORS_METHODS: Final = ("GET", "POST", "PUT", "DELETE")
_CORS_HEADERS: Final = ("Authorization", "X-API-Key", "Content-Type", "If-Match", "If-None-Match", "X-Request-ID")
_CORS_EXPOSE: Final = ("ETag", "X-Config-Revision", "X-Next-Cursor", "X-Request-ID", "Retry-After", "X-RateLimit-Limit",
                       "X-RateLimit-Remaining", "X-RateLimit-Reset")

log = get_logger()


@dataclass(slots=True)
class Edge:
    """Everything the edge decides with, built once per app from `ServeOptions`."""

    manager: ConfigManager
    executor: Callable[[], Executor]
    max_body: int
    tls: bool
    limiter: RateLimiter
    bans: BanList
    ip_filter: IPFilter
    trusted_proxies: tuple[Network, ...] = ()
    metrics_auth: bool = False
    cors_origins: tuple[str, ...] = ()
    access_log: bool = True
    routes: RouteTable = field(default_factory=lambda: RouteTable(()))
    body_timeout: float = 30.0


class _Request:
    """What the edge reads from one request, in one pass over its headers."""

    __slots__ = ("auth", "content_length", "forwarded", "if_none_match", "ip", "limit", "method", "origin",
                 "path", "principal", "repeated_credentials", "request_id", "status", "transfer_encoding",
                 "x_api_key")

    def __init__(self, scope: Scope) -> None:
        self.auth: bytes | None = None
        self.x_api_key: bytes | None = None
        self.content_length: bytes | None = None
        self.transfer_encoding: bytes | None = None
        self.if_none_match: bytes | None = None
        self.origin: bytes | None = None
        self.forwarded: list[bytes] = []
        self.repeated_credentials = False
        incoming: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                self.repeated_credentials |= self.auth is not None
                self.auth = value
            elif name == b"x-api-key":
                self.repeated_credentials |= self.x_api_key is not None
                self.x_api_key = value
            elif name == b"x-request-id":
                incoming = value
            elif name == b"content-length":
                self.content_length = value
            elif name == b"transfer-encoding":
                self.transfer_encoding = value
            elif name == b"if-none-match":
                self.if_none_match = value
            elif name == b"x-forwarded-for":
                self.forwarded.append(value)
            elif name == b"origin":
                self.origin = value
        text = incoming.decode("latin-1") if incoming else ""
        self.request_id = text if text and _REQUEST_ID.fullmatch(text) else secrets.token_hex(16)
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.ip: str | None = None
        self.principal: Principal | None = None
        self.limit: LimitResult | None = None
        self.status = 0


class EdgeMiddleware:
    """See the module docstring. Pure ASGI: Starlette's BaseHTTPMiddleware would cost a task per request."""

    def __init__(self, app: ASGIApp, *, edge: Edge) -> None:
        self.app = app
        self.edge = edge
        base = list(_COMMON_HEADERS) + ([_HSTS] if edge.tls else [])
        self._docs_headers = base
        self._page_headers = [*base, _CSP]
        self._api_headers = [*base, _CSP, _NO_STORE]
        self._cors: ASGIApp | None = None
        if edge.cors_origins:
            self._cors = CORSMiddleware(
                self._inner, allow_origins=list(edge.cors_origins), allow_methods=list(_CORS_METHODS),
                allow_headers=list(_CORS_HEADERS), expose_headers=list(_CORS_EXPOSE), allow_credentials=False,
                max_age=600,
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        req = _Request(scope)
        edge = self.edge
        client = scope.get("client")
        req.ip = client_address(client[0] if client else None, req.forwarded, edge.trusted_proxies)
        scope[REQUEST_ID_KEY] = req.request_id
        scope[CLIENT_IP_KEY] = req.ip
        fixed = self._fixed_headers(req.path)
        rid_header = (b"x-request-id", req.request_id.encode())
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                req.status = message["status"]
                extra = [*message.get("headers", ()), *fixed, rid_header]
                if req.limit is not None:
                    extra += req.limit.headers()
                message["headers"] = extra
            await send(message)

        scope[_REQ_KEY] = req
        try:
            if await self._refused_address(receive, send_with_headers, req):
                pass
            elif self._cors is not None and req.origin is not None:
                await self._cors(scope, receive, send_with_headers)
            else:
                await self._inner(scope, receive, send_with_headers)
        except ClientDisconnect:
            client_gone(req.request_id, req.method)
            req.status = req.status or CLIENT_CLOSED
        except Exception as exc:
            if started:  # too late for an error response: log (without the text) and drop the connection
                if not scope.get(LOGGED_KEY):
                    log_unexpected(exc, f"{req.method} (response already started)")
            else:
                status, message, headers = status_and_message(exc)
                if status == 500:
                    log_unexpected(exc, req.method)
                await _send_error(send_with_headers, status, message, headers)
        finally:
            self._observe(scope, req, time.perf_counter() - started_at)

    def _fixed_headers(self, path: str) -> list[tuple[bytes, bytes]]:
        if path.startswith("/api/"):
            return self._api_headers
        if path in _PUBLIC_DOCS:
            return self._docs_headers
        return self._page_headers

    def _observe(self, scope: Scope, req: _Request, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or scope.get(ROUTE_KEY)
        if not isinstance(template, str):
            template = self.edge.routes.template(req.method, req.path) if req.status else UNMATCHED
        if ":" in template:
            template = template.replace(":path", "")
        record_http(req.method, template, req.status, seconds)
        if self.edge.access_log:
            principal = req.principal
            access_line(
                req.method if len(req.method) <= 16 else "other", template, req.status, round(seconds * 1000, 3),
                req.request_id, req.ip, principal.actor if principal is not None else None,
            )

    async def _refused_address(self, receive: Receive, send: Send, req: _Request) -> bool:
        """CIDR lists, then bans: True after answering 403."""
        edge = self.edge
        if edge.ip_filter.active and edge.ip_filter.refuses(req.ip):
            metrics.IP_REFUSED.labels("cidr").inc()
            await self._reject(receive, send, req, 403, "Client address not allowed")
            return True
        ban = edge.bans.banned(req.ip)
        if ban is not None:
            metrics.IP_REFUSED.labels("banned").inc()
            wait = str(max(1, math.ceil(ban.expires_at - time.time())))
            await self._reject(receive, send, req, 403,
                               "Too many failed authentications from this address; try again later",
                               {"Retry-After": wait})
            return True
        return False

    async def _inner(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Everything after the address checks (CORS, when configured, wraps this and answers preflights)."""
        req = _current(scope)
        edge = self.edge
        path = req.path
        # /health is public; a key sent with it (for the details a system:read key may see) is checked
        # like on any route — unless no master key is loaded, when health must still answer
        health_with_key = path == "/health" and (req.auth is not None or req.x_api_key is not None)
        principal: Principal | None = None
        if path.startswith("/api/") or (edge.metrics_auth and path == "/metrics") or health_with_key:
            try:
                principal = await self._authenticate(scope, receive, send, req)
            except KeyMissingError:
                if not health_with_key:
                    raise
            else:
                if principal is None:
                    return
        if principal is not None:
            limit = await self._hit("key", principal.key_id or principal.actor)
            req.principal = principal
            scope[PRINCIPAL_KEY] = principal
        else:
            limit = await self._hit("ip", req.ip or "unknown")
        if limit is not None:
            req.limit = limit
            if not limit.allowed:
                metrics.RATE_LIMITED.labels("key" if req.principal is not None else "ip").inc()
                await self._reject(receive, send, req, 429, f"Rate limit exceeded: retry in {limit.retry_after} s")
                return
        if req.method == "GET" and req.principal is not None and path.startswith(_CONFIGS_PREFIX) \
                and await self._cached_get(scope, req, send):
            return
        await self._forward(scope, receive, send, req)

    async def _hit(self, scope: BucketScope, name: str) -> LimitResult | None:
        limiter = self.edge.limiter
        if limiter.local:  # in-process buckets: no coroutine of the limiter's own
            return limiter.hit_local(scope, name)
        return await limiter.hit(scope, name)

    async def _forward(self, scope: Scope, receive: Receive, send: Send, req: _Request) -> None:
        if req.path == RESTORE_PATH:  # its own limit and timeout, applied after authorization (routes/backup.py)
            await self.app(scope, receive, send)
            return
        declared = req.content_length
        if req.method not in _BODYLESS or declared is not None or req.transfer_encoding is not None:
            if declared is not None:
                if not declared.isdigit():
                    await _send_error(send, 400, "Invalid Content-Length")
                    return
                if int(declared) > self.edge.max_body:
                    await _drain(receive)
                    await _send_error(send, 413, self._too_large())
                    return
            receive = self._limited(receive)
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope, receive: Receive, send: Send, req: _Request) -> Principal | None:
        """The caller's principal, or None after answering 400/401/429 (and counting towards a ban).

        A key the principal cache knows costs nothing more; any other is looked up (a read). A failure
        then meets the address's rate limit before anything is written (SPEC §9): over the limit it is
        refused with 429 and never audited; under it, it counts towards a ban and is audited at most
        once per address and window (the manager coalesces). So a flood of bad keys costs reads, not
        fsyncs, and a valid key never waits on its address's bucket.
        """
        edge = self.edge
        if query_carries_key(scope.get("query_string", b"")):
            metrics.AUTH_FAILURES.labels("query_string").inc()
            await self._reject(receive, send, req, 400, "API keys are not accepted in the query string: "
                               "send them in the Authorization (Bearer) or X-API-Key header")
            return None
        if req.repeated_credentials:
            metrics.AUTH_FAILURES.labels("malformed").inc()
            await self._reject(receive, send, req, 400, "Send one Authorization or X-API-Key header, not several")
            return None
        token, malformed = extract_token(req.auth, req.x_api_key)
        if token is not None:
            principal = cached_principal(edge.manager, token)
            if principal is not None:
                return principal
        presented = token if token is not None else ("malformed" if malformed else None)
        if presented is not None:
            try:
                return await self._blocking(edge.manager.authenticate, presented, source_ip=req.ip,
                                            request_id=req.request_id, audit_failure=False)
            except AuthenticationError:
                pass
        reason = "missing" if presented is None else "malformed" if malformed else "invalid"
        message = "API key missing" if presented is None else "API key invalid, expired or revoked"
        metrics.AUTH_FAILURES.labels(reason).inc()
        limit = await self._hit("ip", req.ip or "unknown") if edge.limiter.ip_spec is not None else None
        if limit is not None:
            req.limit = limit
            if not limit.allowed:
                metrics.RATE_LIMITED.labels("ip").inc()
                await self._reject(receive, send, req, 429, f"Rate limit exceeded: retry in {limit.retry_after} s")
                return None
        ban = await edge.bans.arecord_failure(req.ip)
        await self._blocking(self._record_failure, reason, req, ban)
        await self._reject(receive, send, req, 401, message, {"WWW-Authenticate": WWW_AUTHENTICATE})
        return None

    def _record_failure(self, reason: str, req: _Request, ban: Ban | None) -> None:
        """The audit side of a failed authentication (in the pool): coalesced, and a ban once."""
        manager = self.edge.manager
        manager.record_auth_failure("missing" if reason == "missing" else "invalid, expired or revoked",
                                    source_ip=req.ip, request_id=req.request_id)
        if ban is not None:
            metrics.BANS.inc()
            log.warning("client_banned", client_ip=ban.ip, failures=ban.failures,
                        until=ban.to_json()["expires_at"], request_id=req.request_id)
            manager.record_ban(ban.ip, until=str(ban.to_json()["expires_at"]), failures=ban.failures,
                               request_id=req.request_id)

    async def _blocking(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.edge.executor(), functools.partial(fn, *args, **kwargs))

    async def _reject(self, receive: Receive, send: Send, req: _Request, status: int, message: str,
                      headers: dict[str, str] | None = None) -> None:
        """Answer an error before routing, reading (and dropping) any body so the client sees it."""
        if req.method not in _BODYLESS or req.content_length is not None or req.transfer_encoding is not None:
            await _drain(receive)
        await _send_error(send, status, message, headers)

    def _too_large(self) -> str:
        return f"Request body larger than {self.edge.max_body} bytes"

    def _limited(self, receive: Receive) -> Receive:
        """`receive` with the body capped at `--max-body` and due within `--body-timeout` in all."""
        seen = 0
        limit = self.edge.max_body
        too_large = self._too_large()
        timeout = self.edge.body_timeout
        deadline = time.monotonic() + timeout

        async def limited() -> Message:
            nonlocal seen
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                metrics.SLOW_CLIENTS.labels("body").inc()
                raise HTTPError(408, f"Request body not received within {timeout:g} s") from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # an HTTPError, so FastAPI's handlers answer 413 if a route was reading
                    raise HTTPError(413, too_large)
            return message

        return limited

    async def _cached_get(self, scope: Scope, req: _Request, send: Send) -> bool:
        """Answer a plain GET of one config from L1 on the event loop; False to take the slow path."""
        manager = self.edge.manager
        path = req.path
        match = _SINGLE.fullmatch(path)
        template = _SINGLE_TEMPLATE
        if match is None:
            match = _MULTI.fullmatch(path)
            template = _MULTI_TEMPLATE
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
        started = time.perf_counter()
        try:
            # the cache record carries the pre-serialised body and ETag (ARCHITECTURE: a hit is a lookup)
            record = manager.peek_record(match.group(1), match.group(2), env, principal=req.principal,
                                         source_ip=req.ip, request_id=req.request_id)
        except ValidationError:
            return False  # the route reports it
        if record is None:
            return False  # not cached, or not allowed: the route answers (and audits a refusal)
        scope[ROUTE_KEY] = template
        record_rbac(True)
        length_header, etag_header, revision_header = record.headers
        inm = req.if_none_match
        if inm is not None and etag_matches(inm.decode("latin-1"), record.etag):
            await send({"type": "http.response.start", "status": 304, "headers": [etag_header, revision_header]})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    length_header,
                    etag_header,
                    revision_header,
                ],
            })
            await send({"type": "http.response.body", "body": record.body})
        record_operation("get", env_label(env), "ok", time.perf_counter() - started)
        return True


_REQ_KEY: Final = "llm_config.edge_request"


def _current(scope: Scope) -> _Request:
    req: _Request = scope[_REQ_KEY]
    return req


async def _drain(receive: Receive) -> None:
    """Read and drop the body so the client sees our answer instead of a reset connection."""
    drained = 0
    while drained <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _send_error(send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    body = error_body(status, message)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
