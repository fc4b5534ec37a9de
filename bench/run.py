"""`make bench` / `python -m bench.run [--quick] [--max-entries N] [--skip-rest]`.

Measures, in one run and each next to its physical floor: cached and cold `get`, durable `set`,
`history` / `list` / `resolve`, the CLI's wall time (next to `etcdctl get` too), and `get` at up to
1,000,000 stored entries; cold `get` and durable `set` against the commit before row integrity
(`bench.before`), and how fast a viewer's oversized import is refused. Then the REST API on uvicorn
and granian next to a bare Starlette app, and the cost of each step of its edge in-process
(`bench.rest`, `bench.edge`); then the REST API side by side with etcd's JSON gateway under the same
wrk load (`bench.vs_etcd`); then the three storage backends side by side, each next to its raw driver and
to etcd (`bench.backends`); then read latency per cache tier (L1, Redis L2, storage) next to raw floors and
the cached GET on granian and uvicorn next to etcd (`bench.cache`); then 1 vs 3 replicas on one PostgreSQL
and Redis and the staleness between them (`bench.replicas`); then backup, restore and migrate of a
100,000-entry store (`bench.backup`);
then master-key rotation of 20,000 secrets on each backend (`bench.rotation`); then the remote SDK: a
cached `Client.get` next to the manager's L1 get, change propagation from a write's acknowledgement to
a client's callback, and an uncached get next to a raw httpx GET (`bench.client`).
Prints Markdown tables and writes them into BENCHMARKS.md between the markers `<!-- core:begin -->` /
`<!-- core:end -->`, `<!-- rest:begin -->` / `<!-- rest:end -->`, `<!-- etcd:begin -->` /
`<!-- etcd:end -->`, `<!-- backends:begin -->` / `<!-- backends:end -->`, `<!-- cache:begin -->` /
`<!-- cache:end -->`, `<!-- replicas:begin -->` / `<!-- replicas:end -->`, `<!-- backup:begin -->` /
`<!-- backup:end -->`, `<!-- rotation:begin -->` / `<!-- rotation:end -->` and `<!-- client:begin -->` /
`<!-- client:end -->`. Every run uses fresh
temporary stores and a fresh master key.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from bench.backends import BEGIN as BACKENDS_BEGIN
from bench.backends import END as BACKENDS_END
from bench.backends import run_section as run_backends_section
from bench.backup import BEGIN as BACKUP_BEGIN
from bench.backup import END as BACKUP_END
from bench.backup import run_section as run_backup_section
from bench.before import bench_before, bench_refusal
from bench.cache import BEGIN as CACHE_BEGIN
from bench.cache import END as CACHE_END
from bench.cache import run_section as run_cache_section
from bench.cli import KEY as CLI_KEY
from bench.cli import NS as CLI_NS
from bench.cli import VALUE as CLI_VALUE
from bench.cli import bench_cli
from bench.client import BEGIN as CLIENT_BEGIN
from bench.client import END as CLIENT_END
from bench.client import Sizes as ClientSizes
from bench.client import run_section as run_client_section
from bench.common import Sizes
from bench.core import bench_bulk, bench_get, bench_set
from bench.footprint import BEGIN as FOOTPRINT_BEGIN
from bench.footprint import END as FOOTPRINT_END
from bench.footprint import run_section as run_footprint_section
from bench.harness import Row, progress
from bench.llm import BEGIN as LLM_BEGIN
from bench.llm import END as LLM_END
from bench.llm import Sizes as LLMSizes
from bench.llm import run_section as run_llm_section
from bench.replicas import BEGIN as REPLICAS_BEGIN
from bench.replicas import END as REPLICAS_END
from bench.replicas import run_section as run_replicas_section
from bench.report import command_line, load_average, machine, render, write_section
from bench.rest import run_section as run_rest_section
from bench.rest import write_rest_section
from bench.rotation import BEGIN as ROTATION_BEGIN
from bench.rotation import END as ROTATION_END
from bench.rotation import run_section as run_rotation_section
from bench.run_cmd import BEGIN as RUN_BEGIN
from bench.run_cmd import END as RUN_END
from bench.run_cmd import run_section as run_run_section
from bench.scale import bench_scale
from bench.schemas import BEGIN as SCHEMAS_BEGIN
from bench.schemas import END as SCHEMAS_END
from bench.schemas import run_section as run_schemas_section
from bench.templates import BEGIN as TEMPLATES_BEGIN
from bench.templates import END as TEMPLATES_END
from bench.templates import Sizes as TemplateSizes
from bench.templates import run_section as run_templates_section
from bench.vs_etcd import BEGIN as ETCD_BEGIN
from bench.vs_etcd import END as ETCD_END
from bench.vs_etcd import run_section as run_etcd_section
from bench.vs_etcd import start_etcd
from llm_config import generate_key

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true",
                        help="small counts and at most 10,000 stored entries: a smoke test in seconds")
    parser.add_argument("--max-entries", type=int, default=None, metavar="N",
                        help="largest store of row 6 (steps 1k/10k/100k/1M up to N; default 1000000, "
                        "10000 with --quick)")
    parser.add_argument("--output", type=Path, default=None,
                        help="file whose core and rest sections are rewritten (default: BENCHMARKS.md; a --quick run "
                        "writes only when --output is given, so a smoke test never replaces real results)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--dir", default=None, help="parent of the temporary stores (default: $TMPDIR)")
    parser.add_argument("--skip-rest", action="store_true",
                        help="skip the REST sections (our servers measured with wrk and the edge in-process, "
                        "about 3 min; then ours side by side with etcd, about 5 min; 2 min with --quick), the "
                        "backends, the cache tiers (about 3 min) and the replicas (about 3 min)")
    return parser.parse_args(argv)


def _notes(sizes: Sizes) -> list[str]:
    return [
        f"micro rows: one warm-up pass, then {sizes.rounds} rounds with the garbage collector off; the "
        "figure is the median per-operation time over the rounds (`time.perf_counter_ns`); a figure and "
        "its baseline run in alternating rounds, and the ratio is the median of the per-round ratios "
        "(the machine is shared, so this keeps load changes out of the ratios)",
        "row 1: default `ConfigManager.open` options (L1 TTL 5 s, foreign-commit check every 5 ms "
        "included); all calls verified to be hits via `mgr.cache.l1.stats`",
        "row 2 and row 6 cold reads: a manager opened with `cache_ttl=0` (L1 never fills: every get reads "
        "storage and builds the Entry); the raw SELECT reads the whole stored row (19 columns, its MAC "
        "among them) through the same unique index, on its own connection to the same file",
        "row 3: each `set` writes a new version of an existing key (one `BEGIN IMMEDIATE` transaction: "
        "version row, current row, audit event with its HMAC, revision counter); the raw baseline inserts "
        "one similar row into its own WAL file per transaction; both fsync on every commit",
        "row 4: raw baselines only fetch rows (4c also decodes the JSON values and merges), without "
        "building domain objects",
        "row 5: `LLM_CONFIG_*` unset and an empty `XDG_CONFIG_HOME`, so 5a loads no key (plain reads need "
        "none) and 5b only the one in `LLM_CONFIG_KEY`; bytecode cached in a private `PYTHONPYCACHEPREFIX` "
        "as an installed package has it; two warm-up runs each, then CLI and baseline runs interleaved",
        f"row 6: one store grown by `import_` batches of 10,000 keys (one transaction each); L1 hits over "
        f"a random sample of {sizes.scale_sample:,} warmed keys (manager with `cache_ttl=3600` so the "
        "warm-up cannot expire), cold reads over a random sample of all stored keys",
    ]


def _etcdctl_get(stack: ExitStack, work: Path, notes: list[str]) -> list[str] | None:
    """Row 5c's command: `etcdctl get` of the value row 5 reads, from a private etcd holding it (None,
    with a note, when etcd or etcdctl is missing here)."""
    etcdctl = shutil.which("etcdctl")
    if etcdctl is None:
        notes.append("row 5c not measured: no `etcdctl` here (Debian package `etcd-client`)")
        return None
    url, why = start_etcd(stack, work / "cli-etcd", notes)
    if url is None:
        notes.append(f"row 5c not measured: {why}")
        return None
    name = f"/configs/{CLI_NS}/{CLI_KEY}/development"
    subprocess.run([etcdctl, "--endpoints", url, "put", name, CLI_VALUE], check=True, capture_output=True)
    notes.append("row 5c: etcd 3.4's own CLI (a Go binary) reading the same value from a private one-member "
                 "etcd on loopback, `etcdctl --endpoints URL get KEY --print-value-only`")
    return [etcdctl, "--endpoints", url, "get", name, "--print-value-only"]


def _server_sections(args: argparse.Namespace, args_list: list[str], output: Path | None) -> None:
    """The sections that start servers: REST, side by side with etcd, the three backends, the cache tiers
    (with the cached GET next to etcd) and the replicas."""
    command = command_line("bench.run", args_list)
    rest = run_rest_section(quick=args.quick, command=command, parent=args.dir)
    print(rest)
    if output is not None and not args.no_write:
        write_rest_section(output, rest)
        progress(f"wrote the rest section of {output}")
    for name, run, begin, end in (("etcd", run_etcd_section, ETCD_BEGIN, ETCD_END),
                                  ("backends", run_backends_section, BACKENDS_BEGIN, BACKENDS_END),
                                  ("cache", run_cache_section, CACHE_BEGIN, CACHE_END),
                                  ("replicas", run_replicas_section, REPLICAS_BEGIN, REPLICAS_END)):
        section = run(quick=args.quick, command=command, parent=args.dir)
        print(section)
        if output is not None and not args.no_write:
            write_section(output, section, begin=begin, end=end)
            progress(f"wrote the {name} section of {output}")


def _tail_sections(args: argparse.Namespace, args_list: list[str], output: Path | None) -> None:
    """Backup, rotation, and (with the servers) the remote SDK."""
    command = command_line("bench.run", args_list)
    quick_args = ["--quick"] if args.quick else []
    sections: list[tuple[str, Callable[[], str], str, str]] = [
        ("backup", lambda: run_backup_section(quick=args.quick, command=command, parent=args.dir),
         BACKUP_BEGIN, BACKUP_END),
        ("rotation", lambda: run_rotation_section(quick=args.quick, command=command, parent=args.dir),
         ROTATION_BEGIN, ROTATION_END),
        # issue 11; each section names the command that reproduces it alone (`python -m bench.<name>`)
        ("templates", lambda: run_templates_section(TemplateSizes.quick() if args.quick else TemplateSizes(),
                                                    quick_args), TEMPLATES_BEGIN, TEMPLATES_END),
        ("schemas", lambda: run_schemas_section(quick=args.quick, argv=quick_args), SCHEMAS_BEGIN, SCHEMAS_END),
        ("llm", lambda: run_llm_section(LLMSizes.quick() if args.quick else LLMSizes(), quick_args),
         LLM_BEGIN, LLM_END),
        ("run", lambda: run_run_section(runs=5 if args.quick else 20, parent=args.dir), RUN_BEGIN, RUN_END),
        ("footprint", lambda: run_footprint_section(quick=args.quick, parent=args.dir), FOOTPRINT_BEGIN, FOOTPRINT_END),
    ]
    if not args.skip_rest:
        # the section names the command that reproduces it alone: `python -m bench.client [--quick]`
        sections.append(("client", lambda: run_client_section(ClientSizes.quick() if args.quick else ClientSizes(),
                                                              ["--quick"] if args.quick else []),
                         CLIENT_BEGIN, CLIENT_END))
    for name, run, begin, end in sections:
        section = run()
        print(section)
        if output is not None and not args.no_write:
            write_section(output, section, begin=begin, end=end)
            progress(f"wrote the {name} section of {output}")


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    args = _parse(args_list)
    max_entries = args.max_entries if args.max_entries is not None else 10_000 if args.quick else 1_000_000
    sizes = Sizes.quick(max_entries) if args.quick else Sizes(max_entries=max_entries)
    started = time.perf_counter()
    host = machine()
    load_start = load_average()
    rows: list[Row] = []
    profiles: list[str] = []
    notes = _notes(sizes)
    with tempfile.TemporaryDirectory(prefix="llm-config-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        key = generate_key()
        progress(f"stores under {work}; sizes {sizes}")
        rows += bench_get(work, key, sizes, profiles)
        rows += bench_set(work, key, sizes, profiles)
        rows += bench_bulk(work, key, sizes)
        with ExitStack() as stack:
            rows += bench_cli(work, key, sizes, profiles, notes, etcdctl=_etcdctl_get(stack, work, notes))
        rows += bench_scale(work, key, sizes, profiles, notes)
        found, found_notes = bench_before(work, key, rounds=sizes.rounds, n_get=sizes.cold_n, n_set=sizes.set_n)
        rows += found
        notes += found_notes
        found, found_notes = bench_refusal(work, key, repeats=5 if args.quick else 20)
        rows += found
        notes += found_notes
    runtime = time.perf_counter() - started
    section = render(rows, command=command_line("bench.run", args_list), host=host, runtime_s=runtime, notes=notes,
                     profiles=profiles, load=f"{load_start} → {load_average()}")
    print(section)
    output = args.output if args.output is not None else None if args.quick else ROOT / "BENCHMARKS.md"
    if output is not None and not args.no_write:
        write_section(output, section)
        progress(f"wrote {output}")
    progress(f"core done in {runtime:.0f} s")
    if not args.skip_rest:
        _server_sections(args, args_list, output)
    _tail_sections(args, args_list, output)
    progress(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
