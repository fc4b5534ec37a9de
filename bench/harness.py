"""Timing, formatting and the result row shared by every benchmark.

Every micro measurement runs a warm-up pass, then `rounds` timed passes of `n` operations each with
the garbage collector off, and reports the median per-operation time over the rounds.
"""

from __future__ import annotations

import cProfile
import gc
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Row", "Timing", "fmt_ns", "fmt_rate", "interleave", "measure", "profile", "progress", "ratio"]


@dataclass(frozen=True, slots=True)
class Timing:
    """Median nanoseconds per operation over the rounds, and every round's figure."""

    per_op_ns: float
    rounds: tuple[float, ...]

    @property
    def ops_per_s(self) -> float:
        return 1e9 / self.per_op_ns if self.per_op_ns > 0 else float("inf")


@dataclass(slots=True)
class Row:
    """One line of the table: our figure next to its floor, and the goal if there is one."""

    number: str
    name: str
    ours: str
    ours_rate: str
    baseline_name: str
    baseline: str
    ratio: str
    goal: str = "—"
    met: bool | None = None
    note: str = ""

    @property
    def met_text(self) -> str:
        return "—" if self.met is None else "yes" if self.met else "**no**"


def measure(run: Callable[[int], object], n: int, rounds: int, warmup: int | None = None) -> Timing:
    """Time `run(n)` (which performs `n` operations) `rounds` times after one warm-up call."""
    return interleave([(run, n)], rounds, warmup)[0]


def interleave(
    runs: Sequence[tuple[Callable[[int], object], int]], rounds: int, warmup: int | None = None
) -> list[Timing]:
    """Time several `(run, n)` alternately, round by round, so a load change hits them all alike.

    The machine is shared (tests run next to the benchmark), so a figure and its baseline are
    always measured in alternating rounds, and ratios are taken per round (`ratio`).
    """
    for run, n in runs:
        run(warmup if warmup is not None else max(1, n // 10))
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    samples: list[list[float]] = [[] for _ in runs]
    try:
        for _ in range(rounds):
            for (run, n), into in zip(runs, samples, strict=True):
                start = time.perf_counter_ns()
                run(n)
                into.append((time.perf_counter_ns() - start) / n)
    finally:
        if was_enabled:
            gc.enable()
    return [Timing(statistics.median(s), tuple(s)) for s in samples]


def ratio(ours: Timing, base: Timing) -> float:
    """Median over the rounds of ours/base per-operation time (the rounds were interleaved)."""
    return statistics.median(a / b for a, b in zip(ours.rounds, base.rounds, strict=True))


def profile(run: Callable[[int], object], n: int, title: str, top: int = 14) -> str:
    """cProfile `run(n)`; the top functions by own time, as text (for a missed goal's diagnosis)."""
    profiler = cProfile.Profile()
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()  # as in the timed loops: a full collection over a big L1 would dominate the profile
    try:
        profiler.enable()
        run(n)
        profiler.disable()
    finally:
        if was_enabled:
            gc.enable()
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.sort_stats("tottime").print_stats(top)
    body = "\n".join(line for line in buffer.getvalue().splitlines() if line.strip())
    return f"### cProfile: {title} ({n} calls, sorted by own time)\n{body}\n"


def fmt_ns(ns: float) -> str:
    """A duration with a unit a reader can compare at a glance."""
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.2f} µs" if ns < 10_000 else f"{ns / 1e3:.1f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.2f} ms" if ns < 10_000_000 else f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e9:.2f} s"


def fmt_rate(per_second: float) -> str:
    """Operations per second with thousands separators (or k/M for the big ones)."""
    if per_second >= 10_000_000:
        return f"{per_second / 1e6:.1f} M/s"
    if per_second >= 100_000:
        return f"{per_second / 1e3:,.0f} k/s"
    if per_second >= 100:
        return f"{per_second:,.0f}/s"
    return f"{per_second:.1f}/s"


def progress(message: str) -> None:
    """Progress goes to stderr so stdout stays the Markdown table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
