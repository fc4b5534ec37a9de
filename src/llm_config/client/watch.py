"""The watch stream, client side: `GET /api/v1/watch/{ns…}` read with httpx-sse, resumed after any drop.

One stream per watched namespace (a thread for `Client`, a task for `AsyncClient`), every environment the
key may read. Events (SPEC §8, `llm_config.wire`):

- `hello` — (re)connected. After the first connection, or when the store's epoch changed, every cached
  entry of the namespace is revalidated (a fill that raced the connection may have missed a change);
  after a resume nothing is, since the stream replays what happened while it was down.
- `change` — skipped if its revision was seen (a replay never duplicates); else the cached entries it
  makes stale are refetched *before* the `on_change` callbacks run, so a callback that reads through the
  client sees the new value.
- `resync` — the stream cannot continue from where the client was (a restore): everything cached of the
  namespace is revalidated, and callbacks hear of every cached key whose value changed.
- `error` — the service ended the stream for good (a revoked key): watching stops, a 401 empties the
  cache so the next call raises.

A dropped connection or a restarted server is retried with backoff, resuming with `since=<last revision>`
and `epoch=<epoch>`; a malformed event is logged, counted in `status()` and skipped. Nothing here lets an
exception out of the thread or task.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import httpx
import orjson
from httpx_sse import ServerSentEvent, SSEError, aconnect_sse, connect_sse

from llm_config import wire
from llm_config.client._base import (
    ClientCore,
    GetKey,
    Subscription,
    WatchState,
    error_from,
    parse_retry_after,
    stream_error,
    watch_path,
)
from llm_config.errors import LLMConfigError, ValidationError
from llm_config.models import Entry

if TYPE_CHECKING:
    from llm_config.client.async_ import AsyncClient
    from llm_config.client.sync import Client

__all__ = ["AsyncWatcher", "SyncWatcher", "decode"]

log = logging.getLogger("llm_config.client")

STOP_STATUSES: Final = frozenset({401, 403, 404})
"""Opening the stream answered this: retrying cannot help (revoked key, no access, no watch route)."""
RECONNECT_MAX: Final = 5.0


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """`event: error`: the service ends the stream for good."""

    error: LLMConfigError


Event = wire.WatchHello | wire.WatchChange | wire.WatchResync | StreamEnd


def decode(core: ClientCore, w: WatchState, sse: ServerSentEvent) -> Event | None:
    """One SSE event as a wire object; None for unknown event types and (logged, counted) malformed ones."""
    kind = sse.event
    if kind not in ("hello", "change", "resync", "error"):
        return None  # a newer server's event: not ours to fail on
    try:
        data = orjson.loads(sse.data)
        if kind == "hello":
            return wire.WatchHello.from_json(data)
        if kind == "change":
            return wire.WatchChange.from_json(data)
        if kind == "resync":
            return wire.WatchResync.from_json(data)
        return StreamEnd(stream_error(data))
    except (orjson.JSONDecodeError, ValidationError):
        core.malformed(w, kind)
        return None


def reconnect_delay(core: ClientCore, w: WatchState) -> float:
    delay = min(RECONNECT_MAX, core.policy.backoff_delay(w.attempt))
    w.attempt += 1
    return delay


def _shutdown(response: httpx.Response | None) -> None:
    """Unblock a thread reading `response` (closing a socket does not wake a blocked recv; shutdown does)."""
    if response is None:
        return
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _changed_entries(core: ClientCore, before: dict[GetKey, Entry]) -> list[tuple[GetKey, Entry | None]]:
    out: list[tuple[GetKey, Entry | None]] = []
    for ck, old in before.items():
        slot = core.hits.get(ck)
        new: Entry | None = slot.item if slot is not None else None
        if new is None or new.version != old.version or new.id != old.id:
            out.append((ck, new))
    return out


def _synthesized(core: ClientCore, w: WatchState, changed: list[tuple[GetKey, Entry | None]]
                 ) -> list[tuple[Subscription, wire.WatchChange, Entry | None]]:
    """Callbacks for changes the stream could not deliver one by one (before it connected, or across a
    resync): one `WatchChange` per cached key whose value moved, at the stream's revision."""
    calls: list[tuple[Subscription, wire.WatchChange, Entry | None]] = []
    for (ns, key, env, _, _, _), entry in changed:
        subs = core.matching(ns, key)
        if not subs:
            continue
        change = wire.WatchChange(max(w.revision, 0), ns, key, env, entry.version if entry else 0,
                                  "set" if entry is not None else "delete")
        calls.extend((s, change, entry) for s in subs)
    return calls


