"""Shared rate limits when Redis dies, comes back or hangs (SPEC §9, ARCHITECTURE decision 9).

Every test starts its own `redis-server` on a free port and two API servers (two apps, each with
its own `ConfigManager` on one store) that share their per-key buckets through it under a unique
prefix. The promise of `limits.py`: one bucket between them while Redis answers; local buckets per
process while it is down or hanging (never a 5xx, never a request stuck behind Redis); shared again
once Redis answers after the limiter's back-off.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis

from llm_config.core.manager import ConfigManager
from llm_config.server.limits import _REDIS_RETRY_SECONDS
from tests.conftest import REQUIRE_SERVICES
from tests.e2e.conftest import LiveServer, ServerThread, serve_in_thread, server_options

pytestmark = pytest.mark.faults

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
RATE, BURST = 5, 5
SOCKET_TIMEOUT = 0.5  # the limiter's Redis socket timeout (limits.py, RateLimiter._redis)
MAX_REQUEST_SECONDS = 1.0  # a request may wait for one timed-out Redis call, not for a retry loop
CONFIG = "/api/v1/configs/app/k"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateRedis:
    """A `redis-server` of this test only: start, kill -9, restart on the same port, pause, resume."""

    def __init__(self, log_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log_dir = log_dir
        self._runs = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    def start(self) -> None:
        self._runs += 1
        log = self._log_dir / f"redis-{self.port}-{self._runs}.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no"],
                stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"private redis-server did not start on {self.port}: {log.read_text()[-2000:]}")
            time.sleep(0.02)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1)

    def ping(self) -> bool:
        client = self.client()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        assert self.proc.returncode == -signal.SIGKILL
        self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        if self.paused:
            os.kill(proc.pid, signal.SIGCONT)
            self.paused = False
        proc.kill()
        proc.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if not os.path.exists(REDIS_SERVER):
        message = f"redis-server is not installed ({REDIS_SERVER})"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (LLM_CONFIG_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Pair:
    """Two API servers (own manager each, one store, one admin key) sharing one Redis under `prefix`."""

    first: LiveServer
    second: LiveServer
    prefix: str
    redis: PrivateRedis
    threads: list[ServerThread] = field(default_factory=list)

    def new_key(self) -> tuple[str, str]:
        """A fresh admin API key (so each phase starts with full buckets): (its record id, the key)."""
        record, token = self.first.manager.create_api_key(f"fault-{uuid.uuid4().hex[:8]}", "admin")
        return record.id, token

    def bucket_in_redis(self, key_id: str) -> bool:
        client = self.redis.client()
        try:
            return bool(client.exists(f"{self.prefix}ratelimit:key:{key_id}"))
        finally:
            client.close()


@pytest.fixture
def pair(private_redis: PrivateRedis, store_dir: Path, key: str) -> Iterator[Pair]:
    prefix = f"llm-config-fault-{uuid.uuid4().hex[:12]}:"
    options = server_options(rate_limit_key=f"{RATE}:{BURST}", rate_limit_ip="1000:1000", redis_prefix=prefix)
    managers = [ConfigManager.open(str(store_dir), encryption_key=key, actor="tester") for _ in range(2)]
    threads: list[ServerThread] = []
    try:
        thread, first = serve_in_thread(managers[0], options, redis_url=private_redis.url)
        threads.append(thread)
        thread, second = serve_in_thread(managers[1], options, redis_url=private_redis.url)
        threads.append(thread)
        first.manager.set("app", "k", 1)
        yield Pair(first, second, prefix, private_redis, threads)
    finally:
        if private_redis.paused:
            private_redis.resume()
        for thread in threads:
            thread.stop()
        for manager in managers:
            manager.close()


@dataclass
class Burst:
    """What a run of requests got: per server, the statuses; overall, the slowest request."""

    statuses: dict[int, list[int]]
    elapsed: float
    slowest: float

    def ok(self, server: int | None = None) -> int:
        lists = self.statuses.values() if server is None else [self.statuses[server]]
        return sum(s.count(200) for s in lists)


def _client(server: LiveServer, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.url, timeout=10, headers=headers)


def _clients(pair: Pair, token: str) -> list[httpx.Client]:
    return [_client(pair.first, token), _client(pair.second, token)]


def _check(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text}"
    if response.status_code == 429:
        assert int(response.headers["retry-after"]) >= 1, response.headers
    else:
        assert response.status_code == 200, f"{what}: {response.status_code} {response.text}"
        assert response.headers["x-ratelimit-limit"] == str(BURST)


def _burst(clients: list[httpx.Client], count: int | None = None, *, seconds: float = 0.0,
           gap: float = 0.0) -> Burst:
    """Requests alternating between the servers, one at a time: `count` of them, or for `seconds`."""
    statuses: dict[int, list[int]] = {i: [] for i in range(len(clients))}
    slowest = 0.0
    started = time.monotonic()
    i = 0
    while (i < count) if count is not None else (time.monotonic() - started < seconds):
        server = i % len(clients)
        sent = time.monotonic()
        response = clients[server].get(CONFIG)
        slowest = max(slowest, time.monotonic() - sent)
        _check(response, f"request {i} to server {server}")
        statuses[server].append(response.status_code)
        i += 1
        if gap:
            time.sleep(gap)
    return Burst(statuses, time.monotonic() - started, slowest)


def _refill_slack(seconds: float) -> int:
    """Tokens a bucket may win back during `seconds`, plus one for the edge of a millisecond."""
    return math.ceil(RATE * seconds) + 1


def _assert_shared(pair: Pair) -> None:
    """About one bucket between both servers: BURST successes (plus refill), the rest 429."""
    key_id, token = pair.new_key()
    clients = _clients(pair, token)
    try:
        burst = _burst(clients, 4 * BURST)
    finally:
        for client in clients:
            client.close()
    ok = burst.ok()
    assert BURST <= ok <= BURST + _refill_slack(burst.elapsed), (burst.statuses, burst.elapsed)
    assert ok < 2 * BURST, f"each server kept its own bucket: {burst.statuses}"
    assert burst.ok(0) and burst.ok(1), burst.statuses  # both servers served, from the same bucket
    assert pair.bucket_in_redis(key_id)


def _assert_health(pair: Pair) -> None:
    for server in (pair.first, pair.second):
        with _client(server, None) as anon:
            sent = time.monotonic()
            response = anon.get("/health")
            took = time.monotonic() - sent
        assert response.status_code == 200, f"/health: {response.status_code} {response.text}"
        assert response.json()["status"] in ("healthy", "degraded"), response.json()
        assert took < MAX_REQUEST_SECONDS, f"/health took {took:.2f} s"


def _wait_until_shared_again(pair: Pair, timeout: float) -> None:
    """Poll both servers with probe keys until each one's bucket is in Redis again (no blind sleep)."""
    started = time.monotonic()
    probes = [pair.new_key() for _ in range(2)]
    pending = {0, 1}
    clients = [_client(pair.first, probes[0][1]), _client(pair.second, probes[1][1])]
    try:
        while pending:
            for server in sorted(pending):
                _check(clients[server].get(CONFIG), f"probe to server {server}")
                if pair.bucket_in_redis(probes[server][0]):
                    pending.discard(server)
            if pending:
                waited = time.monotonic() - started
                assert waited < timeout, f"servers {sorted(pending)} still off Redis after {waited:.1f} s"
                time.sleep(0.2)
    finally:
        for client in clients:
            client.close()


