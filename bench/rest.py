"""REST API: `llm-config serve` on uvicorn and granian (1 and 2 workers), measured with wrk.

Decides by measurement which ASGI server `serve` should use by default (ARCHITECTURE decision 1:
cache hits are answered on the event loop, so the server's own per-request cost is most of a hit).
For each server and worker count, in one run and side by side:

- the authenticated, RBAC-checked cached `GET /api/v1/configs/bench/k{i}?env=production` of random
  keys among 1,000 (all written beforehand with PUT and warmed), with an editor key limited to the
  namespace `bench` (so the scope check runs), the per-key rate limit on but too high to refuse
  (`--rate-limit-key 1000000:1000000`), metrics on and the access log as `serve` has it by default
  (on): throughput at 64 connections, latency p50/p99 at 16 connections, each against its goal;
- its ceiling: a bare Starlette app (`bench/rest_ceiling.py`) sending the same bytes on the same
  server with the same workers, with the same wrk settings;
- durable PUTs (`{"value": N, "env": "production"}` to random keys, SQLite with fsync) at 16
  connections, 1 worker;
- the cost per request of each edge step, in-process and without a network (`bench.edge`, run
  once per metrics mode).

Every server is a real process started in its own process group, waited for through `/health`,
warmed for `warmup_s`, then measured in `rounds` rounds of 1 s that alternate between the servers
(all four of a worker count run at once, idle but for the one measured), and stopped with SIGTERM
to its group.
`python -m bench.rest [--quick] [--no-write] [--output FILE]` runs this section alone and writes it
into BENCHMARKS.md between `<!-- rest:begin -->` and `<!-- rest:end -->`; `python -m bench.run` runs
it after the core section (`--skip-rest` skips it).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from bench.harness import fmt_ns, progress
from bench.report import Machine, command_line, load_average, machine
from llm_config.settings import ServeOptions

__all__ = ["BEGIN", "END", "EdgeResults", "RestSizes", "bench_edge", "bench_rest", "main", "write_rest_section"]

BEGIN: Final = "<!-- rest:begin -->"
END: Final = "<!-- rest:end -->"
_CORE_END: Final = "<!-- core:end -->"

ROOT: Final = Path(__file__).resolve().parents[1]
WRK: Final = "/usr/bin/wrk"
SERVERS: Final = ("uvicorn", "granian")
WORKERS: Final = (1, 2)
KEYS: Final = 1_000
NAMESPACE: Final = "bench"
ENV: Final = "production"
GET_CONNS: Final = 64
LATENCY_CONNS: Final = 16
PUT_CONNS: Final = 16
RATE_LIMIT: Final = "1000000:1000000"  # on, but never refusing: 1,000,000 req/s, bucket of 1,000,000
CACHE_TTL: Final = 3600  # no L1 entry expires during a run: every measured GET is a cache hit
GOAL_CEILING_SHARE: Final = 0.60  # issue 3: cached GET throughput ≥ 60 % of the ceiling …
GOAL_RPS: Final = 15_000  # … and ≥ 15,000 req/s on this 2-core machine
GOAL_P99_US: Final = 3_000.0  # p99 ≤ 3 ms at 16 connections
EDGE_RBAC_GOAL_NS: Final = 2_000  # the permission decision of a cached read ≤ 2 µs
EDGE_MODE_TITLES: Final = {
    "one process": "one-process metrics (uvicorn ×1)",
    "multiprocess": "multiprocess metrics (granian ×1, ×2; uvicorn ×2)",
}
EDGE_TIMEOUT_S: Final = 300.0
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 15.0

# Each request carries a Host header; the list is built once per wrk thread in init().
_GET_LUA: Final = """
local requests = {}
local count = 0

function init(args)
  local headers = {["Host"] = args[1], ["Authorization"] = "Bearer " .. args[3]}
  count = tonumber(args[2])
  for i = 0, count - 1 do
    requests[i + 1] = wrk.format("GET", "/api/v1/configs/%(ns)s/k" .. i .. "?env=%(env)s", headers)
  end
  math.randomseed(os.time() + count)
end

function request()
  return requests[math.random(count)]
end
"""

_PUT_LUA: Final = """
local headers = nil
local count = 0
local n = 0

function init(args)
  headers = {["Host"] = args[1], ["Authorization"] = "Bearer " .. args[3], ["Content-Type"] = "application/json"}
  count = tonumber(args[2])
  math.randomseed(os.time() + 7)
end

function request()
  n = n + 1
  local body = '{"value": ' .. n .. ', "env": "%(env)s"}'
  local path = "/api/v1/configs/%(ns)s/k" .. (math.random(count) - 1)
  return wrk.format("PUT", path, headers, body)
end
"""

# Appended to both scripts: one machine-readable line (wrk counts status >= 400 as "Non-2xx or 3xx").
_DONE_LUA: Final = """
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "p50_us": %.1f, "p99_us": %.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True, slots=True)
class RestSizes:
    """Seconds of wrk: one warm-up per server, then `rounds` rounds of 1 s per server and measurement
    (so ~`rounds` s each), and one `put_s` run per server; `quick()` is the smoke-test variant."""

    warmup_s: int = 2
    rounds: int = 5
    put_s: int = 5

    @classmethod
    def quick(cls) -> RestSizes:
        return cls(warmup_s=1, rounds=2, put_s=2)


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    non_2xx: int
    socket_errors: int
    p50_us: float
    p99_us: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


