"""Online master-key rotation (`rotate-key`) of a store of N secrets (20,000; 2,000 with `--quick`), in rows/s.

On each backend — SQLite, PostgreSQL, MariaDB — a fresh store is filled with N secrets through `import_`
batches of 10,000 (one transaction each: N sealed versions, their current rows, N audit events). Then, in one
run: `ConfigManager.rotate_key` to a new key with the default batch size (200 rows per write transaction:
read a page, open and re-seal each value, compare-and-set the version row and its current row, recompute
both row MACs, count the seals; then a second pass that finds nothing left, the instance secret and the
`key_rotated` event); and a re-run over the rotated store (a read-only pass: what a re-run or a check costs).
Next to them, the floor: AES-256-GCM open + seal of the same values in-process, no storage. Fresh
PostgreSQL schemas and MariaDB databases are dropped at the end, on error too.

`python -m bench.rotation [--quick] [--write FILE]` prints the Markdown section; `run_section` renders it for
`bench.run`, between `BEGIN` and `END` in BENCHMARKS.md."""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Final

from bench.backends_sql import fresh_database
from bench.harness import progress
from bench.report import command_line, emit_section, load_average, machine
from llm_config import generate_key
from llm_config.core.custody import place
from llm_config.core.manager import ConfigManager
from llm_config.crypto.aead import Keyring
from llm_config.models import Environment

__all__ = ["BEGIN", "END", "main", "run_section"]

BEGIN: Final = "<!-- rotation:begin -->"
END: Final = "<!-- rotation:end -->"
FILL_BATCH: Final = 10_000
BACKENDS: Final = ("sqlite", "postgresql", "mysql")
VALUE: Final = "sk-proj-" + "x" * 56  # the size of a typical provider API key


def _fill(manager: ConfigManager, n: int) -> None:
    for start in range(0, n, FILL_BATCH):
        stop = min(start + FILL_BATCH, n)
        manager.import_(f"bench/ns{start // FILL_BATCH}",
                        {"secrets": {f"key{i}": f"{VALUE}{i}" for i in range(start, stop)}}, env="production")


def _crypto_floor(n: int) -> float:
    """Seconds to open and re-seal `n` values in-process (AES-256-GCM both ways, envelopes parsed and built)."""
    old, new = base64.b64decode(generate_key()), base64.b64decode(generate_key())
    ring = Keyring([old])
    aad = place("bench/ns0", "key0", Environment.PRODUCTION)
    sealed = [ring.seal(f"{VALUE}{i}".encode(), aad) for i in range(n)]
    rotated = ring.with_primary(new)
    started = time.perf_counter()
    for envelope in sealed:
        rotated.seal(rotated.open(envelope, aad), aad)
    return time.perf_counter() - started


def run_section(*, quick: bool, command: str, parent: str | None = None) -> str:
    n = 2_000 if quick else 20_000
    host = machine()
    load_start = load_average()
    started = time.perf_counter()
    rows: list[str] = []
    fills: list[str] = []
    with tempfile.TemporaryDirectory(prefix="llm-config-bench-rotation-", dir=parent) as tmp, ExitStack() as stack:
        work = Path(tmp)
        for backend in BACKENDS:
            old, new = generate_key(), generate_key()
            target = stack.enter_context(fresh_database(backend, f"rotate_{backend}", work))
            manager = stack.enter_context(ConfigManager.open(target, encryption_key=old, actor="bench"))
            progress(f"filling {backend} with {n:,} secrets")
            fill_started = time.perf_counter()
            _fill(manager, n)
            fills.append(f"{backend} {time.perf_counter() - fill_started:.1f} s")
            progress(f"rotating {backend}")
            rotate_started = time.perf_counter()
            summary = manager.rotate_key(base64.b64decode(new))
            rotate_s = time.perf_counter() - rotate_started
            assert summary.complete and summary.resealed == n, summary
            progress(f"re-running on {backend}")
            rerun_started = time.perf_counter()
            again = manager.rotate_key(base64.b64decode(new))
            rerun_s = time.perf_counter() - rerun_started
            assert again.resealed == 0 and again.complete, again
            rows.append(f"| {backend} | {rotate_s:.2f} s | {n / rotate_s:,.0f} | {summary.batches} batches, "
                        f"{summary.passes} passes | {rerun_s:.2f} s ({n / rerun_s:,.0f} rows/s checked) |")
    floor_s = _crypto_floor(n)
    rows.append(f"| floor: AES-256-GCM open + seal in-process, no storage | {floor_s:.2f} s | {n / floor_s:,.0f} | "
                "| |")
    runtime = time.perf_counter() - started
    lines = [
        "## Key rotation",
        "",
        f"- command: `{command}`",
        f"- date: `{host.date}`; runtime {runtime:.0f} s; machine: {host.cpus} CPUs, {host.cpu_model}, "
        f"Python {host.python}, SQLite {host.sqlite}; 1-min load {load_start} → {load_average()}",
        f"- store: {n:,} secrets of {len(VALUE) + 5} bytes, one version each, filled by `import_` batches of "
        f"{FILL_BATCH:,} ({', '.join(fills)}); PostgreSQL 15 and MariaDB 10.11 on loopback; nothing else writing",
        "",
        "| backend | `rotate_key` wall time | rows re-sealed/s | | re-run (nothing left to do) |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "A rotation re-seals each secret version and, with it, its entry's current row (same ciphertext), in "
        "write transactions of 200 rows that other writers queue behind for one batch at most; the second "
        "pass reads every sealed row again and finds nothing left (that pass is the re-run column's cost, "
        "included in the wall time). The floor is the cryptography alone: the rest is the database — the "
        "page read, two compare-and-set updates per row, the commit.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.rotation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 secrets instead of 20,000")
    parser.add_argument("--write", type=Path, default=None, metavar="FILE",
                        help="also rewrite the rotation section of FILE (e.g. BENCHMARKS.md)")
    args = parser.parse_args(args_list)
    section = run_section(quick=args.quick, command=command_line("bench.rotation", args_list))
    emit_section(section, args.write, begin=BEGIN, end=END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
