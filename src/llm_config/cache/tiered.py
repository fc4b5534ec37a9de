"""The manager's one cache: L1 in this process, optionally L2 in Redis, and their coherence.

Read path (`load`): L1 → L2 (promoted only after its keyed tag, its row MAC and its place check) →
storage (one load per key at a time: concurrent misses wait for the first) → fill L1 and L2.
Write path (`invalidate`): drop from L1 → tombstone in L2 → publish on the channel, in that order,
so a process that hears the message can no longer find the old record in Redis.

Coherence with writers that never talk to Redis (a CLI on the database, another replica whose Redis
calls fail) comes from `poll`: when the store's change token moves it reads which entries changed
after the last revision it saw and evicts them from L1 and L2; a restore (new epoch) drops
everything. Without Redis this is the only mechanism — on SQLite it runs on the request path at most
every `check_interval` (PRAGMA data_version costs ~4 µs), on a server database in a background thread.

Staleness bounds: with pub/sub, the time to deliver a message; without it (lost messages, Redis down),
the poll interval; an L1 record never outlives its TTL; an L2 record never outlives its TTL, and a
record older than that is refused even if Redis still holds it (whoever can write Redis can replay
a record the store wrote within the last L2 TTL, never inject or move one).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol

import orjson

from llm_config.cache.l1 import L1Cache
from llm_config.cache.record import CacheRecord
from llm_config.cache.redis import RedisTier
from llm_config.models import Environment, StoredEntry

__all__ = ["ChangeFeed", "Place", "TieredCache", "store_prefix"]

log = logging.getLogger("llm_config")

Place = tuple[str, str, Environment]
_ENVS: Final = {e.value: e for e in Environment}
_MAX_LISTED: Final = 1000  # a write touching more keys publishes "drop everything" instead
_MAX_PAGES: Final = 20  # changes read per poll, in pages of 1000; beyond that the L1 is dropped whole
_TAG: Final = 16


class ChangeFeed(Protocol):
    """What the poll needs from storage."""

    def change_token(self) -> object: ...
    def changes_since(self, revision: int, limit: int = 1000) -> tuple[list[tuple[str, str, Environment, int]],
                                                                        int]: ...
    def get_meta(self, name: str) -> str | None: ...
    def sealed_row(self, row: StoredEntry) -> bytes | None: ...
    def open_sealed_row(self, data: bytes, namespace: str, key: str, env: Environment) -> StoredEntry | None: ...


def store_prefix(cache_key: bytes) -> str:
    """The Redis prefix of one store's records and channel: an id only holders of its key can name, so
    stores sharing a Redis never meet (a hash of the store's cache key, which never leaves the process)."""
    return f"llmc:{hashlib.blake2b(cache_key, digest_size=8, person=b'llmc-store-id').hexdigest()}:"


def _revision(record: CacheRecord) -> int:
    return record.entry.revision


class _Flight:
    __slots__ = ("done", "error", "generation", "result")

    def __init__(self, generation: int) -> None:
        self.generation = generation  # a load started before an invalidation must not serve callers after it
        self.done = threading.Event()
        self.result: CacheRecord | None = None
        self.error: BaseException | None = None


class TieredCache:
    """L1 (+ optional L2) for live entries, keyed by (namespace, key, environment). Thread-safe."""

    def __init__(
        self,
        feed: ChangeFeed,
        *,
        build: Callable[[StoredEntry], CacheRecord],
        clock: Callable[[], float] = time.time,
        ttl: float = 5.0,
        max_entries: int = 100_000,
        max_bytes: int = 64 << 20,
        check_interval: float = 0.005,
        epoch_key: str = "epoch",
        l2: RedisTier | None = None,
        l2_reads: bool = True,
    ) -> None:
        # L1 expiry follows the owner's clock; the wall clock itself becomes the monotonic one (an NTP step
        # back must not stretch a TTL). L2 stamps stay on the wall clock: they are compared across processes.
        mono = time.monotonic if clock is time.time else clock
        self.l1: L1Cache[CacheRecord] = L1Cache(ttl=ttl, max_entries=max_entries, max_bytes=max_bytes,
                                                clock=mono, rank=_revision)
        # places storage just said hold nothing (resolution's fall-through to base asks for them on every
        # read): each valid while no invalidation happened since (L1's generation) and for at most the TTL
        self._absent: dict[Place, tuple[int, float]] = {}
        self._absent_max = max_entries
        self._mono = mono
        self._ttl = ttl
        self.l2 = l2
        self.l2_reads = l2 is not None and l2_reads
        self._feed = feed
        self._build = build
        self._clock = clock
        self._check_interval = check_interval
        self._next_check = 0.0
        self._epoch_key = epoch_key
        self._tag_key: bytes | None = None  # set with the store's keys: no keys, no L2 reads or fills
        # the revision after which some tombstone may not have reached Redis (it was down): until the
        # poll has written them all, L2 records are not promoted (Redis may have kept older ones)
        self._debt: int | None = None
        self._debts = 0
        self._flights: dict[Place, _Flight] = {}
        self._flight_lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._token: object = feed.change_token()
        _, self._seen = feed.changes_since(2**62, 1)
        self.epoch = feed.get_meta(epoch_key)
        self.on_epoch: Callable[[str | None], None] | None = None  # a restore elsewhere: adopt its keys
        self.on_change: Callable[[], None] | None = None  # anything committed elsewhere (API keys too)
        self.on_principals: Callable[[], None] | None = None  # a key revoked elsewhere

    # -- keys ----------------------------------------------------------------------------------

    def set_key(self, cache_key: bytes | None) -> None:
        """Tag and check L2 records with the store's cache key (`custody.derive_keys`; None: L2 unused)."""
        self._tag_key = cache_key
        if self.l2 is not None and cache_key is not None:  # a restore may bring another instance secret
            self.l2.retarget(store_prefix(cache_key))

    # -- reads ---------------------------------------------------------------------------------

    def peek(self, place: Place) -> CacheRecord | None:
        """The L1 record, or None; no I/O (safe on the event loop)."""
        return self.l1.get(place)

    def load(self, place: Place, read: Callable[[], StoredEntry | None], *, looked: bool = False) -> CacheRecord | None:
        """The live record of `place` (None: no such entry, or a tombstone); `read` loads it from storage.
        `looked`: the caller has just missed L1 (a miss is counted once)."""
        if not looked:
            hit = self.l1.get(place)
            if hit is not None:
                return hit
        generation = self.l1.generation
        absent = self._absent.get(place)
        if absent is not None and absent[0] == generation and absent[1] > self._mono():
            return None
        l2, tag_key = self.l2, self._tag_key
        rkey = ""
        if l2 is not None and tag_key is not None and self.l2_reads:
            rkey = self._rkey(place[0], place[1], place[2])
            if self._debt is None:  # after an outage, not before every missed tombstone is written
                record = self._promote(place, rkey, l2, tag_key, generation)
                if record is not None:
                    return record
        # storage: one load per key at a time, the others wait for it (a Redis hit needs no such guard)
        with self._flight_lock:
            flight = self._flights.get(place)
            if flight is not None and flight.generation != generation:  # started before a write we know of
                return self._from_storage(place, read, generation, rkey, tag_key)
            leader = flight is None
            if flight is None:
                late = self.l1.fresh(place)  # a flight that ended since our miss may have filled it
                if late is not None:
                    return late
                flight = self._flights[place] = _Flight(generation)
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.result
        try:
            flight.result = self._from_storage(place, read, generation, rkey, tag_key)
            return flight.result
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._flight_lock:
                del self._flights[place]
            flight.done.set()

    def _promote(self, place: Place, rkey: str, l2: RedisTier, tag_key: bytes, generation: int) -> CacheRecord | None:
        found = l2.get(rkey)
        if found is None:
            return None
        row = self._open(place, rkey, found[1], tag_key)
        if row is None:
            l2.stats.rejected += 1
            return None
        if row.deleted:
            return None
        record = self._build(row)
        self.l1.put(place, record, record.size, generation)
        return record

    def _from_storage(self, place: Place, read: Callable[[], StoredEntry | None], generation: int, rkey: str,
                      tag_key: bytes | None) -> CacheRecord | None:
        row = read()
        if row is None or row.deleted:
            if len(self._absent) >= self._absent_max:
                self._absent.clear()
            self._absent[place] = (generation, self._mono() + self._ttl)
            return None
        record = self._build(row)
        self.l1.put(place, record, record.size, generation)
        if rkey and tag_key is not None and self.l2 is not None:
            payload = self._seal(rkey, row, tag_key)
            if payload is not None:
                self.l2.fill(rkey, row.revision, payload)
        return record

    def _rkey(self, namespace: str, key: str, env: Environment) -> str:
        """The Redis key of a record: per store (the tier's prefix) and per epoch (a restore starts afresh)."""
        assert self.l2 is not None
        return f"{self.l2.prefix}{self.epoch or 0}:e:{env.value}:{namespace}:{key}"

    def _seal(self, rkey: str, row: StoredEntry, tag_key: bytes) -> bytes | None:
        """stamp + tag + the sealed row; the tag binds the record to its Redis key (store, epoch, place)."""
        blob = self._feed.sealed_row(row)
        if blob is None:
            return None
        stamp = int(self._clock() * 1000).to_bytes(8, "big")
        tag = hashlib.blake2b(rkey.encode() + stamp + blob, key=tag_key, digest_size=_TAG).digest()
        return stamp + tag + blob

    def _open(self, place: Place, rkey: str, payload: bytes, tag_key: bytes) -> StoredEntry | None:
        if len(payload) <= 8 + _TAG:
            return None
        stamp, tag, blob = payload[:8], payload[8:8 + _TAG], payload[8 + _TAG:]
        expected = hashlib.blake2b(rkey.encode() + stamp + blob, key=tag_key, digest_size=_TAG).digest()
        if not hmac.compare_digest(expected, tag):
            return None
        assert self.l2 is not None
        age_ms = int(self._clock() * 1000) - int.from_bytes(stamp, "big")
        if age_ms > self.l2.ttl_ms:  # older than any record Redis should still hold: a replay
            return None
        return self._feed.open_sealed_row(blob, place[0], place[1], place[2])

    # -- invalidation --------------------------------------------------------------------------

    def invalidate(self, changes: Sequence[tuple[Place, int]]) -> None:
        """This process changed these entries (to these revisions): L1, then L2, then the others."""
        l2 = self.l2
        # Redis first: a reader of this process that misses L1 in between must not find the old record there
        if l2 is not None and changes and not l2.tombstone([(self._rkey(*p), r) for p, r in changes]):
            self._owe(min(r for _, r in changes) - 1)
        for place, _ in changes:
            self.l1.invalidate(place)
        if l2 is None or not changes:
            return
        if len(changes) > _MAX_LISTED:
            l2.publish(b'{"all":1}')
        else:
            l2.publish(orjson.dumps({"c": [[p[0], p[1], p[2].value, r] for p, r in changes]}))

    def invalidate_all(self) -> None:
        """Everything may have changed (a restore): drop L1 here and in every other process."""
        self.l1.clear()
        if self.l2 is not None:
            self.l2.publish(b'{"all":1}')

    def restored(self) -> None:
        """This process restored a backup (a new epoch): start over here and in every other process."""
        with self._poll_lock:
            self.epoch = self._feed.get_meta(self._epoch_key)
            _, self._seen = self._feed.changes_since(2**62, 1)
            self._token = self._feed.change_token()
        self.invalidate_all()

    def principals_changed(self) -> None:
        """An API key was revoked here: tell the other processes to forget cached principals."""
        if self.l2 is not None:
            self.l2.publish(b'{"p":1}')

    def forget(self, changes: Sequence[tuple[str, str, Environment, int]]) -> None:
        """Evict records older than these changes from L1: what a reader of the change feed learned of
        before this process's own poll did (a watcher's refetch must not be served the old record)."""
        self._evict(changes)

    def _evict(self, changes: Sequence[tuple[str, str, Environment, int]]) -> None:
        """Evict records older than these changes from L1 (a newer record stays)."""
        for namespace, key, env, revision in changes:
            place = (namespace, key, env)
            held = self.l1.cached(place)
            if held is None or held.revision < revision:
                self.l1.invalidate(place)

    def on_message(self, data: bytes) -> None:
        """An invalidation published by another process."""
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(doc, dict):
            return
        if doc.get("all"):
            self.l1.clear()
        if doc.get("p") and self.on_principals is not None:
            self.on_principals()
        listed = doc.get("c")
        if isinstance(listed, list):
            changes = []
            for item in listed:
                if isinstance(item, list) and len(item) == 4 and item[2] in _ENVS and isinstance(item[3], int) \
                        and isinstance(item[0], str) and isinstance(item[1], str):
                    changes.append((item[0], item[1], _ENVS[item[2]], item[3]))
            self._evict(changes)

    def on_reconnect(self) -> None:
        """The channel was down: messages may be lost, so nothing cached here can be trusted."""
        self.l1.clear()
        if self.on_principals is not None:
            self.on_principals()

    # -- the poll ------------------------------------------------------------------------------

    def maybe_poll(self) -> None:
        """`poll`, at most every `check_interval` (the request-path form, for SQLite)."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self._check_interval
        self.poll()

    def _owe(self, revision: int) -> None:
        """Tombstones after `revision` may be missing from Redis."""
        with self._flight_lock:
            self._debt = revision if self._debt is None else min(self._debt, revision)
            self._debts += 1

    def _settle(self) -> None:
        """Write the tombstones Redis missed while it was down (every change after the debt), then read
        through L2 again."""
        l2 = self.l2
        with self._flight_lock:
            debt, owed = self._debt, self._debts
        if l2 is None or debt is None or (l2.breaker.is_open and not l2.probe()):
            return
        start = debt
        for _ in range(_MAX_PAGES):
            changes, _ = self._feed.changes_since(start, _MAX_LISTED)
            if changes and not l2.tombstone([(self._rkey(ns, k, e), r) for ns, k, e, r in changes]):
                return  # still down: the next poll tries again
            if len(changes) < _MAX_LISTED:
                start = -1
                break
            start = changes[-1][3]
        with self._flight_lock:
            if self._debts == owed:  # nothing newly owed meanwhile
                self._debt = None if start < 0 else start

    def poll(self) -> None:
        """Look for commits by other processes; evict what they changed; settle missed tombstones."""
        if self._debt is not None:
            with self._poll_lock:
                self._settle()
        token = self._feed.change_token()
        if token == self._token:
            return
        with self._poll_lock:
            if token == self._token:  # another thread has just done it
                return
            epoch = self._feed.get_meta(self._epoch_key)
            if epoch != self.epoch:  # a restore: every row may differ, and the keys with them
                self.epoch = epoch  # first: from now on no record of the old epoch is looked up
                _, self._seen = self._feed.changes_since(2**62, 1)
                if self.on_epoch is not None:
                    self.on_epoch(epoch)
                self.l1.clear()
            else:
                self._catch_up()
            if self.on_change is not None:
                self.on_change()
            self._token = token  # only now: a failure above is retried at the next look

    def _catch_up(self) -> None:
        l2 = self.l2
        for _ in range(_MAX_PAGES):
            changes, current = self._feed.changes_since(self._seen, _MAX_LISTED)
            if l2 is not None and changes and not l2.tombstone([(self._rkey(ns, k, e), r) for ns, k, e, r in changes]):
                self._owe(self._seen)
            self._evict(changes)  # after Redis, as in `invalidate`
            if changes:
                self._seen = max(self._seen, changes[-1][3])
            if len(changes) < _MAX_LISTED:
                self._seen = max(self._seen, current)
                return
        self.l1.clear()  # too many to list: start afresh (L2 records still expire by their TTL)
        _, self._seen = self._feed.changes_since(2**62, 1)

    # -- state ---------------------------------------------------------------------------------

    def clear(self) -> None:
        self.l1.clear()

    def status(self, *, probe: bool = False) -> str | None:
        """Why the cache is degraded (Redis unreachable, channel down), or None; `probe` asks Redis now."""
        if self.l2 is None:
            return None
        return self.l2.status(unreachable=probe and not self.l2.probe())

    def describe(self) -> str:
        stats = self.l1.stats
        text = (f"L1 {len(self.l1)} entries, {self.l1.size_bytes} bytes, {stats.hits} hits, {stats.misses} misses, "
                f"{stats.evictions} evictions")
        if self.l2 is not None:
            s2 = self.l2.stats
            text += (f"; L2 redis {'on' if self.l2_reads else 'invalidation only'}: {s2.hits} hits, {s2.misses} "
                     f"misses, {s2.rejected} rejected, {s2.errors} errors, {s2.skipped} skipped, "
                     f"{s2.reconnects} reconnects")
        return text

    def close(self) -> None:
        self.l1.clear()
        if self.l2 is not None:
            self.l2.close()
