"""With `--redis-url`, bans and failed-authentication counts hold across every worker and replica (SPEC §9).

Two API servers (two apps, each with its own manager, on one store — two workers' worth) share the
real Redis at 127.0.0.1:6379 under a unique key prefix per test. The attacker is `203.0.113.7` behind
a trusted proxy (the servers see the test's loopback peer, which is exempt from bans by default).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from llm_config.core.manager import ConfigManager
from llm_config.crypto.apikeys import generate_api_key
from llm_config.server.bans import SYNC_SECONDS, RedisBanList
from llm_config.types import AuditQuery
from tests.conftest import require_service
from tests.e2e.conftest import LiveServer, ServerThread, serve_in_thread, server_options

pytestmark = pytest.mark.services

REDIS_URL = "redis://127.0.0.1:6379/0"
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"
C = "/api/v1/configs"
ATTACKER = {"X-Forwarded-For": "203.0.113.7"}
ADMIN_IP = {"X-Forwarded-For": "198.51.100.1"}
PROPAGATION = 1.0  # SPEC: a ban reaches every replica within 1 s


def _redis() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL, socket_timeout=2)


@pytest.fixture
def prefix() -> Iterator[str]:
    require_service("Redis", "127.0.0.1", 6379)
    name = f"llm-config-test-{uuid.uuid4().hex[:12]}:"
    yield name
    client = _redis()
    try:
        keys = list(client.scan_iter(match=name + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@dataclass
class Pair:
    a: LiveServer
    b: LiveServer
    prefix: str

    @property
    def key(self) -> str:
        return self.a.admin_key

    def both(self) -> tuple[LiveServer, LiveServer]:
        return self.a, self.b

    def keys_in_redis(self) -> list[str]:
        client = _redis()
        try:
            return sorted(k.decode() for k in client.scan_iter(match=self.prefix + "*"))
        finally:
            client.close()

    def audit(self, type_: str) -> list[dict[str, object]]:
        return [e.to_json() for e in self.a.manager.storage.audit_events(AuditQuery(type=type_))]


@pytest.fixture
def start_servers(make_manager: Callable[..., ConfigManager]) -> Iterator[Callable[..., tuple[LiveServer, ...]]]:
    """Start N servers on one store (own manager each), sharing `redis_url`; stopped at the end."""
    running: list[ServerThread] = []

    def start(n: int, redis_url: str, **options: object) -> tuple[LiveServer, ...]:
        opts = server_options(trusted_proxy=["127.0.0.1/32"], **options)
        servers = []
        for _ in range(n):
            thread, server = serve_in_thread(make_manager(), opts, redis_url=redis_url)
            running.append(thread)
            servers.append(server)
        return tuple(servers)

    yield start
    for thread in running:
        thread.stop()


@pytest.fixture
def pair(start_servers: Callable[..., tuple[LiveServer, ...]], prefix: str) -> Pair:
    a, b = start_servers(2, REDIS_URL, redis_prefix=prefix)
    return Pair(a, b, prefix)


def _fail(server: LiveServer, n: int = 1, headers: dict[str, str] = ATTACKER) -> list[int]:
    bad = {"Authorization": f"Bearer {generate_api_key()}", **headers}
    with server.client(key=None) as anon:
        return [anon.get(f"{C}/app/k", headers=bad).status_code for _ in range(n)]


def _health(server: LiveServer, headers: dict[str, str] = ATTACKER) -> httpx.Response:
    with server.client(key=None) as anon:
        return anon.get("/health", headers=headers)


def _wait_for_status(server: LiveServer, status: int, timeout: float = PROPAGATION) -> float:
    """Seconds until `/health` from the attacker answers `status` (fails after `timeout`)."""
    started = time.monotonic()
    while True:
        got = _health(server).status_code
        elapsed = time.monotonic() - started
        if got == status:
            return elapsed
        assert elapsed < timeout, f"{server.url}: still {got} after {elapsed:.2f} s, expected {status}"
        time.sleep(0.01)


def _bans(server: LiveServer, key: str) -> list[dict[str, object]]:
    with server.client(key, headers=ADMIN_IP) as api:
        r = api.get("/api/v1/admin/bans")
        assert r.status_code == 200, r.text
        listed: list[dict[str, object]] = r.json()
        return listed


# ----------------------------------------------------------------------------- shared counts and bans

def test_failures_split_across_two_workers_add_up_to_one_ban_both_enforce(pair: Pair) -> None:
    a, b = pair.both()
    for i in range(9):  # 9 failures, alternating: neither server alone has seen 10
        assert _fail(a if i % 2 == 0 else b) == [401]
    assert _bans(a, pair.key) == [] and _bans(b, pair.key) == []
    assert _fail(b) == [401]  # the 10th, on b
    r = _health(b)  # the server that decided enforces at once
    assert r.status_code == 403 and "failed authentications" in r.text
    assert 3500 <= int(r.headers["retry-after"]) <= 3600
    took = _wait_for_status(a, 403)  # and the other within 1 s (pub/sub: milliseconds)
    assert took < PROPAGATION
    with a.client(pair.key, headers=ATTACKER) as attacker_with_key:  # even a valid key, every route
        assert attacker_with_key.get(f"{C}/app").status_code == 403
    assert _health(a, ADMIN_IP).status_code == 200  # other addresses are not affected
    for server in (a, b):
        listed = _bans(server, pair.key)
        assert [ban["ip"] for ban in listed] == ["203.0.113.7"] and listed[0]["failures"] == 10
    # one ip_banned event between them (only the process whose failure set the ban announces it)
    banned = pair.audit("ip_banned")
    assert len(banned) == 1 and banned[0]["source_ip"] == "203.0.113.7"
    stored = pair.keys_in_redis()
    assert f"{pair.prefix}bans:ban:203.0.113.7" in stored
    assert f"{pair.prefix}bans:failures:203.0.113.7" not in stored  # the count behind a ban is dropped


def test_concurrent_failures_on_both_announce_the_ban_once(pair: Pair) -> None:
    a, b = pair.both()
    bad = {"Authorization": f"Bearer {generate_api_key()}", **ATTACKER}

    def hit(i: int) -> int:
        server = a if i % 2 else b
        with server.client(key=None) as anon:
            return anon.get(f"{C}/app/k", headers=bad).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(hit, range(40)))
    assert set(statuses) <= {401, 403} and statuses.count(401) >= 10, statuses
    assert 500 not in statuses
    _wait_for_status(a, 403)
    _wait_for_status(b, 403)
    assert len(pair.audit("ip_banned")) == 1


def test_admin_lift_on_one_worker_lifts_the_ban_on_both(pair: Pair) -> None:
    a, b = pair.both()
    assert _fail(a, 10) == [401] * 10
    _wait_for_status(b, 403)
    with b.client(pair.key, headers=ADMIN_IP) as api:
        assert api.delete("/api/v1/admin/bans/203.0.113.7").status_code == 204
        assert api.delete("/api/v1/admin/bans/203.0.113.7").status_code == 404
    assert _health(b).status_code == 200
    took = _wait_for_status(a, 200)
    assert took < PROPAGATION
    with a.client(pair.key, headers=ADMIN_IP) as api:
        assert api.delete("/api/v1/admin/bans/203.0.113.7").status_code == 404
    assert _bans(a, pair.key) == [] and _bans(b, pair.key) == []
    # the count started over: nine more failures (across both) do not ban again
    for i in range(9):
        assert _fail(a if i % 2 else b) == [401]
    assert _health(a).status_code == 200 and _health(b).status_code == 200
    assert _fail(a) == [401]
    _wait_for_status(b, 403)
    assert len(pair.audit("ip_banned")) == 2


def test_a_ban_expires_on_every_worker(pair: Pair) -> None:
    a, b = pair.both()
    for server in (a, b):
        bans = server.app.state.bans
        assert isinstance(bans, RedisBanList)
        bans.duration = 1.0
    assert _fail(a, 5) + _fail(b, 5) == [401] * 10
    _wait_for_status(a, 403)
    _wait_for_status(b, 403)
    listed = _bans(a, pair.key)
    assert len(listed) == 1
    time.sleep(1.0)
    _wait_for_status(a, 200, timeout=0.5)
    _wait_for_status(b, 200, timeout=0.5)
    assert _bans(a, pair.key) == [] and _bans(b, pair.key) == []
    assert f"{pair.prefix}bans:ban:203.0.113.7" not in pair.keys_in_redis()  # Redis expired it too


def test_loopback_stays_exempt_with_redis(pair: Pair) -> None:
    a, b = pair.both()
    assert _fail(a, 12, headers={}) == [401] * 12  # the loopback peer itself, no proxy header
    assert _fail(b, 12, headers={"X-Forwarded-For": "::1"}) == [401] * 12
    assert _health(a, {}).status_code == 200 and _health(b, {}).status_code == 200
    assert _bans(a, pair.key) == []
    assert pair.keys_in_redis() == []  # not even counted
    assert pair.audit("ip_banned") == []


def test_a_ban_on_a_proxy_hop_that_is_no_address(pair: Pair) -> None:
    a, b = pair.both()
    garbage = {"X-Forwarded-For": "not-an-address"}
    assert _fail(a, 5, garbage) + _fail(b, 5, garbage) == [401] * 10
    for server in (a, b):
        _wait_for_status_with(server, garbage, 403)
    assert _health(a, ADMIN_IP).status_code == 200


def _wait_for_status_with(server: LiveServer, headers: dict[str, str], status: int) -> None:
    deadline = time.monotonic() + PROPAGATION
    while _health(server, headers).status_code != status:
        assert time.monotonic() < deadline
        time.sleep(0.01)


# ----------------------------------------------------------------------------- Redis unreachable

def test_bans_work_locally_when_redis_is_unreachable(
    start_servers: Callable[..., tuple[LiveServer, ...]],
) -> None:
    (server,) = start_servers(1, CLOSED_PORT_URL)
    statuses = _fail(server, 12)
    assert statuses[:10] == [401] * 10 and statuses[10:] == [403, 403], statuses
    assert _health(server).status_code == 403
    assert _health(server, ADMIN_IP).status_code == 200
    listed = _bans(server, server.admin_key)
    assert [ban["ip"] for ban in listed] == ["203.0.113.7"] and listed[0]["failures"] == 10
    with server.client(headers=ADMIN_IP) as api:
        assert api.delete("/api/v1/admin/bans/203.0.113.7").status_code == 204
        assert api.delete("/api/v1/admin/bans/203.0.113.7").status_code == 404
    assert _health(server).status_code == 200
    assert len(server.manager.storage.audit_events(AuditQuery(type="ip_banned"))) == 1


def test_redis_unreachable_is_logged_once_and_never_a_5xx(
    start_servers: Callable[..., tuple[LiveServer, ...]], caplog: pytest.LogCaptureFixture,
) -> None:
    (server,) = start_servers(1, CLOSED_PORT_URL, ban_loopback=True)
    with caplog.at_level("WARNING", logger="llm_config.server"):
        statuses = _fail(server, 3, {}) + _fail(server, 3, {"X-Forwarded-For": "192.0.2.9"})
        time.sleep(2.5 * SYNC_SECONDS)  # the background sync retries meanwhile
    assert statuses == [401] * 6
    unavailable = [r for r in caplog.records if "ban_redis_unavailable" in r.getMessage()]
    assert len(unavailable) == 1, [r.getMessage() for r in caplog.records]


# ----------------------------------------------------------------------------- the hot path

def test_the_ban_check_never_waits_on_redis(prefix: str) -> None:
    """`banned` answers from the process's mirror: synchronous, no Redis command per request."""

    async def scenario() -> None:
        bans = RedisBanList(REDIS_URL, prefix=prefix)
        calls = 0
        original = bans._client.execute_command

        async def counting(*args: object, **kw: object) -> object:
            nonlocal calls
            calls += 1
            return await original(*args, **kw)

        bans._client.execute_command = counting
        try:
            decided = [await bans.arecord_failure("192.0.2.1") for _ in range(10)]
            assert [ban is not None for ban in decided] == [False] * 9 + [True]
            assert bans.banned("192.0.2.1") is not None
            before = calls
            for _ in range(1000):
                assert bans.banned("192.0.2.2") is None
                assert bans.banned("192.0.2.1") is not None
            assert calls == before
        finally:
            await bans.aclose()

    asyncio.run(scenario())


