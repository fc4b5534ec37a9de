"""Several `llm-config serve` replicas on one PostgreSQL and one Redis: throughput and staleness.

Throughput (no goal: on a 2-core machine it measures contention, not scaling): the authenticated cached
`GET` of random keys among 1,000 with 1 replica loaded and with 3 replicas loaded at once, each replica
`llm-config serve --workers 2` on one private PostgreSQL schema with `--redis-url` (L2 on: `--cache-l2
auto` turns it on in front of PostgreSQL), no load balancer: one wrk per loaded replica, run at the same
time, and their req/s summed. The three replicas run throughout; the "1 replica" rounds load replica A
only (B and C idle) and alternate with the "3 replicas" rounds, so a load change on the shared machine hits
both alike.

Staleness across replicas: a key is written on replica A (`PUT`, the clock read when its answer
arrives), then replica B is polled with `GET`s as fast as one client can (round robin over a few keep-alive
connections, so both of B's workers are asked) until every connection has served the new version; the
staleness of a write is that moment minus A's acknowledgement. `writes` writes, each after a random pause
of 0-100 ms (so the writes fall at random phases of the 100 ms revision poll). Twice: with pub/sub (the
replicas run with `--redis-url`; goal p99 ≤ 50 ms) and with pub/sub dropped (two fresh replicas without
`--redis-url`: only the revision poll of PostgreSQL, every 100 ms, evicts; bounded by that interval). Each
mode is measured with B polled flat out and with a 2 ms pause between a polling thread's GETs (B not
saturated).

`python -m bench.replicas [--quick] [--write BENCHMARKS.md] [--server-impl granian|uvicorn]` prints the
Markdown section (progress on stderr) and with `--write` replaces it between `<!-- replicas:begin -->` and
`<!-- replicas:end -->`; `python -m bench.run` runs it after the cache section.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Final

import orjson

from bench.backends_sql import fresh_database
from bench.harness import fmt_ns, progress
from bench.report import Machine, command_line, load_average, machine, write_section
from bench.rest import Server, _free_port, _server_env, _start, _wait_ready, _wrk_version, ensure_wrk
from bench.vs_etcd import _RESULT_RE, ENV, THREADS, WRK_GRACE_S, Run, _seed_value, _write_scripts
from bench.vs_etcd import _wrk as wrk_run
from llm_config import generate_key

__all__ = ["BEGIN", "END", "main", "run_section"]

BEGIN: Final = "<!-- replicas:begin -->"
END: Final = "<!-- replicas:end -->"

REDIS_URL: Final = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
WORKERS: Final = 2
TOTAL_CONNS: Final = 64
CACHE_TTL: Final = 3600  # L1 records never expire during the run: only invalidation makes a replica fresh
STALE_GOAL_MS: Final = 50.0
POLL_INTERVAL_MS: Final = 100.0  # storage/sql.py change_poll_seconds on a server database
STALE_NS, STALE_KEY = "stale", "probe"
POLL_CONNS: Final = 4
PACED_MS: Final = 2.0  # the second staleness row of each mode: B polled with pauses, so it is not saturated
WRITE_TIMEOUT_S: Final = 5.0
HTTP_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class Sizes:
    keys: int = 1_000
    duration_s: int = 5
    reps: int = 3
    warmup_s: int = 2
    writes: int = 200

    @classmethod
    def quick(cls) -> Sizes:
        return cls(keys=200, duration_s=3, reps=1, warmup_s=1, writes=40)


# ------------------------------------------------------------------ replicas


@dataclass(slots=True)
class Fleet:
    """Replicas of one store; `token` is an admin API key."""

    servers: list[Server]
    token: str

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.servers[i].port}"


def _serve_argv(cli: str, target: str, key_file: Path, port: int, impl: str, redis: bool,
                bootstrap: Path | None) -> list[str]:
    argv = [cli, "-s", target, "--key-file", str(key_file)]
    if redis:
        argv += ["--redis-url", REDIS_URL]
    argv += ["serve", "--port", str(port), "--workers", str(WORKERS), "--server-impl", impl, "--cache-ttl",
             str(CACHE_TTL), "--rate-limit-key", "0", "--rate-limit-ip", "0"]
    if bootstrap is not None:
        argv += ["--bootstrap-admin-key-file", str(bootstrap)]
    return argv


def start_fleet(stack: ExitStack, home: Path, target: str, key_file: Path, n: int, impl: str, *, redis: bool,
                tag: str, token: str | None = None) -> Fleet:
    """Replica A first (it creates the store's schema and, without `token`, the first admin key), then the
    others at once."""
    cli = str(Path(sys.executable).parent / "llm-config")
    env = _server_env(home, {})
    bootstrap = home / "admin.key"
    servers: list[Server] = []
    for i in range(n):
        port = _free_port()
        name = f"replica {'ABCDEFG'[i]} ({tag}, {impl} ×{WORKERS})"
        servers.append(_start(stack, _serve_argv(cli, target, key_file, port, impl, redis,
                                                 bootstrap if i == 0 and token is None else None),
                              port, env, home / f"{tag}-{'abcdefg'[i]}.log", name))
        if i == 0:
            _wait_ready(servers[0])
    for server in servers[1:]:
        _wait_ready(server)
    if token is None:
        token = bootstrap.read_text(encoding="utf-8").strip()
    return Fleet(servers, token)


def _request(conn: http.client.HTTPConnection, method: str, path: str, token: str,
             body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read()


def seed(fleet: Fleet, keys: int) -> None:
    """PUT the keys on A, then GET each once on every replica (200 expected)."""
    a = http.client.HTTPConnection("127.0.0.1", fleet.servers[0].port, timeout=HTTP_TIMEOUT_S)
    try:
        for i in range(keys):
            body = json.dumps({"value": _seed_value(i), "env": ENV}).encode()
            status, data = _request(a, "PUT", f"/api/v1/configs/ns{i % 10}/key{i}", fleet.token, body)
            if not 200 <= status < 300:
                raise RuntimeError(f"PUT ns{i % 10}/key{i} answered {status}: {data[:200]!r}")
    finally:
        a.close()
    for server in fleet.servers:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=HTTP_TIMEOUT_S)
        try:
            for i in range(keys):
                status, data = _request(conn, "GET", f"/api/v1/configs/ns{i % 10}/key{i}?env={ENV}", fleet.token)
                if status != 200:
                    raise RuntimeError(f"{server.what}: GET ns{i % 10}/key{i} answered {status}: {data[:200]!r}")
        finally:
            conn.close()


# ------------------------------------------------------------------ throughput


def _wrk_many(wrk: str, script: Path, urls: list[str], conns: list[int], seconds: int) -> list[Run]:
    """One wrk per URL, all at once; their reports."""
    procs = []
    for url, c in zip(urls, conns, strict=True):
        argv = [wrk, f"-t{THREADS}", f"-c{c}", f"-d{seconds}s", "--latency", "-s", str(script), url]
        procs.append((argv, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    runs = []
    for argv, proc in procs:
        out, err = proc.communicate(timeout=seconds + WRK_GRACE_S)
        match = _RESULT_RE.search(out)
        if proc.returncode != 0 or match is None:
            raise RuntimeError(f"wrk failed (exit {proc.returncode}): {' '.join(argv)}\n{out}\n{err}")
        runs.append(Run(rps=float(match["rps"]), p50_ms=float(match["p50"]), p99_ms=float(match["p99"]),
                        non_2xx=int(match["non2xx"]), socket_errors=int(match["sockerr"])))
    return runs


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


@dataclass(slots=True)
class Load:
    """Rounds of one configuration: per round, each loaded replica's wrk report."""

    replicas: int
    rounds: list[list[Run]] = field(default_factory=list)

    def sums(self) -> list[float]:
        return [sum(r.rps for r in rnd) for rnd in self.rounds]

    @property
    def rps(self) -> float:
        return statistics.median(self.sums())

    @property
    def p50(self) -> float:
        return statistics.median(statistics.median(r.p50_ms for r in rnd) for rnd in self.rounds)

    @property
    def p99(self) -> float:
        return statistics.median(max(r.p99_ms for r in rnd) for rnd in self.rounds)

    def errors(self) -> tuple[int, int]:
        runs = [r for rnd in self.rounds for r in rnd]
        return sum(r.non_2xx for r in runs), sum(r.socket_errors for r in runs)


def bench_throughput(fleet: Fleet, wrk: str, script: Path, sizes: Sizes) -> list[Load]:
    urls = [fleet.url(i) for i in range(len(fleet.servers))]
    for i, url in enumerate(urls):  # fills both workers' L1 on every replica
        warm = wrk_run(wrk, script, url, TOTAL_CONNS, sizes.warmup_s)
        progress(f"  warm-up replica {'ABC'[i]}: {warm.line()}")
        if warm.non_2xx or warm.socket_errors:
            raise RuntimeError(f"replica {'ABC'[i]} answered errors during the warm-up: {warm.line()}")
    one, three = Load(1), Load(len(urls))
    for rep in range(sizes.reps):
        for load in ((one, three) if rep % 2 == 0 else (three, one)):
            n = load.replicas
            runs = _wrk_many(wrk, script, urls[:n], _split(TOTAL_CONNS, n), sizes.duration_s)
            load.rounds.append(runs)
            progress(f"  {n} replica(s) round {rep + 1}: {sum(r.rps for r in runs):,.0f} req/s "
                     f"({' + '.join(f'{r.rps:,.0f}' for r in runs)}), p99 max {max(r.p99_ms for r in runs):.2f} ms")
    return [one, three]


# ------------------------------------------------------------------ staleness


@dataclass(slots=True)
class Staleness:
    mode: str
    pause_ms: float = 0.0  # each polling thread's pause between two GETs (0: flat out)
    all_ms: list[float] = field(default_factory=list)  # until every polling connection served it
    first_ms: list[float] = field(default_factory=list)  # until the first one did
    polls: int = 0
    poll_time_s: float = 0.0
    timeouts: int = 0

    @staticmethod
    def _q(values: list[float], q: float) -> float:
        s = sorted(values)
        return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]

    def p(self, q: float, first: bool = False) -> float:
        return self._q(self.first_ms if first else self.all_ms, q)


