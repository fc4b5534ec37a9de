"""Rate limits (SPEC §9): a token bucket per API key and one per client address, with pyrate-limiter.

`RATE:BURST` means a bucket of BURST tokens refilling at RATE per second (pyrate-limiter's
`TokenBucket`, i.e. GCRA: one number of state per bucket, and the wait comes out in closed form).
Defaults: 100:50 per key, 10:10 per unauthenticated client address; `0` switches a limit off.

- Without Redis the buckets live in this process (exact within it; with N workers a client can
  get up to N times the limit, as each worker keeps its own buckets).
- With `--redis-url` every worker and replica shares one bucket per key/address through
  pyrate-limiter's `RedisStateStore` (an atomic Lua script per check, on the async client, so the
  event loop never blocks). If Redis fails, the local buckets take over until it answers again.

Every answer carries `X-RateLimit-Limit` (the bucket size), `X-RateLimit-Remaining` (tokens left)
and `X-RateLimit-Reset` (seconds until the bucket is full again); a 429 adds `Retry-After`.
Buckets are named by key id or address — never by the key itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any, Final, Literal

from pyrate_limiter import Rate, RedisStateStore, TokenBucket
from pyrate_limiter.abstracts.algorithm import Decision, State

from llm_config.cache.breaker import Breaker
from llm_config.errors import MissingDependencyError, ValidationError
from llm_config.server.logs import get_logger

__all__ = ["BucketScope", "LimitResult", "LocalBuckets", "RateLimiter", "RateSpec", "RedisBuckets", "parse_rate"]

BucketScope = Literal["key", "ip"]

_MAX_KEYS: Final = 100_000
_ALGORITHM: Final = TokenBucket()
_REDIS_RETRY_SECONDS: Final = 5.0

log = get_logger()


@dataclass(frozen=True, slots=True)
class RateSpec:
    """Sustained `rate` per second and a bucket of `burst` tokens."""

    rate: float
    burst: int

    def to_rate(self) -> Rate:
        if float(self.rate).is_integer():
            return Rate(int(self.rate), 1000, burst=self.burst)
        return Rate(max(1, round(self.rate * 1000)), 1_000_000, burst=self.burst)

    def __str__(self) -> str:
        return f"{self.rate:g}:{self.burst}"


def parse_rate(text: str | None, what: str) -> RateSpec | None:
    """`RATE:BURST` (or just `RATE`, burst = ceil(RATE)); `0` or an empty value switches the limit off."""
    raw = (text or "").strip()
    if raw in ("", "0", "0:0", "off", "none"):
        return None
    rate_text, _, burst_text = raw.partition(":")
    try:
        rate = float(rate_text)
        burst = int(burst_text) if burst_text else max(1, math.ceil(rate))
    except ValueError:
        raise ValidationError(f"Invalid {what}: use RATE:BURST, e.g. 100:50 (0 switches it off)") from None
    if rate == 0:
        return None
    if not (math.isfinite(rate) and 0 < rate <= 1_000_000 and 1 <= burst <= 1_000_000):
        raise ValidationError(f"Invalid {what}: RATE must be in (0, 1000000] per second and BURST in [1, 1000000]")
    return RateSpec(rate, burst)


class LimitResult:
    """One bucket's verdict, and what the response headers say about it (built per request: no dataclass)."""

    __slots__ = ("allowed", "limit", "remaining", "reset", "retry_after")

    def __init__(self, allowed: bool, limit: int, remaining: int, reset: int, retry_after: int) -> None:
        self.allowed = allowed
        self.limit = limit
        self.remaining = remaining
        self.reset = reset  # seconds until the bucket is full again
        self.retry_after = retry_after  # seconds; 0 when allowed

    def __repr__(self) -> str:
        return (f"LimitResult(allowed={self.allowed}, limit={self.limit}, remaining={self.remaining}, "
                f"reset={self.reset}, retry_after={self.retry_after})")

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(self.reset).encode()),
        ]
        if not self.allowed:
            out.append((b"retry-after", str(self.retry_after).encode()))
        return out