# ----------------------------------------------------------------------------- Redis dies and returns

@pytest.mark.faults
def test_sharing_resumes_when_redis_returns(
    start_servers: Callable[..., tuple[LiveServer, ...]], tmp_path: Path,
) -> None:
    from tests.faults.test_redis_faults import PrivateRedis

    require_service("Redis", "127.0.0.1", 6379)
    private = PrivateRedis(tmp_path)
    private.start()
    try:
        a, b = start_servers(2, private.url)
        assert _fail(a, 2) == [401, 401]
        private.kill9()
        # down: each process counts (and bans) on its own, never a 5xx
        assert _fail(a, 10) == [401] * 10
        assert _health(a).status_code == 403
        assert _health(b).status_code == 200
        private.start()
        for server, probe in ((a, "192.0.2.77"), (b, "192.0.2.78")):  # each shares again by itself
            deadline = time.monotonic() + 15
            while True:
                assert _fail(server, 1, {"X-Forwarded-For": probe}) == [401]
                client = private.client()
                try:
                    counted = client.zcard(f"{server.options.redis_prefix}bans:failures:{probe}")
                finally:
                    client.close()
                if counted:
                    break
                assert time.monotonic() < deadline, f"{server.url} never counted in Redis again"
                time.sleep(0.2)
        assert _health(a).status_code == 403  # the ban made while Redis was down stays where it was made
        # shared again: failures on both add up, and the ban reaches both
        assert _fail(a, 5, {"X-Forwarded-For": "192.0.2.88"}) + _fail(b, 5, {"X-Forwarded-For": "192.0.2.88"}) \
            == [401] * 10
        _wait_for_status_with(a, {"X-Forwarded-For": "192.0.2.88"}, 403)
        _wait_for_status_with(b, {"X-Forwarded-For": "192.0.2.88"}, 403)
    finally:
        private.stop()