@dataclass(slots=True)
class Series:
    """The rounds of one measurement of one server (interleaved with the other servers' rounds)."""

    runs: list[WrkResult] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.runs) if self.runs else 0.0

    @property
    def p50_us(self) -> float:
        return statistics.median(r.p50_us for r in self.runs) if self.runs else 0.0

    @property
    def p99_us(self) -> float:
        return statistics.median(r.p99_us for r in self.runs) if self.runs else 0.0

    @property
    def spread(self) -> str:
        if len(self.runs) < 2:
            return ""
        rates = [r.rps for r in self.runs]
        return f" ({min(rates) / 1e3:,.1f}k–{max(rates) / 1e3:,.1f}k)"


def round_ratio(ours: Series, base: Series) -> float:
    """Median over the rounds of ours/base req/s (the rounds ran alternately)."""
    pairs = [(a.rps, b.rps) for a, b in zip(ours.runs, base.runs, strict=False) if b.rps > 0]
    return statistics.median(a / b for a, b in pairs) if pairs else 0.0


@dataclass(slots=True)
class Point:
    """One server and worker count: our GET, its ceiling, our PUT (1 worker), and the warm-ups."""

    impl: str
    workers: int
    get_rate: Series = field(default_factory=Series)
    get_latency: Series = field(default_factory=Series)
    ceiling_rate: Series = field(default_factory=Series)
    ceiling_latency: Series = field(default_factory=Series)
    put: WrkResult | None = None
    warmups: list[WrkResult] = field(default_factory=list)

    def ours(self) -> list[WrkResult]:
        return [*self.get_rate.runs, *self.get_latency.runs, *([self.put] if self.put else [])]

    def ceiling(self) -> list[WrkResult]:
        return [*self.ceiling_rate.runs, *self.ceiling_latency.runs]


# ------------------------------------------------------------------ processes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_env(work: Path, extra: dict[str, str]) -> dict[str, str]:
    """No inherited `LLM_CONFIG_*` (the key comes from --key-file) and an empty XDG config home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CONFIG_")}
    xdg = work / "xdg-empty"
    xdg.mkdir(exist_ok=True)
    env["XDG_CONFIG_HOME"] = str(xdg)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, list[tuple[str, str]], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group (it was started with start_new_session); SIGKILL to
    whatever of that group is left after STOP_TIMEOUT_S."""
    pgid = proc.pid
    deadline = time.monotonic() + STOP_TIMEOUT_S
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_TIMEOUT_S)
    while time.monotonic() < deadline:  # workers may outlive the main process for a moment
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    progress(f"server group {pgid} still alive {STOP_TIMEOUT_S:.0f} s after SIGTERM: SIGKILL")
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=STOP_TIMEOUT_S)


@dataclass(slots=True)
class Server:
    """One server process (its own process group) listening on `port`."""

    what: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes]


def _start(stack: ExitStack, argv: list[str], port: int, env: dict[str, str], log: Path, what: str) -> Server:
    """Start `argv` in its own process group; `stack` stops it (SIGTERM to the group) on exit."""
    progress(f"starting {what}: {shlex.join(argv)}")
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    stack.callback(_stop, proc)
    return Server(what, port, log, proc)


def _wait_ready(server: Server) -> None:
    """Until `GET /health` answers 200."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.what} exited with {server.proc.returncode} before answering /health:\n"
                               f"{_log_tail(server.log)}")
        try:
            if _get(server.port, "/health", timeout=2.0)[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.what} did not answer /health in {START_TIMEOUT_S:.0f} s:\n"
                               f"{_log_tail(server.log)}")
        time.sleep(0.1)


# ------------------------------------------------------------------ wrk


def ensure_wrk(notes: list[str]) -> str:
    """The wrk binary; installed with apt-get (and said so) when it is missing."""
    if Path(WRK).exists():
        return WRK
    found = shutil.which("wrk")
    if found:
        return found
    progress("wrk not found: installing it with `apt-get install -y wrk`")
    if subprocess.run(["apt-get", "install", "-y", "wrk"], check=False).returncode != 0:
        progress("apt-get install failed: running `apt-get update` and trying again")
        subprocess.run(["apt-get", "update"], check=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True)
    notes.append("wrk was missing and this run installed it with `apt-get install -y wrk`")
    found = shutil.which("wrk") or (WRK if Path(WRK).exists() else None)
    if found is None:
        raise RuntimeError("wrk is still missing after apt-get install")
    return found


def _wrk_version(wrk: str) -> str:
    proc = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    first = (proc.stdout or proc.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0].strip() if first else "wrk (unknown version)"


def _write_scripts(work: Path) -> tuple[Path, Path]:
    values = {"ns": NAMESPACE, "env": ENV}
    get_script = work / "get.lua"
    put_script = work / "put.lua"
    get_script.write_text(_GET_LUA % values + _DONE_LUA, encoding="utf-8")
    put_script.write_text(_PUT_LUA % values + _DONE_LUA, encoding="utf-8")
    return get_script, put_script


def _wrk(wrk: str, script: Path, port: int, conns: int, seconds: int, what: str) -> WrkResult:
    argv = [wrk, "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "5s", "--latency", "-s", str(script),
            f"http://127.0.0.1:{port}", "--", f"127.0.0.1:{port}", str(KEYS), _TOKEN[0]]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH-JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({what}, exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(line.removeprefix("BENCH-JSON "))
    result = WrkResult(
        requests=data["requests"], duration_s=data["duration_us"] / 1e6, non_2xx=data["status"],
        socket_errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        p50_us=data["p50_us"], p99_us=data["p99_us"],
    )
    flag = "" if result.non_2xx == result.socket_errors == 0 else \
        f" — {result.non_2xx} non-2xx, {result.socket_errors} socket errors"
    progress(f"  {what}: {result.rps:,.0f} req/s, p50 {fmt_ns(result.p50_us * 1e3)}, "
             f"p99 {fmt_ns(result.p99_us * 1e3)}{flag}")
    return result


# ------------------------------------------------------------------ the store and its ceiling


_TOKEN: list[str] = [""]  # the scoped editor API key of the run's store (set by bench_rest)


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {_TOKEN[0]}"}


def _editor_key(store: Path, key_file: Path, env: dict[str, str]) -> str:
    """An editor API key limited to the namespace `bench` (`llm-config keys create`, which creates the
    store): every request then runs the namespace-scope check of RBAC, not only the role check."""
    cli = str(Path(sys.executable).parent / "llm-config")
    proc = subprocess.run([cli, "-s", str(store), "--key-file", str(key_file), "keys", "create", "--name",
                           "bench-editor", "--role", "editor", "--namespace", NAMESPACE, "--format", "json"],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"llm-config keys create failed ({proc.returncode}): {proc.stderr.strip()}")
    return str(json.loads(proc.stdout)["key"])


def _serve_flags() -> list[str]:
    """The per-key rate limit stays on (its cost is part of every request) with a bucket no benchmark
    empties; everything else — metrics, the access log, the per-address limit of requests without a
    key — as `serve` has it by default."""
    return ["--rate-limit-key", RATE_LIMIT]


def _populate(port: int) -> None:
    """PUT every key once, then GET each one (checking 200): the entries are stored and in L1."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for i in range(KEYS):
            body = json.dumps({"value": i, "env": ENV}).encode()
            conn.request("PUT", f"/api/v1/configs/{NAMESPACE}/k{i}", body=body,
                         headers={"Content-Type": "application/json", **_auth()})
            resp = conn.getresponse()
            resp.read()
            if not 200 <= resp.status < 300:
                raise RuntimeError(f"PUT k{i} answered {resp.status}: {resp.read()[:200]!r}")
    finally:
        conn.close()


