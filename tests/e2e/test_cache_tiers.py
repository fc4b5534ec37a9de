"""The manager's cache as a user of several processes sees it: L1, the Redis L2, pub/sub invalidation,
the revision poll, and what happens when Redis is missing or lies (ARCHITECTURE decision 5).

Two managers on one store stand for two replicas (or two workers); each test's store has its own
instance secret, so its Redis records and channel live under a prefix no other test shares.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from llm_config.cache.redis import RedisTier
from llm_config.core.manager import ConfigManager
from llm_config.errors import NotFoundError
from tests.conftest import require_service

REDIS_URL = "redis://127.0.0.1:6379/0"
CANARY = "sk-canary-7f3a9c1e5b"


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    require_service("Redis", "127.0.0.1", 6379)
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


def _prefix(mgr: ConfigManager) -> str:
    assert mgr.cache.l2 is not None
    return mgr.cache.l2.prefix


def _records(client: redis.Redis, mgr: ConfigManager) -> dict[bytes, bytes]:
    keys = list(client.scan_iter(match=_prefix(mgr) + "*", count=1000))
    return {k: v for k, v in zip(keys, client.mget(keys), strict=True) if v is not None} if keys else {}


def _wait(predicate: Callable[[], bool], seconds: float = 2.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_l1_expiry_follows_the_managers_clock(make_manager: Callable[..., ConfigManager]) -> None:
    clock = FakeClock()
    mgr = make_manager(clock=clock, cache_ttl=5.0)
    mgr.set("app", "model", "gpt-4o", env="production")
    mgr.get("app", "model", env="production")
    misses = mgr.cache.l1.stats.misses
    mgr.get("app", "model", env="production")
    assert mgr.cache.l1.stats.misses == misses  # a hit while the clock stands still
    clock.now += 5.1
    mgr.get("app", "model", env="production")
    assert mgr.cache.l1.stats.misses == misses + 1  # expired by the manager's clock, not the wall's


def test_concurrent_misses_on_one_key_load_it_once(make_manager: Callable[..., ConfigManager]) -> None:
    mgr = make_manager(change_check_interval=3600.0)  # no poll in between: it may bump the generation
    mgr.set("app", "model", "gpt-4o")
    mgr.get("app", "model")  # the one poll (it sees our own write) happens here
    mgr.cache.clear()
    loads = []
    original = mgr.storage.get_current

    def slow_get_current(*args: Any) -> Any:
        loads.append(args)
        time.sleep(0.3)  # long enough that every thread misses while the first one loads
        return original(*args)

    mgr.storage.get_current = slow_get_current  # type: ignore[method-assign]
    barrier = threading.Barrier(8)
    values: list[Any] = []

    def read() -> None:
        barrier.wait()
        values.append(mgr.get("app", "model").value)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert values == ["gpt-4o"] * 8
    assert len(loads) == 1


def test_the_edge_record_carries_body_etag_and_revision(manager: ConfigManager) -> None:
    first = manager.set("app", "model", "gpt-4o", env="production")
    second = manager.set("app", "temperature", 0.2, env="production")
    assert second.revision > first.revision > 0  # commit-order revisions, readable from the library
    manager.get("app", "model", env="production")
    record = manager.peek_record("app", "model", "production")
    assert record is not None
    assert record.entry.revision == first.revision
    assert record.etag == f'"{first.id}.production.1.s"'
    import orjson

    assert orjson.loads(record.body) == first.to_json()


def test_a_write_reaches_another_process_through_pubsub(make_manager: Callable[..., ConfigManager],
                                                         redis_client: redis.Redis) -> None:
    # SQLite with the data_version check switched off (an hour apart): only pub/sub can tell B
    a = make_manager(redis_url=REDIS_URL, change_check_interval=3600.0, cache_ttl=3600.0)
    b = make_manager(redis_url=REDIS_URL, change_check_interval=3600.0, cache_ttl=3600.0)
    assert _wait(lambda: a.cache.l2 is not None and a.cache.l2.subscribed and b.cache.l2 is not None
                 and b.cache.l2.subscribed)
    a.set("app", "model", "gpt-4o")
    assert b.get("app", "model").value == "gpt-4o"  # B caches version 1
    a.set("app", "model", "gpt-4.1")
    assert _wait(lambda: b.get("app", "model").value == "gpt-4.1")
    a.delete("app", "model")
    assert _wait(lambda: b.peek("app", "model", "development") is None)
    with pytest.raises(NotFoundError):
        b.get("app", "model")


def test_without_pubsub_the_revision_poll_bounds_staleness(make_manager: Callable[..., ConfigManager]) -> None:
    a = make_manager(cache_ttl=3600.0)
    b = make_manager(cache_ttl=3600.0)
    a.set("app", "model", "gpt-4o")
    assert b.get("app", "model").value == "gpt-4o"
    a.set("app", "model", "gpt-4.1")
    assert _wait(lambda: b.get("app", "model").value == "gpt-4.1")
    # only the changed key was evicted: another cached key is still a hit
    a.set("app", "other", 1)
    b.get("app", "other")
    a.set("app", "model", "gpt-5")
    assert _wait(lambda: b.get("app", "model").value == "gpt-5")
    misses = b.cache.l1.stats.misses
    b.get("app", "other")
    assert b.cache.l1.stats.misses == misses


@pytest.fixture
def pg_store() -> Iterator[str]:
    from tests.databases import private_database

    with private_database("postgresql") as database:
        yield database.url


@pytest.fixture(params=["postgresql", "mysql"])
def server_store(request: pytest.FixtureRequest) -> Iterator[str]:
    from tests.databases import private_database

    with private_database(request.param) as database:
        yield database.url


def test_l2_serves_a_fresh_replica_and_refuses_what_it_did_not_write(
    make_manager: Callable[..., ConfigManager], redis_client: redis.Redis, server_store: str
) -> None:
    pg_store = server_store  # either server database
    a = make_manager(storage=pg_store, redis_url=REDIS_URL)
    a.set("app", "model", "gpt-4o")
    a.set("app", "other", "x")
    a.get("app", "model")
    a.get("app", "other")
    assert a.cache.l2 is not None and a.cache.l2.stats.fills == 2
    b = make_manager(storage=pg_store, redis_url=REDIS_URL)
    assert b.get("app", "model").value == "gpt-4o"
    assert b.cache.l2 is not None and b.cache.l2.stats.hits == 1  # promoted from Redis, checked

    for mgr in (a, b):  # let their polls see A's writes first (a poll tombstones below a newer revision)
        mgr.cache.poll()
    # whoever can write Redis: move one record onto another key, then alter one in place
    records = _records(redis_client, a)
    model_key = next(k for k in records if k.endswith(b":app:model"))
    other_key = next(k for k in records if k.endswith(b":app:other"))
    redis_client.set(other_key, records[model_key])
    altered = records[model_key].replace(b"gpt-4o", b"gpt-4x")
    assert altered != records[model_key]
    redis_client.set(model_key, altered)
    c = make_manager(storage=pg_store, redis_url=REDIS_URL)
    assert c.get("app", "other").value == "x"
    assert c.get("app", "model").value == "gpt-4o"
    assert c.cache.l2 is not None and c.cache.l2.stats.rejected == 2


def test_a_fill_older_than_a_tombstone_is_refused(redis_client: redis.Redis) -> None:
    tier = RedisTier(REDIS_URL, prefix=f"llmc:test-{time.monotonic_ns()}:")
    key = tier.prefix + "k"
    try:
        tier.fill(key, 5, b"v5")
        assert tier.get(key) == (5, b"v5")
        assert tier.tombstone([(key, 10)])  # a writer committed revision 10
        assert tier.get(key) is None
        tier.fill(key, 9, b"v9")  # a reader that loaded revision 9 before that commit
        assert tier.get(key) is None
        tier.fill(key, 10, b"v10")
        assert tier.get(key) == (10, b"v10")
        assert tier.tombstone([(key, 10)])  # the same revision again: the fresh record stays
        assert tier.get(key) == (10, b"v10")
        assert redis_client.pttl(key) > 0  # every record has a TTL
    finally:
        redis_client.delete(key)
        tier.close()


def test_writers_without_redis_are_caught_by_the_poll_in_l1_and_l2(
    make_manager: Callable[..., ConfigManager], redis_client: redis.Redis, pg_store: str
) -> None:
    a = make_manager(storage=pg_store, redis_url=REDIS_URL, cache_ttl=3600.0)
    a.set("app", "model", "gpt-4o")
    assert a.get("app", "model").value == "gpt-4o"  # in A's L1 and in Redis
    cli = make_manager(storage=pg_store)  # a CLI on the database alone: no Redis, no message
    cli.set("app", "model", "gpt-4.1")
    assert _wait(lambda: a.get("app", "model").value == "gpt-4.1")
    fresh = make_manager(storage=pg_store, redis_url=REDIS_URL)  # must not be served the old record from L2
    assert fresh.get("app", "model").value == "gpt-4.1"


def test_redis_never_holds_a_secrets_plaintext(make_manager: Callable[..., ConfigManager],
                                               redis_client: redis.Redis, pg_store: str) -> None:
    a = make_manager(storage=pg_store, redis_url=REDIS_URL)
    b = make_manager(storage=pg_store, redis_url=REDIS_URL)
    seen: list[bytes] = []
    pubsub = redis_client.pubsub()
    assert a.cache.l2 is not None
    pubsub.subscribe(a.cache.l2.channel)
    for env in ("development", "production"):
        a.set("llm/openai", "api_key", CANARY, env=env, secret=True)
        assert a.get("llm/openai", "api_key", env=env, reveal=True).value == CANARY
        assert b.get("llm/openai", "api_key", env=env).value == "<encrypted>"
        assert b.get("llm/openai", "api_key", env=env, reveal=True).value == CANARY
    a.set("llm/openai", "api_key", CANARY + "-2", secret=True)
    while (message := pubsub.get_message(timeout=0.2)) is not None:
        seen.append(message["data"] if isinstance(message["data"], bytes) else b"")
    pubsub.close()
    every_key = list(redis_client.scan_iter(count=1000))
    values = [v for v in redis_client.mget(every_key) if v is not None] if every_key else []
    assert _records(redis_client, a)  # the secret's sealed record is there...
    assert not [v for v in [*values, *seen] if CANARY.encode() in v]  # ...its plaintext nowhere


def test_redis_down_reads_and_writes_work_and_health_says_why(make_manager: Callable[..., ConfigManager],
                                                               pg_store: str) -> None:
    mgr = make_manager(storage=pg_store, redis_url="redis://127.0.0.1:1/0")  # nothing listens there
    mgr.set("app", "model", "gpt-4o")
    for _ in range(5):
        mgr.cache.clear()
        assert mgr.get("app", "model").value == "gpt-4o"
    mgr.set("app", "model", "gpt-4.1")
    assert mgr.get("app", "model").value == "gpt-4.1"
    health = mgr.doctor(public=True, detail=True)
    assert health["checks"]["cache"]["status"] == "degraded"
    assert "redis unavailable" in health["checks"]["cache"]["message"]
    assert health["status"] == "degraded"
    assert mgr.cache.l2 is not None and mgr.cache.l2.breaker.is_open
    public = mgr.doctor(public=True)
    assert public["checks"]["cache"] == {"status": "degraded"}  # the reason only with system:read


def test_a_restore_elsewhere_drops_every_cached_entry(make_manager: Callable[..., ConfigManager],
                                                      tmp_path: Path, redis_client: redis.Redis) -> None:
    a = make_manager(redis_url=REDIS_URL, cache_ttl=3600.0, change_check_interval=3600.0)
    b = make_manager(redis_url=REDIS_URL, cache_ttl=3600.0)
    a.set("app", "model", "gpt-4o")
    backup = tmp_path / "b.llmc"
    with backup.open("wb") as out:
        a.backup(out)
    a.set("app", "model", "gpt-4.1")
    assert a.get("app", "model").value == "gpt-4.1"
    with backup.open("rb") as stream:
        b.restore(stream, force=True)
    assert b.get("app", "model").value == "gpt-4o"
    assert _wait(lambda: a.get("app", "model").value == "gpt-4o")  # told through Redis ("all")


def test_a_revocation_reaches_another_process_through_pubsub(make_manager: Callable[..., ConfigManager],
                                                             redis_client: redis.Redis,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from llm_config.core import apikeys

    monkeypatch.setattr(apikeys, "AUTH_CACHE_SECONDS", 3600.0)  # only the message can end B's cached principal
    a = make_manager(redis_url=REDIS_URL, change_check_interval=3600.0)
    b = make_manager(redis_url=REDIS_URL, change_check_interval=3600.0)
    assert _wait(lambda: a.cache.l2 is not None and a.cache.l2.subscribed and b.cache.l2 is not None
                 and b.cache.l2.subscribed)
    record, token = a.create_api_key("reader", "viewer")
    assert b.authenticate(token).key_id == record.id
    assert b.cached_principal(token) is not None
    a.revoke_api_key(record.id)
    assert _wait(lambda: b.cached_principal(token) is None, seconds=1.0)  # SPEC §9: within 1 s


def test_a_read_after_our_write_never_joins_a_load_that_started_before_it(
        make_manager: Callable[..., ConfigManager]) -> None:
    mgr = make_manager()
    mgr.set("app", "model", "v1")
    mgr.cache.clear()
    original = mgr.storage.get_current
    started = threading.Event()

    def slow_first_read(*args: Any) -> Any:
        row = original(*args)  # reads v1 ...
        if not started.is_set():
            started.set()
            time.sleep(0.3)  # ... and holds it while the write below is acknowledged
        return row

    mgr.storage.get_current = slow_first_read  # type: ignore[method-assign]
    slow = threading.Thread(target=lambda: mgr.get("app", "model"))
    slow.start()
    assert started.wait(2)
    mgr.set("app", "model", "v2")
    assert mgr.get("app", "model").value == "v2"  # read-your-writes: not the in-flight v1
    slow.join()
    assert mgr.get("app", "model").value == "v2"  # and the slow load did not install v1


def test_a_record_moved_to_another_epoch_is_refused(make_manager: Callable[..., ConfigManager],
                                                     redis_client: redis.Redis, pg_store: str,
                                                     tmp_path: Path) -> None:
    a = make_manager(storage=pg_store, redis_url=REDIS_URL)
    a.set("app", "model", "v1")
    backup = tmp_path / "b.llmc"
    with backup.open("wb") as out:
        a.backup(out)
    a.set("app", "model", "v2")
    assert a.get("app", "model").value == "v2"  # v2's record is in Redis under this epoch
    old_epoch = a.cache.epoch
    (record,) = (v for k, v in _records(redis_client, a).items() if k.endswith(b":app:model"))
    with backup.open("rb") as stream:
        a.restore(stream, force=True)  # the store is v1 again, in a new epoch
    assert a.cache.epoch != old_epoch
    from llm_config.models import Environment

    new_key = a.cache._rkey("app", "model", Environment.DEVELOPMENT)  # where the new epoch's record would live
    redis_client.set(new_key, record, px=30_000)
    fresh = make_manager(storage=pg_store, redis_url=REDIS_URL)
    assert fresh.get("app", "model").value == "v1"
    assert fresh.cache.l2 is not None and fresh.cache.l2.stats.rejected == 1
