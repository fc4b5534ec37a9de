"""Bans and failed-authentication counts shared by every worker and replica through Redis (SPEC §9).

`RedisBanList` is the `BanList` of `security.py` with its state in Redis when `--redis-url` is given:

- **Counting** (`arecord_failure`, on a failed authentication only): one Lua script per failure keeps
  the address's failure times in a sorted set (`ZREMRANGEBYSCORE` + `ZADD` + `ZCARD` + `PEXPIRE`) and,
  at the threshold, sets the ban key with `NX PX` — so exactly one process, whichever recorded the
  deciding failure, gets the ban back and writes the one `ip_banned` audit event.
- **Checking** (`banned`, on every request): a dict lookup in this process's mirror of the live bans,
  never a Redis round trip. The mirror follows Redis through pub/sub (a ban or lift reaches every
  process within milliseconds) and a generation counter polled every `SYNC_SECONDS` (0.5 s), which
  reloads the mirror if a message was missed — so a ban reaches every replica within 1 s.
- **Admin** (`alist`, `alift`): read and lift the shared state; a lift is published like a ban.
- **Redis down or slow** (0.5 s timeouts, as `limits.py`): failures count in this process's own
  `BanList` and its bans are enforced here; the mirror keeps the bans it had. Logged once per outage,
  never a 5xx. Sharing resumes when Redis answers again; a lift made meanwhile is replayed then (unless
  the address was banned again after it). Bans made locally during the outage stay local until expiry.

Keys (`P` is `--redis-prefix`, as for the rate-limit buckets): `P bans:failures:<ip>` (sorted set,
expires with the window), `P bans:ban:<ip>` (`banned_ms expires_ms failures`, expires with the ban),
`P bans:index` (sorted set of banned addresses by expiry), `P bans:generation` (counter of changes),
channel `P bans:events`. The snapshot script reads ban keys it does not declare: standalone or
Sentinel Redis, not Cluster.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import itertools
import secrets
import time
from collections.abc import Callable
from typing import Any, Final

from llm_config.cache.breaker import Breaker
from llm_config.errors import MissingDependencyError
from llm_config.server.logs import get_logger
from llm_config.server.security import BAN_SECONDS, BAN_THRESHOLD, BAN_WINDOW, Ban, BanList

__all__ = ["REDIS_RETRY_SECONDS", "SYNC_SECONDS", "RedisBanList"]

SYNC_SECONDS: Final = 0.5  # generation poll: the bound on staleness when a pub/sub message is lost
REDIS_RETRY_SECONDS: Final = 5.0  # after a failed call, failures count locally this long (as limits.py)
_RECONNECT_SECONDS: Final = 1.0  # the background sync tries Redis again this often while it is down
_TIMEOUT: Final = 0.5

log = get_logger()

# KEYS: failures, ban, index, generation
# ARGV: now_ms, cutoff_ms, threshold, duration_ms, member, ip, channel, expires_ms
_RECORD: Final = """
local current = redis.call('GET', KEYS[2])
if current then return {0, current} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local count = redis.call('ZCARD', KEYS[1])
if count < tonumber(ARGV[3]) then return {0, ''} end
local value = ARGV[1] .. ' ' .. ARGV[8] .. ' ' .. count
if not redis.call('SET', KEYS[2], value, 'NX', 'PX', ARGV[4]) then return {0, ''} end
redis.call('DEL', KEYS[1])
redis.call('ZADD', KEYS[3], ARGV[8], ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])
local generation = redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[7], 'ban ' .. generation .. ' ' .. ARGV[6] .. ' ' .. value)
return {1, value}
"""

# KEYS: ban, failures, index, generation
# ARGV: ip, channel, not_after_ms ('' for any ban)
_LIFT: Final = """
local value = redis.call('GET', KEYS[1])
if value and ARGV[3] ~= '' and tonumber(string.match(value, '^%d+')) > tonumber(ARGV[3]) then return 0 end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
if not value then return 0 end
redis.call('DEL', KEYS[1])
local generation = redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[2], 'lift ' .. generation .. ' ' .. ARGV[1])
return 1
"""

# KEYS: index, generation
# ARGV: now_ms, ban key prefix
_SNAPSHOT: Final = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local out = {redis.call('GET', KEYS[2]) or '0'}
for _, ip in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local value = redis.call('GET', ARGV[2] .. ip)
  if value then
    out[#out + 1] = ip
    out[#out + 1] = value
  end
end
return out
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ban(ip: str, value: Any) -> Ban:
    """A ban from its stored form `banned_ms expires_ms failures`."""
    banned_ms, expires_ms, failures = _text(value).split(" ")
    return Ban(ip=ip, banned_at=int(banned_ms) / 1000, expires_at=int(expires_ms) / 1000, failures=int(failures))


def _bans_down(exc: BaseException) -> None:
    log.warning("ban_redis_unavailable", error=type(exc).__name__,
                fallback="bans and failure counts kept in this process")


class RedisBanList(BanList):
    """A `BanList` whose failures and bans live in Redis; this process's own `BanList` while Redis is down."""

    def __init__(
        self, redis_url: str, *, prefix: str = "llm-config:", threshold: int = BAN_THRESHOLD,
        window: float = BAN_WINDOW, duration: float = BAN_SECONDS, ban_loopback: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(threshold=threshold, window=window, duration=duration, ban_loopback=ban_loopback,
                         clock=clock)
        try:
            import redis.asyncio
        except ModuleNotFoundError:
            raise MissingDependencyError("redis", "redis") from None
        self._client: Any = redis.asyncio.Redis.from_url(
            redis_url, socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT,
        )
        self._prefix = f"{prefix}bans:"
        self._ban_prefix = f"{self._prefix}ban:"
        self._index = f"{self._prefix}index"
        self._generation_key = f"{self._prefix}generation"
        self.channel = f"{self._prefix}events"
        self._record_script = self._client.register_script(_RECORD)
        self._lift_script = self._client.register_script(_LIFT)
        self._snapshot_script = self._client.register_script(_SNAPSHOT)
        self._member = f"{secrets.token_hex(4)}-"  # failure members: unique per process and failure
        self._sequence = itertools.count()
        self._shared: dict[str, Ban] = {}  # the live bans in Redis, as last heard
        self._generation = -1  # of the mirror; -1: never loaded
        self._pending_lifts: dict[str, int] = {}  # lifted while Redis was down: ip -> when (ms)
        # one failed call → this process's own list for REDIS_RETRY_SECONDS, then one trial
        self._breaker = Breaker(fail_max=1, reset_seconds=REDIS_RETRY_SECONDS, on_open=_bans_down,
                                on_close=self._bans_up)
        self._sync: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ the hot path

    def banned(self, ip: str | None) -> Ban | None:
        """The live ban of `ip` from the mirror or from this process's own bans — no Redis round trip."""
        if self._sync is None:
            self._start_sync()
        if ip is None:
            return None
        shared = self._shared
        if shared:
            ban = shared.get(ip)
            if ban is not None and not self._exempt(ip):  # whoever writes Redis cannot ban loopback either
                if ban.expires_at > self._clock():
                    return ban
                shared.pop(ip, None)
        if not self._bans:
            return None
        return BanList.banned(self, ip)

    def list(self) -> list[Ban]:
        """The bans this process enforces: the shared ones as last heard, and its own."""
        now = self._clock()
        merged = {ip: ban for ip, ban in self._shared.items() if ban.expires_at > now}
        for ban in BanList.list(self):
            merged.setdefault(ban.ip, ban)
        return sorted(merged.values(), key=lambda b: b.banned_at)

    def lift(self, ip: str) -> bool:
        """Lift in this process only (the mirror and the local bans); `alift` lifts everywhere."""
        shared = self._shared.pop(ip, None) is not None
        return BanList.lift(self, ip) or shared

    # ------------------------------------------------------------------ shared state

    async def arecord_failure(self, ip: str | None) -> Ban | None:
        """Count a failure in Redis; the ban if this process's failure decided it (it alone announces it)."""
        if ip is None or self.threshold <= 0 or self._exempt(ip):
            return None
        if self._sync is None:
            self._start_sync()
        if not self._breaker.allow():
            return self.record_failure(ip)
        now_ms = int(self._clock() * 1000)
        duration_ms = max(1, int(self.duration * 1000))
        try:
            announced, value = await self._record_script(
                keys=[f"{self._prefix}failures:{ip}", self._ban_prefix + ip, self._index, self._generation_key],
                args=[now_ms, now_ms - int(self.window * 1000), self.threshold, duration_ms,
                      f"{self._member}{next(self._sequence)}", ip, self.channel, now_ms + duration_ms],
            )
        except Exception as exc:  # Redis down or slow: count here, enforce here
            self._mark_down(exc)
            return self.record_failure(ip)
        if not value:
            return None
        try:
            ban = _ban(ip, value)
        except (ValueError, TypeError) as exc:  # a value we never wrote: count here rather than fail the request
            self._mark_down(exc)
            return self.record_failure(ip)
        self._shared[ip] = ban  # enforced here at once; the others hear it through pub/sub
        return ban if announced else None

    async def alist(self) -> builtins.list[Ban]:
        """The live bans, read from Redis (the mirror is refreshed with them); the mirror if Redis is down."""
        if self._breaker.allow():
            try:
                await self._reload()
            except Exception as exc:
                self._mark_down(exc)
        return self.list()

    async def alift(self, ip: str) -> bool:
        """Lift a ban everywhere (and forget the failures behind it); False if `ip` was not banned."""
        here = self.lift(ip)
        if self._breaker.allow():
            try:
                return bool(await self._lift(ip, "")) or here
            except Exception as exc:
                self._mark_down(exc)
        if here:  # replayed when Redis answers again, unless the address is banned again after this
            self._pending_lifts[ip] = int(self._clock() * 1000)
            log.warning("ban_lift_pending", client_ip=ip, reason="redis unavailable")
        return here

    async def _lift(self, ip: str, not_after: str) -> int:
        result: int = await self._lift_script(
            keys=[self._ban_prefix + ip, f"{self._prefix}failures:{ip}", self._index, self._generation_key],
            args=[ip, self.channel, not_after],
        )
        return result

    async def _reload(self) -> None:
        rows = await self._snapshot_script(keys=[self._index, self._generation_key],
                                           args=[int(self._clock() * 1000), self._ban_prefix])
        shared: dict[str, Ban] = {}
        for i in range(1, len(rows) - 1, 2):
            ip = _text(rows[i])
            with contextlib.suppress(ValueError):  # not written by us: not a ban
                shared[ip] = _ban(ip, rows[i + 1])
        self._shared = shared
        self._generation = int(_text(rows[0]))

    def _apply(self, data: Any) -> bool:
        """One pub/sub event (`ban GEN IP BANNED EXPIRES FAILURES` or `lift GEN IP`); False on a gap."""
        parts = _text(data).split(" ")
        try:
            generation = int(parts[1])
            if generation <= self._generation:
                return True  # in the snapshot already
            if generation != self._generation + 1 or parts[0] not in ("ban", "lift") or len(parts) < 3:
                return False
            ban = _ban(parts[2], " ".join(parts[3:6])) if parts[0] == "ban" else None
        except (ValueError, IndexError):
            return False  # not ours: let the snapshot decide
        self._generation = generation
        if ban is not None:
            self._shared[ban.ip] = ban
        else:
            self.lift(parts[2])
        return True

    # ------------------------------------------------------------------ background sync

    def _start_sync(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not on an event loop (a synchronous caller): nothing to follow yet
        self._sync = loop.create_task(self._sync_forever(), name="llm-config-bans-sync")

    async def _sync_forever(self) -> None:
        """Follow the shared bans: pub/sub for each change, the generation poll for anything missed."""
        pubsub: Any = None
        loop = asyncio.get_running_loop()
        while True:
            try:
                if pubsub is None:
                    pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                    await pubsub.subscribe(self.channel)
                    await self._replay_lifts()
                    await self._reload()  # after subscribing: nothing falls between snapshot and messages
                    self._mark_up()
                deadline = loop.time() + SYNC_SECONDS
                stale = False
                while (left := deadline - loop.time()) > 0:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
                    if message is not None and message.get("type") == "message" and not self._apply(message["data"]):
                        stale = True
                if stale or int(_text(await self._client.get(self._generation_key) or 0)) != self._generation:
                    await self._reload()
                self._mark_up()
            except asyncio.CancelledError:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
                raise
            except Exception as exc:
                self._mark_down(exc)
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
                    pubsub = None
                await asyncio.sleep(_RECONNECT_SECONDS)

    async def _replay_lifts(self) -> None:
        while self._pending_lifts:
            ip, lifted_ms = next(iter(self._pending_lifts.items()))
            await self._lift(ip, str(lifted_ms))
            self._pending_lifts.pop(ip, None)

    def _mark_down(self, exc: BaseException) -> None:
        self._breaker.failure(exc)

    def _mark_up(self) -> None:
        self._breaker.success()

    def _bans_up(self) -> None:
        log.info("ban_redis_available", shared_bans=len(self._shared))

    async def aclose(self) -> None:
        task = self._sync  # stays set (done): a closed list does not start following again
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self._client.aclose()