def _version(body: bytes) -> int:
    return int(orjson.loads(body)["version"])


def _put(a: http.client.HTTPConnection, path: str, token: str, n: int) -> tuple[int, float]:
    """PUT a new value on A: (its version, the clock when A's answer arrived)."""
    status, body = _request(a, "PUT", path, token, orjson.dumps({"value": {"n": n}, "env": ENV}))
    acked = time.perf_counter()
    if not 200 <= status < 300:
        raise RuntimeError(f"PUT on A answered {status}: {body[:200]!r}")
    return _version(body), acked


def _poll_one(conn: http.client.HTTPConnection, path: str, token: str, version: int, acked: float,
              pause_s: float) -> tuple[float, int, bool]:
    """GET on `conn` until it serves `version` or newer: (when it first did, GETs made, timed out)."""
    polls = 0
    while True:
        if polls and pause_s:
            time.sleep(pause_s)
        status, body = _request(conn, "GET", path, token)
        now = time.perf_counter()
        polls += 1
        if status != 200:
            raise RuntimeError(f"GET on B answered {status}: {body[:200]!r}")
        if _version(body) >= version:
            return now, polls, False
        if now - acked > WRITE_TIMEOUT_S:
            return now, polls, True


def _poll_until_fresh(pool: ThreadPoolExecutor, conns: list[http.client.HTTPConnection], path: str, token: str,
                      version: int, acked: float, out: Staleness) -> list[float]:
    """Each connection polled by a thread of its own, all at once: when each first served `version`."""
    pause_s = out.pause_ms / 1000
    results = list(pool.map(lambda c: _poll_one(c, path, token, version, acked, pause_s), conns))
    out.polls += sum(r[1] for r in results)
    out.poll_time_s += sum(r[0] - acked for r in results)
    out.timeouts += any(r[2] for r in results)
    return [r[0] for r in results]


