"""Two `llm-config serve` replicas under light load while their Redis or their PostgreSQL misbehaves (issue 9).

Each test starts a private `redis-server` on a free port (killed, paused, flushed or with its pub/sub cut
here — never the shared one) and two replicas with two workers each on one PostgreSQL store: a private
schema on the shared server for the Redis faults, a database on a private PostgreSQL cluster for the
restart (as in test_sql_faults.py). A writer PUTs one key on replica A every ~30 ms; readers on A and B
GET it and a few fixed keys, each request on a new connection so both workers of a replica serve them.

What must hold, as the issue states it:

* Redis killed, paused or flushed, or its pub/sub connections cut: no 5xx at any point, no request
  stuck longer than ~2 s (the 0.25 s socket timeout and the circuit breaker), `/health` says
  `degraded` with the reason while it lasts and `healthy` again after, caching resumes by itself;
* a write acknowledged by A is served by B within `FRESH_WITHIN` whatever Redis does (the revision
  poll every 100 ms bounds staleness even when every invalidation is lost), and every value served is
  the one the history holds for the version served;
* PostgreSQL restarted under the replicas: 503s while it is down (never a 500), everything works
  again afterwards by itself, values correct.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from llm_config.core.manager import ConfigManager
from llm_config.crypto.keys import generate_key
from tests.conftest import REQUIRE_SERVICES
from tests.databases import private_database
from tests.e2e.test_replicas import (
    Replica,
    admin_key,
    assert_no_tracebacks,
    client,
    config_path,
    fresh_client,
    start_replicas,
    stop_replicas,
    wait_for,
)
from tests.faults.test_redis_faults import REDIS_SERVER, PrivateRedis
from tests.faults.test_sql_faults import PG_POSTGRES, PG_TOOLS, PG_VERSION, PrivatePostgres, _drop_stale_clusters

pytestmark = pytest.mark.faults

ENV = "production"
NS = "load"
WRITTEN = "w"  # the key the writer keeps writing on A
FIXED = ("s0", "s1", "s2")  # written once before the load
FRESH_WITHIN = 1.0  # an acknowledged write is served everywhere within this (poll 0.1 s + slack)
MAX_REQUEST_SECONDS = 2.0  # Redis faults: one 0.25 s timeout per Redis call, then the breaker
DEGRADED_WITHIN = 5.0
HEALTHY_WITHIN = 10.0
STREAK = 4  # /health answers in a row (new connections: both workers) to call a replica's state settled


def _unavailable(message: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(message + " (LLM_CONFIG_REQUIRE_SERVICES=1)")
    pytest.skip(message)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if not os.path.exists(REDIS_SERVER):
        _unavailable(f"redis-server is not installed ({REDIS_SERVER})")
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivatePostgres]:
    if not PG_POSTGRES.exists() or not all(shutil.which(tool) for tool in PG_TOOLS):
        _unavailable(f"PostgreSQL {PG_VERSION} with postgresql-common is not installed")
    if os.geteuid() != 0:
        _unavailable("pg_createcluster needs root (it writes /etc/postgresql)")
    _drop_stale_clusters()
    cluster = PrivatePostgres()
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.drop()


# ----------------------------------------------------------------------------- two replicas


@dataclass
class Pair:
    store_url: str
    key: str
    token: str
    redis: PrivateRedis
    a: Replica
    b: Replica

    @property
    def replicas(self) -> tuple[Replica, Replica]:
        return self.a, self.b

    def put(self, key: str, value: Any, replica: Replica | None = None) -> httpx.Response:
        with client((replica or self.a).url, self.token) as http:
            return http.put(config_path(NS, key), json={"value": value, "env": ENV})

    def redis_client(self) -> redis.Redis:
        return self.redis.client()


@contextlib.contextmanager
def _pair(store_url: str, private_redis: PrivateRedis, log_dir: Path) -> Iterator[Pair]:
    key = generate_key()
    token = admin_key(store_url, key)
    replicas = start_replicas(store_url, key, log_dir, ["A", "B"], redis_url=private_redis.url)
    try:
        pair = Pair(store_url, key, token, private_redis, replicas[0], replicas[1])
        for i, name in enumerate(FIXED):
            assert pair.put(name, {"fixed": i}).status_code == 200
        assert pair.put(WRITTEN, 0).status_code == 200
        yield pair
    finally:
        if private_redis.paused:
            private_redis.resume()
        stop_replicas(replicas)


@pytest.fixture
def pair(private_redis: PrivateRedis, tmp_path: Path) -> Iterator[Pair]:
    with private_database("postgresql") as database, _pair(database.url, private_redis, tmp_path) as made:
        yield made


# ----------------------------------------------------------------------------- the load


@dataclass(frozen=True, slots=True)
class Request:
    who: str  # "writer", or the reader's replica
    method: str
    key: str
    started: float
    ended: float
    status: int | None  # None: no HTTP answer
    version: int | None
    value: Any
    body: str

    @property
    def elapsed(self) -> float:
        return self.ended - self.started


class Load:
    """A writer on A (keep-alive) and readers on A and B (a new connection per request)."""

    def __init__(self, pair: Pair, *, readers_per_replica: int = 2, write_gap: float = 0.03,
                 read_keys: Sequence[str] = (WRITTEN, *FIXED)) -> None:
        self.pair = pair
        self.requests: list[Request] = []
        self._stop = threading.Event()
        self._gap = write_gap
        self._read_keys = list(read_keys)
        self._threads = [threading.Thread(target=self._write, name="load-writer", daemon=True)]
        self._threads += [threading.Thread(target=self._read, args=(r, i), name=f"load-reader-{r.name}", daemon=True)
                          for r in pair.replicas for i in range(readers_per_replica)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop(check=exc_type is None)  # never hide the error that ended the run

    def stop(self, *, check: bool = True) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        stuck = [t.name for t in self._threads if t.is_alive()]
        assert not (check and stuck), f"load threads still inside a request: {stuck}"

    def add_read_key(self, key: str) -> None:
        self._read_keys.append(key)  # readers pick it up at their next round

    @staticmethod
    def send(http: httpx.Client, who: str, method: str, key: str, body: Any = None) -> Request:
        started = time.monotonic()
        status = version = value = None
        text = ""
        try:
            if method == "PUT":
                response = http.put(config_path(NS, key), json={"value": body, "env": ENV})
            else:
                response = http.get(config_path(NS, key), params={"env": ENV})
            status, text = response.status_code, response.text[:300]
            if status == 200:
                doc = response.json()
                version, value = int(doc["version"]), doc["value"]
        except httpx.HTTPError as exc:
            text = repr(exc)
        return Request(who, method, key, started, time.monotonic(), status, version, value, text)

    def _write(self) -> None:
        with client(self.pair.a.url, self.pair.token, timeout=30) as http:
            n = 0
            while not self._stop.is_set():
                n += 1
                self.requests.append(self.send(http, "writer", "PUT", WRITTEN, n))
                self._stop.wait(self._gap)

    def _read(self, replica: Replica, offset: int) -> None:
        with fresh_client(replica.url, self.pair.token, timeout=30) as http:
            i = offset
            while not self._stop.is_set():
                keys = self._read_keys
                self.requests.append(self.send(http, replica.name, "GET", keys[i % len(keys)]))
                i += 1
                self._stop.wait(0.005)  # light load: a 2-core CI box also runs the four server workers

    # -- what it saw ---------------------------------------------------------------------------

    def failures(self, allowed: Callable[[Request], bool] = lambda r: r.status == 200) -> list[Request]:
        return [r for r in self.requests if not allowed(r)]

    def slowest(self) -> Request:
        return max(self.requests, key=lambda r: r.elapsed)

    def stale_reads(self, acks: Sequence[tuple[str, float, int]], within: float = FRESH_WITHIN) -> list[str]:
        """Reads sent more than `within` after a write of their key was acknowledged that still served
        an older version. `acks`: (key, acknowledged at, version)."""
        by_key: dict[str, tuple[list[float], list[int]]] = {}
        for key, at, version in sorted(acks, key=lambda a: a[1]):
            times, best = by_key.setdefault(key, ([], []))
            times.append(at)
            best.append(max(version, best[-1]) if best else version)
        stale: list[tuple[str, str, float, int, int]] = []
        for r in self.requests:
            if r.method != "GET" or r.status != 200 or r.key not in by_key:
                continue
            times, best = by_key[r.key]
            i = bisect.bisect_left(times, r.started - within)
            if i and r.version is not None and r.version < best[i - 1]:
                stale.append((r.who, r.key, r.started - times[i - 1], best[i - 1], r.version))
        # one line per (replica, key): how many, and from when to when after the acknowledgement
        summary: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
        for who, key, late, acked, served in stale:
            summary.setdefault((who, key), []).append((late, acked, served))
        return [f"{who} GET {key}: {len(found)} reads served an older version {min(f[0] for f in found):.2f}-"
                f"{max(f[0] for f in found):.2f} s after a newer one was acknowledged (e.g. v{found[0][2]} after "
                f"v{found[0][1]})" for (who, key), found in sorted(summary.items())]

    def acks(self) -> list[tuple[str, float, int]]:
        return [(r.key, r.ended, r.version) for r in self.requests
                if r.method == "PUT" and r.status == 200 and r.version is not None]

    def wrong_values(self, store_url: str, key: str) -> list[str]:
        """Served (version, value) pairs that the store's history contradicts."""
        with ConfigManager.open(store_url, encryption_key=key, actor="checker") as checker:
            history = {k: {item.version: item.value for item in checker.history(NS, k, env=ENV)}
                       for k in {r.key for r in self.requests}}
        wrong = []
        for r in self.requests:
            if r.status == 200 and r.version is not None:
                expected = history[r.key].get(r.version, "<no such version>")
                if expected != r.value:
                    wrong.append(f"{r.who} {r.method} {r.key} v{r.version}: {r.value!r}, history {expected!r}")
        return wrong