def _plain(before: list[GetKey], core: ClientCore) -> dict[GetKey, Entry]:
    out: dict[GetKey, Entry] = {}
    for ck in before:
        if ck[3] is None and not ck[4] and not ck[5]:
            slot = core.hits.get(ck)
            if slot is not None:
                out[ck] = slot.item
    return out


def _log_callback_failure(sub: Subscription, exc: BaseException) -> None:
    # the exception's text may quote a value: only its type is logged
    log.warning("llm-config client: an on_change callback (%s, %s) raised %s", sub.namespace, sub.pattern,
                type(exc).__name__)


# ---------------------------------------------------------------------------------------------- sync

class SyncWatcher:
    """Runs one namespace's stream in a daemon thread for a `Client`."""

    def __init__(self, client: Client, w: WatchState) -> None:
        self.client = client
        self.core = client._core
        self.w = w
        self.response: httpx.Response | None = None
        self.thread = threading.Thread(target=self.run, name=f"llm-config-watch:{w.namespace}", daemon=True)
        w.handle = self

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        _shutdown(self.response)

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # never let anything out of the thread
            log.warning("llm-config client: the %s watch thread ended (%s)", self.w.namespace, type(exc).__name__)
            self.core.stream_lost(self.w, f"watch {self.w.namespace}: {type(exc).__name__}")

    def _loop(self) -> None:
        client, core, w = self.client, self.core, self.w
        stopping = client._stopping
        while not stopping.is_set() and not w.stopped:
            delay: float | None = None
            reason: str | None = None
            try:
                with connect_sse(client._streams, "GET", watch_path(w.namespace), params=core.watch_params(w),
                                 timeout=client._stream_timeout) as source:
                    response = source.response
                    self.response = response
                    if stopping.is_set():
                        return
                    if response.status_code != 200:
                        response.read()
                        delay = self._refused(response)
                        if delay is None:
                            return
                    else:
                        for sse in source.iter_sse():
                            if stopping.is_set():
                                return
                            if not self._handle(sse):
                                return
                        reason = f"watch {w.namespace}: the service closed the stream"
            except (httpx.TransportError, httpx.StreamError, SSEError) as exc:
                reason = f"watch {w.namespace}: {type(exc).__name__}"
                if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
                    core.failed(exc)  # the service cannot be reached: reads serve the cache meanwhile
            finally:
                self.response = None
                core.stream_lost(w, None if stopping.is_set() else reason)
            if stopping.is_set():
                return
            stopping.wait(delay if delay is not None else reconnect_delay(core, w))

    def _refused(self, response: httpx.Response) -> float | None:
        """A non-200 answer to opening the stream: the delay before trying again, or None to stop for good."""
        core, w = self.core, self.w
        core.answered()
        exc = error_from(response.status_code, response.content, response.headers)
        if response.status_code in STOP_STATUSES:
            core.stream_stopped(w, exc)
            return None
        retry_after = parse_retry_after(response.headers.get("retry-after"), response.headers.get("date"))
        core.stream_lost(w, f"watch {w.namespace}: HTTP {response.status_code}")
        base = reconnect_delay(core, w)
        return max(base, min(retry_after, core.policy.retry_after_max)) if retry_after is not None else base

    def _handle(self, sse: ServerSentEvent) -> bool:
        """Act on one event; False when the stream must end (an error event)."""
        client, core, w = self.client, self.core, self.w
        event = decode(core, w, sse)
        if event is None:
            return True
        if isinstance(event, StreamEnd):
            core.stream_stopped(w, event.error)
            return False
        if isinstance(event, wire.WatchChange):
            plan = core.on_change(w, event)
            if plan is None:
                return True
            refetch, subs = plan
            for ck in refetch:
                client._refresh(ck)
            if subs:
                entry = client._entry_after(event)
                for sub in subs:
                    self._call(sub, event, entry)
            core.done(w, event.revision)
            return True
        refetch = core.on_hello(w, event) if isinstance(event, wire.WatchHello) else core.on_resync(w, event)
        before = _plain(refetch, core)
        for ck in refetch:
            client._refresh(ck)
        for ck in core.unsettled(w):
            client._refresh(ck)
        core.caught_up(w)
        for sub, change, entry in _synthesized(core, w, _changed_entries(core, before)):
            self._call(sub, change, entry)
        return True

    @staticmethod
    def _call(sub: Subscription, change: wire.WatchChange, entry: Entry | None) -> None:
        if not sub.active:
            return
        try:
            sub.callback(change, entry)
        except Exception as exc:
            _log_callback_failure(sub, exc)