def _check_and_copy(port: int, into: Path) -> None:
    """GET every key (200 expected); save k0's response body and headers for the ceiling app."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for i in range(KEYS):
            conn.request("GET", f"/api/v1/configs/{NAMESPACE}/k{i}?env={ENV}", headers=_auth())
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET k{i} answered {resp.status}: {body[:200]!r}")
            if i == 0:
                skip = {"content-length", "date", "server"}  # the server adds these itself
                headers = [[k.lower(), v] for k, v in resp.getheaders() if k.lower() not in skip]
                into.write_text(json.dumps({"body": base64.b64encode(body).decode(), "headers": headers}),
                                encoding="utf-8")
    finally:
        conn.close()


def _ours_argv(impl: str, workers: int, store: Path, key_file: Path, port: int, flags: list[str]) -> list[str]:
    cli = str(Path(sys.executable).parent / "llm-config")
    return [cli, "-s", str(store), "--key-file", str(key_file), "serve", "--port", str(port),
            "--server-impl", impl, "--workers", str(workers), "--cache-ttl", str(CACHE_TTL), *flags]


def _ceiling_argv(impl: str, workers: int, port: int) -> list[str]:
    """The same server options `llm_config.server.runner` passes, as far as each CLI has them."""
    if impl == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "bench.rest_ceiling:app", "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(workers), "--no-access-log", "--no-server-header",
                "--no-proxy-headers", "--lifespan", "on", "--log-level", "warning"]
    granian = str(Path(sys.executable).parent / "granian")
    return [granian, "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port), "--workers",
            str(workers), "--no-ws", "--no-access-log", "--log-level", "warning", "bench.rest_ceiling:app"]


# ------------------------------------------------------------------ the edge, in-process


@dataclass(slots=True)
class EdgeResults:
    """`bench.edge`'s JSON for each metrics mode, its profiles and notes."""

    one: dict[str, Any] | None = None
    multi: dict[str, Any] | None = None
    traced: dict[str, Any] | None = None  # one-process metrics, `serve --tracing`
    profiles: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _edge_once(work: Path, quick: bool, multiprocess: bool, *, tracing: bool = False) -> tuple[dict[str, Any], str]:
    """Run `python -m bench.edge` in a fresh process (stderr, i.e. the access log, to a file)."""
    tag = ("multi" if multiprocess else "one") + ("-traced" if tracing else "")
    out, prof, log = work / f"edge-{tag}.json", work / f"edge-{tag}.prof.txt", work / f"edge-{tag}.log"
    env = _server_env(work, {})
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if multiprocess:
        metrics_dir = work / "edge-prometheus"
        metrics_dir.mkdir(exist_ok=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    argv = [sys.executable, "-m", "bench.edge", "--output", str(out), "--profile", str(prof), "--dir", str(work)]
    if quick:
        argv.append("--quick")
    if tracing:
        argv.append("--tracing")
    progress(f"edge in-process ({'multiprocess' if multiprocess else 'one-process'} metrics): {shlex.join(argv)}")
    with log.open("wb") as err:
        proc = subprocess.run(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                              timeout=EDGE_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.edge failed ({proc.returncode}):\n{_log_tail(log)}")
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    rows = data["rows"]
    progress("  " + ", ".join(f"{name} {fmt_ns(v['ns'])}" for name, v in rows.items()))
    return data, prof.read_text(encoding="utf-8") if prof.exists() else ""


def bench_edge(work: Path, quick: bool) -> EdgeResults:
    """The in-process edge table, once per metrics mode."""
    result = EdgeResults()
    for multiprocess in (False, True):
        data, prof = _edge_once(work, quick, multiprocess)
        if multiprocess:
            result.multi = data
        else:
            result.one = data
        if prof:
            result.profiles.append(prof)
    result.traced, _ = _edge_once(work, quick, False, tracing=True)
    misses = [m["auth_misses"] for m in (result.one, result.multi) if m]
    result.notes.append(
        "the principal cache holds a key for 0.5 s: the authentication loop found it expired "
        f"{' and '.join(str(m) for m in misses)} time(s) (one-process, multiprocess run) and re-authenticated "
        "(a storage read, included in its figure, as the edge would send it to the thread pool)")
    return result


# ------------------------------------------------------------------ the run


def _measure_rounds(wrk: str, script: Path, servers: list[tuple[Server, Series]], conns: int, rounds: int,
                    label: str) -> None:
    """`rounds` rounds of 1 s per server, alternating servers (order reversed every other round)."""
    for i in range(rounds):
        order = servers if i % 2 == 0 else servers[::-1]
        for server, into in order:
            into.runs.append(_wrk(wrk, script, server.port, conns, 1, f"{server.what} {label} round {i + 1}"))


def bench_rest(work: Path, sizes: RestSizes, notes: list[str]) -> list[Point]:
    """For 1 then 2 workers: both APIs and both ceilings run at once (idle but for the one measured),
    their rounds interleaved so a load change on the shared machine hits them all alike."""
    from llm_config import generate_key

    wrk = ensure_wrk(notes)
    get_script, put_script = _write_scripts(work)
    store = work / "rest-store"
    key_file = work / "rest-master.key"
    key_file.write_text(generate_key() + "\n", encoding="utf-8")
    key_file.chmod(0o600)
    response_copy = work / "rest-response.json"
    env = _server_env(work, {"BENCH_REST_RESPONSE": str(response_copy)})
    logs = work / "rest-logs"
    logs.mkdir(exist_ok=True)
    _TOKEN[0] = _editor_key(store, key_file, env)
    flags = _serve_flags()
    points: list[Point] = []
    populated = False
    for workers in WORKERS:
        with ExitStack() as stack:
            here = {impl: Point(impl, workers) for impl in SERVERS}
            points += here.values()
            apis = {}
            for impl in SERVERS:
                port = _free_port()
                apis[impl] = _start(stack, _ours_argv(impl, workers, store, key_file, port, flags), port, env,
                                    logs / f"{impl}-{workers}.log", f"{impl} ×{workers}")
            for server in apis.values():
                _wait_ready(server)
            if not populated:
                _populate(apis[SERVERS[0]].port)
                populated = True
            for server in apis.values():  # every key answers 200 (and sits in this worker's L1)
                _check_and_copy(server.port, response_copy)
            ceilings = {}
            for impl in SERVERS:
                port = _free_port()
                ceilings[impl] = _start(stack, _ceiling_argv(impl, workers, port), port, env,
                                        logs / f"ceiling-{impl}-{workers}.log", f"{impl} ×{workers} ceiling")
            for server in ceilings.values():
                _wait_ready(server)
                status, _, _ = _get(server.port, f"/api/v1/configs/{NAMESPACE}/k0?env={ENV}")  # no key needed
                if status != 200:
                    raise RuntimeError(f"{server.what} answered {status}")
            everyone = [(apis[impl], here[impl]) for impl in SERVERS] + \
                [(ceilings[impl], here[impl]) for impl in SERVERS]
            for server, point in everyone:
                point.warmups.append(_wrk(wrk, get_script, server.port, GET_CONNS, sizes.warmup_s,
                                          f"{server.what} GET warm-up"))
            rate = [(s, p.get_rate if s in apis.values() else p.ceiling_rate) for s, p in everyone]
            latency = [(s, p.get_latency if s in apis.values() else p.ceiling_latency) for s, p in everyone]
            _measure_rounds(wrk, get_script, rate, GET_CONNS, sizes.rounds, f"GET @{GET_CONNS}")
            _measure_rounds(wrk, get_script, latency, LATENCY_CONNS, sizes.rounds, f"GET @{LATENCY_CONNS}")
            if workers == 1:
                for impl in SERVERS:
                    server = apis[impl]
                    here[impl].warmups.append(_wrk(wrk, put_script, server.port, PUT_CONNS, sizes.warmup_s,
                                                   f"{server.what} PUT warm-up"))
                    here[impl].put = _wrk(wrk, put_script, server.port, PUT_CONNS, sizes.put_s,
                                          f"{server.what} PUT @{PUT_CONNS}")
    notes.append(f"load generator: {_wrk_version(wrk)}, `-t1` (one thread) `--timeout 5s --latency`")
    return points


# ------------------------------------------------------------------ report


def _lat(p50_us: float, p99_us: float) -> str:
    return f"{fmt_ns(p50_us * 1e3)} / {fmt_ns(p99_us * 1e3)}"


def _errors(runs: list[WrkResult]) -> str:
    non_2xx = sum(r.non_2xx for r in runs)
    sock = sum(r.socket_errors for r in runs)
    text = f"{non_2xx} / {sock}"
    return text if non_2xx == sock == 0 else f"**{text}**"


def _passed(points: list[Point], impl: str) -> bool:
    runs = [r for p in points if p.impl == impl for r in (*p.ours(), *p.warmups)]
    return bool(runs) and all(r.non_2xx == 0 and r.socket_errors == 0 for r in runs)


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values and min(values) > 0 else 0.0


def _tie(ratio: float) -> str:
    return " (a tie: within 5 %)" if abs(ratio - 1) < 0.05 else ""


def _point(points: list[Point], impl: str, workers: int) -> Point | None:
    return next((p for p in points if p.impl == impl and p.workers == workers), None)


def conclusion(points: list[Point]) -> str:
    """One line: among the servers with zero non-2xx and zero socket errors in every run (warm-ups
    included), the one with the higher cached-GET throughput — the geometric mean over the worker
    counts of the per-round req/s ratios."""
    passed = [impl for impl in SERVERS if _passed(points, impl)]
    failed = [impl for impl in SERVERS if impl not in passed]
    if not passed:
        return "**Conclusion:** no server passed (non-2xx responses or socket errors in every candidate's runs)."
    if len(passed) == 1:
        return (f"**Conclusion:** only {passed[0]} passed ({', '.join(failed)} had non-2xx responses or socket "
                f"errors) → `serve` should default to **{passed[0]}**.")
    first, second = passed[0], passed[1]
    per_workers: dict[int, float] = {}
    for workers in WORKERS:
        a, b = _point(points, first, workers), _point(points, second, workers)
        if a and b and a.get_rate.runs and b.get_rate.runs:
            per_workers[workers] = round_ratio(a.get_rate, b.get_rate)
    overall = _geomean(list(per_workers.values()))
    if overall <= 0:
        return "**Conclusion:** no cached-GET throughput was measured."
    best, other = (first, second) if overall >= 1 else (second, first)
    parts = []
    for workers, ratio in per_workers.items():
        r = ratio if best == first else 1 / ratio
        a, b = _point(points, best, workers), _point(points, other, workers)
        assert a is not None and b is not None
        parts.append(f"{workers} worker{'s' if workers > 1 else ''}: {r:.2f}× {other}'s cached-GET req/s{_tie(r)}, "
                     f"p99 {fmt_ns(a.get_latency.p99_us * 1e3)} vs {fmt_ns(b.get_latency.p99_us * 1e3)}")
    put_a, put_b = (_point(points, best, 1), _point(points, other, 1))
    if put_a and put_b and put_a.put and put_b.put and put_b.put.rps:
        r = put_a.put.rps / put_b.put.rps
        parts.append(f"PUT {r:.2f}× req/s{_tie(r)}")
    lead = overall if best == first else 1 / overall
    head = f"{best} is faster ({lead:.2f}× {other} over 1 and 2 workers)" if lead >= 1.05 else \
        f"{best} leads by only {(lead - 1) * 100:.0f} % over 1 and 2 workers (a tie within 5 %)"
    now = ServeOptions().server_impl
    follow = "its default already" if now == best else f"its default is {now} now: change it"
    return (f"**Conclusion:** for the authenticated, RBAC-checked cached GET {head} — {'; '.join(parts)}; both "
            f"passed (0 non-2xx, 0 socket errors) → `serve` should default to **{best}** ({follow}).")


def _findings(points: list[Point], host: Machine) -> list[str]:
    """Notes that only apply when the numbers say so."""
    out = []
    for impl in SERVERS:
        one, two = _point(points, impl, 1), _point(points, impl, 2)
        if one and two and one.ceiling_rate.runs and two.ceiling_rate.runs and \
                two.ceiling_rate.rps < 1.1 * one.ceiling_rate.rps:
            out.append(
                f"{impl}'s ceiling gains little or nothing from a second worker ({one.ceiling_rate.rps:,.0f} → "
                f"{two.ceiling_rate.rps:,.0f} req/s): {host.cpus} cores shared by 2 workers and wrk are saturated, "
                "so its 2-worker row measures the machine more than the server"
            )
    for p in points:
        if p.put is not None and p.put.p50_us > 0 and p.put.p99_us > 20 * p.put.p50_us:
            out.append(
                f"{p.impl} PUT p99 is {p.put.p99_us / p.put.p50_us:.0f}× its p50: concurrent writes of one process "
                "wait for SQLite's write lock in its busy handler (per-thread connections, `BEGIN IMMEDIATE`, "
                "sleep-and-retry), not in an ordered queue, so some wait far longer than others"
            )
    return out


def _code_note() -> str:
    """Which `llm_config` the servers ran (they inherit this process's PYTHONPATH): others edit src/
    while benchmarks run, so say whether it was this checkout's HEAD, with or without local changes."""
    import llm_config

    pkg = Path(llm_config.__file__).resolve().parent
    if not pkg.is_relative_to(ROOT / "src"):
        return f"code measured: `llm_config` imported from `{pkg}` (through PYTHONPATH), not this checkout's src/"
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=False).stdout.strip() or "?"
    status = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True,
                            text=True, check=False).stdout.splitlines()
    changes = f"{len(status)} uncommitted change(s) under src/ at the end of the run" if status else \
        "no uncommitted change under src/ at the end of the run"
    return f"code measured: this checkout's `src/llm_config`, HEAD {head}, {changes}"


