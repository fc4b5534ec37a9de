"""Backup, restore and migrate of a store of N entries (100,000; 10,000 with `--quick`), in entries/s.

One SQLite store is filled through `import_` batches of 10,000 keys (one transaction each: N entries, N
versions, N audit events). Then, in one run: `ConfigManager.backup` to a file (one read snapshot, gzip'd
JSON lines, SHA-256 manifest); `ConfigManager.restore` of that file into a fresh store on each backend (the
whole-file check, then the load in one transaction with `audit verify` of the loaded rows under the
backup's own keys before it commits — timed together, as a user waits for them); and `migrate_to` from the
SQLite store into a fresh store on each server backend (copy, read-back digest and `audit verify` on the
target). Fresh PostgreSQL schemas and MariaDB databases are dropped at the end, on error too.

`python -m bench.backup [--quick] [--write FILE]` prints the Markdown section; `run_section` renders it for
`bench.run`, between `BEGIN` and `END` in BENCHMARKS.md."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Final

from bench.backends_sql import fresh_database
from bench.harness import progress
from bench.report import command_line, emit_section, load_average, machine
from llm_config import generate_key
from llm_config.core.manager import ConfigManager

__all__ = ["BEGIN", "END", "main", "run_section"]

BEGIN: Final = "<!-- backup:begin -->"
END: Final = "<!-- backup:end -->"
BATCH: Final = 10_000
BACKENDS: Final = ("sqlite", "postgresql", "mysql")


def _fill(manager: ConfigManager, n: int) -> None:
    for start in range(0, n, BATCH):
        stop = min(start + BATCH, n)
        manager.import_(f"bench/ns{start // BATCH}",
                        {f"key{i}": {"model": "gpt-4o", "temperature": 0.2, "i": i} for i in range(start, stop)},
                        env="production")


def _timed(what: str, call: Callable[[], object]) -> float:
    progress(what)
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def run_section(*, quick: bool, command: str, parent: str | None = None) -> str:
    n = 10_000 if quick else 100_000
    host = machine()
    load_start = load_average()
    started = time.perf_counter()
    key = generate_key()
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="llm-config-bench-backup-", dir=parent) as tmp, ExitStack() as stack:
        work = Path(tmp)
        source = stack.enter_context(ConfigManager.open(str(work / "source"), encryption_key=key, actor="bench"))
        fill_s = _timed(f"filling a SQLite store with {n:,} entries", lambda: _fill(source, n))
        backup_file = work / "store.backup"

        def backup() -> None:
            with backup_file.open("wb") as out:
                source.backup(out)

        backup_s = _timed("backup", backup)
        size = backup_file.stat().st_size
        rows.append(f"| backup (SQLite → file) | {backup_s:.2f} s | {n / backup_s:,.0f} | "
                    f"{size / 2**20:.1f} MiB file |")
        for backend in BACKENDS:
            target = stack.enter_context(fresh_database(backend, f"restore_{backend}", work))
            target_manager = stack.enter_context(ConfigManager.open(target, encryption_key=key, actor="bench"))

            def restore(manager: ConfigManager = target_manager) -> None:
                with backup_file.open("rb") as stream:
                    summary = manager.restore(stream)
                assert summary.verified, summary.problems

            restore_s = _timed(f"restore into {backend}", restore)
            rows.append(f"| restore (file → {backend}), check + load + verify before commit | {restore_s:.2f} s | "
                        f"{n / restore_s:,.0f} | |")
        for backend in BACKENDS[1:]:
            target = stack.enter_context(fresh_database(backend, f"migrate_{backend}", work))

            def migrate(url: str = target) -> None:
                summary = source.migrate_to(url)
                assert summary.verified, summary.problems

            migrate_s = _timed(f"migrate to {backend}", migrate)
            rows.append(f"| migrate (SQLite → {backend}), copy + read-back digest + audit verify | {migrate_s:.2f} s | "
                        f"{n / migrate_s:,.0f} | |")
    runtime = time.perf_counter() - started
    lines = [
        "## Backup, restore and migrate",
        "",
        f"- command: `{command}`",
        f"- date: `{host.date}`; runtime {runtime:.0f} s; machine: {host.cpus} CPUs, {host.cpu_model}, "
        f"Python {host.python}, SQLite {host.sqlite}; 1-min load {load_start} → {load_average()}",
        f"- store: {n:,} entries with one version each (filled in {fill_s:.1f} s by `import_` batches of "
        f"{BATCH:,}) and one audit event each; PostgreSQL 15 and MariaDB 10.11 on loopback",
        "",
        "| operation | wall time | entries/s | |",
        "|---|---|---|---|",
        *rows,
        "",
        "Restore and migrate time what a user waits for: the full check of the file (or the copy), the load in "
        "one transaction, and `audit verify` of the loaded rows (restore: inside that transaction, before it "
        "commits; migrate: on the target after the copy, next to the read-back digest).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.backup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 entries instead of 100,000")
    parser.add_argument("--write", type=Path, default=None, metavar="FILE",
                        help="also rewrite the backup section of FILE (e.g. BENCHMARKS.md)")
    args = parser.parse_args(args_list)
    section = run_section(quick=args.quick, command=command_line("bench.backup", args_list))
    emit_section(section, args.write, begin=BEGIN, end=END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
