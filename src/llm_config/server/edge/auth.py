"""Authentication at the edge: the API key → the caller's principal, or 400/401 (SPEC §8, §9).

Which requests need one: everything under `/api/`, `/metrics` with `--metrics-auth`, and `/health`
when a key is sent with it (for the details a `system:read` key may see; without a master key
loaded, health still answers). A key in the query string, or credentials sent twice, are 400.

A key the principal cache knows costs nothing more (no await); any other is looked up in the thread
pool (a read). A failure then meets the address's rate limit before anything is written (SPEC §9):
over the limit it is refused with 429 and never audited; under it, it counts towards a ban and is
audited at most once per address and window (the manager coalesces). So a flood of bad keys costs
reads, not fsyncs, and a valid key never waits on its address's bucket.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from llm_config import metrics, tracing
from llm_config.core.manager import ConfigManager
from llm_config.errors import AuthenticationError, KeyMissingError
from llm_config.models import Principal
from llm_config.server.auth import WWW_AUTHENTICATE, cached_principal, extract_token
from llm_config.server.edge.rate import RateLimit
from llm_config.server.edge.request import EdgeRequest
from llm_config.server.edge.respond import reject
from llm_config.server.logs import get_logger
from llm_config.server.paths import API_PREFIX, HEALTH_PATH, METRICS_PATH
from llm_config.server.routes.common import PRINCIPAL_KEY
from llm_config.server.security import Ban, BanList, query_carries_key

__all__ = ["Authenticate"]

T = TypeVar("T")

log = get_logger()


class Authenticate:
    __slots__ = ("_bans", "_executor", "_manager", "_metrics_auth", "_rate")

    def __init__(self, manager: ConfigManager, executor: Callable[[], Executor], bans: BanList, rate: RateLimit, *,
                 metrics_auth: bool) -> None:
        self._manager = manager
        self._executor = executor
        self._bans = bans
        self._rate = rate
        self._metrics_auth = metrics_auth

    async def check(self, req: EdgeRequest) -> bool:
        """The principal into `req` (and the scope, for the routes); True after answering 400/401/429."""
        path = req.path
        health_with_key = path == HEALTH_PATH and (req.auth is not None or req.x_api_key is not None)
        if not (path.startswith(API_PREFIX) or (self._metrics_auth and path == METRICS_PATH) or health_with_key):
            return False
        principal = self._cached(req)
        if principal is None:
            try:
                principal = await self._principal(req)
            except KeyMissingError:
                if not health_with_key:
                    raise
                return False
            if principal is None:
                return True
        req.principal = principal
        req.scope[PRINCIPAL_KEY] = principal
        return False

    def _cached(self, req: EdgeRequest) -> Principal | None:
        """The principal of a well-presented key the principal cache knows (no I/O, no await), else None."""
        if req.repeated_credentials or query_carries_key(req.scope.get("query_string", b"")):
            return None
        token, _ = extract_token(req.auth, req.x_api_key)
        return cached_principal(self._manager, token) if token is not None else None

    async def _principal(self, req: EdgeRequest) -> Principal | None:
        """The caller's principal, or None after answering 400/401/429 (and counting towards a ban)."""
        if query_carries_key(req.scope.get("query_string", b"")):
            metrics.AUTH_FAILURES.labels("query_string").inc()
            await reject(req, 400, "API keys are not accepted in the query string: "
                         "send them in the Authorization (Bearer) or X-API-Key header")
            return None
        if req.repeated_credentials:
            metrics.AUTH_FAILURES.labels("malformed").inc()
            await reject(req, 400, "Send one Authorization or X-API-Key header, not several")
            return None
        token, malformed = extract_token(req.auth, req.x_api_key)
        if token is not None:
            principal = cached_principal(self._manager, token)
            if principal is not None:
                return principal
        presented = token if token is not None else ("malformed" if malformed else None)
        if presented is not None:
            try:
                return await self._blocking(self._manager.authenticate, presented, source_ip=req.ip,
                                            request_id=req.id, audit_failure=False)
            except AuthenticationError:
                pass
        reason = "missing" if presented is None else "malformed" if malformed else "invalid"
        message = "API key missing" if presented is None else "API key invalid, expired or revoked"
        metrics.AUTH_FAILURES.labels(reason).inc()
        if self._rate.limiter.ip_spec is not None and await self._rate.hit_address(req):
            return None
        ban = await self._bans.arecord_failure(req.ip)
        await self._blocking(self._record_failure, reason, req, ban)
        await reject(req, 401, message, {"WWW-Authenticate": WWW_AUTHENTICATE})
        return None

    def _record_failure(self, reason: str, req: EdgeRequest, ban: Ban | None) -> None:
        """The audit side of a failed authentication (in the pool): coalesced, and a ban once."""
        manager = self._manager
        manager.record_auth_failure("missing" if reason == "missing" else "invalid, expired or revoked",
                                    source_ip=req.ip, request_id=req.id)
        if ban is not None:
            metrics.BANS.inc()
            log.warning("client_banned", client_ip=ban.ip, failures=ban.failures,
                        until=ban.to_json()["expires_at"], request_id=req.id)
            manager.record_ban(ban.ip, until=str(ban.to_json()["expires_at"]), failures=ban.failures,
                               request_id=req.id)

    async def _blocking(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), tracing.carry(functools.partial(fn, *args, **kwargs)))
