"""Compare-and-set under contention: threads sharing a manager, processes sharing a store.

No speed is asserted here; the one time bound (a write by another process is seen within 1 s) is a
correctness bound of SPEC §9 / ARCHITECTURE (L1 must notice foreign commits), not a benchmark.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llm_config.core.manager import ConfigManager
from llm_config.errors import ConflictError, NotFoundError

NS = "conc/test"
COUNTER = "counter"


def _increment(manager: ConfigManager, times: int, *, actor: str) -> tuple[int, int]:
    """Do `times` successful compare-and-set increments; returns (successes, conflicts)."""
    done = conflicts = 0
    while done < times:
        try:
            current = manager.get(NS, COUNTER)
            version, value = current.version, current.value
        except NotFoundError:
            version, value = 0, 0
        try:
            manager.set(NS, COUNTER, value + 1, expected_version=version, actor=actor)
        except ConflictError:
            conflicts += 1
            continue
        done += 1
    return done, conflicts


def _process_worker(
    store: str, key: str, times: int, start: Any, results: Any, name: str
) -> None:
    """Runs in a spawned process: its own manager on the shared store."""
    try:
        with ConfigManager.open(store, encryption_key=key, actor=name) as manager:
            start.wait(60)  # a multiprocessing Barrier: everyone starts together
            done, conflicts = _increment(manager, times, actor=name)
        results.put((name, done, conflicts, None))
    except BaseException as exc:
        results.put((name, 0, 0, f"{type(exc).__name__}: {exc}"))



def _create_worker(root: str, key: str, trials: int, start: Any, results: Any, name: str) -> None:
    """Runs in a spawned process: for each trial, open (and so create) a fresh store at the same
    moment as the other workers and write one key to it."""
    errors = []
    for t in range(trials):
        start.wait(60)
        try:
            with ConfigManager.open(f"{root}/store-{t}", encryption_key=key, actor=name) as manager:
                manager.set(NS, name, t)
        except Exception as exc:
            errors.append(f"trial {t}: {type(exc).__name__}: {exc}")
    results.put((name, errors))

def _assert_contiguous_counter(manager: ConfigManager, total: int) -> None:
    entry = manager.get(NS, COUNTER)
    assert entry.value == total
    assert entry.version == total
    history = manager.history(NS, COUNTER)
    assert [h.version for h in history] == list(range(total, 0, -1))
    # every version holds its own number: no increment was lost or applied twice
    assert all(h.value == h.version for h in history)
    assert not any(h.deleted for h in history)


def test_threads_share_one_manager(manager: ConfigManager) -> None:
    threads_n, per_thread = 8, 25
    barrier = threading.Barrier(threads_n)
    successes: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        try:
            barrier.wait(30)
            done, _ = _increment(manager, per_thread, actor=f"thread-{i}")
            with lock:
                successes.append(done)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    assert errors == []
    assert sum(successes) == threads_n * per_thread == 200
    _assert_contiguous_counter(manager, 200)
    assert manager.audit_verify().ok


def test_processes_share_one_store(make_manager: Callable[..., ConfigManager], store_target: str,
                                   key: str) -> None:
    procs_n, per_proc = 4, 25
    make_manager(storage=store_target).close()  # create the store (and its instance secret) before the race
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(procs_n)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_process_worker, args=(store_target, key, per_proc, start, results, f"proc-{i}"))
        for i in range(procs_n)
    ]
    for p in procs:
        p.start()
    reports = [results.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert [r[3] for r in reports] == [None] * procs_n, reports
    assert sum(r[1] for r in reports) == procs_n * per_proc == 100
    manager = make_manager(storage=store_target)
    _assert_contiguous_counter(manager, 100)
    report = manager.audit_verify()
    assert report.ok, report.problems


def _race_same_expected_version(first: ConfigManager, second: ConfigManager, rounds: int) -> None:
    for r in range(rounds):
        key = f"race{r}"
        base = first.set(NS, key, "base")
        barrier = threading.Barrier(2)
        outcome: dict[str, object] = {}

        def write(mgr: ConfigManager, name: str, key: str = key, version: int = base.version,
                  barrier: threading.Barrier = barrier, outcome: dict[str, object] = outcome) -> None:
            barrier.wait(10)
            try:
                outcome[name] = mgr.set(NS, key, name, expected_version=version)
            except ConflictError as exc:
                outcome[name] = exc
            except BaseException as exc:  # anything else is a failure we want to see
                outcome[name] = repr(exc)

        threads = [threading.Thread(target=write, args=(first, "writer-a")),
                   threading.Thread(target=write, args=(second, "writer-b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        winners = [n for n, o in outcome.items() if not isinstance(o, (ConflictError, str))]
        losers = [n for n, o in outcome.items() if isinstance(o, ConflictError)]
        assert len(winners) == 1 and len(losers) == 1, outcome
        for mgr in (first, second):
            entry = mgr.get(NS, key)
            assert entry.value == winners[0]
            assert entry.version == base.version + 1
        assert [h.version for h in first.history(NS, key)] == [2, 1]


def test_two_writers_same_expected_version_one_manager(manager: ConfigManager) -> None:
    _race_same_expected_version(manager, manager, rounds=20)


def test_two_writers_same_expected_version_two_managers(make_manager: Callable[..., ConfigManager],
                                                        store_target: str) -> None:
    first = make_manager(storage=store_target)
    second = make_manager(storage=store_target)
    _race_same_expected_version(first, second, rounds=20)
    assert first.audit_verify().ok


_WRITER = """
import sys
from llm_config.core.manager import ConfigManager
with ConfigManager.open(sys.argv[1], encryption_key=sys.argv[2], actor="other-process") as m:
    m.set(sys.argv[3], sys.argv[4], "new")
"""


def test_write_by_another_process_is_seen_within_a_second(
    make_manager: Callable[..., ConfigManager], store_target: str, key: str
) -> None:
    manager = make_manager(storage=store_target)
    manager.set(NS, "stale", "old")
    assert manager.get(NS, "stale").value == "old"
    assert manager.get(NS, "stale").value == "old"  # now served from this process's L1
    subprocess.run([sys.executable, "-c", _WRITER, store_target, key, NS, "stale"],
                   check=True, timeout=60)
    deadline = time.monotonic() + 1.0
    seen = manager.get(NS, "stale")
    while seen.value != "new" and time.monotonic() < deadline:
        time.sleep(0.01)
        seen = manager.get(NS, "stale")
    assert seen.value == "new", "a write by another process was still hidden after 1 s"
    assert seen.version == 2
    assert seen.metadata.updated_by == "other-process"


def test_processes_create_one_store_at_once(tmp_path: Path, key: str) -> None:
    """SPEC §1: every writing command creates a missing store; several starting at once must all
    succeed (think of a deploy script running `llm-config set` in parallel on a new machine)."""
    procs_n, trials = 4, 40
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(procs_n)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_create_worker, args=(str(tmp_path), key, trials, start, results, f"proc-{i}"))
        for i in range(procs_n)
    ]
    for p in procs:
        p.start()
    reports = [results.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(30)
    errors = [e for _, errs in reports for e in errs]
    assert errors == [], f"{len(errors)} concurrent first opens failed, e.g. {errors[:3]}"
    for t in range(trials):
        with ConfigManager.open(tmp_path / f"store-{t}", encryption_key=key, create=False) as manager:
            assert {e.key for e in manager.list(NS)} == {f"proc-{i}" for i in range(procs_n)}
            assert manager.audit_verify().ok
