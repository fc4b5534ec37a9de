"""Resident memory of `llm-config serve` (uvicorn, 1 and 2 workers): idle, and after N cached entries.

A local SQLite store holds N keys (10,000; 2,000 with `--quick`) in one namespace, production environment,
each a ~200-byte JSON string (a prompt), written beforehand by a `ConfigManager` (`import_` batches of 1,000),
plus a viewer API key; the master key is in `LLM_CONFIG_KEY`. For `serve --workers 1` (one process: the
parent serves) and `serve --workers 2` (a parent, multiprocessing's resource tracker and two spawned
workers), with `--rate-limit-key 0 --no-access-log` and the default L1 (TTL 5 s: an expired entry stays
held until the FIFO bound evicts it, so the TTL does not shrink the footprint), the server starts in its own
process group and is measured:

1. **idle**: VmRSS (`/proc/PID/status`) of every process of its tree — the `llm-config serve` process and
   all its descendants, found by walking the parent pids of `/proc/*/stat` — as soon as `/health/ready`
   answers 200 and every worker has logged its application startup;
2. **after N entries**: the client opens keep-alive connections until it holds one served by each worker
   (the owner of the accepted socket is found through `/proc/net/tcp` and `/proc/PID/fd`, since the kernel
   hands connections to workers as it likes), GETs every key once on each worker's connection (VmRSS is
   also read after the first tenth: the slope from there to the end is the entries' own cost, the rest of
   the growth the first requests' one-time cost), waits for the per-second cache statistics sync and reads
   VmRSS again, with each worker's L1 entry count and bytes (its own `llm_config_cache_entries` /
   `llm_config_cache_bytes{tier="l1"}` gauge file in the multiprocess directory; `/metrics` for one worker)
   as evidence of what that worker holds. From these the section extrapolates, marked as such, the tree at a
   full L1 (its 100,000-entry / 64 MiB bound as the L1 counts bytes).

RSS counts a page shared by several processes (the interpreter, libraries, copy-on-write) once in each,
so the sum of RSS overstates the tree; the proportional sum (PSS, `/proc/PID/smaps_rollup`) is given next
to it. The client runs in this process and is not counted.

`python -m bench.footprint [--quick] [--dir DIR] [--write FILE]` prints the Markdown section; `measure`
returns the rows and `run_section` renders them for `bench.run`, between `BEGIN` and `END` in BENCHMARKS.md."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prometheus_client.mmap_dict import MmapedDict

from bench.harness import progress
from bench.report import command_line, emit_section, load_average, machine
from bench.rest import START_TIMEOUT_S, Server, _free_port, _get, _log_tail, _server_env, _start
from llm_config import generate_key
from llm_config.core.manager import ConfigManager

__all__ = ["BEGIN", "END", "ENTRIES", "QUICK_ENTRIES", "ProcRow", "Round", "main", "measure", "run_section"]

BEGIN: Final = "<!-- footprint:begin -->"
END: Final = "<!-- footprint:end -->"
NS: Final = "bench/footprint"
ENV: Final = "production"
ENTRIES: Final = 10_000
QUICK_ENTRIES: Final = 2_000
BATCH: Final = 1_000
WORKERS: Final = (1, 2)
WARM_DIVISOR: Final = 10
"""RSS is also sampled after the first 1/10 of the keys: the growth from there on is the entries' own."""
SYNC_WAIT_S: Final = 1.5
"""Longer than the one-second period at which each worker copies its cache statistics into the gauges."""
MIB: Final = 1024.0
L1_MAX_ENTRIES: Final = 100_000
L1_MAX_BYTES: Final = 64 << 20
"""`ConfigManager.open`'s L1 bounds (`cache_max_entries`, `cache_max_bytes`), which `serve` keeps."""


