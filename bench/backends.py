"""The three storage backends side by side in one run: SQLite, PostgreSQL and MariaDB, each next to its own
driver and next to etcd.

Per backend, on fresh databases (`bench.backends_sql`; dropped at the end, on error too):

1. `SQLStorage.get_current` of one stored row with the row key set (MAC and freshness checked) against a raw
   driver SELECT of the same row by primary key on a plain autocommit connection — median and p99 of each
   call, in alternating rounds; the ratio is the median of the per-round ratios of medians (goal ≤ 2×).
2. a durable SET through `SQLStorage.apply([one WriteRequest], audit_key)` — a new version of one key — on
   one thread against a raw `BEGIN` / `INSERT` / `COMMIT` of a version-sized row into a scratch table
   (rate ratio, goal ≥ 0.5×); then 16 threads writing at once (group commit: writes/s, and writes per
   commit from the storage's `batched` / `batches` counters) against 16 raw connections inserting at once.
3. an authenticated PUT over HTTP (`llm-config serve -s <target>`, an admin API key) at 16 and 64 wrk
   connections against etcd's JSON gateway `POST /v3/kv/put`, with `bench.vs_etcd`'s wrk settings, Lua
   scripts and alternating rounds (ours, etcd, ours, …; a fresh one-member etcd per backend); goal ≥ 0.5×.

For context, what one fsync costs on this machine (`pg_test_fsync -s 1`, its fdatasync line), at the start and
at the end of the section (the disk is shared: it changes).

`python -m bench.backends [--quick]` prints the Markdown section (progress on stderr); `run_section`
renders it for `bench.run`, between `BEGIN` and `END` in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import http.client
import io
import json
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final

from bench.backends_sql import AUDIT_KEY, BACKENDS, ROW_KEY, RawDriver, fresh_database, server_facts, set_request
from bench.harness import fmt_ns, fmt_rate, progress
from bench.report import Machine, command_line, load_average, machine, write_section
from bench.rest import RATE_LIMIT, Server, _free_port, _server_env, _start, _wait_ready, _wrk_version, ensure_wrk
from bench.vs_etcd import (
    CACHE_TTL,
    HTTP_TIMEOUT_S,
    PUT_VALUE_CHARS,
    THREADS,
    Cell,
    Run,
    _etcd_version,
    _find_etcd,
    _seed_etcd,
    _seed_ours,
    _side,
    _write_scripts,
    start_etcd,
)
from bench.vs_etcd import _wrk as wrk_run
from llm_config.models import Environment
from llm_config.storage import open_storage
from llm_config.storage.sql import SQLStorage

__all__ = ["BEGIN", "END", "bench_backends", "main", "run_section"]

BEGIN: Final = "<!-- backends:begin -->"
END: Final = "<!-- backends:end -->"

PROD: Final = Environment.PRODUCTION
CONNS: Final = (16, 64)
WRITERS: Final = 16
READ_GOAL: Final = 2.0
SET_GOAL: Final = 0.5
HTTP_GOAL: Final = 0.5
PG_TEST_FSYNC: Final = "/usr/lib/postgresql/15/bin/pg_test_fsync"
DRIVER: Final = {"sqlite": "`sqlite3`", "postgresql": "`psycopg`", "mysql": "`pymysql`"}
TITLE: Final = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mysql": "MariaDB"}
READ_NS, READ_KEY = "bench/read", "openai.params"
READ_VALUE: Final = {"model": "gpt-4o", "temperature": 0.2, "max_tokens": 1024}
SET_NS, SET_KEY = "bench/set", "openai.model"
CONC_NS: Final = "bench/concurrent"


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much each part does; `quick()` is the smoke-test variant (about 1.5 min instead of about 7)."""

    rounds: int = 7  # read rounds
    read_s: float = 0.25  # seconds per side per read round (calls per round calibrated from it)
    set_rounds: int = 5
    set_s: float = 0.5  # seconds per side per single-thread write round
    conc_rounds: int = 3
    conc_s: float = 2.0  # seconds per side per 16-thread write round
    seed_keys: int = 1_000  # keys in each storage-level store besides the measured ones
    http_keys: int = 1_000
    http_duration_s: int = 8
    http_reps: int = 3

    @classmethod
    def quick(cls) -> Sizes:
        return cls(rounds=3, read_s=0.08, set_rounds=3, set_s=0.15, conc_rounds=1, conc_s=1.0, seed_keys=200,
                   http_keys=200, http_duration_s=3, http_reps=1)


# ------------------------------------------------------------------ timing


