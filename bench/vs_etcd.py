"""Side by side with etcd: the same wrk load against our REST API and against etcd 3.4's JSON gateway.

The same measurement as the team's `vs-etcd.sh` script, under the same wrk settings (`wrk -t2
-c{conns} -d{dur} --latency -s script url`, the same Lua scripts and the same `done()` report),
for GET and PUT at 16 and 64 connections in one run. Each (op, conns) runs `reps` rounds of ours then
etcd, alternating, so a load change on the shared machine hits both alike; a round's ratio is ours
req/s ÷ etcd req/s, and the table shows the medians over the rounds.

Our side: a fresh store under `work`, an admin API key, `llm-config serve --rate-limit-key 1000000:1000000
--cache-ttl 3600` (the default server and worker count otherwise), seeded with the keys `ns{i%10}/key{i}`
(i < N) in `production` by PUT, each read once (our L1 cache is warm). etcd's side: one member on two free
ports with its data under `work`, seeded with the same ~200-byte values under
`/configs/ns{i%10}/key{i}/production` through `/v3/kv/put`. All GETs run before all PUTs.

`python -m bench.vs_etcd [--quick]` prints the Markdown table and its notes (progress on stderr).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench.harness import fmt_ns, progress
from bench.report import command_line, load_average, machine, write_section
from bench.rest import RATE_LIMIT, Server, _free_port, _server_env, _start, _wait_ready, _wrk_version, ensure_wrk
from llm_config.settings import ServeOptions

__all__ = ["bench_vs_etcd", "main"]

ETCD: Final = "/usr/bin/etcd"
ENV: Final = "production"
OPS: Final = ("get", "put")
CONNS: Final = (16, 64)
THREADS: Final = 2
CACHE_TTL: Final = 3600  # no L1 entry expires during the run: every measured GET of ours is a cache hit
PUT_VALUE_CHARS: Final = 140  # the PUT body's value: {"value": "v" * 140}, as the script sends it
HTTP_TIMEOUT_S: Final = 30.0
WRK_GRACE_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class Sizes:
    """N keys, seconds per wrk run, rounds per (op, conns); `quick()` is the smoke-test variant."""

    keys: int = 1_000
    duration_s: int = 10
    reps: int = 3

    @classmethod
    def quick(cls) -> Sizes:
        return cls(keys=200, duration_s=3, reps=2)


# ------------------------------------------------------------------ the wrk scripts (as `vs-etcd.sh` writes them)

_REPORT_LUA: Final = """function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f non2xx=%d sockerr=%d\\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""

_OURS_LUA: Final = """dofile("{report}")
local reqs = {{}}
local n = 0
function setup(thread) n = n + 1; thread:set("tid", n) end
function init(args)
  math.randomseed(7000 + (tid or 0))
  local body = '{{"env":"production","value":{{"value":"' .. string.rep("v", {chars}) .. '"}}}}'
  for i = 0, {n} - 1 do
    local path = string.format("/api/v1/configs/ns%d/key%d", i % 10, i)
    if "{op}" == "put" then
      reqs[i + 1] = wrk.format("PUT", path, {{["Authorization"] = "Bearer {token}", \
["Content-Type"] = "application/json"}}, body)
    else
      reqs[i + 1] = wrk.format("GET", path .. "?env=production", {{["Authorization"] = "Bearer {token}"}})
    end
  end
end
function request() return reqs[math.random(#reqs)] end
"""

_RESULT_RE: Final = re.compile(
    r"^RESULT rps=(?P<rps>[\d.]+) p50_ms=(?P<p50>[\d.]+) p99_ms=(?P<p99>[\d.]+) "
    r"non2xx=(?P<non2xx>\d+) sockerr=(?P<sockerr>\d+)\s*$", re.MULTILINE)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _etcd_key(i: int) -> bytes:
    return f"/configs/ns{i % 10}/key{i}/{ENV}".encode()


def _seed_value(i: int) -> dict[str, object]:
    """The ~200-byte value of key i, the same on both sides (etcd stores its JSON text)."""
    return {"model": "gpt-4o", "temperature": 0.2, "max_tokens": 512, "endpoint": f"https://llm.internal/{i}",
            "fallbacks": ["o3", "gpt-4o-mini"], "owner": f"team-{i % 10}", "note": "x" * 40}