# ---------------------------------------------------------------------------------------------- async

class AsyncWatcher:
    """Runs one namespace's stream as an asyncio task for an `AsyncClient`."""

    def __init__(self, client: AsyncClient, w: WatchState) -> None:
        self.client = client
        self.core = client._core
        self.w = w
        self.task: asyncio.Task[None] | None = None
        w.handle = self

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run(), name=f"llm-config-watch:{self.w.namespace}")

    async def stop(self) -> None:
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            self.core.stream_lost(self.w)
            raise
        except Exception as exc:  # never let anything out of the task
            log.warning("llm-config client: the %s watch task ended (%s)", self.w.namespace, type(exc).__name__)
            self.core.stream_lost(self.w, f"watch {self.w.namespace}: {type(exc).__name__}")

    async def _loop(self) -> None:
        client, core, w = self.client, self.core, self.w
        while not core.closed and not w.stopped:
            delay: float | None = None
            reason: str | None = None
            try:
                async with aconnect_sse(client._streams, "GET", watch_path(w.namespace), params=core.watch_params(w),
                                        timeout=client._stream_timeout) as source:
                    response = source.response
                    if response.status_code != 200:
                        await response.aread()
                        delay = self._refused(response)
                        if delay is None:
                            return
                    else:
                        async for sse in source.aiter_sse():
                            if not await self._handle(sse):
                                return
                        reason = f"watch {w.namespace}: the service closed the stream"
            except (httpx.TransportError, httpx.StreamError, SSEError) as exc:
                reason = f"watch {w.namespace}: {type(exc).__name__}"
                if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
                    core.failed(exc)  # the service cannot be reached: reads serve the cache meanwhile
            finally:
                core.stream_lost(w, reason)
            if self._closed():
                return
            await asyncio.sleep(delay if delay is not None else reconnect_delay(core, w))

    def _closed(self) -> bool:
        return self.core.closed

    def _refused(self, response: httpx.Response) -> float | None:
        core, w = self.core, self.w
        core.answered()
        exc = error_from(response.status_code, response.content, response.headers)
        if response.status_code in STOP_STATUSES:
            core.stream_stopped(w, exc)
            return None
        retry_after = parse_retry_after(response.headers.get("retry-after"), response.headers.get("date"))
        core.stream_lost(w, f"watch {w.namespace}: HTTP {response.status_code}")
        base = reconnect_delay(core, w)
        return max(base, min(retry_after, core.policy.retry_after_max)) if retry_after is not None else base

    async def _handle(self, sse: ServerSentEvent) -> bool:
        client, core, w = self.client, self.core, self.w
        event = decode(core, w, sse)
        if event is None:
            return True
        if isinstance(event, StreamEnd):
            core.stream_stopped(w, event.error)
            return False
        if isinstance(event, wire.WatchChange):
            plan = core.on_change(w, event)
            if plan is None:
                return True
            refetch, subs = plan
            for ck in refetch:
                await client._refresh(ck)
            if subs:
                entry = await client._entry_after(event)
                for sub in subs:
                    await self._call(sub, event, entry)
            core.done(w, event.revision)
            return True
        refetch = core.on_hello(w, event) if isinstance(event, wire.WatchHello) else core.on_resync(w, event)
        before = _plain(refetch, core)
        for ck in refetch:
            await client._refresh(ck)
        for ck in core.unsettled(w):
            await client._refresh(ck)
        core.caught_up(w)
        for sub, change, entry in _synthesized(core, w, _changed_entries(core, before)):
            await self._call(sub, change, entry)
        return True

    @staticmethod
    async def _call(sub: Subscription, change: wire.WatchChange, entry: Entry | None) -> None:
        if not sub.active:
            return
        try:
            result: Any = sub.callback(change, entry)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            _log_callback_failure(sub, exc)


AsyncCallback = Callable[[wire.WatchChange, Entry | None], Awaitable[Any] | Any]
