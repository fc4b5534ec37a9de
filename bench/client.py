"""The remote SDK (`llm_config.Client`) next to the embedded library and a raw HTTP client.

One `llm-config serve` process (uvicorn, 1 worker, SQLite, rate limits off) in its own process group;
the clients run in this process. In one run:

1. **cached `get`**: `Client.get` of a key it has read (its namespace watched, so the hit is a dict
   lookup and a freshness check) against the embedded `ConfigManager.get` L1 hit (SQLite store,
   `cache_ttl=3600`) and `dict.get` of the same tuple key, in alternating rounds. Goal (issue 10): the
   client's hit within 1.5× the manager's.
2. **change propagation**: a second client (`watch=False`) writes N values through the API one after the
   other; the watching client's `on_change` callback records when it runs. Reported: p50/p99 from the
   writer's acknowledgement (its `set` returned) to the callback — which runs after the watch thread has
   refetched the entry, so it includes that GET — and from the start of the write.
3. **uncached `get`**: `Client.get` that never caches (`max_entries=0`, `watch=False`) against a raw
   `httpx.Client.get` of the same URL with the same key (bytes only, no parsing), and the ETag
   revalidation (`ttl=0`: every read is a conditional GET answered 304), in alternating rounds.

`python -m bench.client [--quick] [--write BENCHMARKS.md]` prints the Markdown section (progress on stderr);
with `--write` it replaces the text between `<!-- client:begin -->` and `<!-- client:end -->`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from bench.harness import Timing, fmt_ns, fmt_rate, interleave, progress, ratio
from bench.report import command_line, emit_section, load_average, machine
from bench.rest import _free_port, _server_env, _start, _wait_ready
from bench.vs_etcd import _admin_key
from llm_config import Client, ConfigManager, Entry, Environment, generate_key, wire

__all__ = ["BEGIN", "END", "main", "run_section"]

BEGIN: Final = "<!-- client:begin -->"
END: Final = "<!-- client:end -->"
NS, KEY = "bench/client", "openai.model"
PROD: Final = Environment.PRODUCTION
HIT_GOAL: Final = 1.5


@dataclass(frozen=True, slots=True)
class Sizes:
    rounds: int = 7
    hit_n: int = 200_000
    dict_n: int = 1_000_000
    writes: int = 300
    rtt_n: int = 300

    @classmethod
    def quick(cls) -> Sizes:
        return cls(rounds=3, hit_n=20_000, dict_n=100_000, writes=60, rtt_n=60)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _loop(fn: Callable[[], object]) -> Callable[[int], object]:
    def run(n: int) -> None:
        for _ in range(n):
            fn()
    return run


def _serve(stack: ExitStack, work: Path) -> tuple[str, str]:
    key_file = work / "master.key"
    key_file.write_text(generate_key())
    key_file.chmod(0o600)
    store = work / "store"
    env = _server_env(work, {})
    cli = str(Path(sys.executable).parent / "llm-config")
    token = _admin_key(cli, store, key_file, env)
    port = _free_port()
    server = _start(stack, [cli, "-s", str(store), "--key-file", str(key_file), "serve", "--port", str(port),
                            "--rate-limit-key", "0", "--rate-limit-ip", "0"], port, env, work / "serve.log",
                    "llm-config serve (uvicorn, 1 worker)")
    _wait_ready(server)
    return f"http://127.0.0.1:{port}", token


def bench_hits(url: str, token: str, work: Path, sizes: Sizes) -> list[str]:
    progress("client 1: cached get vs manager L1 get vs dict.get")
    store = str(work / "embedded")
    with ConfigManager.open(store, encryption_key=generate_key(), cache_ttl=3600) as mgr, \
            Client(url, api_key=token) as client:
        mgr.set(NS, KEY, "gpt-4o", env="production")
        client.set(NS, KEY, "gpt-4o", env="production")
        mgr.get(NS, KEY, env="production")
        client.get(NS, KEY, env="production")
        deadline = time.monotonic() + 10
        while client.status().watching != (NS,):
            if time.monotonic() > deadline:
                raise RuntimeError("the client's watch stream did not connect")
            time.sleep(0.01)
        mget, cget = mgr.get, client.get
        table = {(NS, KEY, PROD, None, False, False): 1}
        tkey = (NS, KEY, "production", None, False, False)

        def run_client(n: int) -> None:
            for _ in range(n):
                cget(NS, KEY, env="production")

        def run_manager(n: int) -> None:
            for _ in range(n):
                mget(NS, KEY, env="production")

        def run_dict(n: int) -> None:
            get = table.get
            for _ in range(n):
                get(tkey)

        ours, manager, floor = interleave([(run_client, sizes.hit_n), (run_manager, sizes.hit_n),
                                           (run_dict, sizes.dict_n)], sizes.rounds)
        requests = client.status()
        assert requests.cached_entries >= 1
        vs_manager = ratio(ours, manager)
    return [
        _row("1a", "`Client.get`, cached (watched namespace)", ours, "`ConfigManager.get` L1 hit", manager,
             vs_manager, f"≤ {HIT_GOAL}×", vs_manager <= HIT_GOAL),
        _row("1b", "`Client.get`, cached", ours, "`dict.get` of the tuple key", floor, ratio(ours, floor)),
    ]


def _row(number: str, name: str, ours: Timing, base_name: str, base: Timing, factor: float, goal: str = "—",
         met: bool | None = None) -> str:
    shown = "—" if met is None else "yes" if met else "**no**"
    return (f"| {number} | {name} | {fmt_ns(ours.per_op_ns)} | {fmt_rate(ours.ops_per_s)} | {base_name} | "
            f"{fmt_ns(base.per_op_ns)} | {factor:.2f}× | {goal} | {shown} |")


def bench_propagation(url: str, token: str, sizes: Sizes) -> tuple[list[str], str]:
    progress(f"client 2: change propagation over {sizes.writes} writes")
    arrived: dict[int, float] = {}
    done = threading.Event()
    want: list[int] = [0]

    def on_change(change: wire.WatchChange, entry: Entry | None) -> None:
        arrived[change.revision] = time.perf_counter()
        if change.revision == want[0]:
            done.set()

    acked: list[tuple[float, float, int]] = []
    with Client(url, api_key=token) as reader, Client(url, api_key=token, watch=False) as writer:
        reader.get(NS, KEY, env="production")
        reader.on_change(NS, KEY, on_change)
        deadline = time.monotonic() + 10
        while reader.status().watching != (NS,):
            if time.monotonic() > deadline:
                raise RuntimeError("the client's watch stream did not connect")
            time.sleep(0.01)
        for n in range(sizes.writes):
            done.clear()
            started = time.perf_counter()
            entry = writer.set(NS, KEY, f"v{n}", env="production")
            acked.append((started, time.perf_counter(), entry.revision))
            want[0] = entry.revision
            if entry.revision not in arrived and not done.wait(10):
                raise RuntimeError(f"the change {entry.revision} never reached the callback")
        cached = reader.get(NS, KEY, env="production").value
        assert cached == f"v{sizes.writes - 1}", cached
    from_ack = [(arrived[rev] - ack) * 1e9 for _, ack, rev in acked]
    from_send = [(arrived[rev] - start) * 1e9 for start, _, rev in acked]
    write = [(ack - start) * 1e9 for start, ack, _ in acked]
    early = sum(1 for v in from_ack if v < 0)
    rows = [
        f"| 2a | write acknowledged → `on_change` callback | {fmt_ns(statistics.median(from_ack))} | "
        f"p99 {fmt_ns(_percentile(from_ack, 0.99))} | the write itself (`Client.set`, durable) | "
        f"{fmt_ns(statistics.median(write))} (p99 {fmt_ns(_percentile(write, 0.99))}) | — | — | — |",
        f"| 2b | write sent → `on_change` callback | {fmt_ns(statistics.median(from_send))} | "
        f"p99 {fmt_ns(_percentile(from_send, 0.99))} | — | — | — | — | — |",
    ]
    note = (f"propagation: {sizes.writes} writes one after another; the callback runs after the watch thread "
            f"refetched the entry (one GET), so a read in the callback is a cache hit; {early} callbacks ran "
            "before the writer had its acknowledgement (negative times count as such in the median).")
    return rows, note


def bench_round_trip(url: str, token: str, sizes: Sizes) -> list[str]:
    progress("client 3: uncached get vs raw httpx GET")
    path = f"/api/v1/configs/{NS}/-/{KEY}"
    with Client(url, api_key=token, watch=False, max_entries=0) as uncached, \
            Client(url, api_key=token, watch=False, ttl=0) as revalidating, \
            httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as raw:
        revalidating.get(NS, KEY, env="production")

        def run_raw(n: int) -> None:
            for _ in range(n):
                response = raw.get(path, params={"env": "production"})
                if response.status_code != 200:
                    raise RuntimeError(f"raw GET answered {response.status_code}")
                response.read()

        ours, conditional, floor = interleave([
            (_loop(lambda: uncached.get(NS, KEY, env="production")), sizes.rtt_n),
            (_loop(lambda: revalidating.get(NS, KEY, env="production")), sizes.rtt_n),
            (run_raw, sizes.rtt_n),
        ], sizes.rounds, warmup=20)
    return [
        _row("3a", "`Client.get`, not cached (GET, parse, `Entry`)", ours, "raw `httpx.Client.get`, same URL",
             floor, ratio(ours, floor)),
        _row("3b", "`Client.get`, revalidated (`If-None-Match` → 304)", conditional,
             "raw `httpx.Client.get`, same URL", floor, ratio(conditional, floor)),
    ]


def run_section(sizes: Sizes, argv: list[str]) -> str:
    host = machine()
    load_start = load_average()
    started = time.monotonic()
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-client-") as tmp:
        work = Path(tmp)
        url, token = _serve(stack, work)
        rows = bench_hits(url, token, work, sizes)
        propagation, note = bench_propagation(url, token, sizes)
        rows += propagation
        rows += bench_round_trip(url, token, sizes)
    lines = [
        "## Remote SDK (`llm_config.Client`)",
        "",
        f"- command: `{command_line('bench.client', argv)}`",
        f"- date: `{host.date}`; runtime {time.monotonic() - started:.0f} s; {host.cpus} CPUs, {host.cpu_model}, "
        f"Python {host.python}; 1-min load average {load_start} → {load_average()}",
        "- server: `llm-config serve` (uvicorn, 1 worker, SQLite, rate limits off) in its own process; the "
        "clients in the benchmark's process, on loopback",
        f"- {note}",
        "",
        "| # | measurement | ours (median) | ours rate / p99 | baseline | baseline | ratio | goal | met? |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.client", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test in seconds")
    parser.add_argument("--write", type=Path, default=None, metavar="FILE",
                        help="replace the client section of FILE (e.g. BENCHMARKS.md)")
    args = parser.parse_args(args_list)
    section = run_section(Sizes.quick() if args.quick else Sizes(), args_list)
    emit_section(section, args.write, begin=BEGIN, end=END)


if __name__ == "__main__":
    main()
