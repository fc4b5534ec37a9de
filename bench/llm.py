"""The LLM-native operations of the library (issue 11), each next to a baseline, in one run.

An embedded store (SQLite in a temporary directory, `cache_ttl=3600`, no Redis), this process:

1. **render**: `ConfigManager.render` of a stored template (10 variables, 2 `{{ config:KEY }}` references
   read through the manager's L1 cache, the template row too) against Jinja2's sandboxed render of the
   same text (compiled once; the two references as variables) — the whole library call against the
   template engine alone. `bench.templates` has the engine-only comparison.
2. **resolve**: `ConfigManager.resolve` of a 100-key namespace (50 keys in `base`, 50 in `production`)
   against 100 `get(…, with_overrides=True)` L1 hits of the same keys.
3. **diff**: `ConfigManager.diff` of two 1,000-key environments (50 secrets on each side, compared
   decrypted; 100 values differ) against reading both environments' rows (`storage.list_current` twice:
   the floor of any diff).
4. **promote**: a dry run (the plan) of those 1,000 keys, and applying 100 changed keys as one
   transaction of compare-and-set writes, against importing the same 100 changed keys (`import_`, also one
   transaction with compare-and-set).

`python -m bench.llm [--quick] [--write BENCHMARKS.md]` prints the Markdown section (progress on stderr);
with `--write` it replaces the text between `<!-- llm:begin -->` and `<!-- llm:end -->`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from jinja2.sandbox import SandboxedEnvironment

from bench.harness import Timing, fmt_ns, fmt_rate, interleave, progress, ratio
from bench.report import command_line, emit_section, load_average, machine
from bench.templates import CONFIG, TEXT, _jinja_text, _values
from llm_config import ConfigManager, Environment, generate_key

__all__ = ["BEGIN", "END", "main", "run_section"]

BEGIN: Final = "<!-- llm:begin -->"
END: Final = "<!-- llm:end -->"
NS: Final = "bench/llm"
BASE, STAGING, PROD = Environment.BASE, Environment.STAGING, Environment.PRODUCTION


@dataclass(frozen=True, slots=True)
class Sizes:
    rounds: int = 7
    render_n: int = 5_000
    resolve_n: int = 500
    diff_keys: int = 1_000
    diff_n: int = 10
    changed: int = 100

    @classmethod
    def quick(cls) -> Sizes:
        return cls(rounds=3, render_n=500, resolve_n=50, diff_keys=200, diff_n=3, changed=20)


def _loop(fn: Callable[[], object]) -> Callable[[int], object]:
    def run(n: int) -> None:
        for _ in range(n):
            fn()
    return run


def _row(number: str, name: str, ours: Timing, base_name: str, base: Timing) -> str:
    return (f"| {number} | {name} | {fmt_ns(ours.per_op_ns)} | {fmt_rate(ours.ops_per_s)} | {base_name} | "
            f"{fmt_ns(base.per_op_ns)} | {ratio(ours, base):.2f}× |")


def bench_render(mgr: ConfigManager, sizes: Sizes) -> str:
    progress(f"llm 1: render through the manager ({sizes.render_n:,} × {sizes.rounds})")
    for key, value in CONFIG.items():
        mgr.set(NS, key, value, env=BASE)
    mgr.set_template(NS, "prompt", TEXT, env=PROD)
    values = _values()
    jinja = SandboxedEnvironment(keep_trailing_newline=True, autoescape=False).from_string(_jinja_text())
    jinja_values = {**values, "openai_model": CONFIG["openai.model"],
                    "openai_temperature": CONFIG["openai.temperature"]}
    assert mgr.render(NS, "prompt", values, env=PROD) == jinja.render(jinja_values)
    ours, base = interleave([(_loop(lambda: mgr.render(NS, "prompt", values, env=PROD)), sizes.render_n),
                             (_loop(lambda: jinja.render(jinja_values)), sizes.render_n)], sizes.rounds)
    return _row("1", "`mgr.render`: stored template, 10 variables, 2 config references", ours,
                "Jinja2 sandboxed render of the same text (compiled once)", base)


def bench_resolve(mgr: ConfigManager, sizes: Sizes) -> str:
    progress(f"llm 2: resolve a 100-key namespace ({sizes.resolve_n:,} × {sizes.rounds})")
    ns = NS + "/resolve"
    keys = [f"app.setting_{i:03d}" for i in range(100)]
    mgr.import_(ns, {k: i for i, k in enumerate(keys[:50])}, env=BASE)
    mgr.import_(ns, {k: i for i, k in enumerate(keys[50:])}, env=PROD)
    assert len(mgr.resolve(ns, env=PROD)) == 100

    def gets() -> None:
        for key in keys:
            mgr.get(ns, key, env=PROD, with_overrides=True)

    ours, base = interleave([(_loop(lambda: mgr.resolve(ns, env=PROD)), sizes.resolve_n),
                             (_loop(gets), sizes.resolve_n)], sizes.rounds)
    return _row("2", "`mgr.resolve`: 100 keys (50 base, 50 production)", ours,
                "100 × `get(with_overrides=True)`, L1 hits", base)


def _fill(mgr: ConfigManager, ns: str, sizes: Sizes) -> None:
    secrets = 50 if sizes.diff_keys >= 1000 else 10
    plain = {f"k{i:05d}": {"n": i, "model": "gpt-4o"} for i in range(sizes.diff_keys - secrets)}
    mgr.import_(ns, {"values": plain, "secrets": {f"s{i:03d}": f"sk-{i}" for i in range(secrets)}}, env=STAGING)
    changed = {f"k{i:05d}": {"n": -i - 1, "model": "gpt-4o"} for i in range(sizes.changed)}
    mgr.import_(ns, {"values": {**plain, **changed},
                     "secrets": {f"s{i:03d}": f"sk-{i}" for i in range(secrets)}}, env=PROD)


def bench_diff(mgr: ConfigManager, sizes: Sizes) -> str:
    progress(f"llm 3: diff two {sizes.diff_keys:,}-key environments ({sizes.diff_n} × {sizes.rounds})")
    ns = NS + "/diff"
    _fill(mgr, ns, sizes)
    diff = mgr.diff(ns, from_env=STAGING, to_env=PROD)
    assert len(diff.changed) == sizes.changed and not diff.not_compared

    def rows() -> None:
        mgr.storage.list_current(ns, STAGING)
        mgr.storage.list_current(ns, PROD)

    ours, base = interleave([(_loop(lambda: mgr.diff(ns, from_env=STAGING, to_env=PROD)), sizes.diff_n),
                             (_loop(rows), sizes.diff_n)], sizes.rounds)
    return _row("3", f"`mgr.diff`: two {sizes.diff_keys:,}-key environments (secrets compared decrypted)", ours,
                "reading both environments' rows (the floor)", base)


def bench_promote(mgr: ConfigManager, sizes: Sizes) -> list[str]:
    progress(f"llm 4: promote plan and apply ({sizes.rounds} rounds)")
    ns = NS + "/promote"
    _fill(mgr, ns, sizes)
    plans, applies, imports = [], [], []
    for r in range(sizes.rounds):
        start = time.perf_counter_ns()
        plan = mgr.promote(ns, from_env=PROD, to_env=STAGING, dry_run=True)
        plans.append(time.perf_counter_ns() - start)
        assert len(plan.steps) == sizes.changed
        start = time.perf_counter_ns()
        mgr.promote(ns, from_env=PROD, to_env=STAGING, plan=plan)
        applies.append(time.perf_counter_ns() - start)
        # the same 100 keys back to other values, as one import (the baseline of the same writes)
        doc = {f"k{i:05d}": {"n": i * 1000 + r, "model": "gpt-4o"} for i in range(sizes.changed)}
        start = time.perf_counter_ns()
        mgr.import_(ns, doc, env=STAGING)
        imports.append(time.perf_counter_ns() - start)
        mgr.import_(ns, {f"k{i:05d}": {"n": i * 1000 + r, "model": "x"} for i in range(sizes.changed)}, env=PROD)
    def timing(samples: list[int]) -> Timing:
        return Timing(statistics.median(samples), tuple(float(s) for s in samples))

    plan_t, apply_t, import_t = timing(plans), timing(applies), timing(imports)
    return [
        f"| 4a | `mgr.promote(dry_run=True)`: the plan over {sizes.diff_keys:,} keys | {fmt_ns(plan_t.per_op_ns)} | "
        f"{fmt_rate(plan_t.ops_per_s)} | — | — | — |",
        _row("4b", f"`mgr.promote(plan=…)`: apply {sizes.changed} changed keys, one transaction", apply_t,
             f"`import_` of the same {sizes.changed} changes (one transaction)", import_t),
    ]


def run_section(sizes: Sizes, argv: list[str]) -> str:
    host = machine()
    load_start = load_average()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp, \
            ConfigManager.open(str(Path(tmp) / "store"), encryption_key=generate_key(), cache_ttl=3600) as mgr:
        rows = [bench_render(mgr, sizes), bench_resolve(mgr, sizes), bench_diff(mgr, sizes),
                *bench_promote(mgr, sizes)]
    lines = [
        "## LLM-native operations: render, resolve, diff, promote",
        "",
        f"- command: `{command_line('bench.llm', argv)}`",
        f"- date: `{host.date}`; runtime {time.monotonic() - started:.0f} s; {host.cpus} CPUs, {host.cpu_model}, "
        f"Python {host.python}; 1-min load average {load_start} → {load_average()}",
        "- embedded SQLite store (`synchronous=FULL`), L1 cache, no Redis; medians over "
        f"{sizes.rounds} alternating rounds (rows 4: one operation per round)",
        "",
        "| # | measurement | ours (median) | ours rate | baseline | baseline (median) | ratio |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.llm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test in seconds")
    parser.add_argument("--write", type=Path, default=None, metavar="FILE",
                        help="replace the llm section of FILE (e.g. BENCHMARKS.md)")
    args = parser.parse_args(args_list)
    section = run_section(Sizes.quick() if args.quick else Sizes(), args_list)
    emit_section(section, args.write, begin=BEGIN, end=END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
