"""L1: a per-process cache of entries, bounded by count and bytes, with TTL and a version guard.

Our own (ARCHITECTURE, dependencies): a hit must cost well under 2 µs, which rules out
cachetools. Eviction is insertion order (FIFO), not LRU, so a hit never writes. Holds only what
storage would hold in its unrevealed form: never a plaintext secret.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["CacheStats", "L1Cache"]

V = TypeVar("V")


@dataclass(slots=True)
class CacheStats:
    """Counters since the cache was made."""

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    invalidations: int = 0


class L1Cache(Generic[V]):
    """Dict with per-entry expiry, entry and byte bounds, and a generation-based fill guard.

    `generation` is bumped by every invalidation; a fill that started before the bump is dropped,
    so a slow reader can never install a value older than a write it raced with.
    """

    __slots__ = ("_bytes", "_clock", "_data", "_fill_lock", "_rank", "_ttl", "generation", "max_bytes",
                 "max_entries", "stats")

    def __init__(self, *, ttl: float = 5.0, max_entries: int = 100_000, max_bytes: int = 64 << 20,
                 clock: Callable[[], float] = time.monotonic, rank: Callable[[V], int] | None = None) -> None:
        self._rank = rank  # a value never replaces a held one of higher rank (a newer revision)
        self._data: dict[Hashable, tuple[float, V, int]] = {}
        self._ttl = ttl
        self._clock = clock  # expiry follows the owner's clock (tests drive it with theirs)
        self._bytes = 0
        self._fill_lock = threading.Lock()
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.generation = 0
        self.stats = CacheStats()

    @property
    def ttl(self) -> float:
        return self._ttl

    def __len__(self) -> int:
        return len(self._data)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: Hashable) -> V | None:
        item = self._data.get(key)
        if item is not None and item[0] > self._clock():
            self.stats.hits += 1
            return item[1]
        self.stats.misses += 1
        return None

    def put(self, key: Hashable, value: V, size: int, generation: int) -> bool:
        """Install a value read while `generation` was current; False if an invalidation raced it."""
        if self._ttl <= 0 or size > self.max_bytes:
            return False
        with self._fill_lock:
            if generation != self.generation:
                return False
            held = self._data.get(key)
            if held is not None and self._rank is not None and self._rank(held[1]) > self._rank(value):
                return False
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            self._data[key] = (self._clock() + self._ttl, value, size)
            self._bytes += size
            while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
                oldest = next(iter(self._data))
                self._bytes -= self._data.pop(oldest)[2]
                self.stats.evictions += 1
        return True

    def invalidate(self, key: Hashable) -> None:
        with self._fill_lock:
            self.generation += 1
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            self.stats.invalidations += 1

    def clear(self) -> None:
        with self._fill_lock:
            self.generation += 1
            self._data.clear()
            self._bytes = 0
            self.stats.invalidations += 1

    def fresh(self, key: Hashable) -> V | None:
        """`get` without counting a hit or a miss."""
        item = self._data.get(key)
        return item[1] if item is not None and item[0] > self._clock() else None

    def cached(self, key: Hashable) -> V | None:
        """The value held for `key`, expired or not, without counting a hit or a miss."""
        item = self._data.get(key)
        return None if item is None else item[1]