def _versions() -> str:
    out = []
    for dist in ("uvicorn", "granian", "starlette", "fastapi", "uvloop", "httptools"):
        try:
            out.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist} (not installed)")
    return ", ".join(out)


def _goal_rate(p: Point) -> tuple[str, bool | None]:
    if not p.get_rate.runs or not p.ceiling_rate.runs:
        return "—", None
    ratio = round_ratio(p.get_rate, p.ceiling_rate)
    return f"{ratio:.2f}×", ratio >= GOAL_CEILING_SHARE and p.get_rate.rps >= GOAL_RPS


def _met(ok: bool | None) -> str:
    return "—" if ok is None else "yes" if ok else "**no**"


def _edge_rows(edge: EdgeResults) -> list[str]:
    """The in-process table: one column per metrics mode."""
    modes = [m for m in (edge.one, edge.multi) if m is not None]
    if not modes:
        return []

    def ns(mode: dict[str, Any], name: str) -> float:
        return float(mode["rows"][name]["ns"])

    def cell(name: str) -> str:
        return " | ".join(fmt_ns(ns(m, name)) for m in modes)

    def sum_cell(names: tuple[str, ...]) -> str:
        return " | ".join(fmt_ns(sum(ns(m, n) for n in names)) for m in modes)

    def goal_met(name: str) -> str:
        return _met(all(ns(m, name) <= EDGE_RBAC_GOAL_NS for m in modes))

    heads = " | ".join(EDGE_MODE_TITLES[m["metrics_mode"]] for m in modes)
    sep = "|---|" + "---|" * len(modes) + "---|---|"
    steps = ("auth", "rbac_scoped", "rate_limit", "metrics", "access_log")
    rows = [
        f"| step, per request (median of the rounds) | {heads} | goal | met? |",
        sep,
        f"| authentication, principal-cache hit (`extract_token` + `cached_principal`) | {cell('auth')} | — | — |",
        f"| ↳ floor: `dict.get(token)` | {cell('dict_get')} | — | — |",
        f"| RBAC decision `rbac.allowed(p, \"config:read\", \"{NAMESPACE}\", production)`, editor scoped to "
        f"`{NAMESPACE}` | {cell('rbac_scoped')} | ≤ 2 µs | {goal_met('rbac_scoped')} |",
        f"| RBAC decision, unscoped editor | {cell('rbac_unscoped')} | ≤ 2 µs | {goal_met('rbac_unscoped')} |",
        f"| rate-limit check `RateLimiter.hit_local(\"key\", key_id)` ({RATE_LIMIT}) | {cell('rate_limit')} | — | — |",
        "| metrics of one cached GET (`record_rbac` + `record_operation` + `record_http`: 3 counters, "
        f"2 histograms) | {cell('metrics')} | — | — |",
        f"| access-log line (`logs.access_line`: orjson, written to the server's log file) | {cell('access_log')} "
        "| — | — |",
        f"| sum of the five steps | {sum_cell(steps)} | — | — |",
        f"| **whole edge**: the app `serve` builds, called as ASGI, cached GET of a random key (access log on) "
        f"| {cell('edge')} | — | — |",
        f"| ↳ the same app with `access_log=False` | {cell('edge_no_log')} | — | — |",
        "| ↳ the access log's share in context (whole edge − the same with `access_log=False`) | "
        + " | ".join(fmt_ns(ns(m, "edge") - ns(m, "edge_no_log")) for m in modes) + " | — | — |",
        f"| ↳ the same app with the rate limit off (`rate_limit_key=\"0\"`), access log on "
        f"| {cell('edge_no_rate_limit')} | — | — |",
        "| ↳ the rate limit's share in context (whole edge − the same with the rate limit off) | "
        + " | ".join(fmt_ns(ns(m, "edge") - ns(m, "edge_no_rate_limit")) for m in modes) + " | — | — |",
        "| ↳ its `EdgeMiddleware` called directly, access log on (skips `FastAPI.__call__` with its native-"
        "telemetry check, `ServerErrorMiddleware`, `ExceptionTelemetryMiddleware`, `AppBodyLimitMiddleware`) "
        f"| {cell('edge_direct')} | — | — |",
        "| ↳ the share of those outer layers (whole edge − `EdgeMiddleware` alone) | "
        + " | ".join(fmt_ns(ns(m, "edge") - ns(m, "edge_direct")) for m in modes) + " | — | — |",
        f"| ↳ floor: bare Starlette app (`bench/rest_ceiling.py`) called the same way, same bytes "
        f"| {cell('ceiling')} | — | — |",
        "| ↳ whole edge ÷ bare Starlette (median of per-round ratios) | "
        + " | ".join(f"{m['edge_ratio']:.1f}×" for m in modes) + " | — | — |",
        "| ↳ whole edge − bare Starlette: what the edge adds per request | "
        + " | ".join(fmt_ns(ns(m, "edge") - ns(m, "ceiling")) for m in modes) + " | — | — |",
    ]
    traced, off = edge.traced, edge.one
    if traced is not None and off is not None:
        rows += [
            "", "Tracing (`serve --tracing`, the `otel` extra): the same whole-edge cached GET in a process of its own "
            "(one-process metrics), every app traced — request span, `llm_config.peek_record`, `cache.l1.get` — "
            "through a batch span processor whose exporter drops the spans. Off (the default) the edge runs no "
            "tracing code: the access log's `tracing_on()` test is its only trace, and the row above is the cost.", "",
            "| cached GET, per request (median of the rounds) | tracing off (row above) | tracing on | on − off |",
            "|---|---|---|---|",
            f"| whole edge | {fmt_ns(ns(off, 'edge'))} | {fmt_ns(ns(traced, 'edge'))} "
            f"| {fmt_ns(ns(traced, 'edge') - ns(off, 'edge'))} |",
            f"| ↳ bare Starlette in the same process (the two runs' common floor) | {fmt_ns(ns(off, 'ceiling'))} "
            f"| {fmt_ns(ns(traced, 'ceiling'))} | — |",
            f"| ↳ whole edge ÷ bare Starlette | {off['edge_ratio']:.1f}× | {traced['edge_ratio']:.1f}× | — |",
        ]
        if "edge_sampled_10" in traced["rows"]:
            rows.append(
                f"| whole edge, 10 % of traces sampled (`parentbased_traceidratio`, 0.1: the prod overlay) "
                f"| {fmt_ns(ns(off, 'edge'))} | {fmt_ns(ns(traced, 'edge_sampled_10'))} "
                f"| {fmt_ns(ns(traced, 'edge_sampled_10') - ns(off, 'edge'))} |")
    return rows