def _describe(requests: Sequence[Request], limit: int = 8) -> str:
    return "; ".join(f"{r.who} {r.method} {r.key} {r.status} {r.elapsed:.2f}s {r.body[:120]}" for r in requests[:limit])


def _assert_clean(load: Load, pair: Pair) -> None:
    """No 5xx (nor any other failure), nothing stuck, nothing stale beyond the bound, values right."""
    failed = load.failures()
    assert not failed, f"{len(failed)} failed requests: {_describe(failed)}"
    slowest = load.slowest()
    assert slowest.elapsed < MAX_REQUEST_SECONDS, f"a request took {slowest.elapsed:.2f} s: {_describe([slowest])}"
    stale = load.stale_reads(load.acks())
    assert not stale, "stale reads: " + "; ".join(stale)
    wrong = load.wrong_values(pair.store_url, pair.key)
    assert not wrong, wrong[:5]
    assert_no_tracebacks(pair.replicas)


# ----------------------------------------------------------------------------- health and metrics


def health(replica: Replica, token: str) -> tuple[str, str]:
    """(overall status, the cache check's message) from one worker, on a new connection."""
    with fresh_client(replica.url, token, timeout=10) as http:
        doc = http.get("/health").json()
    return str(doc["status"]), str(doc["checks"]["cache"].get("message", ""))


