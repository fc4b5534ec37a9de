"""On the way out of the edge: headers on every answer, error answers, metrics and the access log.

- every response start gets the security headers (a Content-Security-Policy except on Swagger UI's
  pages, `Cache-Control: no-store` on `/api`, HSTS with TLS), `X-Request-ID` and `X-RateLimit-*`;
  they are added as the start message passes, so a streamed response gets them with its first bytes;
- errors the edge answers itself use the API's error shape (`errors.error_body`), after reading and
  dropping any body so the client sees the answer instead of a reset connection;
- when the request ends — the response sent, a stream closed, the client gone — its metrics by route
  template and one access-log line; an exception nobody handled becomes the last-resort 500 (or,
  once the response has started, a log line without its text and a dropped connection).
"""

from __future__ import annotations

import time
from typing import Final

from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Send

from llm_config.server.edge.request import EdgeRequest
from llm_config.server.errors import (
    CLIENT_CLOSED,
    LOGGED_KEY,
    client_gone,
    error_body,
    log_unexpected,
    status_and_message,
)
from llm_config.server.logs import access_line
from llm_config.server.paths import API_PREFIX, PUBLIC_DOCS
from llm_config.server.routes.common import ROUTE_KEY
from llm_config.server.telemetry import UNMATCHED, RouteTable, record_http

__all__ = ["DRAIN_LIMIT", "Responder", "drain", "reject", "send_error"]

DRAIN_LIMIT: Final = 64 << 20
"""The most of an unwanted body the edge reads before it answers anyway."""

_COMMON_HEADERS: Final = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_CSP: Final = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'")
_NO_STORE: Final = (b"cache-control", b"no-store")
_HSTS: Final = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


class Responder:
    """The response side of the edge, built once per app: `headed` when a request starts, `observe` when it ends."""

    __slots__ = ("_access_log", "_api_headers", "_docs_headers", "_page_headers", "_routes")

    def __init__(self, *, tls: bool, access_log: bool, routes: RouteTable) -> None:
        base = list(_COMMON_HEADERS) + ([_HSTS] if tls else [])
        self._docs_headers = base
        self._page_headers = [*base, _CSP]
        self._api_headers = [*base, _CSP, _NO_STORE]
        self._access_log = access_log
        self._routes = routes

    def headed(self, req: EdgeRequest) -> Send:
        """`req.send` adding this request's fixed headers to the response start, and noting its status."""
        path = req.path
        if path.startswith(API_PREFIX):
            fixed = self._api_headers
        elif path in PUBLIC_DOCS:
            fixed = self._docs_headers
        else:
            fixed = self._page_headers
        rid_header = (b"x-request-id", req.id.encode())
        send = req.send

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                req.status = message["status"]
                extra = [*message.get("headers", ()), *fixed, rid_header]
                if req.limit is not None:
                    extra += req.limit.headers()
                message["headers"] = extra
            await send(message)

        return send_with_headers

    async def failed(self, req: EdgeRequest, exc: BaseException, send: Send) -> None:
        """An exception out of the pipeline: the client left (not our error), or the last-resort answer."""
        if isinstance(exc, ClientDisconnect):
            client_gone(req.id, req.method)
            req.status = req.status or CLIENT_CLOSED
        elif req.status:  # the response has started: log (without the text) and drop the connection
            if not req.scope.get(LOGGED_KEY):
                log_unexpected(exc, f"{req.method} (response already started)")
        else:
            status, message, headers = status_and_message(exc)
            if status == 500:
                log_unexpected(exc, req.method)
            await send_error(send, status, message, headers)

    def observe(self, req: EdgeRequest) -> None:
        """Metrics by route template and the access-log line of a finished request."""
        seconds = time.perf_counter() - req.started_at
        scope = req.scope
        route = scope.get("route")
        template = getattr(route, "path", None) or scope.get(ROUTE_KEY)
        if not isinstance(template, str):
            template = self._routes.template(req.method, req.path) if req.status else UNMATCHED
        if ":" in template:
            template = template.replace(":path", "")
        record_http(req.method, template, req.status, seconds)
        if self._access_log:
            principal = req.principal
            access_line(
                req.method if len(req.method) <= 16 else "other", template, req.status, round(seconds * 1000, 3),
                req.id, req.ip, principal.actor if principal is not None else None,
            )


async def reject(req: EdgeRequest, status: int, message: str, headers: dict[str, str] | None = None) -> bool:
    """Answer an error before routing, reading (and dropping) any body so the client sees it; True."""
    if req.has_body:
        await drain(req.receive)
    await send_error(req.send, status, message, headers)
    return True


async def drain(receive: Receive) -> None:
    """Read and drop the body so the client sees our answer instead of a reset connection."""
    drained = 0
    while drained <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def send_error(send: Send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    body = error_body(status, message)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