def _write_scripts(work: Path, keys: int, token: str) -> dict[tuple[str, str], Path]:
    """report.lua, and per op ours-{op}.lua and etcd-{op}.lua, with the script's text."""
    report = work / "report.lua"
    report.write_text(_REPORT_LUA, encoding="utf-8")
    val = _b64(('{"value":"' + "v" * PUT_VALUE_CHARS + '"}').encode())
    scripts: dict[tuple[str, str], Path] = {}
    for op in OPS:
        ours = work / f"ours-{op}.lua"
        ours.write_text(_OURS_LUA.format(report=report, chars=PUT_VALUE_CHARS, n=keys, op=op, token=token),
                        encoding="utf-8")
        lines = [f'dofile("{report}")', "local reqs = {}", "local n = 0",
                 'function setup(thread) n = n + 1; thread:set("tid", n) end',
                 "function init(args)", "  math.randomseed(8000 + (tid or 0))",
                 '  local h = {["Content-Type"] = "application/json"}']
        for i in range(keys):
            k = _b64(_etcd_key(i))
            if op == "put":
                body = f'{{"key":"{k}","value":"{val}"}}'
                lines.append(f'  reqs[{i + 1}] = wrk.format("POST", "/v3/kv/put", h, \'{body}\')')
            else:
                lines.append(f'  reqs[{i + 1}] = wrk.format("POST", "/v3/kv/range", h, \'{{"key":"{k}"}}\')')
        lines += ["end", "function request() return reqs[math.random(#reqs)] end"]
        etcd = work / f"etcd-{op}.lua"
        etcd.write_text("\n".join(lines) + "\n", encoding="utf-8")
        scripts[("ours", op)] = ours
        scripts[("etcd", op)] = etcd
    return scripts


# ------------------------------------------------------------------ wrk runs


@dataclass(frozen=True, slots=True)
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int

    def line(self) -> str:
        return (f"rps={self.rps:.0f} p50_ms={self.p50_ms:.3f} p99_ms={self.p99_ms:.3f} non2xx={self.non_2xx} "
                f"sockerr={self.socket_errors}")


@dataclass(slots=True)
class Cell:
    """One (op, conns): the rounds of each side, in the order they ran (ours, etcd, ours, etcd, …)."""

    op: str
    conns: int
    ours: list[Run] = field(default_factory=list)
    etcd: list[Run] = field(default_factory=list)

    def ratios(self) -> list[float]:
        return [a.rps / max(b.rps, 1.0) for a, b in zip(self.ours, self.etcd, strict=True)]


def _wrk(wrk: str, script: Path, url: str, conns: int, duration_s: int) -> Run:
    argv = [wrk, f"-t{THREADS}", f"-c{conns}", f"-d{duration_s}s", "--latency", "-s", str(script), url]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=duration_s + WRK_GRACE_S)
    match = _RESULT_RE.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {' '.join(argv)}\n{proc.stdout}\n{proc.stderr}")
    return Run(rps=float(match["rps"]), p50_ms=float(match["p50"]), p99_ms=float(match["p99"]),
               non_2xx=int(match["non2xx"]), socket_errors=int(match["sockerr"]))


# ------------------------------------------------------------------ etcd


