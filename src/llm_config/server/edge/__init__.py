"""The edge: one pure-ASGI middleware in front of FastAPI that every request crosses (SPEC §8, §9).

It is a short pipeline, read top to bottom in `EdgeMiddleware.__init__`. Each step looks at the
request (`request.EdgeRequest`, filled in one pass over the headers) and either answers it —
and the pipeline stops — or lets it go on, perhaps wrapping `receive` or `send` for the steps after it:

1. `guards`: CIDR allow/deny lists → 403, then bans → 403;
2. `cors` (only with `--cors-origin`): a preflight answered, CORS headers on every other answer;
3. `auth`: the API key → principal (a principal-cache hit stays on the event loop, anything else
   goes to the thread pool), or 400 (key in the query string, credentials twice) / 401 — failures
   count towards a ban;
4. `rate`: per key for authenticated requests, per client address for the rest → 429;
5. `cached`: the hot path (ARCHITECTURE decision 1) — a plain GET of one config found in L1 and
   allowed is answered right here, no thread hop, no router;
6. `body`: `--max-body` (400/413) and `--body-timeout` (408) on `receive`, or a route's own limits;
7. FastAPI, with the principal, the client address and the request id in the scope.

Around them, `respond`: the security headers, `X-Request-ID` and `X-RateLimit-*` on every answer
(streamed ones included: they go out with the start message), and when the request ends — a
stream's end and a client's disconnect included — metrics by route template, one access-log line
and, for an exception nobody handled, the last-resort 500. Steps are built once per app; a request
costs one `EdgeRequest` and one `send` wrapper.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from llm_config.core.manager import ConfigManager
from llm_config.server.edge.auth import Authenticate
from llm_config.server.edge.body import BodyLimits
from llm_config.server.edge.cached import CachedGet
from llm_config.server.edge.cors import Cors
from llm_config.server.edge.guards import AddressGuard
from llm_config.server.edge.rate import RateLimit
from llm_config.server.edge.request import EdgeRequest
from llm_config.server.edge.respond import DRAIN_LIMIT, Responder
from llm_config.server.limits import RateLimiter
from llm_config.server.paths import BodyLimit
from llm_config.server.security import BanList, IPFilter, Network
from llm_config.server.telemetry import RouteTable

__all__ = ["DRAIN_LIMIT", "Edge", "EdgeMiddleware", "Step"]

Step = Callable[[EdgeRequest], Awaitable[bool]]
"""One step of the pipeline: True when it answered the request (the pipeline stops there)."""


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
    body_limits: Mapping[str, BodyLimit] = field(default_factory=dict)
    """Routes with request-body limits of their own (`paths.body_limits`)."""


class EdgeMiddleware:
    """See the module docstring. Pure ASGI: Starlette's BaseHTTPMiddleware would cost a task per request."""

    def __init__(self, app: ASGIApp, *, edge: Edge) -> None:
        self.app = app
        self.edge = edge
        self._respond = Responder(tls=edge.tls, access_log=edge.access_log, routes=edge.routes)
        rate = RateLimit(edge.limiter)
        cors: tuple[Step, ...] = (Cors(edge.cors_origins).apply,) if edge.cors_origins else ()
        self.steps: tuple[Step, ...] = (
            AddressGuard(edge.ip_filter, edge.bans).refuse,  # 403: CIDR lists, then bans
            *cors,  # a preflight answered; CORS headers on every other answer
            Authenticate(edge.manager, edge.executor, edge.bans, rate, metrics_auth=edge.metrics_auth).check,  # 400/401
            rate.check,  # 429: per key, or per address
            CachedGet(edge.manager).answer,  # 200/304 from L1, on the event loop
            BodyLimits(BodyLimit(edge.max_body, edge.body_timeout), edge.body_limits).check,  # 400/413; 408 later
            self._forward,  # FastAPI
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        req = EdgeRequest(scope, receive, send, self.edge.trusted_proxies)
        respond = self._respond
        req.send = headed = respond.headed(req)
        try:
            for step in self.steps:
                if await step(req):
                    break
        except Exception as exc:
            await respond.failed(req, exc, headed)
        finally:
            respond.observe(req)
            req.send = send  # the wrappers refer to req: a cycle only the garbage collector would break

    async def _forward(self, req: EdgeRequest) -> bool:
        await self.app(req.scope, req.receive, req.send)
        return True
