"""A circuit breaker for calls to a shared service that may be down or slow (Redis).

Closed → open after `fail_max` consecutive failures → one trial call after `reset_seconds` → closed on
success, open again on failure. Used by the cache's Redis tier, the shared rate limits and the shared
bans, so "Redis is down" means the same thing everywhere; each owner says what it does meanwhile
through `on_open` / `on_close` (called once per outage).

Ours (ARCHITECTURE, dependencies): pybreaker runs every guarded call under one lock, which would
serialise all Redis round trips of a process's threads. This one is lock-free on the closed path (a
failure is rare; a race on the counter costs at most one extra trial).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Breaker"]


class Breaker:
    """See the module docstring."""

    __slots__ = ("_clock", "_failures", "_on_close", "_on_open", "_open_until", "_trial", "fail_max",
                 "last_error", "reset_seconds")

    def __init__(self, *, fail_max: int = 3, reset_seconds: float = 2.0, clock: Callable[[], float] = time.monotonic,
                 on_open: Callable[[BaseException], None] | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
        self.fail_max = fail_max
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0
        self._trial = threading.Lock()
        self._on_open = on_open
        self._on_close = on_close
        self.last_error: str | None = None

    @property
    def is_open(self) -> bool:
        return self._failures >= self.fail_max

    def allow(self) -> bool:
        """May a call go ahead? While open, only one trial per `reset_seconds`."""
        if self._failures < self.fail_max:
            return True
        if self._clock() < self._open_until or not self._trial.acquire(blocking=False):
            return False
        self._open_until = self._clock() + self.reset_seconds  # the next trial, if this one fails
        self._trial.release()
        return True

    def success(self) -> None:
        if self._failures:
            was_open = self._failures >= self.fail_max
            self._failures = 0
            self.last_error = None
            if was_open and self._on_close is not None:
                self._on_close()

    def failure(self, exc: BaseException) -> None:
        self.last_error = type(exc).__name__
        self._failures += 1
        if self._failures == self.fail_max:
            self._open_until = self._clock() + self.reset_seconds
            if self._on_open is not None:
                self._on_open(exc)