@dataclass(slots=True)
class Samples:
    """Nanoseconds of each call, by round."""

    rounds: list[list[int]] = field(default_factory=list)

    def flat(self) -> list[int]:
        return sorted(x for r in self.rounds for x in r)

    @property
    def median_ns(self) -> float:
        return float(statistics.median(self.flat()))

    @property
    def p99_ns(self) -> float:
        s = self.flat()
        return float(s[min(len(s) - 1, int(len(s) * 0.99))])

    def round_medians(self) -> list[float]:
        return [float(statistics.median(r)) for r in self.rounds]

    def round_rates(self) -> list[float]:
        return [len(r) * 1e9 / sum(r) for r in self.rounds]

    @property
    def rate(self) -> float:
        return statistics.median(self.round_rates())

    def lat(self) -> str:
        return f"median {fmt_ns(self.median_ns)}, p99 {fmt_ns(self.p99_ns)}"


def _calibrate(op: Callable[[], object], seconds: float, lo: int, hi: int) -> int:
    for _ in range(3):
        op()
    probe = 10
    start = time.perf_counter()
    for _ in range(probe):
        op()
    per_op = (time.perf_counter() - start) / probe
    return max(lo, min(hi, int(seconds / max(per_op, 1e-9))))


def alternate(ops: list[Callable[[], object]], n: int, rounds: int) -> list[Samples]:
    """Each op `n` times per round, the ops in turn, every call timed; garbage collector off (as
    `bench.harness.interleave`, but keeping each call's time for the p99)."""
    out = [Samples() for _ in ops]
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    clock = time.perf_counter_ns
    try:
        for _ in range(rounds):
            for op, into in zip(ops, out, strict=True):
                times = [0] * n
                for i in range(n):
                    t0 = clock()
                    op()
                    times[i] = clock() - t0
                into.rounds.append(times)
    finally:
        if was_enabled:
            gc.enable()
    return out


def per_round_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


@dataclass(slots=True)
class Burst:
    """One round of WRITERS threads writing for a fixed time."""

    writes: int
    elapsed_s: float
    latencies: list[int]

    @property
    def rate(self) -> float:
        return self.writes / self.elapsed_s


def burst(factory: Callable[[int], Callable[[], object]], threads: int, seconds: float) -> Burst:
    """`threads` threads, each calling its own `factory(t)()` until `seconds` after they all start."""
    ops = [factory(t) for t in range(threads)]
    ready = threading.Barrier(threads + 1)
    counts = [0] * threads
    lats: list[list[int]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    deadline = [0.0]

    def work(t: int) -> None:
        op, into, clock = ops[t], lats[t], time.perf_counter_ns
        ready.wait()
        end = deadline[0]
        try:
            while time.perf_counter() < end:
                t0 = clock()
                op()
                into.append(clock() - t0)
                counts[t] += 1
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,), name=f"bench-writer-{t}") for t in range(threads)]
    for w in workers:
        w.start()
    deadline[0] = time.perf_counter() + seconds
    start = time.perf_counter()
    ready.wait()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} writer thread(s) failed: {errors[0]!r}") from errors[0]
    return Burst(sum(counts), elapsed, sorted(x for lat in lats for x in lat))


def _p(values: list[int], q: float) -> float:
    return float(values[min(len(values) - 1, int(len(values) * q))]) if values else float("nan")


# ------------------------------------------------------------------ rows


@dataclass(slots=True)
class BRow:
    number: str
    backend: str
    name: str
    ours: str
    baseline_name: str
    baseline: str
    ratio: str
    goal: str = "—"
    met: bool | None = None
    when: str = ""

    def __post_init__(self) -> None:
        self.when = self.when or time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


def _met(met: bool | None) -> str:
    return "—" if met is None else "yes" if met else "**no**"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


# ------------------------------------------------------------------ 0: fsync


_FDATASYNC_RE: Final = re.compile(r"^\s*fdatasync\s+(?P<ops>[\d.]+) ops/sec\s+(?P<us>\d+) usecs/op", re.MULTILINE)


def fsync_floor(work: Path, number: str, moment: str) -> tuple[BRow | None, str, list[str]]:
    """`pg_test_fsync -s 1` in `work` (the disk of the stores): its fdatasync row of one 8 kB write, the
    argv it ran (or why it did not), and the lines of that block of its output."""
    exe = PG_TEST_FSYNC if Path(PG_TEST_FSYNC).exists() else shutil.which("pg_test_fsync")
    if exe is None:
        return None, "pg_test_fsync not found (PostgreSQL's server package)", []
    argv = [exe, "-s", "1", "-f", str(work / "pg_test_fsync.out")]
    progress(f"{number}: {' '.join(argv)}")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=180)
    block = proc.stdout.split("Compare file sync methods using one 8kB write:", 1)[-1].split("\n\n", 1)[0]
    match = _FDATASYNC_RE.search(block)
    if proc.returncode != 0 or match is None:
        return None, f"`{' '.join(argv)}` failed (exit {proc.returncode}): {proc.stderr.strip()[:200]}", []
    lines = [ln.rstrip() for ln in block.strip("\n").splitlines() if ln.strip() and not ln.startswith("(")]
    ops, us = float(match["ops"]), int(match["us"])
    shown = " ".join(["pg_test_fsync", *argv[1:3], "-f", "<temp dir>/pg_test_fsync.out"])
    progress(f"  fdatasync: {ops:,.0f}/s ({us} µs)")
    row = BRow(number, "(the machine)", f"fsync floor, {moment}: `{shown}`, fdatasync of one 8 kB write "
               f"(`{' '.join(match.group(0).split())}`)", f"{fmt_rate(ops)} ({fmt_ns(us * 1e3)} per fdatasync)",
               "—", "—", "—")
    return row, " ".join(argv), lines