def test_two_servers_share_one_bucket(pair: Pair) -> None:
    _assert_shared(pair)
    _assert_health(pair)


def test_kill_9_redis_falls_back_to_local_buckets(pair: Pair) -> None:
    _assert_shared(pair)
    pair.redis.kill9()
    _key_id, token = pair.new_key()
    clients = _clients(pair, token)
    try:
        quick = _burst(clients, 4 * BURST)
        # then steady load (10 requests/s per server against a refill of 5/s) for longer than the
        # limiter's back-off, so it also covers each limiter trying the dead Redis again
        steady = _burst(clients, seconds=_REDIS_RETRY_SECONDS + 1, gap=0.05)
        _assert_health(pair)
    finally:
        for client in clients:
            client.close()
    for burst in (quick, steady):
        assert burst.slowest < MAX_REQUEST_SECONDS, f"a request took {burst.slowest:.2f} s with Redis dead"
    for server in (0, 1):  # each process limits on its own: a full bucket each, then 429s beyond it
        statuses = quick.statuses[server]
        assert statuses[:BURST] == [200] * BURST, quick.statuses
        assert statuses.count(200) <= BURST + _refill_slack(quick.elapsed), (quick.statuses, quick.elapsed)
        statuses = steady.statuses[server]
        assert statuses.count(200) <= RATE * steady.elapsed + _refill_slack(quick.elapsed), (
            steady.statuses, steady.elapsed)
        assert statuses[-10:].count(429) >= 3, steady.statuses


def test_restarted_redis_is_shared_again(pair: Pair) -> None:
    _assert_shared(pair)
    pair.redis.kill9()
    _key_id, token = pair.new_key()
    clients = _clients(pair, token)
    try:
        _burst(clients, 4 * BURST)  # both limiters notice Redis is gone and fall back
    finally:
        for client in clients:
            client.close()
    pair.redis.start()  # the same port
    _wait_until_shared_again(pair, timeout=_REDIS_RETRY_SECONDS + 5)
    _assert_shared(pair)
    _assert_health(pair)


def test_paused_redis_never_hangs_a_request(pair: Pair) -> None:
    _assert_shared(pair)
    _key_id, token = pair.new_key()
    clients = _clients(pair, token)
    try:
        pair.redis.pause()
        paused_at = time.monotonic()
        bursts = []
        while time.monotonic() - paused_at < 2.0:
            bursts.append(_burst(clients, 2, gap=0.02))
        _assert_health(pair)
        pair.redis.resume()
    finally:
        for client in clients:
            client.close()
    slowest = max(b.slowest for b in bursts)
    assert slowest < MAX_REQUEST_SECONDS, (
        f"a request waited {slowest:.2f} s on a paused Redis (socket timeout {SOCKET_TIMEOUT} s)")
    total = sum(b.ok() for b in bursts)
    assert total >= BURST, [b.statuses for b in bursts]  # local buckets served while Redis hung
    assert any(429 in s for b in bursts for s in b.statuses.values()), [b.statuses for b in bursts]
    _wait_until_shared_again(pair, timeout=_REDIS_RETRY_SECONDS + 5)
    _assert_shared(pair)