@dataclass(frozen=True, slots=True)
class ProcRow:
    """One process of the server's tree: its role, and VmRSS / PSS in KiB idle and after the fill."""

    role: str
    pid: int
    idle_kib: int
    warm_kib: int
    """After the first `Round.warm` keys (per worker): the first requests' one-time growth is in by then."""
    after_kib: int
    idle_pss_kib: int
    after_pss_kib: int
    entries: int | None
    """L1 entries this process holds after the fill (None: it serves no requests)."""
    l1_bytes: int | None
    """Their size as the L1 byte bound (64 MiB) counts it."""


@dataclass(frozen=True, slots=True)
class Round:
    """One `serve --workers W` run."""

    workers: int
    keys: int
    warm: int
    requests: int
    fill_s: float
    rows: list[ProcRow]

    def total(self, attr: str) -> int:
        return sum(int(getattr(row, attr)) for row in self.rows)


# ------------------------------------------------------------------ /proc


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _pss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text(encoding="utf-8").splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")


def _tree(root: int) -> list[int]:
    """`root` and all its descendants, by the parent pid in `/proc/*/stat`."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text(encoding="utf-8")
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the command name may hold spaces and parentheses
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(found)


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def _roles(root: int, pids: list[int]) -> dict[int, str]:
    """parent, worker N (spawned by multiprocessing, numbered by pid), resource tracker, or other: argv."""
    roles: dict[int, str] = {}
    workers = 0
    for pid in pids:
        cmd = _cmdline(pid)
        if pid == root:
            roles[pid] = "parent"
        elif "multiprocessing.resource_tracker" in cmd:
            roles[pid] = "resource tracker"
        elif "multiprocessing.spawn" in cmd:
            workers += 1
            roles[pid] = f"worker {workers}"
        else:
            roles[pid] = f"other: `{cmd[:60]}`"
    return roles


def _socket_owner(pids: list[int], server_port: int, client_port: int) -> int | None:
    """The process holding the server side of the loopback connection from `client_port`."""
    wanted = f":{server_port:04X}", f":{client_port:04X}"
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(OSError):
            for line in Path(table).read_text(encoding="utf-8").splitlines()[1:]:
                cols = line.split()
                if cols[1].endswith(wanted[0]) and cols[2].endswith(wanted[1]):
                    inode = cols[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        with suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid
    return None


# ------------------------------------------------------------------ the server


def _fill(store: Path, key: str, n: int) -> str:
    """N ~200-byte prompt strings in production, in `import_` batches; returns a viewer API key."""
    with ConfigManager.open(str(store), encryption_key=key, actor="bench") as manager:
        for start in range(0, n, BATCH):
            manager.import_(NS, {_key(i): _value(i) for i in range(start, min(start + BATCH, n))}, env=ENV)
        _, token = manager.create_api_key("bench-footprint", "viewer")
    return token


def _key(i: int) -> str:
    return f"prompts.p{i:05d}"


def _value(i: int) -> str:
    text = f"You are assistant #{i:05d} of the support team. Answer briefly, cite the knowledge base, never guess "
    return (text * 3)[:200]


def _wait_ready(server: Server, workers: int) -> None:
    """Until `GET /health/ready` answers 200 and each worker has logged its application startup."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.what} exited with {server.proc.returncode} before it was ready:\n"
                               f"{_log_tail(server.log)}")
        with suppress(OSError):
            started = server.log.read_text(encoding="utf-8", errors="replace").count("Application startup complete")
            if started >= workers and _get(server.port, "/health/ready", timeout=2.0)[0] == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.what} was not ready in {START_TIMEOUT_S:.0f} s:\n{_log_tail(server.log)}")
        time.sleep(0.05)


def _connections(port: int, pids: list[int], servers: list[int]) -> dict[int, http.client.HTTPConnection]:
    """One keep-alive connection served by each process of `servers`, found by opening connections until
    every one holds one (the others are closed)."""
    held: dict[int, http.client.HTTPConnection] = {}
    for _ in range(200):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/health/live")
        resp = conn.getresponse()
        resp.read()
        assert conn.sock is not None
        owner = _socket_owner(pids, port, conn.sock.getsockname()[1])
        if owner in servers and owner not in held:
            held[owner] = conn
            if len(held) == len(servers):
                return held
        else:
            conn.close()
    for conn in held.values():
        conn.close()
    raise RuntimeError(f"no connection reached each of {servers} in 200 tries (reached {sorted(held)})")