@pytest.mark.faults
def test_a_lift_while_redis_hangs_reaches_every_worker_once_it_answers(
    start_servers: Callable[..., tuple[LiveServer, ...]], tmp_path: Path,
) -> None:
    from tests.faults.test_redis_faults import PrivateRedis

    require_service("Redis", "127.0.0.1", 6379)
    private = PrivateRedis(tmp_path)
    private.start()
    try:
        a, b = start_servers(2, private.url)
        assert _fail(a, 5) + _fail(b, 5) == [401] * 10
        _wait_for_status(a, 403)
        _wait_for_status(b, 403)
        private.pause()
        started = time.monotonic()
        with a.client(a.admin_key, headers=ADMIN_IP) as api:
            assert api.delete("/api/v1/admin/bans/203.0.113.7").status_code == 204  # here, and queued
            assert api.get("/api/v1/admin/bans").json() == []
        assert time.monotonic() - started < 2.5  # at most a timed-out call or two, never a hang
        assert _health(a).status_code == 200
        assert _health(b).status_code == 403  # b cannot hear of it yet, and keeps what it knew
        other = {"X-Forwarded-For": "192.0.2.99"}
        statuses = _fail(b, 3, other)  # failures while Redis hangs: counted locally, no 5xx
        assert statuses == [401] * 3
        private.resume()
        _wait_for_status(b, 200, timeout=10)  # the lift is replayed once a's sync reconnects
        assert _health(a).status_code == 200
        client = private.client()
        try:
            assert not client.exists(f"{a.options.redis_prefix}bans:ban:203.0.113.7")
        finally:
            client.close()
    finally:
        private.stop()
