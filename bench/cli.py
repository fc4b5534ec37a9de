"""Row 5: wall time of a whole `llm-config get` process vs `python -c pass` on the same interpreter."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Sizes
from bench.harness import Row, fmt_ns, progress
from llm_config import ConfigManager

__all__ = ["bench_cli"]

CLI_GOAL_NS = 120_000_000
NS, KEY, VALUE = "acme/chatbot", "openai.model", "gpt-4o-mini"


def _clean_env(work: Path, *, bytecode: bool) -> dict[str, str]:
    """No LLM_CONFIG_* variables (so no key: plain reads need none) and an empty XDG config home,
    so no default key file or config file is picked up either.

    With `bytecode`, compiled bytecode is written to and read from a private PYTHONPYCACHEPREFIX
    (an installed package has its .pyc files; a sandbox with PYTHONDONTWRITEBYTECODE=1 and sources
    edited since the last compile would otherwise recompile every module on every run). Without
    it, the inherited environment's bytecode setting is kept as it is.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLM_CONFIG_")}
    xdg = work / "xdg-empty"
    xdg.mkdir(exist_ok=True)
    env["XDG_CONFIG_HOME"] = str(xdg)
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def _wall_ns(argv: list[str], env: dict[str, str]) -> int:
    start = time.perf_counter_ns()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter_ns() - start


def _spread(samples: list[int]) -> tuple[float, float]:
    """Median and 90th percentile."""
    p90 = statistics.quantiles(samples, n=10, method="inclusive")[-1] if len(samples) > 1 else samples[0]
    return statistics.median(samples), p90


def _importtime(argv: list[str], env: dict[str, str], top: int = 15) -> str:
    """`-X importtime` of one CLI run: the modules with the largest cumulative import time."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], env=env, capture_output=True,
                          text=True, check=False)
    rows = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    rows.sort(reverse=True)
    body = "\n".join(f"{us / 1000:8.1f} ms  {name}" for us, name in rows[:top])
    return f"### -X importtime of `llm-config get` (cumulative, top {top})\n{body}\n"


def _measure(argv: list[str], baseline: list[str], env: dict[str, str], runs: int) -> tuple[list[int], list[int]]:
    """Two warm-up runs each (page cache, bytecode), then `runs` runs interleaved with the baseline."""
    for _ in range(2):
        _wall_ns(argv, env)
        _wall_ns(baseline, env)
    ours: list[int] = []
    floor: list[int] = []
    for _ in range(runs):  # interleaved, so drift hits both alike
        ours.append(_wall_ns(argv, env))
        floor.append(_wall_ns(baseline, env))
    return ours, floor


def _probe_error(argv: list[str], env: dict[str, str]) -> str:
    """Why `argv` does not print the value ("" when it does)."""
    try:
        probe = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{type(exc).__name__}: {exc}"
    if probe.returncode == 0 and VALUE in probe.stdout:
        return ""
    return f"exit {probe.returncode}: {(probe.stderr or probe.stdout).strip().splitlines()[-1:]}"


def bench_cli(work: Path, key: str, sizes: Sizes, profiles: list[str], notes: list[str],
              etcdctl: list[str] | None = None) -> list[Row]:
    """Row 5a: `llm-config get` without a key; 5b: with the master key in the environment (the CLI then
    unseals the instance secret and checks the row's MAC); each against `python -c pass`, interleaved.
    5c (when `etcdctl` is given: an `etcdctl get` command line of the same value in a running etcd):
    etcd's CLI against the same baseline."""
    progress(f"5: CLI `llm-config get` wall time ({sizes.cli_runs} runs, interleaved with `python -c pass`)")
    store = work / "cli"
    with ConfigManager.open(store, encryption_key=key) as writer:
        writer.set(NS, KEY, VALUE)  # the default environment (development), what a bare `get` reads
    exe = Path(sys.executable).parent / "llm-config"
    argv = [str(exe), "-s", str(store), "get", NS, KEY]
    baseline = [sys.executable, "-c", "pass"]
    base_name = "`python -c pass`, same interpreter"
    plain_env = _clean_env(work, bytecode=True)
    keyed_env = {**plain_env, "LLM_CONFIG_KEY": key}
    cases = [
        ("5a", "CLI `llm-config -s STORE get NS KEY`, whole process (no key)", argv, plain_env),
        ("5b", "the same with the master key in `LLM_CONFIG_KEY` (row MAC checked)", argv, keyed_env),
    ]
    if etcdctl is not None:
        cases.append(("5c", "peer: `etcdctl get` of the same value from a local etcd", etcdctl, plain_env))
    rows: list[Row] = []
    for number, name, command, env in cases:
        error = _probe_error(command, env)
        if error:
            progress(f"{number}: not available: {error}")
            rows.append(Row(number, name, "not measured", "—", base_name, "—", "—", "≤ 120 ms", None,
                            note=f"the command did not work in this run ({error})"))
            continue
        ours, floor = _measure(command, baseline, env, sizes.cli_runs)
        med, p90 = _spread(ours)
        base_med, base_p90 = _spread(floor)
        goal, met = ("≤ 120 ms (median)", med <= CLI_GOAL_NS) if number != "5c" else ("—", None)
        rows.append(Row(number, name, f"median {fmt_ns(med)}, p90 {fmt_ns(p90)}", f"{1e9 / med:.1f}/s", base_name,
                        f"median {fmt_ns(base_med)}, p90 {fmt_ns(base_p90)}", f"+{fmt_ns(med - base_med)}",
                        goal, met))
        if met is False:
            profiles.append(_importtime(command, env))
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        inherited = _clean_env(work, bytecode=False)
        as_is = [_wall_ns(argv, inherited) for _ in range(max(3, sizes.cli_runs // 3))]
        notes.append(
            f"row 5a with this shell's PYTHONDONTWRITEBYTECODE=1 kept (bytecode is read but never written, so "
            f"modules edited since `make` last compiled them are compiled on every run): median "
            f"{fmt_ns(statistics.median(as_is))} over {len(as_is)} runs"
        )
    return rows