def bench_staleness(fleet: Fleet, writes: int, mode: str, seed: int, pause_ms: float = 0.0) -> Staleness:
    """Write on replica A, poll replica B until every polling connection serves the new version."""
    progress(f"  staleness ({mode}): {writes} writes on A, polling B ({pause_ms:g} ms pauses)")
    rng = random.Random(seed)
    path = f"/api/v1/configs/{STALE_NS}/{STALE_KEY}"
    get_path = f"{path}?env={ENV}"
    token = fleet.token
    a = http.client.HTTPConnection("127.0.0.1", fleet.servers[0].port, timeout=HTTP_TIMEOUT_S)
    b_conns = [http.client.HTTPConnection("127.0.0.1", fleet.servers[1].port, timeout=HTTP_TIMEOUT_S)
               for _ in range(POLL_CONNS)]
    out = Staleness(mode, pause_ms)
    try:
        with ThreadPoolExecutor(POLL_CONNS, thread_name_prefix="bench-poll") as pool:
            current, acked = _put(a, path, token, -1)
            _poll_until_fresh(pool, b_conns, get_path, token, current, acked, out)  # B caches it everywhere
            out.polls, out.timeouts = 0, 0
            for i in range(writes):
                time.sleep(rng.uniform(0.0, POLL_INTERVAL_MS / 1000))
                version, acked = _put(a, path, token, i)
                seen = _poll_until_fresh(pool, b_conns, get_path, token, version, acked, out)
                out.all_ms.append((max(seen) - acked) * 1e3)
                out.first_ms.append((min(seen) - acked) * 1e3)
    finally:
        a.close()
        for conn in b_conns:
            conn.close()
    progress(f"    p50 {out.p(0.5):.1f} ms, p99 {out.p(0.99):.1f} ms, max {max(out.all_ms):.1f} ms "
             f"(first connection: p50 {out.p(0.5, True):.1f} ms); {out.polls:,} GETs, {out.timeouts} timeouts")
    return out