def render_rest(points: list[Point], *, command: str, host: Machine, runtime_s: float, notes: list[str],
                load: str, sizes: RestSizes, edge: EdgeResults | None = None) -> str:
    if os.environ.get("PYTHONPATH"):  # the servers inherit it: it may choose the code measured
        command = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} {command}"
    all_runs = [r for p in points for r in (*p.ours(), *p.ceiling(), *p.warmups)]
    lines = [
        "## REST API: uvicorn vs granian",
        "",
        f"- command: `{command}` (`make bench` runs `.venv/bin/python -m bench.run`; "
        "`python -m bench.rest` runs this section alone)",
        f"- date: `{host.date}`; section runtime {runtime_s / 60:.1f} min",
        f"- machine: {host.cpus} CPUs (`nproc`), {host.cpu_model}, Python {host.python}, SQLite {host.sqlite}; "
        f"1-min load average {load} (start → end of the section)",
        f"- software: {_versions()}",
        f"- request: `GET /api/v1/configs/{NAMESPACE}/k{{i}}?env={ENV}`, i random among {KEYS:,} cached keys, "
        f"`Authorization: Bearer <editor key limited to namespace {NAMESPACE}>`; server: `llm-config serve "
        f"--rate-limit-key {RATE_LIMIT} --cache-ttl {CACHE_TTL}` (rate limit on, never refusing; metrics on; "
        f"access log {'on' if ServeOptions().access_log else 'off'} — `serve`'s default — one JSON line per request "
        "on stderr, redirected to a file)",
        f"- wrk, all runs of the section (warm-ups and ceilings included): {_errors(all_runs)} non-2xx / socket "
        "errors",
        "",
        "### Authenticated, RBAC-checked cached GET vs its ceiling",
        "",
        f"| server | workers | req/s @{GET_CONNS} conn, median (range) | ceiling req/s @{GET_CONNS} "
        f"| ours ÷ ceiling | goal ≥ {GOAL_CEILING_SHARE:.0%} of ceiling and ≥ {GOAL_RPS:,} req/s "
        f"| p50 / p99 @{LATENCY_CONNS} conn | ceiling p50 / p99 @{LATENCY_CONNS} | goal p99 ≤ 3 ms "
        "| non-2xx / socket errors (ceiling) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points:
        share, share_ok = _goal_rate(p)
        p99_ok = p.get_latency.p99_us <= GOAL_P99_US if p.get_latency.runs else None
        lines.append(
            f"| {p.impl} | {p.workers} | {p.get_rate.rps:,.0f}{p.get_rate.spread} "
            f"| {p.ceiling_rate.rps:,.0f}{p.ceiling_rate.spread} | {share} | {_met(share_ok)} "
            f"| {_lat(p.get_latency.p50_us, p.get_latency.p99_us)} "
            f"| {_lat(p.ceiling_latency.p50_us, p.ceiling_latency.p99_us)} | {_met(p99_ok)} "
            f"| {_errors([*p.get_rate.runs, *p.get_latency.runs])} ({_errors(p.ceiling())}) |"
        )
    lines += [
        "",
        f"### Authenticated durable PUT on SQLite, random of {KEYS:,} keys, {PUT_CONNS} connections",
        "",
        "| server | workers | req/s | p50 / p99 | non-2xx / socket errors |",
        "|---|---|---|---|---|",
    ]
    for p in points:
        if p.put is not None:
            lines.append(f"| {p.impl} | {p.workers} | {p.put.rps:,.0f} | {_lat(p.put.p50_us, p.put.p99_us)} "
                         f"| {_errors([p.put])} |")
    if edge is not None and (edge.one or edge.multi):
        lines += ["", "### Cost of each edge step per request, in-process (no network, no server)", ""]
        lines += _edge_rows(edge)
    lines += ["", conclusion(points), "", "How it is measured:", ""]
    lines += [
        f"- each server is a real process in its own process group: `.venv/bin/llm-config -s <tmp store> "
        f"--key-file <tmp key file> serve --port <free port> --server-impl X --workers N --cache-ttl {CACHE_TTL} "
        f"--rate-limit-key {RATE_LIMIT}` (the L1 TTL is raised from its default 5 s so no entry expires during "
        "the run: every measured GET is a cache hit answered on the event loop; the principal cache keeps its "
        "0.5 s, so each worker re-authenticates the key in its thread pool twice a second, as in production), "
        "waited for through `GET /health`, stopped with SIGTERM to its process group; its stderr (the access "
        "log) goes to a file",
        "- the key: `llm-config keys create --name bench-editor --role editor --namespace "
        f"{NAMESPACE}` — RBAC checks the role and that `{NAMESPACE}` lies inside the key's namespaces on every "
        "request",
        "- per worker count, the two APIs and the two ceilings run at the same time (each idle but while it is "
        f"measured): a {sizes.warmup_s} s wrk warm-up each at {GET_CONNS} connections, then {sizes.rounds} "
        f"rounds of 1 s per server at {GET_CONNS} connections (req/s), then {sizes.rounds} rounds at "
        f"{LATENCY_CONNS} connections (p50/p99), the servers taking turns within each round (order reversed "
        "every other round); figures are medians over the rounds, ratios medians of the per-round ratios, the "
        "range in brackets the slowest and fastest round — the machine is shared, so this keeps load changes "
        "out of the comparison",
        f"- wrk's Lua `init()` builds the list of {KEYS:,} requests (each with a Host header) and `request()` "
        f"picks a random one; the keys were written with `PUT` (one durable transaction each) before the first "
        "measurement, and every API GETs them all once (all 200) before wrk starts; with 2 workers the "
        "warm-up fills the second worker's L1",
        "- ceiling: `bench/rest_ceiling.py`, a bare Starlette app (one `Route`) answering every GET with the "
        "bytes and headers copied from a real response of the API, served by `python -m uvicorn` / `granian "
        "--interface asgi` with the same worker count and the options the runner uses (no access log, no "
        "websockets); no authentication, RBAC, rate limit, metrics or log: the difference is the edge's cost",
        f"- PUT: `{{\"value\": N, \"env\": \"{ENV}\"}}` to a random key of the same {KEYS:,} (a new version "
        f"each: one SQLite transaction with fsync, audited), {sizes.warmup_s} s warm-up then {sizes.put_s} s at "
        f"{PUT_CONNS} connections, 1 worker, uvicorn then granian",
        "- non-2xx / socket errors: wrk's counters (status ≥ 400; connect, read, write and timeout errors) "
        "summed over the row's measured runs; warm-ups are checked too and count for the conclusion",
        f"- the machine has {host.cpus} CPUs and wrk takes a good part of one: with 2 workers the servers "
        "compete with wrk for the cores",
        "- in-process edge table: `python -m bench.edge` (a process of its own, run twice: prometheus-client picks "
        "its value store at import time — plain in-memory values as `serve` on uvicorn with 1 worker, or "
        "memory-mapped files shared by the workers when `PROMETHEUS_MULTIPROC_DIR` is set, as `serve` does for "
        "granian and for more than 1 worker); each step in a tight loop next to its floor in interleaved rounds "
        "with the garbage collector off (loop overhead ~10-20 ns included); the whole edge awaits the app with a "
        "minimal HTTP scope (the wrk request's headers), a constant `receive` and a `send` that checks the status "
        "(all 200), on uvloop, no lifespan; the keys were cached by one GET each first",
    ]
    if edge is not None:
        lines += [f"- {note}" for note in edge.notes]
    lines += [f"- {note}" for note in (*notes, _code_note(), *_findings(points, host))]
    if edge is not None and edge.profiles and _any_missed(points, edge):
        lines += ["", "<details><summary>Profiles of the edge (goals missed)</summary>", "", "```text"]
        lines += [p.rstrip() for p in edge.profiles]
        lines += ["```", "", "</details>"]
    return "\n".join(lines) + "\n"


def _any_missed(points: list[Point], edge: EdgeResults) -> bool:
    for p in points:
        if _goal_rate(p)[1] is False or (p.get_latency.runs and p.get_latency.p99_us > GOAL_P99_US):
            return True
    modes = [m for m in (edge.one, edge.multi) if m is not None]
    return any(m["rows"][n]["ns"] > EDGE_RBAC_GOAL_NS for m in modes for n in ("rbac_scoped", "rbac_unscoped"))


def write_rest_section(path: Path, section: str) -> None:
    """Replace what lies between the rest markers; without them, add the block after the core section
    (or at the end). Keeps the rest of the file."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{section}{END}"
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    elif _CORE_END in text:
        head, tail = text.split(_CORE_END, 1)
        text = f"{head}{_CORE_END}\n\n{block}\n{tail.lstrip(chr(10))}"
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_name(path.name + ".rest.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def run_section(*, quick: bool, command: str, parent: str | None) -> str:
    """Measure and render the section (used by `bench.run` and by `main`)."""
    sizes = RestSizes.quick() if quick else RestSizes()
    started = time.perf_counter()
    host = machine()
    load_start = load_average()
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="llm-config-bench-rest-", dir=parent) as tmp:
        progress(f"REST section: stores and logs under {tmp}; {sizes}")
        edge = bench_edge(Path(tmp), quick)
        points = bench_rest(Path(tmp), sizes, notes)
    runtime = time.perf_counter() - started
    return render_rest(points, command=command, host=host, runtime_s=runtime, notes=notes,
                       load=f"{load_start} → {load_average()}", sizes=sizes, edge=edge)


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.rest", description="The REST section of BENCHMARKS.md.")
    parser.add_argument("--quick", action="store_true", help=f"{RestSizes.quick().rounds} rounds of 1 s per point")
    parser.add_argument("--output", type=Path, default=None,
                        help="file whose rest section is rewritten (default: BENCHMARKS.md; --quick writes only "
                        "when --output is given)")
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    parser.add_argument("--dir", default=None, help="parent of the temporary store (default: $TMPDIR)")
    args = parser.parse_args(args_list)
    section = run_section(quick=args.quick, command=command_line("bench.rest", args_list), parent=args.dir)
    print(section)
    output = args.output if args.output is not None else None if args.quick else ROOT / "BENCHMARKS.md"
    if output is not None and not args.no_write:
        write_rest_section(output, section)
        progress(f"wrote the rest section of {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
