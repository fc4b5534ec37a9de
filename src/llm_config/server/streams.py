"""Fan-out of the change feed to this process's watch streams, on the event loop (no thread per stream).

One hub per app. While any stream is open, one task reads the feed (`core/watch.py`) in the thread pool —
woken at once by this process's own commits and key revocations (`manager.signals`), and every `poll`
seconds for other processes' and replicas' commits — and keeps the latest changes in a ring. A stream
takes what it may see from the ring; only a stream further behind than the ring reads storage itself.
So N streams cost one query per change, not N.

Never: blocks the event loop on storage, or lets one failing read end the streams (they wait for the
next tick); a restore (new epoch) makes every stream send `resync`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import contextvars
import itertools
import logging
import signal
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from llm_config.core.watch import PAGE, ChangeFeed, Signals
from llm_config.errors import StorageError
from llm_config.models import ChangeRow

__all__ = ["RING", "Subscription", "WatchHub", "close_all"]

log = logging.getLogger("llm_config.server")
T = TypeVar("T")

RING: Final = 8192
"""Changes kept in memory for streams that are (nearly) caught up."""
EPOCH_CHECK_SECONDS: Final = 1.0
CATCH_UP_READS: Final = 4
"""Streams behind the ring read storage for themselves, at most this many at a time per process."""

_HUBS: weakref.WeakSet[WatchHub] = weakref.WeakSet()


def close_all() -> None:
    """End every open watch stream of this process (server shutdown: clients reconnect elsewhere)."""
    for hub in list(_HUBS):
        hub.close()


def close_on_signals() -> None:
    """Chain `close_all` in front of the server's SIGTERM/SIGINT handlers, so a shutdown ends the streams
    first (a server waits for open responses before it exits; a stream never ends by itself). Only in the
    main thread (where the server installed them); elsewhere, whoever stops the server closes the hub."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if getattr(previous, "_closes_streams", False):
            continue

        def handler(signum: int, frame: Any, previous: Any = previous) -> None:
            close_all()
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)

        handler._closes_streams = True  # type: ignore[attr-defined]
        signal.signal(sig, handler)


class Subscription:
    """One stream's place at the hub: woken when there is something new (or its key must be rechecked)."""

    __slots__ = ("closed", "recheck", "wake")

    def __init__(self) -> None:
        self.wake = asyncio.Event()
        self.recheck = False
        self.closed = False