# ------------------------------------------------------------------ the run


@dataclass(slots=True)
class Result:
    loads: list[Load]
    stale: list[Staleness]
    notes: list[str]
    wrk_version: str
    impl: str
    poll_get_ms: float


def bench_replicas(work: Path, sizes: Sizes, impl: str) -> Result:
    notes: list[str] = []
    wrk = ensure_wrk(notes)
    wrk_version = _wrk_version(wrk)
    key_file = work / "master.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(generate_key() + "\n")
    stale: list[Staleness] = []
    with fresh_database("postgresql", "replicas", work) as target:
        home = work / "pubsub"
        home.mkdir()
        with ExitStack() as stack:
            progress(f"replicas: 3 × `serve --workers {WORKERS} --server-impl {impl}` on PostgreSQL + {REDIS_URL}")
            fleet = start_fleet(stack, home, target, key_file, 3, impl, redis=True, tag="redis")
            started = time.monotonic()
            seed(fleet, sizes.keys)
            progress(f"  seeded {sizes.keys:,} keys (PUT on A, GET on A, B, C) in {time.monotonic() - started:.1f} s")
            script = _write_scripts(home, sizes.keys, fleet.token)[("ours", "get")]
            loads = bench_throughput(fleet, wrk, script, sizes)
            stale.append(bench_staleness(fleet, sizes.writes, "with pub/sub", 1))
            stale.append(bench_staleness(fleet, sizes.writes, "with pub/sub", 3, PACED_MS))
            token = fleet.token
        home = work / "poll"
        home.mkdir()
        with ExitStack() as stack:
            progress("replicas without --redis-url: pub/sub dropped, only the revision poll")
            fleet = start_fleet(stack, home, target, key_file, 2, impl, redis=False, tag="poll", token=token)
            stale.append(bench_staleness(fleet, sizes.writes, "pub/sub dropped", 2))
            stale.append(bench_staleness(fleet, sizes.writes, "pub/sub dropped", 4, PACED_MS))
    poll_get_ms = statistics.median(s.poll_time_s / max(1, s.polls) * 1e3 for s in stale if not s.pause_ms)
    return Result(loads, stale, notes, wrk_version, impl, poll_get_ms)


def _ms(x: float) -> str:
    return fmt_ns(x * 1e6)