def _apt(*args: str) -> int:
    return subprocess.run(["apt-get", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          check=False).returncode


def _find_etcd() -> tuple[str | None, str]:
    """etcd's path, installing `etcd-server` with apt-get when it is missing (as the script does: install,
    then `apt-get update` and install again); None and the reason when it is still missing."""
    found = ETCD if Path(ETCD).exists() else shutil.which("etcd")
    if found:
        return found, ""
    progress("etcd not found: installing it with `apt-get install -y -qq etcd-server`")
    try:
        if _apt("install", "-y", "-qq", "etcd-server") != 0:
            _apt("update", "-qq")
            _apt("install", "-y", "-qq", "etcd-server")
    except OSError as exc:
        return None, f"etcd is missing and apt-get could not run ({exc})"
    found = ETCD if Path(ETCD).exists() else shutil.which("etcd")
    if found is None:
        return None, "etcd is missing and `apt-get install -y -qq etcd-server` did not install it"
    return found, "etcd was missing and this run installed it with `apt-get install -y -qq etcd-server`"


def _etcd_version(etcd: str) -> str:
    proc = subprocess.run([etcd, "--version"], capture_output=True, text=True, check=False)
    fields = dict(line.split(":", 1) for line in proc.stdout.splitlines() if ":" in line)
    version = fields.get("etcd Version", "?").strip()
    go = fields.get("Go Version", "").strip()
    return f"etcd {version}" + (f" ({go})" if go else "")


def _etcd_argv(etcd: str, data_dir: Path, cport: int, pport: int) -> list[str]:
    client, peer = f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{pport}"
    return [etcd, "--name", "vs", "--data-dir", str(data_dir), "--listen-client-urls", client,
            "--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"vs={peer}", "--log-level", "error"]


def start_etcd(stack: ExitStack, work: Path, notes: list[str]) -> tuple[str | None, str]:
    """A private one-member etcd with its data under `work`, stopped when `stack` closes: (client URL,
    "") once it answers `/health`, or (None, why not). What it took to get etcd goes into `notes`."""
    etcd, why = _find_etcd()
    if etcd is None:
        progress(f"etcd not available: {why}")
        return None, why
    if why:
        notes.append(why)
    work.mkdir(parents=True, exist_ok=True)
    cport, pport = _free_port(), _free_port()
    while pport == cport:
        pport = _free_port()
    server = _start(stack, _etcd_argv(etcd, work / "etcd", cport, pport), cport, dict(os.environ),
                    work / "etcd.log", _etcd_version(etcd))
    _wait_ready(server)  # etcd's `GET /health` answers 200 ({"health":"true"}) once it has a leader
    return f"http://127.0.0.1:{cport}", ""


# ------------------------------------------------------------------ seeding


def _send(conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None,
          headers: dict[str, str], ok: range) -> None:
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status not in ok:
        raise RuntimeError(f"{method} {path} answered {resp.status}: {data[:300]!r}")


def _seed_ours(port: int, token: str, keys: int) -> None:
    """PUT every key (2xx), then GET each once (200: it is stored, and in our L1 cache)."""
    auth = {"Authorization": f"Bearer {token}"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
    try:
        for i in range(keys):
            body = json.dumps({"value": _seed_value(i), "env": ENV}).encode()
            _send(conn, "PUT", f"/api/v1/configs/ns{i % 10}/key{i}", body,
                  {"Content-Type": "application/json", **auth}, range(200, 300))
        for i in range(keys):
            _send(conn, "GET", f"/api/v1/configs/ns{i % 10}/key{i}?env={ENV}", None, auth, range(200, 201))
    finally:
        conn.close()


def _seed_etcd(port: int, keys: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
    try:
        for i in range(keys):
            value = json.dumps(_seed_value(i)).encode()
            body = json.dumps({"key": _b64(_etcd_key(i)), "value": _b64(value)}).encode()
            _send(conn, "POST", "/v3/kv/put", body, {"Content-Type": "application/json"}, range(200, 201))
        key = _b64(_etcd_key(keys - 1))  # the last one reads back
        conn.request("POST", "/v3/kv/range", body=json.dumps({"key": key}).encode(),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        found = json.loads(resp.read())
        if resp.status != 200 or found.get("count") != "1":
            raise RuntimeError(f"etcd range of {_etcd_key(keys - 1)!r} answered {resp.status}: {found}")
    finally:
        conn.close()


def _admin_key(cli: str, store: Path, key_file: Path, env: dict[str, str]) -> str:
    proc = subprocess.run([cli, "-s", str(store), "--key-file", str(key_file), "keys", "create", "--name",
                           "bench-admin", "--role", "admin", "--format", "json"],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"llm-config keys create failed ({proc.returncode}): {proc.stderr.strip()}")
    return str(json.loads(proc.stdout)["key"])


# ------------------------------------------------------------------ the run


def _measure(wrk: str, scripts: dict[tuple[str, str], Path], ours_url: str, etcd_url: str,
             sizes: Sizes) -> list[Cell]:
    cells: list[Cell] = []
    for op in OPS:
        for conns in CONNS:
            cell = Cell(op, conns)
            cells.append(cell)
            for rep in range(1, sizes.reps + 1):
                a = _wrk(wrk, scripts[("ours", op)], ours_url, conns, sizes.duration_s)
                cell.ours.append(a)
                b = _wrk(wrk, scripts[("etcd", op)], etcd_url, conns, sizes.duration_s)
                cell.etcd.append(b)
                progress(f"{op} c{conns} t{THREADS} rep{rep} ours: {a.line()} | etcd: {b.line()} "
                         f"| ratio {cell.ratios()[-1]:.2f}")
            progress(f"median ratio ours/etcd ({op}, c{conns}): {statistics.median(cell.ratios()):.2f}")
    return cells


def _side(runs: list[Run]) -> str:
    rps = statistics.median(r.rps for r in runs)
    p50 = statistics.median(r.p50_ms for r in runs)
    p99 = statistics.median(r.p99_ms for r in runs)
    return f"{rps:,.0f} ({fmt_ns(p50 * 1e6)} / {fmt_ns(p99 * 1e6)})"


def _errors(cell: Cell) -> str:
    parts = []
    for name, runs in (("ours", cell.ours), ("etcd", cell.etcd)):
        non_2xx, sock = sum(r.non_2xx for r in runs), sum(r.socket_errors for r in runs)
        if non_2xx or sock:
            parts.append(f"**{name}: {non_2xx:,} non-2xx, {sock:,} socket errors**")
    return "; ".join(parts) if parts else "none"


def _table(cells: list[Cell], reason: str = "") -> list[str]:
    lines = ["| op | conns | ours req/s (p50 / p99) | etcd req/s (p50 / p99) "
             "| ours/etcd (median of per-round ratios) | errors |", "|---|---|---|---|---|---|"]
    if reason:
        return lines + [f"| {op.upper()} | {conns} | not measured | not measured | — | {reason} |"
                        for op in OPS for conns in CONNS]
    for c in cells:
        ratios = c.ratios()
        spread = f" ({min(ratios):.2f}–{max(ratios):.2f})" if len(ratios) > 1 else ""
        lines.append(f"| {c.op.upper()} | {c.conns} | {_side(c.ours)} | {_side(c.etcd)} "
                     f"| {statistics.median(ratios):.2f}×{spread} | {_errors(c)} |")
    return lines


def _notes(sizes: Sizes, etcd_version: str, wrk_version: str, extra: list[str]) -> list[str]:
    serve = ServeOptions()
    sizes_b = [len(json.dumps(_seed_value(i)).encode()) for i in range(sizes.keys)]
    value_bytes = f"{min(sizes_b)}–{max(sizes_b)}" if min(sizes_b) != max(sizes_b) else str(min(sizes_b))
    put_bytes = len('{"value":"' + "v" * PUT_VALUE_CHARS + '"}')
    return [
        f"load: {wrk_version}, `wrk -t{THREADS} -c{{16,64}} -d{sizes.duration_s}s --latency -s <script>` "
        f"(wrk's default 2 s timeout), Lua scripts written by `bench/vs_etcd.py`: each request a random one of "
        f"the {sizes.keys:,} keys (per-thread seed); {sizes.reps} rounds per row, ours then etcd in each; "
        "figures are medians over the rounds, the ratio the median of the per-round ours/etcd req/s "
        "(slowest–fastest round in brackets); all GET rows ran before the PUT rows",
        f"data: {sizes.keys:,} keys `ns{{i%10}}/key{{i}}` in `{ENV}`, each a JSON object of {value_bytes} bytes "
        "(model, temperature, max_tokens, endpoint, fallbacks, owner, note) — ours written with PUT and read once "
        f"(warm L1), etcd's under `/configs/ns{{i%10}}/key{{i}}/{ENV}` with `/v3/kv/put`; the PUT rows write "
        f"`{{\"value\":\"v×{PUT_VALUE_CHARS}\"}}` ({put_bytes} bytes) to a random key",
        f"ours: `llm-config serve --rate-limit-key {RATE_LIMIT} --cache-ttl {CACHE_TTL}` — server "
        f"{serve.server_impl} with {serve.workers} worker{'s' if serve.workers != 1 else ''} (`serve`'s defaults), "
        f"per-key rate limit on but never refusing, access log {'on' if serve.access_log else 'off'} (to a file), "
        "metrics on; each request carries `Authorization: Bearer <admin API key>` (authenticated, RBAC-checked); "
        "GET `/api/v1/configs/ns{i%10}/key{i}?env=production` is an L1 cache hit; PUT is a new version in one "
        "durable SQLite transaction (WAL, `synchronous=FULL`: fsync per commit, audited)",
        f"etcd: {etcd_version}, a single member (`--log-level error`, data dir on the same disk as our store), "
        "JSON gateway without authentication: GET is `POST /v3/kv/range` (linearizable by default: a ReadIndex "
        "on the one-member raft), PUT is `POST /v3/kv/put` (a raft commit with WAL fsync)",
        "wrk, our server and etcd share the machine's cores; errors are wrk's counters summed over a row's "
        "rounds (non-2xx: status ≥ 400; socket: connect, read, write, timeout)",
        *extra,
    ]


def bench_vs_etcd(work: Path, *, quick: bool) -> tuple[list[str], list[str]]:
    """Our REST API against etcd's JSON gateway: (Markdown table lines, notes lines)."""
    from llm_config import generate_key

    sizes = Sizes.quick() if quick else Sizes()
    extra: list[str] = []
    wrk = ensure_wrk(extra)
    wrk_version = _wrk_version(wrk)
    etcd, why = _find_etcd()  # installs it when missing; start_etcd below finds it then
    if etcd is None:
        return _table([], why), [f"not measured: {why}", f"load generator would be {wrk_version}", *extra]
    etcd_version = _etcd_version(etcd)

    store, key_file = work / "store", work / "master.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(generate_key() + "\n")
    env = _server_env(work, {})
    cli = str(Path(sys.executable).parent / "llm-config")
    token = _admin_key(cli, store, key_file, env)
    scripts = _write_scripts(work, sizes.keys, token)

    with ExitStack() as stack:
        port = _free_port()
        ours: Server = _start(stack, [cli, "-s", str(store), "--key-file", str(key_file), "serve", "--port",
                                      str(port), "--rate-limit-key", RATE_LIMIT, "--cache-ttl", str(CACHE_TTL)],
                              port, env, work / "serve.log", "llm-config serve")
        etcd_url, why = start_etcd(stack, work, extra)
        if etcd_url is None:
            return _table([], why), [f"not measured: {why}", *extra]
        cport = int(etcd_url.rsplit(":", 1)[1])
        _wait_ready(ours)
        started = time.monotonic()
        _seed_ours(port, token, sizes.keys)
        progress(f"ours seeded: {sizes.keys:,} PUTs and GETs in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        _seed_etcd(cport, sizes.keys)
        progress(f"etcd seeded: {sizes.keys:,} puts in {time.monotonic() - started:.1f} s")
        cells = _measure(wrk, scripts, f"http://127.0.0.1:{port}", etcd_url, sizes)
    return _table(cells), _notes(sizes, etcd_version, wrk_version, extra)


BEGIN: Final = "<!-- etcd:begin -->"
END: Final = "<!-- etcd:end -->"


def run_section(*, quick: bool, command: str, parent: str | None) -> str:
    """Measure and render the etcd section of BENCHMARKS.md (used by `bench.run` and by `main`)."""
    started = time.perf_counter()
    host = machine()
    load_start = load_average()
    with tempfile.TemporaryDirectory(prefix="llm-config-bench-etcd-", dir=parent) as tmp:
        table, notes = bench_vs_etcd(Path(tmp), quick=quick)
    runtime = time.perf_counter() - started
    lines = [
        "## REST API side by side with etcd",
        "",
        f"- command: `{command}` (`make bench` runs `.venv/bin/python -m bench.run`)",
        f"- date: `{host.date}`; section runtime {runtime / 60:.1f} min",
        f"- machine: {host.cpus} CPUs (`nproc`), {host.cpu_model}, Python {host.python}, SQLite {host.sqlite}; "
        f"1-min load average {load_start} → {load_average()} (start → end of the section)",
        "",
        *table,
        "",
        "How it is measured:",
        "",
        *(f"- {note}" for note in notes),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.vs_etcd",
                                     description="Our REST API vs etcd's JSON gateway under the same wrk load.")
    parser.add_argument("--quick", action="store_true", help="smoke test: 200 keys, 3 s runs, 2 rounds")
    parser.add_argument("--write", type=Path, default=None, metavar="FILE",
                        help="also rewrite the etcd section of FILE (e.g. BENCHMARKS.md)")
    args = parser.parse_args(args_list)
    section = run_section(quick=args.quick, command=command_line("bench.vs_etcd", args_list), parent=None)
    print(section)
    if args.write is not None:
        write_section(args.write, section, begin=BEGIN, end=END)
        progress(f"wrote the etcd section of {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
