"""The REST edge in-process: the cost per request of each step, without a network or a server.

`python -m bench.edge --output FILE [--quick] [--profile FILE]` runs in its own process so that
prometheus-client chooses its mode from the environment at import time, as a server worker does:
`bench.rest` runs it twice, once as is (one-process metrics, as `serve` on uvicorn with 1 worker)
and once with `PROMETHEUS_MULTIPROC_DIR` set (memory-mapped metrics, as `serve` on granian or with
several workers). Its stderr is the app's log (one JSON access line per request, as `serve`
writes them by default), which `bench.rest` sends to a file.

Measured, each against a floor and in interleaved rounds (`bench.harness.interleave`):

- auth: `extract_token` + `cached_principal` for a principal-cache hit (what the edge does before
  anything can go to the thread pool), next to a `dict.get`;
- the RBAC decision `rbac.allowed(principal, "config:read", ns, env)` for a namespace-scoped and an
  unscoped editor;
- the rate-limit check `RateLimiter.hit_local("key", key_id)` (bucket 1000000:1000000);
- metrics: what the edge records for one cached GET (`record_rbac`, `record_operation`, `record_http`);
- the access-log line of one request (`logs.access_line`: orjson → the server's stderr handler);
- the whole edge: the FastAPI app `serve` builds (`create_app`, edge middleware, scoped editor key,
  rate limit on, metrics, access log on — again with `access_log=False`, again with the rate limit
  off, and its `EdgeMiddleware` alone), called as an ASGI app with a minimal scope, receive and
  send for a cached GET of a random key among 1,000; next to the bare Starlette app of
  `bench/rest_ceiling.py` called the same way with the same bytes and headers.

With `--tracing` every app is built as `serve --tracing` builds it (OpenTelemetry request, manager
and cache spans; a batch span processor whose exporter drops them), to put a price on tracing — and
once more on a manager whose provider samples 10 % of traces (`parentbased_traceidratio`, 0.1, as
the prod overlay configures), `edge_sampled_10`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.harness import Timing, interleave

__all__ = ["EdgeSizes", "main"]

NAMESPACE: Final = "bench"
ENV: Final = "production"
KEYS: Final = 1_000
RATE: Final = "1000000:1000000"
_ROOT: Final = Path(__file__).resolve().parents[1]
_SITE: Final = Path(asyncio.__file__).resolve().parent.parent  # the standard library's directory


@dataclass(frozen=True, slots=True)
class EdgeSizes:
    rounds: int = 7
    micro_n: int = 100_000
    log_n: int = 10_000
    asgi_n: int = 4_000

    @classmethod
    def quick(cls) -> EdgeSizes:
        return cls(rounds=3, micro_n=20_000, log_n=2_000, asgi_n=1_000)


def _scope(path: str, token: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": f"env={ENV}".encode(), "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"wrk"),
                    (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080), "state": {},
    }


class _Sink:
    """ASGI send: remembers the statuses and body sizes of one batch."""

    __slots__ = ("bad", "body", "headers", "status")

    def __init__(self) -> None:
        self.status = 0
        self.bad = 0
        self.body = b""
        self.headers: list[tuple[bytes, bytes]] = []

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
            if self.status != 200:
                self.bad += 1
        elif message["type"] == "http.response.body":
            self.body = message.get("body", b"")


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _asgi_runner(app: Any, scopes: list[dict[str, Any]], loop: asyncio.AbstractEventLoop,
                 sink: _Sink) -> Callable[[int], None]:
    """`run(n)`: n GETs of random keys through `app`, each with a fresh copy of its scope."""
    picks = [random.randrange(len(scopes)) for _ in range(1 << 16)]
    send = sink.send

    async def batch(n: int) -> None:
        for i in range(n):
            await app(dict(scopes[picks[i & 0xFFFF]]), _receive, send)

    def run(n: int) -> None:
        loop.run_until_complete(batch(n))

    return run


def _micro_steps(manager: Any, token: str, principal: Any) -> list[tuple[str, Callable[[int], None], int]]:
    """Each edge step alone, with its floor: `(name, run, share of micro_n)`."""
    from llm_config import Environment, rbac
    from llm_config.models import Principal, Role
    from llm_config.server.auth import cached_principal, extract_token
    from llm_config.server.limits import RateLimiter, parse_rate
    from llm_config.server.telemetry import record_http, record_operation, record_rbac

    unscoped = Principal(actor="key:unscoped", role=Role.EDITOR, key_id="k-unscoped")
    auth_header = f"Bearer {token}".encode()

    def auth(n: int) -> None:
        for _ in range(n):
            presented, _ = extract_token(auth_header, None)
            assert presented is not None
            if cached_principal(manager, presented) is None:  # expired (0.5 s): the edge would use the pool
                _AUTH_MISSES[0] += 1
                manager.authenticate(presented)

    lookup = {token: principal}.get

    def dict_get(n: int) -> None:
        t = token
        for _ in range(n):
            lookup(t)

    prod = Environment.PRODUCTION
    allowed = rbac.allowed

    def rbac_scoped(n: int) -> None:
        p = principal
        for _ in range(n):
            allowed(p, "config:read", NAMESPACE, prod)

    def rbac_unscoped(n: int) -> None:
        p = unscoped
        for _ in range(n):
            allowed(p, "config:read", NAMESPACE, prod)

    hit = RateLimiter(parse_rate(RATE, "rate-limit-key"), None).hit_local
    key_id = principal.key_id or principal.actor

    def rate_limit(n: int) -> None:
        for _ in range(n):
            result = hit("key", key_id)
            assert result is not None and result.allowed

    template = "/api/v1/configs/{ns}/{key}"

    def record(n: int) -> None:  # what the edge records for one cached GET
        for _ in range(n):
            record_rbac(True)
            record_operation("get", ENV, "ok", 2e-5)
            record_http("GET", template, 200, 4e-5)

    def empty(n: int) -> None:
        for _ in range(n):
            pass

    return [("auth", auth, 1), ("dict_get", dict_get, 1), ("rbac_scoped", rbac_scoped, 1),
            ("rbac_unscoped", rbac_unscoped, 1), ("rate_limit", rate_limit, 1), ("metrics", record, 4),
            ("empty_loop", empty, 1)]


def _log_step(actor: str) -> Callable[[int], None]:
    """The access-log line the edge writes (`edge/respond.py`) for one request (`logs.access_line`)."""
    from llm_config.server.logs import access_line

    def log_line(n: int) -> None:
        for _ in range(n):
            access_line("GET", "/api/v1/configs/{ns}/{key}", 200, 0.041, "0123456789abcdef0123456789abcdef",
                        "127.0.0.1", actor)

    return log_line


_AUTH_MISSES = [0]


def _store(work: Path) -> tuple[Path, str, str]:
    """A store with the 1,000 keys and an editor API key limited to the namespace."""
    from llm_config import ConfigManager, generate_key

    store = work / "edge-store"
    key = generate_key()
    with ConfigManager.open(store, encryption_key=key, create=True) as writer:
        for i in range(KEYS):
            writer.set(NAMESPACE, f"k{i}", i, env=ENV)
        _, token = writer.create_api_key("bench-editor", "editor", namespaces=[NAMESPACE])
    return store, key, token


def _edge_middleware(app: Any) -> Any:
    """The app's `EdgeMiddleware`: outermost (`app.edge_app`), or inside the built middleware stack."""
    from llm_config.server.edge import EdgeMiddleware

    edge = getattr(app, "edge_app", None)
    while edge is not None and not isinstance(edge, EdgeMiddleware):  # under the tracing middleware
        edge = getattr(edge, "app", None)
    if isinstance(edge, EdgeMiddleware):
        return edge
    if app.middleware_stack is None:
        app.middleware_stack = app.build_middleware_stack()
    layer = app.middleware_stack
    while layer is not None and not isinstance(layer, EdgeMiddleware):
        layer = getattr(layer, "app", None)
    if layer is None:
        raise RuntimeError("no EdgeMiddleware in the app")
    return layer


