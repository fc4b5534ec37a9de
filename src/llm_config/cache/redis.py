"""L2: the shared cache tier in Redis, and the pub/sub channel that keeps every process's L1 coherent.

- **Records** are `b"<revision>|<payload>"` (keys chosen by `tiered.py`), each with a TTL.
  A *tombstone* `b"<revision>|"` marks everything older than that revision stale. Fills and tombstones
  go through two small Lua scripts that never replace a newer record with an older one — so a reader
  that loaded revision 9 from storage just before a writer committed 10 cannot put 9 back after the
  writer's tombstone (the stale-fill race). The payload is opaque here (`tiered.py` seals it).
- **Pub/sub** on `<prefix>inv`: a background thread listens; every message goes to `on_message`
  except this process's own. Pub/sub is at-most-once, so after a reconnect `on_reconnect` runs (the
  owner drops its L1): what was published while we were away is lost, not late.
- **Redis down or slow**: every call has a short socket timeout and sits behind a circuit breaker; when
  it is open calls are skipped at once (a miss, a lost tombstone — the revision poll and the TTLs bound
  the staleness), and after `reset_seconds` one trial call decides whether it closes. `status()` says
  why it is degraded. Never raises out of a cache call.

The breaker is ours (`breaker.py`), shared with the rate limits and bans.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from llm_config.cache.breaker import Breaker
from llm_config.errors import MissingDependencyError

__all__ = ["Breaker", "RedisTier", "TierStats"]

log = logging.getLogger("llm_config")

# KEYS[1] record key; ARGV: revision, value, ttl ms. A record replaces only an older record or a
# tombstone of an equal or older revision.
_FILL: Final = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local bar = string.find(cur, '|', 1, true)
  local rev = bar and tonumber(string.sub(cur, 1, bar - 1))
  if rev then
    local new = tonumber(ARGV[1])
    if bar == #cur then
      if new < rev then return 0 end
    elseif rev >= new then
      return 0
    end
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
# KEYS: record keys; ARGV: ttl ms, then one revision per key. A tombstone replaces anything older.
_TOMBSTONE: Final = """
local n = 0
for i, key in ipairs(KEYS) do
  local new = tonumber(ARGV[i + 1])
  local cur = redis.call('GET', key)
  local rev = nil
  if cur then
    local bar = string.find(cur, '|', 1, true)
    rev = bar and tonumber(string.sub(cur, 1, bar - 1))
  end
  if not rev or rev < new then
    redis.call('SET', key, ARGV[i + 1] .. '|', 'PX', ARGV[1])
    n = n + 1
  end
