"""With `--redis-url`, one bucket per key holds across every worker and replica (SPEC §9).

Two servers (two processes' worth of apps, each with its own manager) on one store share the
real Redis at 127.0.0.1:6379 under a unique key prefix; a client alternating between them gets
what one bucket allows, not twice that.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import redis

from llm_config.core.manager import ConfigManager
from tests.conftest import require_service
from tests.e2e.conftest import LiveServer

pytestmark = pytest.mark.services

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> Iterator[str]:
    require_service("Redis", "127.0.0.1", 6379)
    name = f"llm-config-test-{uuid.uuid4().hex[:12]}:"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=name + "*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_the_key_limit_holds_across_workers(
    make_live_server: Callable[..., LiveServer], make_manager: Callable[..., ConfigManager], prefix: str,
) -> None:
    options = {"rate_limit_key": "5:20", "rate_limit_ip": "5:20", "redis_prefix": prefix}
    first = make_live_server(redis_url=REDIS_URL, **options)
    second = make_live_server(redis_url=REDIS_URL, manager=make_manager(), **options)
    first.manager.set("app", "k", 1)
    statuses: Counter[int] = Counter()
    per_server: Counter[str] = Counter()
    with first.client() as a, second.client(first.admin_key) as b:
        started = time.monotonic()
        for i in range(60):
            client = a if i % 2 == 0 else b
            r = client.get("/api/v1/configs/app/k")
            statuses[r.status_code] += 1
            if r.status_code == 200:
                per_server["a" if client is a else "b"] += 1
                assert r.headers["x-ratelimit-limit"] == "20"
            else:
                assert int(r.headers["retry-after"]) >= 1
        elapsed = time.monotonic() - started
    # one bucket of 20 refilling at 5/s — each server alone would have let 20 through
    assert 20 <= statuses[200] <= 20 + 5 * elapsed + 1, (statuses, elapsed)
    assert per_server["a"] > 0 and per_server["b"] > 0
    client = redis.Redis.from_url(REDIS_URL)
    try:
        stored = [k.decode() for k in client.scan_iter(match=prefix + "*")]
    finally:
        client.close()
    assert stored and all(k.startswith(prefix + "ratelimit:key:key_") for k in stored), stored
    assert first.admin_key not in "".join(stored)  # buckets are named by key id, never by the key


def test_local_buckets_take_over_when_redis_is_unreachable(make_live_server: Callable[..., LiveServer]) -> None:
    server = make_live_server(redis_url="redis://127.0.0.1:1/0", rate_limit_key="5:3")
    with server.client() as api:
        statuses = [api.get("/api/v1/configs/app").status_code for _ in range(6)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
