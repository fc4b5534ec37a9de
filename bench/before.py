"""The price of row integrity and the hardening work, measured against the code before it, in one run.

`BEFORE` is the last commit before row MACs (issue "Integrity and abuse hardening"). It is checked
out into a temporary git worktree and both versions run the same probe, in alternating subprocesses
(before, now, before, now, …) so that the machine's drift hits both alike:

- cold `get` (`cache_ttl=0`: every call reads storage; now that includes the row MAC and the
  freshness probe of its newest audit event) next to a raw `sqlite3` `SELECT *` of the same row (16
  columns before, 19 now), in the same process;
- durable `set` of a plain value (now: MACs of the version and entry rows, the event's subject).

Also here: how long a viewer's 20 KB document of nested `[` takes to be refused over HTTP (the review
measured a thread held ~130 s by it before), next to an admin's refusal of the same document after
its capped parse.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import Row, fmt_ns, fmt_rate, progress

__all__ = ["BEFORE", "bench_before", "bench_refusal"]

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "43ffe17"  # "Clean-up after review…", the last commit before row integrity

_PROBE = r"""
import json, sqlite3, sys, time, gc
from llm_config import ConfigManager
store, key, n_get, n_set = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
NS, KEY, VALUE = "acme/chatbot", "openai.params", {"model": "gpt-4o", "temperature": 0.2, "max_tokens": 1024}
with ConfigManager.open(store, encryption_key=key) as w:
    w.set(NS, KEY, VALUE, env="production")
cold = ConfigManager.open(store, encryption_key=key, cache_ttl=0)
raw = sqlite3.connect(store + "/config.db", isolation_level=None)
q = "SELECT * FROM entries WHERE namespace = ? AND environment = ? AND key = ?"  # the whole row, as stored
for _ in range(200):
    cold.get(NS, KEY, env="production"); raw.execute(q, (NS, "production", KEY)).fetchone()
gc.collect(); gc.disable()
t = time.perf_counter_ns()
for _ in range(n_get):
    cold.get(NS, KEY, env="production")
get_ns = (time.perf_counter_ns() - t) / n_get
t = time.perf_counter_ns()
for _ in range(n_get):
    raw.execute(q, (NS, "production", KEY)).fetchone()
raw_ns = (time.perf_counter_ns() - t) / n_get
for i in range(5):
    cold.set(NS, "openai.model", f"warm-{i}", env="production")
t = time.perf_counter_ns()
for i in range(n_set):
    cold.set(NS, "openai.model", f"gpt-4o-{i}", env="production")
