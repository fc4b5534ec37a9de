"""Row 6: `get` (L1 hit and cold storage read) at 1,000 … 1,000,000 stored entries.

One store grows step by step through `import_` batches of up to 10,000 keys per namespace (one
transaction each). At each step: L1 warmed with min(entries, cache_max_entries) entries, hits over a
random sample of them vs a dict of the same tuple keys; cold reads (`cache_ttl=0`) over a random
sample of all entries vs a raw SELECT of the same rows. The store is deleted at the end.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import RAW_GET, Sizes, db_file, raw_connect
from bench.core import cold_row, l1_row
from bench.harness import Row, interleave, profile, progress
from llm_config import ConfigManager, Environment

__all__ = ["bench_scale", "scale_steps"]

BATCH = 10_000
L1_TTL = 3600.0  # the warm-up of 100,000 entries takes longer than the default 5 s TTL


def scale_steps(max_entries: int) -> list[int]:
    return [n for n in (1_000, 10_000, 100_000, 1_000_000) if n <= max_entries]


def _name(i: int) -> tuple[str, str]:
    return f"scale/n{i // BATCH:03d}", f"key.{i % BATCH:05d}"


def _fill(writer: ConfigManager, start: int, stop: int) -> None:
    i = start
    while i < stop:
        end = min(stop, (i // BATCH + 1) * BATCH)
        namespace = _name(i)[0]
        writer.import_(namespace, {_name(j)[1]: f"value-{j}" for j in range(i, end)}, env="production")
        i = end


Runner = Callable[[int], None]


def _runners(
    hot: ConfigManager, cold: ConfigManager, raw: sqlite3.Connection, warm: int,
    hit_sample: list[tuple[str, str]], cold_sample: list[tuple[str, str]],
) -> tuple[Runner, Runner, Runner, Runner]:
    """L1 hit, dict baseline, cold read, raw SELECT; each does `n` operations (a multiple of its
    sample's size), cycling through the sample, with no extra call layer per operation."""
    hot_get, cold_get, execute = hot.get, cold.get, raw.execute
    lookup = {(*_name(i), Environment.PRODUCTION): i for i in range(warm)}.get
    env = Environment.PRODUCTION

    def hit(n: int) -> None:
        for _ in range(max(1, n // len(hit_sample))):
            for ns, k in hit_sample:
                hot_get(ns, k, env="production")

    def dict_get(n: int) -> None:
        for _ in range(max(1, n // len(hit_sample))):
            for ns, k in hit_sample:
                lookup((ns, k, env))

    def storage_get(n: int) -> None:
        for _ in range(max(1, n // len(cold_sample))):
            for ns, k in cold_sample:
                cold_get(ns, k, env="production")

    def raw_get(n: int) -> None:
        for _ in range(max(1, n // len(cold_sample))):
            for ns, k in cold_sample:
                execute(RAW_GET, (ns, "production", k)).fetchone()

    return hit, dict_get, storage_get, raw_get


def bench_scale(work: Path, key: str, sizes: Sizes, profiles: list[str], notes: list[str]) -> list[Row]:
    steps = scale_steps(sizes.max_entries)
    if not steps:
        return []
    store = work / "scale"
    rng = random.Random(20251127)
    rows: list[Row] = []
    writer = ConfigManager.open(store, encryption_key=key)
    hot = ConfigManager.open(store, encryption_key=key, cache_ttl=L1_TTL)
    cold = ConfigManager.open(store, encryption_key=key, cache_ttl=0)
    raw = raw_connect(db_file(store))
    filled = 0
    try:
        for target in steps:
            progress(f"6: filling the scale store to {target:,} entries")
            start = time.perf_counter()
            _fill(writer, filled, target)
            fill_s = time.perf_counter() - start
            notes.append(f"fill {filled:,} → {target:,}: {fill_s:.1f} s "
                         f"({(target - filled) / fill_s:,.0f} entries/s through `import_`)")
            filled = target
            warm = min(target, hot.cache.l1.max_entries)
            progress(f"6: measuring at {target:,} entries (warming L1 with {warm:,})")
            for i in range(warm):
                hot.get(*_name(i), env="production")
            # L1 is bounded by bytes too: what it still holds are the last `held` keys warmed
            held = len(hot.cache.l1)
            hit_sample = [_name(i) for i in rng.sample(range(warm - held, warm), min(sizes.scale_sample, held))]
            cold_sample = [_name(i) for i in rng.sample(range(target), min(sizes.scale_sample, target))]
            hit, dict_get, cold_get, raw_get = _runners(hot, cold, raw, warm, hit_sample, cold_sample)
            n_hit = max(1, sizes.scale_hit_n // len(hit_sample)) * len(hit_sample)
            n_cold = max(1, sizes.scale_cold_n // len(cold_sample)) * len(cold_sample)
            misses = hot.cache.l1.stats.misses
            t_hit, t_dict = interleave([(hit, n_hit), (dict_get, n_hit)], sizes.rounds, len(hit_sample))
            assert hot.cache.l1.stats.misses == misses, "an L1-hit loop missed the cache"
            t_cold, t_raw = interleave([(cold_get, n_cold), (raw_get, n_cold)], sizes.rounds, len(cold_sample))
            label = f"{target:,}"
            rows.append(l1_row(f"6 @{label}", f"`get` L1 hit, {label} entries stored (L1 holds {held:,})",
                               t_hit, "`dict.get` on a dict of the same keys", t_dict))
            rows.append(cold_row(f"6 @{label}", f"`get` storage read (`cache_ttl=0`), {label} entries stored",
                                 t_cold, "raw `sqlite3` SELECT of the same rows", t_raw))
            if not rows[-1].met:
                profiles.append(profile(cold_get, len(cold_sample), f"get, storage read at {label} entries"))
        size_mb = sum(p.stat().st_size for p in store.iterdir()) / 1e6
        notes.append(f"scale store at {filled:,} entries: {size_mb:,.0f} MB on disk (deleted afterwards)")
    finally:
        for mgr in (writer, hot, cold):
            mgr.close()
        raw.close()
        shutil.rmtree(store, ignore_errors=True)
    return rows