def _dropping_provider(ratio: float = 1.0) -> Any:
    """A TracerProvider as `serve --tracing` builds it (batch processor), whose exporter drops the spans;
    `ratio` < 1: sampled as `OTEL_TRACES_SAMPLER=parentbased_traceidratio` with that argument says."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    return provider


def _new_loop() -> tuple[asyncio.AbstractEventLoop, str]:
    """uvloop's event loop, as `serve` runs (asyncio's where uvloop is missing), made current."""
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        name = "uvloop"
    except ImportError:  # pragma: no cover - uvloop is a dependency of the server extra
        loop = asyncio.new_event_loop()
        name = "asyncio"
    asyncio.set_event_loop(loop)
    return loop, name


def measure(work: Path, sizes: EdgeSizes, profile_to: Path | None, *, traced: bool = False) -> dict[str, Any]:
    from llm_config import ConfigManager, metrics
    from llm_config.server.app import create_app
    from llm_config.server.logs import configure as configure_logging
    from llm_config.settings import ServeOptions

    loop, loop_name = _new_loop()
    store, key, token = _store(work)
    configure_logging()  # as `serve`: one JSON line per event on stderr (redirected by the caller)
    manager = ConfigManager.open(store, encryption_key=key, cache_ttl=3600)
    out: dict[str, Any] = {"metrics_mode": "multiprocess" if metrics.multiprocess_dir() else "one process",
                           "loop": loop_name, "rows": {}, "tracing": traced}
    provider = _dropping_provider() if traced else None
    # traced: also a manager of its own whose spans are sampled at 10 %, as the prod overlay configures
    sampled = (ConfigManager.open(store, encryption_key=key, cache_ttl=3600), _dropping_provider(0.1)) \
        if traced else None
    try:
        app, quiet_app, unlimited_app = (
            create_app(manager, ServeOptions(cache_ttl=3600, rate_limit_key=rate, access_log=log),
                       tracer_provider=provider)
            for rate, log in ((RATE, True), (RATE, False), ("0", True)))
        apps = [app, quiet_app, unlimited_app]
        if sampled is not None:
            apps.append(create_app(sampled[0], ServeOptions(cache_ttl=3600, rate_limit_key=RATE, access_log=True),
                                   tracer_provider=sampled[1]))
        scopes = [_scope(f"/api/v1/configs/{NAMESPACE}/k{i}", token) for i in range(KEYS)]
        sink = _Sink()
        for i in range(KEYS):  # fill L1 (the first GET of a key takes the slow path) and check every key
            for each in apps:
                loop.run_until_complete(each(dict(scopes[i]), _receive, sink.send))
        if sink.bad:
            raise RuntimeError(f"{sink.bad} of the warm-up GETs did not answer 200")
        # the ceiling answers with the bytes and headers of k999's real response (as in bench.rest)
        skip = {b"content-length", b"date", b"server"}
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in sink.headers if k.lower() not in skip}
        from bench.rest_ceiling import build_app

        run_ours = _asgi_runner(app, scopes, loop, sink)
        edge_runs = [("edge", run_ours), ("edge_no_log", _asgi_runner(quiet_app, scopes, loop, sink)),
                     ("edge_no_rate_limit", _asgi_runner(unlimited_app, scopes, loop, sink)),
                     ("edge_direct", _asgi_runner(_edge_middleware(app), scopes, loop, sink)),
                     ("ceiling", _asgi_runner(build_app(sink.body, headers), scopes, loop, sink))]
        if sampled is not None:
            edge_runs.append(("edge_sampled_10", _asgi_runner(apps[3], scopes, loop, sink)))
        principal = manager.authenticate(token)
        micro = _micro_steps(manager, token, principal)
        timings = interleave([(run, sizes.micro_n // share) for _, run, share in micro], sizes.rounds)
        results: dict[str, Timing] = {name: t for (name, _, _), t in zip(micro, timings, strict=True)}
        results["access_log"] = interleave([(_log_step(principal.actor), sizes.log_n)], sizes.rounds)[0]
        timings = interleave([(run, sizes.asgi_n) for _, run in edge_runs], sizes.rounds)
        results.update((name, t) for (name, _), t in zip(edge_runs, timings, strict=True))
        if sink.bad:
            raise RuntimeError(f"{sink.bad} measured GETs did not answer 200")
        out["rows"] = {name: {"ns": t.per_op_ns, "rounds": list(t.rounds)} for name, t in results.items()}
        out["edge_ratio"] = _median_ratio(results["edge"], results["ceiling"])
        out["auth_misses"] = _AUTH_MISSES[0]
        if profile_to is not None:
            title = f"whole edge, cached GET ({out['metrics_mode']} metrics, access log on)"
            profile_to.write_text(_profile(run_ours, sizes.asgi_n * 2, title), encoding="utf-8")
    finally:
        _close(loop, manager, provider, sampled)
    return out


def _close(loop: asyncio.AbstractEventLoop, manager: Any, provider: Any, sampled: tuple[Any, Any] | None) -> None:
    manager.close()
    loop.close()
    if provider is not None:
        provider.shutdown()
    if sampled is not None:
        sampled[0].close()
        sampled[1].shutdown()


def _profile(run: Callable[[int], None], n: int, title: str, top: int = 40) -> str:
    """cProfile `run(n)`, sorted by cumulative time: where the per-request time of each layer goes."""
    profiler = cProfile.Profile()
    gc.collect()
    gc.disable()
    try:
        profiler.enable()
        run(n)
        profiler.disable()
    finally:
        gc.enable()
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("cumulative").print_stats(top)
    lines = [line.replace(str(_SITE), "…").replace(str(_ROOT), ".") for line in buffer.getvalue().splitlines()
             if line.strip()]
    return f"### cProfile: {title} ({n} calls, sorted by cumulative time)\n" + "\n".join(lines) + "\n"


def _median_ratio(ours: Timing, base: Timing) -> float:
    pairs = sorted(a / b for a, b in zip(ours.rounds, base.rounds, strict=True))
    return pairs[len(pairs) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.edge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True, help="JSON results")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", type=Path, default=None, help="also cProfile the whole edge into FILE")
    parser.add_argument("--dir", default=None)
    parser.add_argument("--tracing", action="store_true",
                        help="the apps traced (serve --tracing) with a batch processor whose exporter drops spans")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    sizes = EdgeSizes.quick() if args.quick else EdgeSizes()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llm-config-bench-edge-", dir=args.dir) as tmp:
        out = measure(Path(tmp), sizes, args.profile, traced=args.tracing)
    out["runtime_s"] = time.perf_counter() - started
    args.output.write_text(json.dumps(out), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