def wait_health(replica: Replica, token: str, ok: Callable[[str, str], bool], seconds: float) -> list[tuple[str, str]]:
    """Poll /health until STREAK answers in a row satisfy `ok`; every answer seen (asserts on timeout)."""
    seen: list[tuple[str, str]] = []
    streak = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = health(replica, token)
        seen.append(answer)
        streak = streak + 1 if ok(*answer) else 0
        if streak >= STREAK:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"{replica.name}: /health not settled in {seconds} s; last answers: {seen[-STREAK:]}")


def _redis_down(status: str, message: str) -> bool:
    return status == "degraded" and "redis" in message.lower()


def _healthy(status: str, _message: str) -> bool:
    return status == "healthy"


def l2_hits(replica: Replica) -> float:
    text = httpx.get(f"{replica.url}/metrics", timeout=10).text
    found = re.search(r'^llm_config_cache_hits_total\{tier="l2"\} ([0-9.e+]+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


# ----------------------------------------------------------------------------- 1. kill -9


def test_redis_killed_then_restarted(pair: Pair) -> None:
    with Load(pair) as load:
        time.sleep(1.5)
        pair.redis.kill9()
        killed = time.monotonic()
        for replica in pair.replicas:
            wait_health(replica, pair.token, _redis_down, DEGRADED_WITHIN)
        degraded_after = time.monotonic() - killed
        time.sleep(2.0)  # writes on A keep reaching B through the revision poll meanwhile
        pair.redis.start()  # the same port, empty
        restarted = time.monotonic()
        hits_at_restart = sum(l2_hits(r) for r in pair.replicas)
        for replica in pair.replicas:
            wait_health(replica, pair.token, _healthy, HEALTHY_WITHIN)
        healthy_after = time.monotonic() - restarted
        resumed = wait_for(lambda: sum(l2_hits(r) for r in pair.replicas) > hits_at_restart, 10, 0.2)
        time.sleep(1.0)
    print(f"\nredis kill -9: degraded on both replicas {degraded_after:.2f} s after the kill, healthy "
          f"{healthy_after:.2f} s after the restart; {len(load.requests)} requests, slowest "
          f"{load.slowest().elapsed * 1000:.0f} ms")
    assert resumed, "no L2 hit after Redis came back: caching did not resume"
    _assert_clean(load, pair)


# ----------------------------------------------------------------------------- 2. SIGSTOP


def test_redis_paused_never_hangs_and_serves_no_stale_value_after(pair: Pair) -> None:
    """Besides the load: a key written once *while* Redis hangs (after the breakers opened, so no
    tombstone reaches Redis) and never again must not come back from an L2 record older than that write
    once Redis answers — the pub/sub reconnect drops every L1, and the L1 TTL (5 s) ends the rest."""
    assert pair.put("paused", "before").status_code == 200
    for replica in pair.replicas:  # both workers of both replicas: the old version in L1 and L2
        with fresh_client(replica.url, pair.token) as http:
            for _ in range(6):
                assert http.get(config_path(NS, "paused"), params={"env": ENV}).json()["value"] == "before"
    with Load(pair) as load:
        load.add_read_key("paused")
        time.sleep(1.5)
        pair.redis.pause()
        paused = time.monotonic()
        time.sleep(1.0)  # long enough for every process's breaker to open under the load
        with client(pair.a.url, pair.token) as http:
            during = Load.send(http, "writer", "PUT", "paused", "during")
        load.requests.append(during)
        assert during.status == 200, during.body
        answers = {r.name: [] for r in pair.replicas}  # /health while Redis hangs
        while time.monotonic() - paused < 3.0:
            for replica in pair.replicas:
                answers[replica.name].append(health(replica, pair.token))
            time.sleep(0.1)
        pair.redis.resume()
        resumed = time.monotonic()
        for replica in pair.replicas:
            wait_health(replica, pair.token, _healthy, HEALTHY_WITHIN)
        healthy_after = time.monotonic() - resumed
        time.sleep(max(0.0, 7.0 - (time.monotonic() - resumed)))  # past the breaker reset and the L1 TTL
    for name, seen in answers.items():
        assert any(_redis_down(*a) for a in seen), f"{name} never said degraded while Redis hung: {seen[-3:]}"
    print(f"\nredis paused 3 s: healthy {healthy_after:.2f} s after SIGCONT; {len(load.requests)} requests, "
          f"slowest {load.slowest().elapsed * 1000:.0f} ms")
    _assert_clean(load, pair)


# ----------------------------------------------------------------------------- 3. FLUSHALL


def test_redis_flushed_mid_run_keeps_values_correct(pair: Pair) -> None:
    r = pair.redis_client()
    try:
        with Load(pair) as load:
            time.sleep(1.5)
            for _ in range(3):
                r.flushall()
                time.sleep(1.0)
            time.sleep(1.0)
    finally:
        r.close()
    print(f"\nredis FLUSHALL x3: {len(load.requests)} requests, slowest {load.slowest().elapsed * 1000:.0f} ms")
    _assert_clean(load, pair)
    for replica in pair.replicas:
        wait_health(replica, pair.token, _healthy, HEALTHY_WITHIN)


# ----------------------------------------------------------------------------- 4. pub/sub cut


def _channel_down(status: str, message: str) -> bool:
    return status == "degraded" and "invalidation channel down" in message


def test_pubsub_cut_while_writes_continue(pair: Pair) -> None:
    """`CLIENT KILL TYPE pubsub` cuts every subscriber; an ACL that denies SUBSCRIBE keeps the channel
    down (GET/SET/EVALSHA/PUBLISH still work) so that, for a while, only the revision poll carries A's
    writes to B. Then SUBSCRIBE is allowed again: every listener is back (healthy) by itself."""
    r = pair.redis_client()
    try:
        with Load(pair) as load:
            time.sleep(1.5)
            r.execute_command("ACL", "SETUSER", "default", "-subscribe", "-psubscribe", "-ssubscribe")
            killed = r.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            cut = time.monotonic()
            for replica in pair.replicas:
                wait_health(replica, pair.token, _channel_down, DEGRADED_WITHIN)
            degraded_after = time.monotonic() - cut
            time.sleep(2.0)
            r.execute_command("ACL", "SETUSER", "default", "+subscribe", "+psubscribe", "+ssubscribe")
            back = time.monotonic()
            seen = []
            for replica in pair.replicas:
                seen += wait_health(replica, pair.token, _healthy, HEALTHY_WITHIN)
            healthy_after = time.monotonic() - back
            time.sleep(1.0)
    finally:
        r.close()
    reconnects = [int(m.group(1)) for _, message in seen for m in [re.search(r"(\d+) reconnects", message)] if m]
    print(f"\npub/sub cut ({killed} subscribers killed): degraded {degraded_after:.2f} s after, healthy "
          f"{healthy_after:.2f} s after SUBSCRIBE was allowed again; {len(load.requests)} requests")
    assert killed >= 2, f"only {killed} pub/sub connections were cut"
    assert reconnects and max(reconnects) >= 1, f"no listener reported a reconnect: {seen[-3:]}"
    _assert_clean(load, pair)


# ----------------------------------------------------------------------------- 5. PostgreSQL restarted


def test_postgresql_restarted_under_the_replicas(pg: PrivatePostgres, private_redis: PrivateRedis,
                                                 tmp_path: Path) -> None:
    store_url = pg.url(pg.new_database())
    with _pair(store_url, private_redis, tmp_path) as made:
        with Load(made) as load:
            time.sleep(1.5)
            stopping = time.monotonic()  # backends die at the SIGQUIT, before the postmaster is gone
            pg.stop_immediate()
            down_from = time.monotonic()
            time.sleep(4.0)
            pg.start()
            up_at = time.monotonic()

            def acknowledged_since_up() -> bool:
                return any(r.method == "PUT" and r.status == 200 and r.started > up_at for r in list(load.requests))

            recovered = wait_for(acknowledged_since_up, 20, 0.1)
            recovered_after = time.monotonic() - up_at
            time.sleep(3.0)
        acked = {r.version: r.value for r in load.requests
                 if r.method == "PUT" and r.status == 200 and r.version is not None}
        final = max(acked)
        for replica in made.replicas:  # the same processes, not restarted, serve the last acknowledged write
            def serves_final(replica: Replica = replica) -> bool:
                with client(replica.url, made.token) as http:
                    got = http.get(config_path(NS, WRITTEN), params={"env": ENV})
                return got.status_code == 200 and int(got.json()["version"]) >= final
            assert wait_for(serves_final, FRESH_WITHIN), f"{replica.name} does not serve v{final}"
        assert_no_tracebacks(made.replicas)
    bad = load.failures(lambda r: r.status in (200, 503))
    assert not bad, f"{len(bad)} requests neither 200 nor 503 (a 500, or no answer): {_describe(bad)}"
    unavailable = load.failures()
    print(f"\npostgresql down {up_at - down_from:.1f} s (stop and start included): {len(unavailable)} of "
          f"{len(load.requests)} requests answered 503; first acknowledged write {recovered_after:.2f} s after the "
          f"restart; slowest {load.slowest().elapsed:.2f} s")
    assert recovered, "no write acknowledged within 20 s of PostgreSQL accepting connections again"
    settled = up_at + recovered_after + 2.0
    late = [r for r in unavailable if r.started > settled]
    assert not late, f"still failing 2 s after recovery: {_describe(late)}"
    early = [r for r in unavailable if r.ended < stopping]
    assert not early, f"failures before PostgreSQL went down: {_describe(early)}"
    assert load.slowest().elapsed < 15, f"a request hung: {_describe([load.slowest()])}"
    stale = load.stale_reads(load.acks())
    assert not stale, "stale reads: " + "; ".join(stale)
    wrong = load.wrong_values(store_url, made.key)
    assert not wrong, wrong[:5]
    with ConfigManager.open(store_url, encryption_key=made.key, actor="checker") as checker:
        history = {item.version: item.value for item in checker.history(NS, WRITTEN, env=ENV)}
        assert sorted(history) == list(range(1, len(history) + 1)), f"versions not contiguous: {sorted(history)}"
        missing = {v: value for v, value in acked.items() if history.get(v) != value}
        assert not missing, f"acknowledged writes missing from the history: {missing}"
        assert checker.audit_verify().ok
