"""Rows 1-4: cached and cold `get`, durable `set`, and `history` / `list` / `resolve`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from bench.common import RAW_GET, RAW_HISTORY, RAW_LIST, RAW_LIST_VALUES, Sizes, db_file, raw_connect
from bench.harness import Row, Timing, fmt_ns, fmt_rate, interleave, profile, progress, ratio
from llm_config import ConfigManager, Environment

__all__ = ["bench_bulk", "bench_get", "bench_set"]

NS = "acme/chatbot"
KEY = "openai.params"
VALUE: dict[str, Any] = {"model": "gpt-4o", "temperature": 0.2, "max_tokens": 1024}
L1_GOAL_NS = 2_000
COLD_GOAL_RATIO = 2.0
SET_GOAL_RATIO = 0.5


def read_row(number: str, name: str, ours: Timing, base_name: str, base: Timing) -> Row:
    return Row(number, name, fmt_ns(ours.per_op_ns), fmt_rate(ours.ops_per_s), base_name,
               fmt_ns(base.per_op_ns), f"{ratio(ours, base):.1f}× time")


def l1_row(number: str, name: str, ours: Timing, base_name: str, base: Timing) -> Row:
    row = read_row(number, name, ours, base_name, base)
    row.goal, row.met = "≤ 2 µs", ours.per_op_ns <= L1_GOAL_NS
    return row


def cold_row(number: str, name: str, ours: Timing, base_name: str, base: Timing) -> Row:
    row = read_row(number, name, ours, base_name, base)
    row.goal, row.met = "≤ 2× raw", ratio(ours, base) <= COLD_GOAL_RATIO
    return row


def bench_get(work: Path, key: str, sizes: Sizes, profiles: list[str]) -> list[Row]:
    """Row 1: an L1 hit vs a dict lookup; row 2: a storage read (cache_ttl=0) vs a raw SELECT."""
    progress("1-2: get (L1 hit, cold storage read)")
    store = work / "get"
    with ConfigManager.open(store, encryption_key=key) as writer:
        writer.set(NS, KEY, VALUE, env="production")
        writer.set(NS, "openai.model", "gpt-4o", env="production")
    rows: list[Row] = []

    mgr = ConfigManager.open(store, encryption_key=key)  # default options (cache_ttl 5 s)
    try:
        get = mgr.get
        entry = get(NS, KEY, env="production")  # the one warm-up get that fills L1
        misses = mgr.cache.l1.stats.misses

        def hit(n: int) -> None:
            ns, k = NS, KEY
            for _ in range(n):
                get(ns, k, env="production")

        table = {(NS, KEY, Environment.PRODUCTION): entry}
        lookup = table.get

        def dict_get(n: int) -> None:
            ns, k, env = NS, KEY, Environment.PRODUCTION
            for _ in range(n):
                lookup((ns, k, env))

        t_hit, t_dict = interleave([(hit, sizes.hit_n), (dict_get, sizes.dict_n)], sizes.rounds)
        assert mgr.cache.l1.stats.misses == misses, "an L1-hit loop missed the cache"
    finally:
        mgr.close()
    rows.append(l1_row("1", "`get` L1 hit (after one warm-up get)", t_hit,
                       "`dict.get((ns, key, env))`", t_dict))
    if not rows[-1].met:
        profiles.append(profile(hit, sizes.hit_n, "get, L1 hit"))

    cold = ConfigManager.open(store, encryption_key=key, cache_ttl=0)
    raw = raw_connect(db_file(store))
    try:
        cold_get = cold.get

        def storage_get(n: int) -> None:
            ns, k = NS, KEY
            for _ in range(n):
                cold_get(ns, k, env="production")

        def raw_get(n: int) -> None:
            execute, params = raw.execute, (NS, "production", KEY)
            for _ in range(n):
                execute(RAW_GET, params).fetchone()

        assert cold_get(NS, KEY, env="production").value == VALUE
        t_cold, t_raw = interleave([(storage_get, sizes.cold_n), (raw_get, sizes.cold_n)], sizes.rounds)
        assert cold.cache.l1.stats.hits == 0, "cache_ttl=0 should never hit"
        rows.append(cold_row("2", "`get` storage read, L1 off (`cache_ttl=0`)", t_cold,
                             "raw `sqlite3` SELECT by unique index, `fetchone()`", t_raw))
        if not rows[-1].met:
            profiles.append(profile(storage_get, sizes.cold_n, "get, storage read (cache_ttl=0)"))
    finally:
        cold.close()
        raw.close()
    return rows


def bench_set(work: Path, key: str, sizes: Sizes, profiles: list[str]) -> list[Row]:
    """Row 3: durable sets (plain, secret) vs raw INSERT + COMMIT (WAL, synchronous=FULL)."""
    progress("3: durable set (plain, secret) and raw INSERT + COMMIT")
    raw_path = work / "raw-set.db"
    raw = raw_connect(raw_path)
    raw.execute(
        "CREATE TABLE versions (entry_id TEXT NOT NULL, version INTEGER NOT NULL, value_type TEXT NOT NULL, "
        "stored_value TEXT, fingerprint TEXT, created_at TEXT NOT NULL, created_by TEXT NOT NULL, "
        "change_description TEXT NOT NULL, PRIMARY KEY (entry_id, version))"
    )
    counter = iter(range(1, 1 << 62))

    def raw_insert(n: int) -> None:
        execute = raw.execute
        for _ in range(n):
            i = next(counter)
            execute("BEGIN IMMEDIATE")
            execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                ("0b7f5c1e-8d7a-4c1f-9a35-5d2f1b1c9e01", i, "plain", f'"gpt-4o-{i}"', f"fp{i:060d}",
                 "2025-11-27T09:00:00.000000Z", "bench", "Updated"),
            )
            execute("COMMIT")

    mgr = ConfigManager.open(work / "set", encryption_key=key)
    try:
        def set_plain(n: int) -> None:
            set_ = mgr.set
            for _ in range(n):
                set_(NS, "openai.model", f"gpt-4o-{next(counter)}", env="production")

        def set_secret(n: int) -> None:
            set_ = mgr.set
            for _ in range(n):
                set_(NS, "openai.api_key", f"sk-{next(counter):048d}", env="production", secret=True)

        warm = max(5, sizes.set_n // 10)
        t_plain, t_raw, t_secret = interleave(
            [(set_plain, sizes.set_n), (raw_insert, sizes.set_n), (set_secret, sizes.set_n)], sizes.rounds, warm
        )
        assert mgr.get(NS, "openai.api_key", env="production").secret
    finally:
        mgr.close()
        raw.close()
    rows = []
    base_name = "raw `sqlite3` BEGIN IMMEDIATE + INSERT + COMMIT (WAL, `synchronous=FULL`)"
    for number, name, timing, secret in (
        ("3a", "durable `set`, plain value", t_plain, False),
        ("3b", "durable `set`, secret (`secret=True`)", t_secret, True),
    ):
        rate_ratio = 1 / ratio(timing, t_raw)
        rows.append(Row(number, name, fmt_ns(timing.per_op_ns), fmt_rate(timing.ops_per_s), base_name,
                        f"{fmt_ns(t_raw.per_op_ns)} ({fmt_rate(t_raw.ops_per_s)})", f"{rate_ratio:.2f}× raw rate",
                        "≥ 0.5× raw rate", rate_ratio >= SET_GOAL_RATIO))
        if not rows[-1].met:
            profiles.append(_profile_set(work, key, sizes, name, secret))
    return rows


def _profile_set(work: Path, key: str, sizes: Sizes, title: str, secret: bool) -> str:
    with ConfigManager.open(work / f"set-profile-{int(secret)}", encryption_key=key) as mgr:

        def run(n: int) -> None:
            for i in range(n):
                mgr.set(NS, "k", f"v{i}", env="production", secret=secret)

        run(5)
        return profile(run, sizes.set_n, title)


def bench_bulk(work: Path, key: str, sizes: Sizes) -> list[Row]:
    """Row 4: history of 100 versions, list of 1,000 keys, resolve of 100 keys (50 base + 100 prod)."""
    progress("4: history / list / resolve")
    store = work / "bulk"
    with ConfigManager.open(store, encryption_key=key) as writer:
        for i in range(100):
            writer.set("bench/history", "prompt.system", f"You are assistant number {i}.", env="production")
        writer.import_("bench/list", {f"key.{i:04d}": {"i": i, "model": "gpt-4o"} for i in range(1000)},
                       env="production")
        writer.import_("bench/resolve", {f"key.{i:03d}": f"base-{i}" for i in range(50)}, env="base")
        writer.import_("bench/resolve", {f"key.{i:03d}": f"prod-{i}" for i in range(100)}, env="production")

    mgr = ConfigManager.open(store, encryption_key=key)
    raw = raw_connect(db_file(store))
    try:
        assert len(mgr.history("bench/history", "prompt.system", env="production")) == 100
        assert len(mgr.list("bench/list", env="production")) == 1000
        assert len(mgr.resolve("bench/resolve", env="production")) == 100

        def history(n: int) -> None:
            for _ in range(n):
                mgr.history("bench/history", "prompt.system", env="production")

        def raw_history(n: int) -> None:
            for _ in range(n):
                raw.execute(RAW_HISTORY, ("bench/history", "production", "prompt.system")).fetchall()

        def list_(n: int) -> None:
            for _ in range(n):
                mgr.list("bench/list", env="production")

        def raw_list(n: int) -> None:
            for _ in range(n):
                raw.execute(RAW_LIST, ("bench/list", "production")).fetchall()

        def resolve(n: int) -> None:
            for _ in range(n):
                mgr.resolve("bench/resolve", env="production")

        def raw_resolve(n: int) -> None:
            loads = orjson.loads
            for _ in range(n):
                base = raw.execute(RAW_LIST_VALUES, ("bench/resolve", "base")).fetchall()
                own = raw.execute(RAW_LIST_VALUES, ("bench/resolve", "production")).fetchall()
                merged = {k: loads(v) for k, _, v in base}
                merged.update({k: loads(v) for k, _, v in own})

        r = sizes.rounds
        t_hist, t_raw_hist = interleave([(history, sizes.history_n), (raw_history, sizes.history_n)], r)
        t_list, t_raw_list = interleave([(list_, sizes.list_n), (raw_list, sizes.list_n)], r)
        t_res, t_raw_res = interleave([(resolve, sizes.resolve_n), (raw_resolve, sizes.resolve_n)], r)
        return [
            read_row("4a", "`history`, key with 100 versions", t_hist,
                     "raw SELECT … JOIN … ORDER BY version, `fetchall()`", t_raw_hist),
            read_row("4b", "`list`, namespace with 1,000 keys", t_list,
                     "raw SELECT by namespace, `fetchall()`", t_raw_list),
            read_row("4c", "`resolve`, 100 keys (50 base + 100 production)", t_res,
                     "2 raw SELECTs + JSON decode + dict merge", t_raw_res),
        ]
    finally:
        mgr.close()
        raw.close()