class WatchHub:
    """The change feed read once per process and handed to every open stream."""

    def __init__(self, feed: ChangeFeed, signals: Signals,
                 blocking: Callable[[Callable[..., T]], Awaitable[T]], *, poll: float = 0.1) -> None:
        self._feed = feed
        self._signals = signals
        self._blocking: Callable[[Callable[..., Any]], Awaitable[Any]] = blocking
        self.poll = poll
        self._ring: deque[ChangeRow] = deque(maxlen=RING)
        self._revisions: deque[int] = deque(maxlen=RING)
        self._base = 0  # the ring holds every change with _base < revision <= revision
        self.revision = -1  # -1: not running
        self.epoch = ""
        self.generation = 0  # bumped when the reader sees a new epoch (a restore)
        self.gaps = 0  # bumped when the feed lacks a revision's row: streams resync
        self.catch_up = asyncio.Semaphore(CATCH_UP_READS)  # streams reading storage themselves, at once
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._kick: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._closed = False
        _HUBS.add(self)

    # ------------------------------------------------------------------ streams

    async def subscribe(self) -> Subscription:
        """Join (starting the reader if this is the first stream)."""
        sub = Subscription()
        if self._closed:
            sub.closed = True
            return sub
        self._subs.add(sub)
        if self._task is None:  # set before any await: two first streams start one reader
            self._loop = asyncio.get_running_loop()
            self._kick = asyncio.Event()
            self._unsubscribe = self._signals.subscribe(self._changed, self._principals)
            # a context of its own: the hub outlives the request that started it (and its trace)
            self._task = asyncio.create_task(self._run(), name="llm-config-watch-hub", context=contextvars.Context())
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        if not self._subs and self._kick is not None:
            self._kick.set()  # the reader notices nobody is left and ends

    def changes_after(self, since: int) -> list[ChangeRow] | None:
        """What the ring holds after `since` ([] if nothing yet); None if `since` is older than the ring."""
        if since < self._base:
            return None
        if since >= self.revision:
            return []
        start = bisect.bisect_right(self._revisions, since)
        return list(itertools.islice(self._ring, start, None))

    def close(self) -> None:
        """End every stream (shutdown); new subscriptions are closed at once."""
        self._closed = True
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._close_subs)

    def _close_subs(self) -> None:
        for sub in self._subs:
            sub.closed = True
            sub.wake.set()

    # ------------------------------------------------------------------ signals (any thread)

    def _changed(self) -> None:
        self._soon(self._kick_now)

    def _principals(self) -> None:
        self._soon(self._recheck_all)

    def _soon(self, fn: Callable[[], None]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(fn)

    def _kick_now(self) -> None:
        if self._kick is not None:
            self._kick.set()

    def _recheck_all(self) -> None:
        for sub in self._subs:
            sub.recheck = True
            sub.wake.set()

    # ------------------------------------------------------------------ the reader

    def _start_point(self) -> tuple[str, int]:
        return self._feed.epoch(), self._feed.current()

    async def _run(self) -> None:
        assert self._kick is not None
        failing = False
        next_epoch_check = time.monotonic() + EPOCH_CHECK_SECONDS
        try:
            while self._subs and not self._closed:
                try:
                    if self.revision < 0:  # (re)starting: from the store's revision now
                        self.epoch, self.revision = await self._blocking(self._start_point)
                        self._base = self.revision
                        self._ring.clear()
                        self._revisions.clear()
                        self._wake_all()
                    elif time.monotonic() >= next_epoch_check:
                        next_epoch_check = time.monotonic() + EPOCH_CHECK_SECONDS
                        epoch = await self._blocking(self._feed.epoch)
                        if epoch != self.epoch:
                            await self._new_epoch(epoch)
                    if self.revision >= 0:
                        await self._read()
                except Exception as exc:  # the reader must live on: streams wait, the next tick tries again
                    if not failing:
                        why = exc.message if isinstance(exc, StorageError) else type(exc).__name__
                        log.warning("watch: cannot read changes (%s); streams wait for the store", why)
                    failing = True
                else:
                    failing = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), self.poll)
                self._kick.clear()
        finally:
            self._task = None
            self.revision = -1
            self._stop_listening()

    async def _read(self) -> None:
        while True:
            start = self.revision
            rows, current = await self._blocking(lambda start=start: self._feed.read(start, PAGE))
            if self._gap(start, rows, current) and await self._blocking(self._feed.floor) <= start:
                # every write takes the next revision and adds its row in the same transaction: a missing
                # row was removed behind our back — tell every stream to reload rather than miss it
                self.gaps += 1
                log.warning("watch: the change feed lacks rows after revision %d (removed outside llm-config?); "
                            "streams are told to resync", start)
            if rows:
                self._keep(rows)
                self.revision = rows[-1].revision
            if len(rows) < PAGE:
                # every change up to `current` was listed: revisions without a visible change are passed too
                advanced = bool(rows) or current > self.revision
                self.revision = max(self.revision, current)
                if advanced:
                    self._wake_all()
                return
            self._wake_all()

    @staticmethod
    def _gap(start: int, rows: list[ChangeRow], current: int) -> bool:
        """Whether revisions after `start` are missing from `rows` (up to `current` for a short page)."""
        expected = start + 1
        for row in rows:
            if row.revision != expected:
                return True
            expected += 1
        return len(rows) < PAGE and current >= expected

    def _keep(self, rows: list[ChangeRow]) -> None:
        ring, revisions = self._ring, self._revisions
        for row in rows:
            if len(ring) == RING:
                self._base = ring[0].revision  # about to fall out: streams behind it read storage
            ring.append(row)
            revisions.append(row.revision)

    async def _new_epoch(self, epoch: str) -> None:
        """A restore: start over from the restored store's revision; every stream sends `resync`."""
        self.epoch = epoch
        self.generation += 1
        current = await self._blocking(self._feed.current)
        self.revision = self._base = current
        self._ring.clear()
        self._revisions.clear()
        self._wake_all()

    def _wake_all(self) -> None:
        for sub in self._subs:
            sub.wake.set()

    def _stop_listening(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