def _get_all(conn: http.client.HTTPConnection, token: str, keys: range, errors: list[str]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    try:
        for i in keys:
            conn.request("GET", f"/api/v1/configs/{NS}/-/{_key(i)}?env={ENV}", headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {_key(i)} answered {resp.status}: {body[:200]!r}")
    except Exception as exc:  # reported by the caller, from the main thread
        errors.append(repr(exc))


def _get_on_each(conns: list[http.client.HTTPConnection], token: str, keys: range) -> None:
    """GET `keys` on every connection at once (a thread each, so the workers fill side by side)."""
    errors: list[str] = []
    threads = [threading.Thread(target=_get_all, args=(conn, token, keys, errors)) for conn in conns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"fill failed: {errors[0]}")


def _metrics_dir(pid: int) -> Path | None:
    for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if item.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
            return Path(item.split(b"=", 1)[1].decode())
    return None


def _l1_gauges(port: int, pid: int, multiprocess: bool) -> tuple[int, int]:
    """The L1 entries `pid` holds and their bytes as the L1 bound counts them: its own gauge file with
    several workers, `/metrics` with one."""
    found: dict[str, int] = {}
    if multiprocess:
        folder = _metrics_dir(pid)
        if folder is None:
            raise RuntimeError(f"worker {pid} has no PROMETHEUS_MULTIPROC_DIR")
        for raw, value, *_rest in MmapedDict.read_all_values_from_file(str(folder / f"gauge_livesum_{pid}.db")):
            name, _sample, labels, *_help = json.loads(raw)
            if labels.get("tier") == "l1":
                found[name] = int(value)
    else:
        status, _, body = _get(port, "/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        for line in body.decode().splitlines():
            name, _, rest = line.partition('{tier="l1"}')
            if rest:
                found[name] = int(float(rest.split()[-1]))
    return found.get("llm_config_cache_entries", 0), found.get("llm_config_cache_bytes", 0)


def _sample(pids: list[int]) -> dict[int, tuple[int, int]]:
    return {pid: (_status_kib(pid, "VmRSS"), _pss_kib(pid)) for pid in pids}


def _round(stack: ExitStack, work: Path, store: Path, env: dict[str, str], token: str, workers: int,
           n: int) -> Round:
    port = _free_port()
    cli = str(Path(sys.executable).parent / "llm-config")
    argv = [cli, "-s", str(store), "serve", "--port", str(port), "--workers", str(workers), "--server-impl",
            "uvicorn", "--rate-limit-key", "0", "--no-access-log"]
    server = _start(stack, argv, port, env, work / f"serve-{workers}.log",
                    f"llm-config serve (uvicorn, {workers} worker{'s' if workers > 1 else ''})")
    _wait_ready(server, workers)
    root = server.proc.pid
    pids = _tree(root)
    idle = _sample(pids)
    roles = _roles(root, pids)
    servers = [pid for pid in pids if roles[pid].startswith("worker")] if workers > 1 else [root]
    if len(servers) != workers:
        raise RuntimeError(f"expected {workers} serving processes, found {roles}")
    progress(f"footprint: {workers} worker(s) idle: {sum(r for r, _ in idle.values()) / MIB:.0f} MiB RSS; "
             f"GET {n:,} keys on one connection per worker")
    conns = list(_connections(port, pids, servers).values())
    warm = n // WARM_DIVISOR
    started = time.perf_counter()
    try:
        _get_on_each(conns, token, range(warm))
        warmed = _sample(pids)
        _get_on_each(conns, token, range(warm, n))
    finally:
        for conn in conns:
            conn.close()
    fill_s = time.perf_counter() - started
    time.sleep(SYNC_WAIT_S)
    if _tree(root) != pids:
        raise RuntimeError(f"the process tree changed during the fill: {pids} -> {_tree(root)}")
    after = _sample(pids)
    rows = [ProcRow(roles[pid], pid, idle[pid][0], warmed[pid][0], after[pid][0], idle[pid][1], after[pid][1],
                    *(_l1_gauges(port, pid, workers > 1) if pid in servers else (None, None)))
            for pid in sorted(pids, key=lambda p: (roles[p] != "parent", roles[p].startswith("other"), roles[p]))]
    return Round(workers, n, warm, n * workers, fill_s, rows)


def measure(*, quick: bool = False, parent: str | None = None) -> list[Round]:
    """Fill a fresh store, then measure each worker count on a fresh server over it."""
    n = QUICK_ENTRIES if quick else ENTRIES
    key = generate_key()
    with tempfile.TemporaryDirectory(prefix="llm-config-bench-footprint-", dir=parent) as tmp:
        work = Path(tmp)
        store = work / "store"
        progress(f"footprint: writing {n:,} keys into {store}")
        token = _fill(store, key, n)
        env = _server_env(work, {"LLM_CONFIG_KEY": key})
        rounds = []
        for workers in WORKERS:
            with ExitStack() as stack:  # stops the server (SIGTERM to its group) before the next round
                rounds.append(_round(stack, work, store, env, token, workers, n))
    return rounds


# ------------------------------------------------------------------ Markdown


def _mib(kib: float) -> str:
    return f"{kib / MIB:.1f}"


def _signed(kib: float) -> str:
    return f"{'+' if kib >= 0 else '−'}{abs(kib) / MIB:.1f}"


def _per_1000(row: ProcRow, r: Round) -> float | None:
    """MiB per 1,000 cached entries: the slope from the first `warm` keys to all of them."""
    if not row.entries:
        return None
    return (row.after_kib - row.warm_kib) / MIB / ((r.keys - r.warm) / 1000)


def _row(r: Round, row: ProcRow) -> str:
    slope = _per_1000(row, r)
    first = "—" if slope is None else _signed(row.warm_kib - row.idle_kib - slope * MIB * r.warm / 1000)
    return (f"| {r.workers} | {row.role} (pid {row.pid}) | {_mib(row.idle_kib)} | {_mib(row.after_kib)} "
            f"| {_signed(row.after_kib - row.idle_kib)} | {first} | {'—' if slope is None else f'{slope:.2f}'} "
            f"| {'—' if row.entries is None else f'{row.entries:,}'} "
            f"| {'—' if not row.entries or row.l1_bytes is None else f'{row.l1_bytes / row.entries:,.0f} B'} |")


def _projections(rounds: list[Round]) -> list[str]:
    """Extrapolated, not measured: each worker's L1 filled to its bound with entries of this size."""
    lines = []
    for r in rounds:
        servers = [(row.entries, row.l1_bytes, _per_1000(row, r) or 0.0) for row in r.rows
                   if row.entries and row.l1_bytes]
        if not servers:
            continue
        held = min(L1_MAX_ENTRIES, *(L1_MAX_BYTES * entries // size for entries, size, _ in servers))
        grown = sum(slope * MIB * (held - entries) / 1000 for entries, _, slope in servers)
        lines.append(f"Extrapolated (not measured), {r.workers} worker{'s' if r.workers > 1 else ''}: the L1 bound "
                     f"(100,000 entries or 64 MiB as counted above) holds {held:,} entries of this size per worker; at "
                     f"the slope above that is ≈ {(r.total('after_kib') + grown) / MIB:,.0f} MiB RSS for the tree "
                     f"(≈ {(r.total('after_pss_kib') + grown) / MIB:,.0f} MiB PSS).")
    return lines


def render(rounds: list[Round], *, command: str, runtime_s: float, load: str) -> str:
    host = machine()
    n, warm = rounds[0].keys, rounds[0].warm
    lines = [
        "## `llm-config serve`: resident memory (RSS), idle and after cached entries",
        "",
        f"- command: `{command}`",
        f"- date: `{host.date}`; runtime {runtime_s:.0f} s; machine: {host.cpus} CPUs, {host.cpu_model}, "
        f"{host.python} (the server's interpreter), SQLite {host.sqlite}; 1-min load {load} → {load_average()}",
        f"- server: `llm-config serve --workers W --server-impl uvicorn --rate-limit-key 0 --no-access-log` on a "
        f"local SQLite store of {n:,} keys (~200-byte JSON strings, production), L1 at its defaults (TTL 5 s; "
        "an expired entry stays held until the 100,000-entry / 64 MiB FIFO bound evicts it)",
        "- idle: VmRSS of each process of the server's tree (the `serve` process and all its descendants) once "
        "`/health/ready` answers 200 and every worker has started; after: each worker answered one GET of each of "
        f"the {n:,} keys on its own keep-alive connection (matched to the worker through `/proc/net/tcp`), then "
        f"{SYNC_WAIT_S:g} s for the cache statistics; \"L1 entries\" is that worker's own "
        "`llm_config_cache_entries{tier=\"l1\"}`, and the bound's count per entry its `llm_config_cache_bytes` "
        "divided by them (what the 64 MiB bound charges, next to the measured RSS slope)",
        f"- per 1,000 entries: the RSS slope from the first {warm:,} keys to all {n:,}; \"first requests\": the rest "
        "of the growth, paid once (lazily imported code, first-request allocations, SQLite's page cache filling)",
        "",
        f"| workers | process | idle MiB | after {n:,} entries MiB | growth MiB | of which first requests MiB "
        "| MiB per 1,000 entries | L1 entries | L1 bound's count per entry |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rounds:
        lines += [_row(r, row) for row in r.rows]
        idle, after = r.total("idle_kib"), r.total("after_kib")
        idle_pss, after_pss = r.total("idle_pss_kib"), r.total("after_pss_kib")
        lines.append(f"| {r.workers} | **total RSS** ({len(r.rows)} process{'es' if len(r.rows) > 1 else ''}) "
                     f"| **{_mib(idle)}** | **{_mib(after)}** | {_signed(after - idle)} | | | | |")
        lines.append(f"| {r.workers} | total PSS (shared pages split among their processes) | {_mib(idle_pss)} "
                     f"| {_mib(after_pss)} | {_signed(after_pss - idle_pss)} | | | | |")
    fills = "; ".join(f"{r.workers} worker{'s' if r.workers > 1 else ''}: {r.requests:,} GETs in {r.fill_s:.1f} s"
                      for r in rounds)
    lines += [
        "",
        "RSS counts a page shared by several processes (interpreter, libraries, copy-on-write pages) once in each "
        "process, so the RSS total overstates the tree's memory; PSS divides each shared page among the processes "
        "that map it and is the closer figure to what a container's memory cgroup is charged for them (the cgroup "
        "also counts the page cache of the store file). With several workers each worker holds its own L1: the "
        f"cached entries cost once per worker. Fill: {fills}.",
        *(f"\n{line}" for line in _projections(rounds)),
    ]
    return "\n".join(lines) + "\n"


def run_section(*, quick: bool = False, command: str | None = None, parent: str | None = None) -> str:
    started = time.perf_counter()
    load = load_average()
    rounds = measure(quick=quick, parent=parent)
    return render(rounds, command=command or command_line("bench.footprint", ["--quick"] if quick else []),
                  runtime_s=time.perf_counter() - started, load=load)


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_ENTRIES:,} entries instead of {ENTRIES:,}: a smoke test in seconds")
    parser.add_argument("--dir", default=None, help="parent of the temporary store (default: $TMPDIR)")
    parser.add_argument("--write", type=Path, default=None, metavar="FILE",
                        help="also rewrite the footprint section of FILE (e.g. BENCHMARKS.md)")
    args = parser.parse_args(args_list)
    section = run_section(quick=args.quick, command=command_line("bench.footprint", args_list), parent=args.dir)
    emit_section(section, args.write, begin=BEGIN, end=END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
