"""Rate limits (SPEC §9): per API key once the caller is known, else per client address → 429.

The verdict stays on the request, so every answer carries `X-RateLimit-*` (`respond.py`); a refusal
adds `Retry-After`. In-process buckets are checked without a coroutine of the limiter's own.
"""

from __future__ import annotations

from llm_config import metrics
from llm_config.server.edge.request import EdgeRequest
from llm_config.server.edge.respond import reject
from llm_config.server.limits import BucketScope, LimitResult, RateLimiter

__all__ = ["RateLimit"]


class RateLimit:
    __slots__ = ("limiter",)

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def check(self, req: EdgeRequest) -> bool:
        """True after answering 429."""
        limiter = self.limiter
        principal = req.principal
        scope: BucketScope = "key" if principal is not None else "ip"
        name = (principal.key_id or principal.actor) if principal is not None else (req.ip or "unknown")
        limit = limiter.hit_local(scope, name) if limiter.local else await limiter.hit(scope, name)
        if limit is None:
            return False
        req.limit = limit
        return not limit.allowed and await refuse(req, limit, scope)

    async def hit_address(self, req: EdgeRequest) -> bool:
        """The client address's bucket (for a failed authentication): True after answering 429."""
        limiter = self.limiter
        name = req.ip or "unknown"
        limit = limiter.hit_local("ip", name) if limiter.local else await limiter.hit("ip", name)
        if limit is None:
            return False
        req.limit = limit
        return not limit.allowed and await refuse(req, limit, "ip")


async def refuse(req: EdgeRequest, limit: LimitResult, scope: BucketScope) -> bool:
    """Answer 429 (with `Retry-After`; `X-RateLimit-*` come with every answer); True."""
    metrics.RATE_LIMITED.labels(scope).inc()
    return await reject(req, 429, f"Rate limit exceeded: retry in {limit.retry_after} s")