def render(result: Result, *, command: str, host: Machine, runtime_s: float, load: str, sizes: Sizes) -> str:
    one, three = result.loads
    lines = [
        "## Replicas: one PostgreSQL, one Redis, several `serve` processes",
        "",
        f"- command: `{command}` (`make bench` runs `.venv/bin/python -m bench.run`; `python -m bench.replicas "
        "--write BENCHMARKS.md` runs this section alone)",
        f"- date: `{host.date}`; section runtime {runtime_s / 60:.1f} min",
        f"- machine: {host.cpus} CPUs (`nproc`), {host.cpu_model}, Python {host.python}; 1-min load average "
        f"{load} (start → end of the section)",
        "",
        f"### Cached GET throughput, 1 vs 3 replicas ({result.impl} ×{WORKERS} workers each; no goal: "
        f"{host.cpus} cores)",
        "",
        "| replicas loaded | wrk | req/s, sum over replicas (range over rounds) | p50 (median over replicas) / p99 "
        "(worst replica) | ÷ 1 replica | non-2xx / socket errors |",
        "|---|---|---|---|---|---|",
    ]
    for ld in (one, three):
        sums = ld.sums()
        rng = f" ({min(sums) / 1e3:,.1f}k–{max(sums) / 1e3:,.1f}k)" if len(sums) > 1 else ""
        split = " + ".join(str(c) for c in _split(TOTAL_CONNS, ld.replicas))
        wrk = f"{ld.replicas} × `wrk -t{THREADS}`, {split} connections"
        ratios = [b / a for a, b in zip(one.sums(), ld.sums(), strict=True)]
        non2xx, sock = ld.errors()
        err = f"{non2xx} / {sock}" if not (non2xx or sock) else f"**{non2xx} / {sock}**"
        lines.append(f"| {ld.replicas} | {wrk} | {ld.rps:,.0f}{rng} | {_ms(ld.p50)} / {_ms(ld.p99)} "
                     f"| {statistics.median(ratios):.2f}× | {err} |")
    lines += [
        "",
        f"### Staleness across replicas: write on A, poll B ({sizes.writes} writes each)",
        "",
        f"| invalidation | replicas | B polled by {POLL_CONNS} threads | GETs on B | p50 | p99 | max "
        "| first connection to see it: p50 / p99 | goal | met? | writes not seen within 5 s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in result.stale:
        pubsub = s.mode == "with pub/sub"
        goal = f"p99 ≤ {STALE_GOAL_MS:g} ms" if pubsub else \
            f"bounded by the {POLL_INTERVAL_MS:g} ms poll (p99 ≤ {POLL_INTERVAL_MS + 20:g} ms: its query, our GET)"
        met = s.p(0.99) <= (STALE_GOAL_MS if pubsub else POLL_INTERVAL_MS + 20)
        how = ("Redis pub/sub (`--redis-url`; the revision poll still runs)" if pubsub
               else "revision poll only (no `--redis-url`)")
        reps = f"3 (A, B, C) ×{WORKERS} workers" if pubsub else f"2 (A, B) ×{WORKERS} workers"
        pace = "flat out (no pause)" if not s.pause_ms else f"{s.pause_ms:g} ms pause between GETs"
        rate = f"{s.polls / max(s.poll_time_s / POLL_CONNS, 1e-9):,.0f}/s"
        lines.append(f"| {how} | {reps} | {pace} | {rate} | {_ms(s.p(0.5))} | {_ms(s.p(0.99))} | {_ms(max(s.all_ms))} "
                     f"| {_ms(s.p(0.5, True))} / {_ms(s.p(0.99, True))} | {goal} "
                     f"| {'yes' if met else '**no**'} | {s.timeouts} |")
    lines += ["", "How it is measured:", ""]
    lines += [
        f"- replicas: `llm-config -s <PostgreSQL URL> --key-file <key> [--redis-url {REDIS_URL}] serve --workers "
        f"{WORKERS} --server-impl {result.impl} --cache-ttl {CACHE_TTL} --rate-limit-key 0 --rate-limit-ip 0`, "
        "each on a free port of 127.0.0.1, in its own process group (stopped with SIGTERM to it); replica A "
        "starts first with `--bootstrap-admin-key-file` (it migrates the schema and writes the admin key), the "
        "others after it answers `/health`; all share one private PostgreSQL schema (`test` on 127.0.0.1:5432, "
        "dropped at the end) and, with `--redis-url`, the local Redis (`--cache-l2 auto`: L2 on in front of "
        "PostgreSQL; records and channel under the store's own prefix)",
        f"- rate limits off (`0`): with `--redis-url` the per-key bucket is shared through Redis, one Lua call "
        f"per request, which would add a Redis round trip to every GET; `--cache-ttl {CACHE_TTL}`: no L1 record "
        "expires during the run, so what makes a replica fresh is invalidation alone (pub/sub or the poll), and "
        "every measured GET of the throughput rows is an L1 hit",
        f"- throughput: {sizes.keys:,} keys `ns{{i%10}}/key{{i}}` (~200-byte JSON values) PUT on A, then GET "
        f"once on every replica; a {sizes.warmup_s} s wrk warm-up per replica at {TOTAL_CONNS} connections (fills "
        f"both workers' L1); then {sizes.reps} round(s) of {sizes.duration_s} s per configuration, alternating "
        f"(1, 3, 3, 1, …): `wrk -t{THREADS} -c<n> -d{sizes.duration_s}s --latency` with `bench.vs_etcd`'s GET "
        f"script (random key per request, an admin API key), {TOTAL_CONNS} connections in all split over the "
        "loaded replicas, one wrk per replica started together; req/s summed over the replicas, medians over "
        "the rounds; the idle replicas of the 1-replica rounds still run their pollers and listeners",
        f"- staleness: one key `{STALE_NS}/{STALE_KEY}` in production, cached on B first; per write a random "
        f"pause of 0-{POLL_INTERVAL_MS:g} ms, then `PUT` on A over a keep-alive connection — the clock "
        "(`time.perf_counter`) read when A's answer has arrived is the acknowledgement — then `GET`s on B as "
        f"fast as possible over {POLL_CONNS} keep-alive connections, each polled by a thread of its own until it "
        "serves a version ≥ the written one (the connections land on B's workers as the kernel hands them out); "
        "the staleness is the last connection's first fresh answer minus the acknowledgement (the first "
        f"connection's in the next column); a poll GET took {result.poll_get_ms:.2f} ms on average (4 at once; "
        "the first GET after an invalidation is a miss: L2 or PostgreSQL), the resolution of these figures; "
        "percentiles nearest-rank over the writes",
        f"- each mode twice: B polled flat out (its workers' event loops then do little but answer the polling) "
        f"and with a {PACED_MS:g} ms pause between a thread's GETs (B busy but not saturated), to show whether a "
        "saturated worker delays its own background threads (the Redis listener, the revision poller: they wait "
        "for the GIL behind the event loop after each I/O step); 'GETs on B' is the polling rate while a write "
        "was pending",
        "- with pub/sub: the same three replicas as the throughput rows (B polled, C idle); pub/sub dropped: "
        "two fresh replicas without `--redis-url` on the same schema, after the first three stopped — B learns of "
        f"A's write only from its own poll of the store's change token (every {POLL_INTERVAL_MS:g} ms, a "
        "background thread per worker)",
        f"- load generator: {result.wrk_version}; wrk, the replicas ({three.replicas} × {WORKERS} workers), "
        f"PostgreSQL and Redis share the machine's {host.cpus} cores",
        *(f"- {n}" for n in result.notes),
    ]
    return "\n".join(lines) + "\n"


def run_section(*, quick: bool = False, command: str | None = None, parent: str | None = None,
                impl: str | None = None) -> str:
    from llm_config.settings import ServeOptions

    sizes = Sizes.quick() if quick else Sizes()
    impl = impl or ServeOptions().server_impl
    command = command or command_line("bench.replicas", ["--quick"] if quick else [])
    started = time.perf_counter()
    host = machine()
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="llm-config-bench-replicas-", dir=parent) as tmp:
        result = bench_replicas(Path(tmp), sizes, impl)
    return render(result, command=command, host=host, runtime_s=time.perf_counter() - started,
                  load=f"{load_start} → {load_average()}", sizes=sizes)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds: servers stop, the schema is dropped


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 200 keys, 3 s runs, 1 round, 40 writes")
    parser.add_argument("--server-impl", choices=("granian", "uvicorn"), default=None,
                        help="the replicas' HTTP server (default: `serve`'s default)")
    parser.add_argument("--write", type=Path, default=None, metavar="FILE",
                        help="also rewrite the replicas section of FILE (e.g. BENCHMARKS.md)")
    parser.add_argument("--dir", default=None, help="parent of the temporary directory (default: $TMPDIR)")
    args = parser.parse_args(args_list)
    signal.signal(signal.SIGTERM, _terminate)
    section = run_section(quick=args.quick, command=command_line("bench.replicas", args_list), parent=args.dir,
                          impl=args.server_impl)
    print(section)
    if args.write is not None:
        write_section(args.write, section, begin=BEGIN, end=END)
        progress(f"wrote the replicas section of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