set_ns = (time.perf_counter_ns() - t) / n_set
gc.enable()
cold.close()
print(json.dumps({"get_ns": get_ns, "raw_ns": raw_ns, "set_ns": set_ns}))
"""


def _worktree(into: Path) -> Path | None:
    """A checkout of BEFORE (None, with a message, if git cannot make one here)."""
    target = into / "before"
    proc = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(target), BEFORE],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        progress(f"before: no worktree of {BEFORE}: {proc.stderr.strip()[:200]}")
        return None
    return target


def _remove_worktree(target: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(target)],
                   capture_output=True, check=False)


def _probe(src: Path, store: Path, key: str, n_get: int, n_set: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CONFIG_")}
    env["PYTHONPATH"] = str(src)
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(store), key, str(n_get), str(n_set)],
                          env=env, capture_output=True, text=True, timeout=600, check=True)
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def bench_before(work: Path, key: str, rounds: int, n_get: int, n_set: int) -> tuple[list[Row], list[str]]:
    """Rows B1-B2: cold get and durable set, now against BEFORE, alternating subprocess rounds."""
    progress(f"B: cold get and durable set against {BEFORE} ({rounds} alternating rounds)")
    tree = _worktree(work)
    if tree is None:
        return [Row("B", f"comparison with {BEFORE}", "not measured", "—", "—", "—", "—",
                    note="git could not check out the earlier commit here")], []
    try:
        now: list[dict[str, float]] = []
        before: list[dict[str, float]] = []
        for i in range(rounds):
            before.append(_probe(tree / "src", work / f"before-{i}", key, n_get, n_set))
            now.append(_probe(ROOT / "src", work / f"now-{i}", key, n_get, n_set))
    finally:
        _remove_worktree(tree)

    def med(samples: list[dict[str, float]], name: str) -> float:
        return statistics.median(s[name] for s in samples)

    get_ratio_now = statistics.median(s["get_ns"] / s["raw_ns"] for s in now)
    get_ratio_before = statistics.median(s["get_ns"] / s["raw_ns"] for s in before)
    set_ratio = statistics.median(b["set_ns"] / n["set_ns"] for b, n in zip(before, now, strict=True))
    rows = [
        Row("B1", "cold `get` (`cache_ttl=0`), row MAC and freshness checked", fmt_ns(med(now, "get_ns")),
            fmt_rate(1e9 / med(now, "get_ns")), f"the same at {BEFORE} (no row MACs); raw SELECT in each",
            f"{fmt_ns(med(before, 'get_ns'))}; raw {fmt_ns(med(now, 'raw_ns'))}",
            f"{get_ratio_now:.2f}× raw now, {get_ratio_before:.2f}× raw before", "≤ 2× raw",
            get_ratio_now <= 2.0),
        Row("B2", "durable `set`, plain value, with row MACs", fmt_ns(med(now, "set_ns")),
            fmt_rate(1e9 / med(now, "set_ns")), f"the same at {BEFORE}", fmt_ns(med(before, "set_ns")),
            f"{set_ratio:.2f}× the rate before", "—", None),
    ]
    notes = [
        f"rows B1-B2: `git worktree` of {BEFORE} and this tree, each probe a fresh process and store; {rounds} "
        f"rounds alternating before/now, {n_get:,} cold gets and {n_set} sets per round; the raw SELECT reads "
        "the whole row (`SELECT *`: 16 columns before, 19 now, the MAC among them) on its own connection in "
        "the same process; ratios are medians of per-round ratios",
    ]
    return rows, notes


def _timed(client: Any, method: str, url: str, **kw: Any) -> tuple[int, float]:
    start = time.perf_counter_ns()
    response = client.request(method, url, **kw)
    return response.status_code, time.perf_counter_ns() - start


def bench_refusal(work: Path, key: str, repeats: int) -> tuple[list[Row], list[str]]:
    """Row B3: a viewer's 20 KB nested-YAML import refused (403) before any parser runs, over HTTP."""
    import httpx
    from tests.e2e.conftest import ServerThread

    from llm_config.core.manager import ConfigManager
    from llm_config.server.app import create_app
    from llm_config.settings import ServeOptions

    progress("B3: refusal of a viewer's 20 KB nested YAML import")
    manager = ConfigManager.open(work / "refusal", encryption_key=key)
    viewer = manager.create_api_key("viewer", "viewer")[1]
    admin = manager.create_api_key("admin", "admin")[1]
    options = ServeOptions(rate_limit_key="0", rate_limit_ip="0", access_log=False)
    thread = ServerThread(create_app(manager, options), options)
    port = thread.start()
    body = b"[" * 20_000
    url = f"http://127.0.0.1:{port}/api/v1/namespaces/acme/-/import"
    headers = {"Content-Type": "application/yaml"}
    try:
        with httpx.Client(timeout=60) as client:
            refused: list[float] = []
            parsed: list[float] = []
            for _ in range(repeats):
                status, ns = _timed(client, "POST", url, content=body,
                                    headers={**headers, "Authorization": f"Bearer {viewer}"})
                assert status == 403, status
                refused.append(ns)
                status, ns = _timed(client, "POST", url, content=body,
                                    headers={**headers, "Authorization": f"Bearer {admin}"})
                assert status == 400, status
                parsed.append(ns)
    finally:
        thread.stop()
        manager.close()
    rows = [Row("B3", "viewer's 20 KB nested-YAML import over HTTP: 403 before any parser runs",
                fmt_ns(statistics.median(refused)), "—",
                "an admin's same import: 400 after libyaml's event stream stops at nesting 35",
                fmt_ns(statistics.median(parsed)), f"at {BEFORE}: ~130 s of a server thread (issue #6, not re-run)",
                "no parser before authorization", None)]
    notes = [f"row B3: uvicorn in a thread, one httpx client, {repeats} requests each, alternating; median wall "
             "time; the 403 includes writing its `access_denied` audit event (one fsync'd commit), the 400 "
             "does not (a refused document changes nothing)"]
    return rows, notes


if __name__ == "__main__":
    from llm_config import generate_key

    with tempfile.TemporaryDirectory() as tmp:
        found, _ = bench_before(Path(tmp), generate_key(), 3, 2000, 100)
        for row in found:
            print(row)