def _result(spec: Rate, state: State, decision: Decision, now_ms: int) -> LimitResult:
    """Headers from the bucket's state: `GCRA.consumed` and the time until the bucket is full, inline."""
    emission_us = max(1, -(-spec.interval * 1000 // spec.limit))  # as GCRA._emission_us
    ahead_us = max(0, int(state[0]) - now_ms * 1000) if state else 0
    owed = -(-ahead_us // emission_us)
    reset = -(-ahead_us // 1_000_000)
    if decision.allowed:
        return LimitResult(True, spec.burst, max(0, spec.burst - owed), reset, 0)
    wait_ms = decision.retry_after_ms if decision.retry_after_ms is not None else emission_us // 1000
    return LimitResult(False, spec.burst, max(0, spec.burst - owed), max(reset, 1), max(1, math.ceil(wait_ms / 1000)))


class LocalBuckets:
    """Buckets in this process: a dict of GCRA states, touched only from the event loop (no lock)."""

    def __init__(self, spec: RateSpec, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = _MAX_KEYS) -> None:
        self.spec = spec
        self._rates = [spec.to_rate()]
        self._clock = clock
        self._max_keys = max_keys
        self._states: dict[str, State] = {}

    def hit(self, name: str) -> LimitResult:
        now = int(self._clock() * 1000)
        state = self._states.get(name)
        if state is None:
            state = _ALGORITHM.initial(self._rates)
        new_state, decision = _ALGORITHM.step(self._rates, state, now, 1)
        if decision.allowed:
            if name not in self._states and len(self._states) >= self._max_keys:
                self._trim(now)
            self._states[name] = new_state
        return _result(self._rates[0], new_state, decision, now)

    def _trim(self, now_ms: int) -> None:
        """Drop full buckets (lossless: a full bucket equals a new one); under a flood, the oldest half."""
        now_us = now_ms * 1000
        for name in [n for n, s in self._states.items() if int(s[0]) <= now_us]:
            del self._states[name]
        if len(self._states) >= self._max_keys:
            for name in list(self._states)[: len(self._states) // 2]:
                del self._states[name]

    def reset(self) -> None:
        self._states.clear()


class RedisBuckets:
    """Buckets shared through Redis (every worker and replica); local buckets while Redis is down."""

    def __init__(self, spec: RateSpec, client: Any, prefix: str, scope: BucketScope) -> None:
        self.spec = spec
        self._rates = [spec.to_rate()]
        self._client = client
        self._prefix = f"{prefix}ratelimit:{scope}:"
        self._stores: dict[str, RedisStateStore] = {}
        self._fallback = LocalBuckets(spec)
        # one failed call → local buckets for _REDIS_RETRY_SECONDS, then one trial
        self._breaker = Breaker(fail_max=1, reset_seconds=_REDIS_RETRY_SECONDS, on_open=_limits_down)

    def _store(self, name: str) -> RedisStateStore:
        store = self._stores.get(name)
        if store is None:
            if len(self._stores) >= _MAX_KEYS:
                self._stores.clear()
            store = self._stores[name] = RedisStateStore(self._client, self._prefix + name)
        return store

    async def hit(self, name: str) -> LimitResult:
        if not self._breaker.allow():
            return self._fallback.hit(name)
        store = self._store(name)
        now = int(time.time() * 1000)
        try:
            decision = await _awaited(store.check(_ALGORITHM, self._rates, now, 1))  # type: ignore[no-untyped-call]
            state = await _awaited(store.read(_ALGORITHM, self._rates))  # type: ignore[no-untyped-call]
        except Exception as exc:  # Redis down or slow: keep limiting, locally
            self._breaker.failure(exc)
            return self._fallback.hit(name)
        self._breaker.success()
        return _result(self._rates[0], state, decision, now)


def _limits_down(exc: BaseException) -> None:
    log.warning("rate_limit_redis_unavailable", error=type(exc).__name__, retry_in_seconds=_REDIS_RETRY_SECONDS)


async def _awaited(value: Any) -> Any:
    return await value if isawaitable(value) else value


class RateLimiter:
    """The per-key and per-address limits of one app; `local` says whether `hit_local` may be used."""

    def __init__(self, key: RateSpec | None, ip: RateSpec | None, *, redis_url: str | None = None,
                 prefix: str = "llm-config:") -> None:
        self.key_spec = key
        self.ip_spec = ip
        self.redis_url = redis_url if (key or ip) else None
        self.local = self.redis_url is None
        self._prefix = prefix
        self._client: Any = None
        self._buckets: dict[str, LocalBuckets | RedisBuckets] = {}
        if self.local:
            if key:
                self._buckets["key"] = LocalBuckets(key)
            if ip:
                self._buckets["ip"] = LocalBuckets(ip)

    def enabled(self, scope: BucketScope) -> bool:
        return (self.key_spec if scope == "key" else self.ip_spec) is not None

    def hit_local(self, scope: BucketScope, name: str) -> LimitResult | None:
        """Synchronous check for the in-process buckets (None: this limit is off)."""
        bucket = self._buckets.get(scope)
        return bucket.hit(name) if isinstance(bucket, LocalBuckets) else None

    def _bucket(self, scope: BucketScope) -> LocalBuckets | RedisBuckets | None:
        bucket = self._buckets.get(scope)
        if bucket is None and not self.local:
            spec = self.key_spec if scope == "key" else self.ip_spec
            if spec is None:
                return None
            bucket = self._buckets[scope] = RedisBuckets(spec, self._redis(), self._prefix, scope)
        return bucket

    async def hit(self, scope: BucketScope, name: str) -> LimitResult | None:
        if self.local:
            return self.hit_local(scope, name)
        bucket = self._bucket(scope)
        if bucket is None:
            return None
        if isinstance(bucket, LocalBuckets):
            return bucket.hit(name)
        return await bucket.hit(name)

    def _redis(self) -> Any:
        if self._client is None:
            try:
                import redis.asyncio
            except ModuleNotFoundError:
                raise MissingDependencyError("redis", "redis") from None
            assert self.redis_url is not None
            self._client = redis.asyncio.Redis.from_url(
                self.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            self._buckets.clear()
            await client.aclose()
