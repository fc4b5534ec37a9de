"""Whole-process wall time of `llm-config run NS -e production -- true` next to `env true`.

A local SQLite store holds a 20-key namespace (12 keys in base, 8 in production of which 2 are secrets); the
master key is in `LLM_CONFIG_KEY`, so each run opens the store, unseals the instance secret, resolves the
namespace with the secrets decrypted (an audited read: one audit event per run), builds the environment and
execs `true`. The floor is `env true` (the same exec without us) and, for the interpreter's share, `python -c
pass` on the same interpreter. The three commands run interleaved (A B C A B C …) after two warm-up rounds, so
a drift of the machine's speed hits all alike; each row gives the median, min and max over the runs.

`python -m bench.run_cmd [--runs N] [--write FILE]` prints the Markdown section; `measure` returns the rows
and `run_section` renders them for `bench.run`, between `BEGIN` and `END` in BENCHMARKS.md."""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.cli import _clean_env
from bench.harness import progress
from bench.report import command_line, emit_section, load_average, machine
from llm_config import generate_key
from llm_config.core.manager import ConfigManager

__all__ = ["BEGIN", "END", "GOAL_MS", "RunRow", "main", "measure", "run_section"]

BEGIN: Final = "<!-- run:begin -->"
END: Final = "<!-- run:end -->"
NS: Final = "acme/chatbot"
RUNS: Final = 20
GOAL_MS: Final = 200.0
"""The goal for the whole `llm-config run … -- true` process (reported, never asserted)."""


@dataclass(frozen=True, slots=True)
class RunRow:
    """One command's whole-process wall times in milliseconds."""

    name: str
    median_ms: float
    min_ms: float
    max_ms: float
    runs: int
    cpu_median_ms: float
    """User + system time of the process (and what it waited for): less moved by a busy machine than wall time."""


def _fill(store: Path, key: str) -> None:
    """20 keys: 12 plain in base, 6 plain and 2 secrets in production."""
    with ConfigManager.open(str(store), encryption_key=key, actor="bench") as manager:
        for i in range(12):
            manager.set(NS, f"base.setting_{i:02d}", f"value-{i}" if i % 3 else i * 10, env="base")
        for i in range(6):
            manager.set(NS, f"prod.setting_{i:02d}", {"n": i, "on": True} if i % 2 else f"prod-{i}", env="production")
        manager.set(NS, "openai.api_key", "sk-bench-" + "x" * 40, env="production", secret=True)
        manager.set(NS, "anthropic.api_key", "sk-ant-bench-" + "y" * 40, env="production", secret=True)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _wall_ms(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) milliseconds of one whole run of `argv`."""
    cpu = _cpu_s()
    start = time.perf_counter_ns()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                   check=True)
    wall = (time.perf_counter_ns() - start) / 1e6
    return wall, (_cpu_s() - cpu) * 1e3


def _commands(store: Path) -> list[tuple[str, list[str]]]:
    exe = Path(sys.executable).with_name("llm-config")
    env_exe = shutil.which("env") or "/usr/bin/env"
    true_exe = shutil.which("true") or "true"
    return [
        ("`llm-config run NS -e production -- true`", [str(exe), "-s", str(store), "run", NS, "-e", "production",
                                                       "--", true_exe]),
        ("floor: `env true`", [env_exe, true_exe]),
        ("interpreter floor: `python -c pass`", [sys.executable, "-c", "pass"]),
    ]


def measure(*, runs: int = RUNS, parent: str | None = None) -> list[RunRow]:
    """Fill a fresh store, check that `run` sees the namespace, then time the commands interleaved."""
    key = generate_key()
    with tempfile.TemporaryDirectory(prefix="llm-config-bench-run-", dir=parent) as tmp:
        work = Path(tmp)
        store = work / "store"
        _fill(store, key)
        env = {**_clean_env(work, bytecode=True), "LLM_CONFIG_KEY": key}
        commands = _commands(store)
        probe = subprocess.run(
            [*commands[0][1][:-1], "sh", "-c", 'test -n "$OPENAI_API_KEY" && test -n "$BASE_SETTING_00"'],
            env=env, capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            raise RuntimeError(f"`llm-config run` does not work here: exit {probe.returncode}: {probe.stderr.strip()}")
        progress(f"run: {len(commands)} commands x {runs} runs, interleaved after 2 warm-up rounds")
        samples: list[list[float]] = [[] for _ in commands]
        cpu: list[list[float]] = [[] for _ in commands]
        for round_ in range(runs + 2):
            for i, (_, argv) in enumerate(commands):
                wall, used = _wall_ms(argv, env)
                if round_ >= 2:
                    samples[i].append(wall)
                    cpu[i].append(used)
    return [RunRow(name, statistics.median(s), min(s), max(s), len(s), statistics.median(c))
            for (name, _), s, c in zip(commands, samples, cpu, strict=True)]


def render(rows: list[RunRow], *, command: str, runtime_s: float, load: str) -> str:
    host = machine()
    ours, floor = rows[0], rows[1]
    met = "yes" if ours.median_ms <= GOAL_MS else "**no**"
    lines = [
        "## `llm-config run`: whole-process wall time",
        "",
        f"- command: `{command}`",
        f"- date: `{host.date}`; runtime {runtime_s:.0f} s; machine: {host.cpus} CPUs, {host.cpu_model}, "
        f"Python {host.python}, SQLite {host.sqlite}; 1-min load {load} → {load_average()}",
        "- store: local SQLite, one 20-key namespace (12 keys in base, 8 in production incl. 2 secrets); master key "
        "in `LLM_CONFIG_KEY`; each run resolves production over base with the secrets decrypted (audited) and "
        "execs `true`",
        "",
        "| command | wall median | min | max | CPU median (user + sys) | runs |",
        "|---|---|---|---|---|---|",
        *(f"| {r.name} | {r.median_ms:.1f} ms | {r.min_ms:.1f} ms | {r.max_ms:.1f} ms | {r.cpu_median_ms:.1f} ms | "
          f"{r.runs} |" for r in rows),
        "",
        f"`run` costs {ours.median_ms - floor.median_ms:.1f} ms over `env true` (median); goal ≤ {GOAL_MS:.0f} ms "
        f"for the whole process: met: {met}. The machine is shared: a wide min–max or a wall median far above the CPU "
        "median says the run waited for a processor (read the 1-min load above).",
    ]
    return "\n".join(lines) + "\n"


def run_section(*, runs: int = RUNS, command: str | None = None, parent: str | None = None) -> str:
    started = time.perf_counter()
    load = load_average()
    rows = measure(runs=runs, parent=parent)
    return render(rows, command=command or command_line("bench.run_cmd", []), runtime_s=time.perf_counter() - started,
                  load=load)


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.run_cmd", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS, help=f"timed runs of each command (default {RUNS})")
    parser.add_argument("--write", type=Path, default=None, metavar="FILE",
                        help="also rewrite the run section of FILE (e.g. BENCHMARKS.md)")
    args = parser.parse_args(args_list)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    section = run_section(runs=args.runs, command=command_line("bench.run_cmd", args_list))
    emit_section(section, args.write, begin=BEGIN, end=END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