# ------------------------------------------------------------------ 1-2: storage level


def _open(target: str) -> SQLStorage:
    storage = open_storage(target, create=True)
    assert isinstance(storage, SQLStorage)
    storage.set_row_key(ROW_KEY)
    return storage


def _seed(storage: SQLStorage, keys: int) -> None:
    batch = 100
    for start in range(0, keys, batch):
        storage.apply([set_request(f"bench/seed{i % 10}", f"key{i}", {"i": i, "model": "gpt-4o"})
                       for i in range(start, min(keys, start + batch))], AUDIT_KEY)
    storage.apply([set_request(READ_NS, READ_KEY, READ_VALUE)], AUDIT_KEY)
    storage.apply([set_request(SET_NS, SET_KEY, "gpt-4o")], AUDIT_KEY)


def bench_read(backend: str, storage: SQLStorage, raw: RawDriver, sizes: Sizes, profiles: list[str]) -> BRow:
    progress(f"1 {backend}: get_current vs raw SELECT by primary key")
    entry = storage.get_current(READ_NS, READ_KEY, PROD)
    assert entry is not None
    row = raw.select_entry(entry.id)
    assert row is not None and row[2] == READ_KEY and row[-1], "the raw SELECT reads the same row, its MAC too"
    get_current, select, entry_id = storage.get_current, raw.select_entry, entry.id

    def ours() -> object:
        return get_current(READ_NS, READ_KEY, PROD)

    def base() -> object:
        return select(entry_id)

    n = _calibrate(ours, sizes.read_s, 200, 50_000)
    for op in (ours, base):  # warm-up: prepared statements, pool, caches
        for _ in range(max(20, n // 10)):
            op()
    t_ours, t_raw = alternate([ours, base], n, sizes.rounds)
    ratio = per_round_ratio(t_ours.round_medians(), t_raw.round_medians())
    out = BRow("1", backend, "`get_current` of one row, row key set (MAC and freshness checked)",
               f"{t_ours.lat()} ({fmt_rate(1e9 / t_ours.median_ns)})",
               f"raw {DRIVER[backend]} SELECT of the same row by primary key (19 columns), reused cursor",
               t_raw.lat(), f"{ratio:.2f}× time", "≤ 2× raw", ratio <= READ_GOAL)
    progress(f"  ours {t_ours.lat()} | raw {t_raw.lat()} | {ratio:.2f}× ({n} calls × {sizes.rounds} rounds)")
    if not out.met:
        def run(k: int) -> None:
            for _ in range(k):
                get_current(READ_NS, READ_KEY, PROD)
        profiles.append(_profile_statements(run, n, f"{backend}: get_current, row key set"))
    return out


_EXECUTES: Final = (("psycopg", "execute"), ("pymysql", "execute"), ("sqlite3.Cursor", "execute"))


def _profile_statements(run: Callable[[int], object], n: int, title: str, top: int = 16) -> str:
    """As `bench.harness.profile` (cProfile of `run(n)`, top functions by own time), plus how many
    statements the driver ran per call (its outermost `execute` calls)."""
    profiler = cProfile.Profile()
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        profiler.enable()
        run(n)
        profiler.disable()
    finally:
        if was_enabled:
            gc.enable()
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    executes = 0
    for (filename, _line, func), (_cc, ncalls, *_rest) in stats.stats.items():  # type: ignore[attr-defined]
        where = filename if filename != "~" else func
        if any(mod in where for mod, _ in _EXECUTES) and (func == "execute" or "'execute'" in func):
            executes = max(executes, ncalls)  # the outermost driver execute (wrappers call inner ones)
    stats.sort_stats("tottime").print_stats(top)
    body = "\n".join(line for line in buffer.getvalue().splitlines() if line.strip())
    return (f"### cProfile: {title} ({n} calls, sorted by own time)\n{body}\n"
            f"driver `execute` calls per call: {executes / n:.1f}\n")


def _requests(count: int, start: int) -> Iterator[Any]:
    return iter([set_request(SET_NS, SET_KEY, f"gpt-4o-{start + i}") for i in range(count)])


def bench_set(backend: str, storage: SQLStorage, raw: RawDriver, sizes: Sizes, profiles: list[str]) -> BRow:
    progress(f"2a {backend}: durable apply([SET]) vs raw BEGIN + INSERT + COMMIT, one thread")
    apply = storage.apply
    counter = iter(range(1, 1 << 62))
    insert = raw.insert_commit

    def base() -> object:
        insert("single", next(counter))
        return None

    probe = _requests(13, 0)
    n = _calibrate(lambda: apply([next(probe)], AUDIT_KEY), sizes.set_s, 10, 2_000)
    reqs = _requests(n * sizes.set_rounds + max(5, n // 10), 100)  # built before the clock runs

    def ours() -> object:
        return apply([next(reqs)], AUDIT_KEY)

    for op in (ours, base):
        for _ in range(max(5, n // 10)):
            op()
    t_ours, t_raw = alternate([ours, base], n, sizes.set_rounds)
    ratio = per_round_ratio(t_ours.round_rates(), t_raw.round_rates())
    out = BRow("2a", backend, "durable `apply([SET])`, 1 thread: a new version of one key (version row, current "
               "row, audit event with its HMAC, revision counter; one transaction)",
               f"{fmt_rate(t_ours.rate)}; {t_ours.lat()}",
               f"raw {DRIVER[backend]} BEGIN + INSERT + COMMIT of a version-sized row into a scratch table, "
               "1 connection", f"{fmt_rate(t_raw.rate)}; {t_raw.lat()}", f"{ratio:.2f}× raw rate",
               "≥ 0.5× raw rate", ratio >= SET_GOAL)
    progress(f"  ours {fmt_rate(t_ours.rate)} | raw {fmt_rate(t_raw.rate)} | {ratio:.2f}× ({n} × "
             f"{sizes.set_rounds} rounds)")
    if not out.met:
        more = _requests(n + 5, 10_000_000)

        def run(k: int) -> None:
            for _ in range(k):
                apply([next(more)], AUDIT_KEY)
        profiles.append(_profile_statements(run, n, f"{backend}: durable apply([SET]), 1 thread"))
    return out


def _count_batches(storage: SQLStorage, into: Counter[int]) -> bool:
    """Count the size of every group commit (a shim over the private `_run_batch`, one dict update per batch;
    False, and nothing counted, if that method is gone)."""
    run_batch = getattr(storage, "_run_batch", None)
    if not callable(run_batch):
        return False

    def counted(batch: list[Any]) -> Any:
        into[len(batch)] += 1
        return run_batch(batch)

    setattr(storage, "_run_batch", counted)  # noqa: B010  (an instance attribute over the method)
    return True


def bench_concurrent(backend: str, storage: SQLStorage, target: str, work: Path, sizes: Sizes) -> BRow:
    progress(f"2b {backend}: {WRITERS} threads: apply([SET]) (group commit) vs raw INSERT + COMMIT on "
             f"{WRITERS} connections")
    apply = storage.apply
    versions = [0] * WRITERS

    def ours_factory(t: int) -> Callable[[], object]:
        key = f"k{t}"

        def op() -> object:
            versions[t] += 1
            return apply([set_request(CONC_NS, key, f"gpt-4o-{versions[t]}")], AUDIT_KEY)
        return op

    drivers = [RawDriver(backend, target, work) for _ in range(WRITERS)]
    try:
        seqs = [iter(range(1, 1 << 62)) for _ in range(WRITERS)]

        def raw_factory(t: int) -> Callable[[], object]:
            insert, seq, owner = drivers[t].insert_commit, seqs[t], f"writer-{t}"
            return lambda: insert(owner, next(seq))

        for t in range(WRITERS):  # warm-up: every key exists, every connection has written once
            ours_factory(t)()
            raw_factory(t)()
        ours_runs: list[Burst] = []
        raw_runs: list[Burst] = []
        one_runs: list[Burst] = []
        seen: Counter[int] = Counter()
        counting = _count_batches(storage, seen)
        batches0, batched0 = storage.batches, storage.batched
        for r in range(sizes.conc_rounds):
            b0, n0 = storage.batches, storage.batched
            ours_runs.append(burst(ours_factory, WRITERS, sizes.conc_s))
            per = (storage.batched - n0) / max(1, storage.batches - b0)
            raw_runs.append(burst(raw_factory, WRITERS, sizes.conc_s))
            one_runs.append(burst(raw_factory, 1, sizes.conc_s))
            progress(f"  round {r + 1}: ours {ours_runs[-1].rate:,.0f} writes/s ({per:.1f} per commit) | "
                     f"raw {raw_runs[-1].rate:,.0f}/s on {WRITERS} connections, {one_runs[-1].rate:,.0f}/s on 1")
        batches, batched = storage.batches - batches0, storage.batched - batched0
    finally:
        if counting:
            delattr(storage, "_run_batch")
        for d in drivers:
            d.close()
    ours_rate = statistics.median(b.rate for b in ours_runs)
    raw_rate = statistics.median(b.rate for b in raw_runs)
    ratio = per_round_ratio([b.rate for b in ours_runs], [b.rate for b in raw_runs])
    ratio_one = per_round_ratio([b.rate for b in ours_runs], [b.rate for b in one_runs])
    one_rate = statistics.median(b.rate for b in one_runs)
    lat = sorted(x for b in ours_runs for x in b.latencies)
    raw_lat = sorted(x for b in raw_runs for x in b.latencies)
    per_commit = batched / max(1, batches)
    common = ", ".join(f"{size}×{count:,}" for size, count in seen.most_common(4))
    shape = f"; commonest batch sizes (writes × commits): {common}" if seen else ""
    return BRow("2b", backend, f"durable `apply([SET])`, {WRITERS} threads at once (a key each): group commit",
                f"{fmt_rate(ours_rate)}; {per_commit:.1f} writes per commit ({batched:,} writes in {batches:,} "
                f"commits{shape}); median {fmt_ns(_p(lat, 0.5))}, p99 {fmt_ns(_p(lat, 0.99))}",
                f"raw {DRIVER[backend]} BEGIN + INSERT + COMMIT, {WRITERS} threads, a connection each (and the "
                "same on 1 connection, same rounds)",
                f"{fmt_rate(raw_rate)}; median {fmt_ns(_p(raw_lat, 0.5))}, p99 {fmt_ns(_p(raw_lat, 0.99))} "
                f"(1 connection: {fmt_rate(one_rate)})",
                f"{ratio:.2f}× raw {WRITERS}-connection rate; {ratio_one:.2f}× raw 1-connection rate")


def bench_storage(backend: str, work: Path, sizes: Sizes, profiles: list[str], facts: dict[str, str]) -> list[BRow]:
    rows: list[BRow] = []
    with fresh_database(backend, "s", work) as target:
        storage = _open(target)
        raw: RawDriver | None = None
        try:
            facts[backend] = server_facts(backend, target)
            progress(f"{backend}: {facts[backend]}")
            _seed(storage, sizes.seed_keys)
            raw = RawDriver(backend, target, work)
            raw.create_scratch()
            rows.append(bench_read(backend, storage, raw, sizes, profiles))
            rows.append(bench_set(backend, storage, raw, sizes, profiles))
            rows.append(bench_concurrent(backend, storage, target, work, sizes))
        finally:
            if raw is not None:
                raw.close()
            storage.close()
    return rows


# ------------------------------------------------------------------ 3: PUT over HTTP next to etcd


def _admin_key(cli: str, target: str, key_file: Path, env: dict[str, str]) -> str:
    proc = subprocess.run([cli, "-s", target, "--key-file", str(key_file), "keys", "create", "--name",
                           "bench-admin", "--role", "admin", "--format", "json"],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"llm-config keys create failed ({proc.returncode}): {proc.stderr.strip()}")
    return str(json.loads(proc.stdout)["key"])


def _put_check(port: int, token: str) -> None:
    """One PUT answers 2xx (so wrk's error counters are about load, not a broken setup)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
    try:
        body = json.dumps({"env": "production", "value": {"value": "v" * PUT_VALUE_CHARS}}).encode()
        conn.request("PUT", "/api/v1/configs/ns0/key0", body=body,
                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if not 200 <= resp.status < 300:
            raise RuntimeError(f"PUT answered {resp.status}: {data[:300]!r}")
    finally:
        conn.close()


_TICK: Final = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and of its descendants still running (from /proc)."""
    total, todo, seen = 0.0, [pid], set()
    while todo:
        proc = todo.pop()
        if proc in seen:
            continue
        seen.add(proc)
        try:
            fields = Path(f"/proc/{proc}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK
            for task in Path(f"/proc/{proc}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text(encoding="utf-8").split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


def _pid_with(arg_pair: tuple[str, str]) -> int | None:
    """The process whose command line holds these two arguments in a row (how we find our etcd)."""
    needle = b"\0" + "\0".join(arg_pair).encode() + b"\0"
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in b"\0" + (entry / "cmdline").read_bytes():
                    return int(entry.name)
            except OSError:
                continue
    return None


@dataclass(slots=True)
class HttpCell:
    """One PUT row: wrk's rounds (vs_etcd's Cell) and each side's CPU time per request in every round."""

    cell: Cell
    ours_cpu_us: list[float] = field(default_factory=list)
    etcd_cpu_us: list[float] = field(default_factory=list)
    when: str = ""


def _timed_wrk(wrk: str, script: Path, url: str, conns: int, seconds: int, pid: int | None,
               into: list[float]) -> Run:
    before = cpu_seconds(pid) if pid else 0.0
    run = wrk_run(wrk, script, url, conns, seconds)
    if pid:
        into.append((cpu_seconds(pid) - before) / max(1.0, run.rps * seconds) * 1e6)
    return run


def bench_http(backend: str, work: Path, sizes: Sizes, wrk: str, notes: list[str], workers: int = 1) -> list[HttpCell]:
    from llm_config import generate_key

    progress(f"3 {backend}: PUT over HTTP vs etcd ({workers} worker(s))")
    home = work / f"http-{backend}-{workers}"
    home.mkdir()
    cells: list[HttpCell] = []
    with fresh_database(backend, "h", home) as target, ExitStack() as stack:
        key_file = home / "master.key"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(generate_key() + "\n")
        env = _server_env(home, {})
        cli = str(Path(sys.executable).parent / "llm-config")
        token = _admin_key(cli, target, key_file, env)
        scripts = _write_scripts(home, sizes.http_keys, token)
        port = _free_port()
        ours: Server = _start(stack, [cli, "-s", target, "--key-file", str(key_file), "serve", "--port", str(port),
                                      "--rate-limit-key", RATE_LIMIT, "--cache-ttl", str(CACHE_TTL),
                                      *(["--workers", str(workers)] if workers > 1 else [])],
                              port, env, home / "serve.log", f"llm-config serve ({backend})")
        etcd_url, why = start_etcd(stack, home, notes)
        if etcd_url is None:
            raise RuntimeError(f"etcd not available: {why}")
        _wait_ready(ours)
        _put_check(port, token)
        started = time.monotonic()
        _seed_ours(port, token, sizes.http_keys)
        progress(f"  ours seeded: {sizes.http_keys:,} PUTs and GETs in {time.monotonic() - started:.1f} s")
        _seed_etcd(int(etcd_url.rsplit(":", 1)[1]), sizes.http_keys)
        ours_url = f"http://127.0.0.1:{port}"
        etcd_pid = _pid_with(("--data-dir", str(home / "etcd")))
        for conns in CONNS:
            hc = HttpCell(Cell("put", conns))
            cell = hc.cell
            for rep in range(1, sizes.http_reps + 1):
                a = _timed_wrk(wrk, scripts[("ours", "put")], ours_url, conns, sizes.http_duration_s,
                               ours.proc.pid, hc.ours_cpu_us)
                cell.ours.append(a)
                b = _timed_wrk(wrk, scripts[("etcd", "put")], etcd_url, conns, sizes.http_duration_s, etcd_pid,
                               hc.etcd_cpu_us)
                cell.etcd.append(b)
                cpu = (f" | CPU per PUT ours {hc.ours_cpu_us[-1]:.0f} µs, etcd {hc.etcd_cpu_us[-1]:.0f} µs"
                       if hc.ours_cpu_us and hc.etcd_cpu_us else "")
                progress(f"  put c{conns} rep{rep} ours: {a.line()} | etcd: {b.line()} | ratio "
                         f"{cell.ratios()[-1]:.2f}{cpu}")
            hc.when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            cells.append(hc)
    return cells


def _errors(runs: list[Run]) -> str:
    non_2xx, sock = sum(r.non_2xx for r in runs), sum(r.socket_errors for r in runs)
    return f"; **{non_2xx:,} non-2xx, {sock:,} socket errors**" if non_2xx or sock else ""


def _cpu(values: list[float]) -> str:
    return f"; CPU {fmt_ns(statistics.median(values) * 1e3)} per PUT" if values else ""


def http_rows(backend: str, cells: list[HttpCell], etcd_version: str, workers: int = 1) -> list[BRow]:
    rows = []
    serve = "`llm-config serve -s <target>`" if workers == 1 else f"`llm-config serve -s <target> --workers {workers}`"
    for hc, number in zip(cells, ("3a", "3b") if workers == 1 else ("3c", "3d"), strict=False):
        cell, when = hc.cell, hc.when
        ratios = cell.ratios()
        ratio = statistics.median(ratios)
        spread = f" ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else ""
        rows.append(BRow(
            number, backend, f"authenticated PUT over HTTP, {cell.conns} connections ({serve})",
            f"{_side(cell.ours)} req/s (p50 / p99){_cpu(hc.ours_cpu_us)}{_errors(cell.ours)}",
            f"{etcd_version} `POST /v3/kv/put`, the same wrk settings, alternating rounds",
            f"{_side(cell.etcd)} req/s (p50 / p99){_cpu(hc.etcd_cpu_us)}{_errors(cell.etcd)}",
            f"{ratio:.2f}× etcd{spread}", "≥ 0.5× etcd", ratio >= HTTP_GOAL, when))
    return rows


# ------------------------------------------------------------------ the run


@dataclass(slots=True)
class Result:
    rows: list[BRow]
    notes: list[str]
    profiles: list[str]
    fsync_lines: list[str]


def bench_backends(work: Path, *, quick: bool, backends: tuple[str, ...] = BACKENDS) -> Result:
    sizes = Sizes.quick() if quick else Sizes()
    rows: list[BRow] = []
    notes: list[str] = []
    profiles: list[str] = []
    facts: dict[str, str] = {}

    fsync_lines: list[str] = []

    def fsync(number: str, moment: str) -> None:
        row, argv, lines = fsync_floor(work, number, moment)
        if row is None:
            notes.append(f"row {number} (fsync floor) not measured: {argv}")
            return
        rows.append(row)
        fsync_lines.extend([f"{moment}:", *lines])

    fsync("0a", "at the start of the section")

    for backend in backends:
        rows += bench_storage(backend, work, sizes, profiles, facts)

    extra: list[str] = []
    wrk = ensure_wrk(extra)
    wrk_version = _wrk_version(wrk)
    etcd, why = _find_etcd()
    etcd_version = _etcd_version(etcd) if etcd else "etcd"
    for backend in backends:
        if etcd is None:
            rows.append(BRow("3", backend, "authenticated PUT over HTTP", "not measured", "etcd", "—", "—",
                             "≥ 0.5× etcd"))
            continue
        rows += http_rows(backend, bench_http(backend, work, sizes, wrk, extra), etcd_version)
        if backend == "sqlite":  # several processes on one file: they queue on its write lock
            rows += http_rows(backend, bench_http(backend, work, sizes, wrk, extra, workers=2), etcd_version, 2)
    if etcd is None:
        extra.append(f"rows 3 not measured: {why}")
    fsync("0b", "at the end of the section")
    rows.sort(key=lambda r: (BACKENDS.index(r.backend) if r.backend in BACKENDS else -1, r.number))
    notes += _notes(sizes, facts, wrk_version, etcd_version, extra)
    return Result(rows, notes, profiles, fsync_lines)


def _notes(sizes: Sizes, facts: dict[str, str], wrk_version: str, etcd_version: str, extra: list[str]) -> list[str]:
    git = _git_state()
    return [
        *(f"{TITLE[b]}: {facts[b]}" for b in BACKENDS if b in facts),
        "stores: SQLite a fresh store directory in a temporary directory; PostgreSQL a fresh schema in database "
        "`test` on 127.0.0.1:5432 (`postgresql://postgres@127.0.0.1:5432/test?options=-csearch_path%3D<schema>`); "
        "MariaDB a fresh database on 127.0.0.1:3306 (`mysql://root@127.0.0.1:3306/<database>`); one for rows 1-2 "
        "and one for row 3 per backend, all dropped at the end; server, databases and this process share the "
        "machine's cores and its one disk",
        f"rows 1-2 (in-process, `open_storage(target)` + `set_row_key`): each store holds {sizes.seed_keys:,} "
        "other keys first; row 1 reads one ~60-byte JSON value, calls per round calibrated to "
        f"~{sizes.read_s:g} s, {sizes.rounds} rounds alternating ours/raw with the garbage collector off, every call "
        "timed; median and p99 over all calls, the ratio the median of the per-round ratios of medians; "
        "the raw side is one plain autocommit connection with one reused cursor (psycopg prepares a statement "
        "after 5 runs, as storage's pooled connections do); storage takes a pooled connection per read "
        "(psycopg-pool, DBUtils PooledDB) or its thread's connection (SQLite)",
        f"row 2a: {sizes.set_rounds} rounds alternating ours/raw (calls per round calibrated to ~{sizes.set_s:g} s "
        "of ours), the WriteRequests built before the clock runs; rate = calls ÷ time of a round, medians over "
        "rounds, the ratio the median of per-round rate ratios; storage's write transaction is `BEGIN` (SQLite: "
        "`BEGIN IMMEDIATE` under a file lock), `SELECT … FOR UPDATE` of the revision row (servers), the audit "
        "head, the current row, then INSERT version, UPDATE entry, INSERT audit event, UPDATE revision, COMMIT; "
        "the raw side is `BEGIN` / `INSERT` / `COMMIT` (3 statements); both durable per commit",
        f"row 2b: {WRITERS} threads of this process, each writing new versions of its own key through the one "
        f"shared `SQLStorage` for {sizes.conc_s:g} s per round ({sizes.conc_rounds} round(s), alternating with the "
        f"raw side: {WRITERS} threads, a raw connection each, inserting into the scratch table, then 1 such "
        "thread); writes per commit "
        "= the storage's `batched` ÷ `batches` over the measured rounds; the WriteRequest (JSON encode + HMAC "
        "fingerprint, a few µs) is built inside the timed call here; the GIL is shared by all writer threads; "
        "batch sizes counted by a shim over the storage's `_run_batch`; SQLite's raw side is 16 connections "
        "to one file, whose writers wait in SQLite's busy handler (it sleeps): not a floor there, its "
        "1-connection rate is",
        f"rows 3: {wrk_version}, `wrk -t{THREADS} -c{{16,64}} -d{sizes.http_duration_s}s --latency -s <script>` with "
        f"`bench.vs_etcd`'s Lua scripts: each request a PUT of `{{\"value\":\"v×{PUT_VALUE_CHARS}\"}}` to a random "
        f"one of {sizes.http_keys:,} keys seeded first (ours by PUT, etcd's by `/v3/kv/put`); {sizes.http_reps} "
        "round(s) per row, ours then etcd in each; figures are medians over the rounds, the ratio the median of "
        "per-round ratios (slowest–fastest in brackets); ours: `llm-config -s <target> --key-file <key> serve "
        f"--rate-limit-key {RATE_LIMIT} --cache-ttl {CACHE_TTL}` (default server and workers), an admin API key "
        "made with `llm-config -s <target> keys create --role admin`; a PUT is authenticated, RBAC-checked, "
        f"audited and durable; etcd: {etcd_version}, a fresh one-member etcd per backend (data dir on the same "
        "disk), JSON gateway without authentication, a PUT is a raft commit with WAL fsync; CPU per PUT = "
        "user + system CPU time of the server (ours: the `llm-config serve` process and its children; etcd: its "
        "process) during a wrk run ÷ the requests it served, median over the rounds; wrk, the server, etcd and "
        "the database share the machine's cores",
        f"source: {git}",
        *extra,
    ]


def _git_state() -> str:
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = [line.split(maxsplit=1)[-1] for line in git("status", "--porcelain", "--", "src").splitlines()
             if line.strip()]
    return f"commit {head}" + (f", with uncommitted changes in {', '.join(f'`{d}`' for d in dirty)}"
                               if dirty else ", no uncommitted changes in `src`")


def render(result: Result, *, command: str, host: Machine, runtime_s: float, load: str) -> str:
    where = f"`{command}` · {host.cpus} CPUs, {host.cpu_model}"
    lines = [
        "## Storage backends side by side: SQLite, PostgreSQL, MariaDB",
        "",
        f"- command: `{command}` (`make bench` runs `.venv/bin/python -m bench.run`)",
        f"- date: `{host.date}`; section runtime {runtime_s / 60:.1f} min",
        f"- machine: {host.cpus} CPUs (`nproc`), {host.cpu_model}, Python {host.python}, SQLite {host.sqlite}; "
        f"1-min load average {load} (start → end of the section)",
        "",
        "| # | backend | measurement | ours | baseline (floor) | baseline | ratio | goal | met? | produced by |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.number} | {TITLE.get(r.backend, r.backend)} | {_cell(r.name)} | {_cell(r.ours)} "
        f"| {_cell(r.baseline_name)} | {_cell(r.baseline)} | {r.ratio} | {r.goal} | {_met(r.met)} "
        f"| {_cell(where)} · {r.when} |"
        for r in result.rows
    ]
    lines += ["", "How it is measured:", ""]
    lines += [f"- {note}" for note in result.notes]
    if result.fsync_lines:
        lines += ["", "<details><summary>pg_test_fsync -s 1: one 8 kB write per sync method</summary>", "",
                  "```text",
                  *result.fsync_lines, "```", "", "</details>"]
    if result.profiles:
        lines += ["", "<details><summary>Profiles of the missed storage-level goals</summary>", "", "```text"]
        lines += [p.rstrip() for p in result.profiles]
        lines += ["```", "", "</details>"]
    return "\n".join(lines) + "\n"


def run_section(quick: bool = False, *, command: str | None = None, parent: str | None = None,
                backends: tuple[str, ...] = BACKENDS) -> str:
    """Measure and render the backends section of BENCHMARKS.md (for `bench.run` and `main`)."""
    if command is None:
        command = command_line("bench.backends", ["--quick"] if quick else [])
    started = time.perf_counter()
    host = machine()
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="llm-config-bench-backends-", dir=parent) as tmp:
        result = bench_backends(Path(tmp), quick=quick, backends=backends)
    return render(result, command=command, host=host, runtime_s=time.perf_counter() - started,
                  load=f"{load_start} → {load_average()}")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds: servers stop, databases are dropped


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.backends",
                                     description="SQLite, PostgreSQL and MariaDB side by side: storage reads and "
                                     "durable writes next to their raw drivers, PUT over HTTP next to etcd.")
    parser.add_argument("--quick", action="store_true", help="smoke test: fewer calls, 3 s wrk runs, 1 round")
    parser.add_argument("--backend", action="append", choices=BACKENDS, default=None,
                        help="only this backend (repeatable; default: all three)")
    parser.add_argument("--write", type=Path, default=None, metavar="FILE",
                        help="also rewrite the backends section of FILE (e.g. BENCHMARKS.md)")
    parser.add_argument("--dir", default=None, help="parent of the temporary directory (default: $TMPDIR)")
    args = parser.parse_args(args_list)
    signal.signal(signal.SIGTERM, _terminate)
    backends = tuple(b for b in BACKENDS if args.backend is None or b in args.backend)
    section = run_section(args.quick, command=command_line("bench.backends", args_list), parent=args.dir,
                          backends=backends)
    print(section)
    if args.write is not None:
        write_section(args.write, section, begin=BEGIN, end=END)
        progress(f"wrote the backends section of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