end
return n
"""


def _cache_down(exc: BaseException) -> None:
    log.warning("redis: %s; reading and writing without the shared cache until it answers again",
                type(exc).__name__)


def _cache_up() -> None:
    log.warning("redis: reachable again; the shared cache is back")


@dataclass(slots=True)
class TierStats:
    hits: int = 0
    misses: int = 0
    fills: int = 0
    rejected: int = 0  # records that failed their MAC or place check (tiered.py counts them)
    errors: int = 0  # calls that failed or timed out
    skipped: int = 0  # calls not made while the breaker was open
    messages: int = 0  # invalidation messages received from other processes
    reconnects: int = 0  # pub/sub reconnects (each drops the L1)


class RedisTier:
    """The Redis side of the cache: records, tombstones and the invalidation channel of one store."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        ttl_seconds: float = 30.0,
        timeout: float = 0.25,
        on_message: Callable[[bytes], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
        breaker: Breaker | None = None,
    ) -> None:
        try:
            import redis
        except ImportError:  # pragma: no cover - the redis extra is missing
            raise MissingDependencyError("redis", "redis") from None
        self._redis = redis
        self.url = url
        self.prefix = prefix
        self.channel = (prefix + "inv").encode()
        self.ttl_ms = int(ttl_seconds * 1000)
        self.origin = os.urandom(8).hex().encode()  # our own messages come back to us: skip them
        self.stats = TierStats()
        self.breaker = breaker or Breaker(on_open=_cache_down, on_close=_cache_up)
        self._client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                            retry_on_timeout=False)
        self._fill = self._client.register_script(_FILL)
        self._tombstone = self._client.register_script(_TOMBSTONE)
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self.subscribed = False
        self.subscriber_error: str | None = None
        self._stopped = threading.Event()
        self._listener: threading.Thread | None = None
        if on_message is not None:
            self._listener = threading.Thread(target=self._listen, name="llm-config-invalidations", daemon=True)
            self._listener.start()

    # -- guarded calls -------------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        breaker = self.breaker
        if not breaker.allow():
            self.stats.skipped += 1
            return False, None
        try:
            result = fn(*args, **kwargs)
        except self._redis.RedisError as exc:
            self.stats.errors += 1
            breaker.failure(exc)
            return False, None
        breaker.success()
        return True, result

    def get(self, key: str) -> tuple[int, bytes] | None:
        """(revision, payload) of a live record, or None (missing, a tombstone, or Redis unavailable)."""
        ok, raw = self._call(self._client.get, key)
        if not ok or raw is None:
            self.stats.misses += 1
            return None
        bar = raw.find(b"|")
        if bar <= 0 or bar == len(raw) - 1:
            self.stats.misses += 1
            return None
        try:
            revision = int(raw[:bar])
        except ValueError:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return revision, raw[bar + 1:]

    def fill(self, key: str, revision: int, payload: bytes) -> None:
        ok, _ = self._call(self._fill, keys=[key], args=[revision, b"%d|" % revision + payload, self.ttl_ms])
        if ok:
            self.stats.fills += 1

    def tombstone(self, keys: Sequence[tuple[str, int]]) -> bool:
        """Mark each key stale below its revision; False if Redis could not be told."""
        if not keys:
            return True
        ok, _ = self._call(self._tombstone, keys=[k for k, _ in keys], args=[self.ttl_ms, *[r for _, r in keys]])
        return ok

    def retarget(self, prefix: str) -> None:
        """Move to another store's prefix and channel (the listener resubscribes and drops the L1)."""
        if prefix != self.prefix:
            self.prefix = prefix
            self.channel = (prefix + "inv").encode()

    def probe(self) -> bool:
        """One PING through the breaker (doctor): whether Redis answers now."""
        ok, _ = self._call(self._client.ping)
        return ok

    def publish(self, message: bytes) -> bool:
        ok, _ = self._call(self._client.publish, self.channel, self.origin + b" " + message)
        return ok

    # -- the listener --------------------------------------------------------------------------

    def _listen(self) -> None:
        first = True
        delay = 0.05
        while not self._stopped.is_set():
            client = self._redis.Redis.from_url(self.url, socket_timeout=2.0, socket_connect_timeout=1.0,
                                                health_check_interval=1)
            pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call,unused-ignore]
            try:
                channel = self.channel
                pubsub.subscribe(channel)
                if not first:  # messages published while we were away are lost: start from nothing
                    self.stats.reconnects += 1
                    if self._on_reconnect is not None:
                        self._on_reconnect()
                    log.warning("redis: invalidation channel back; dropped this process's L1 cache")
                first = False
                self.subscribed, self.subscriber_error, delay = True, None, 0.05
                while not self._stopped.is_set() and channel == self.channel:
                    message = pubsub.get_message(timeout=0.25)
                    if message is None or message.get("type") != "message":
                        continue
                    data: bytes = message["data"]
                    if data.startswith(self.origin):
                        continue
                    self.stats.messages += 1
                    if self._on_message is not None:
                        self._on_message(data[len(self.origin) + 1:])
            except Exception as exc:  # the listener must live on: reconnect with a backoff
                if self.subscribed or self.subscriber_error is None:
                    log.warning("redis: invalidation channel lost (%s); changes from other processes reach "
                                "this one through the revision poll until it is back", type(exc).__name__)
                self.subscribed, self.subscriber_error = False, type(exc).__name__
                first = False
            finally:
                try:
                    pubsub.close()
                    client.close()
                except Exception:  # noqa: S110 - closing a broken connection may fail too
                    pass
            self._stopped.wait(delay)
            delay = min(delay * 2, 1.0)

    def status(self, *, unreachable: bool = False) -> str | None:
        """Why the shared tier is degraded, or None when it is fine (`unreachable`: a probe just failed)."""
        problems = []
        if self.breaker.is_open or unreachable:
            problems.append(f"redis unavailable ({self.breaker.last_error}): serving from storage")
        if self._listener is not None and not self.subscribed:
            problems.append(f"redis invalidation channel down ({self.subscriber_error or 'connecting'}): other "
                            "processes' changes arrive through the revision poll")
        return "; ".join(problems) or None

    def close(self) -> None:
        self._stopped.set()
        if self._listener is not None and self._listener is not threading.current_thread():
            self._listener.join(timeout=3)
        self._client.close()
