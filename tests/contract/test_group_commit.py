"""Group commit (ARCHITECTURE decision 3): concurrent writes of one process share a transaction, yet each
keeps its own compare-and-set check, version, audit event and outcome; nothing is acknowledged before
its batch commits. On every backend."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from llm_config.core.verify import verify_store
from llm_config.errors import ConflictError, NotFoundError
from llm_config.models import WriteResult
from llm_config.storage.sql import SQLStorage
from llm_config.types import Storage

from .conftest import Backend
from .test_storage import AUDIT_KEY, STORE_KEYS, delete_req, set_req


def _run_together(calls: list[Any], *, started: threading.Event | None = None) -> list[Any]:
    """Run each call in its own thread; return its result or the exception it raised, in order."""
    out: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            out[i] = calls[i]()
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    return out


def test_queued_writes_commit_as_one_batch_each_with_its_own_outcome(storage: Storage, backend: Backend) -> None:
    assert isinstance(storage, SQLStorage)
    storage.apply([set_req("gc", "taken", "v1")], AUDIT_KEY)
    before = storage.batches
    with backend.write_lock_held():
        # the first writer leads and waits for the lock; the others queue behind it in this process
        leader = threading.Thread(target=lambda: storage.apply([set_req("gc", "lead", 0)], AUDIT_KEY))
        leader.start()
        time.sleep(0.2)
        calls = [
            *(lambda i=i: storage.apply([set_req("gc", f"k{i}", i)], AUDIT_KEY) for i in range(6)),
            lambda: storage.apply([set_req("gc", "taken", "late", expected=0)], AUDIT_KEY),  # conflict
            lambda: storage.apply([delete_req("gc", "never-was")], AUDIT_KEY),  # not found
            lambda: storage.apply([set_req("gc", "pair-a", 1), set_req("gc", "pair-b", 2, expected=5)], AUDIT_KEY),
            # a write that fails in an unforeseen way (its tags cannot be encoded) fails alone too
            lambda: storage.apply([dataclasses.replace(set_req("gc", "odd", 1), tags=(object(),))], AUDIT_KEY),
        ]
        results: list[Any] = []
        runner = threading.Thread(target=lambda: results.extend(_run_together(calls)))
        runner.start()
        time.sleep(0.3)
        assert all(r is None for r in results), "a write was acknowledged while the lock was held"
    leader.join(30)
    runner.join(60)
    assert storage.batches - before == 2, "the queued writes did not share one batch"
    for i, result in enumerate(results[:6]):
        assert isinstance(result, list) and isinstance(result[0], WriteResult), result
        assert storage.get_current("gc", f"k{i}", result[0].entry.environment) is not None
    assert isinstance(results[6], ConflictError)
    assert isinstance(results[7], NotFoundError)
    assert isinstance(results[8], ConflictError)  # the call is all-or-nothing: pair-a was rolled back too
    assert isinstance(results[9], TypeError)
    env = set_req("gc", "x", 0).environment
    assert storage.get_current("gc", "pair-a", env) is None
    assert storage.get_current("gc", "taken", env).version == 1  # type: ignore[union-attr]
    seqs = sorted(r[0].audit_seq for r in results[:6])
    assert len(set(seqs)) == 6
    report = verify_store(storage, STORE_KEYS)
    assert report.ok, report.problems


def test_many_threads_lose_nothing_and_share_fsyncs(storage: Storage) -> None:
    assert isinstance(storage, SQLStorage)
    threads_n, per_thread = 16, 15
    before_batches, before_batched = storage.batches, storage.batched
    barrier = threading.Barrier(threads_n)

    def writer(t: int) -> None:
        barrier.wait(30)
        for i in range(per_thread):
            storage.apply([set_req("gc/many", f"t{t}", i, expected=i)], AUDIT_KEY)

    errors = [r for r in _run_together([lambda t=t: writer(t) for t in range(threads_n)]) if r is not None]
    assert errors == []
    env = set_req("gc", "x", 0).environment
    for t in range(threads_n):
        entry = storage.get_current("gc/many", f"t{t}", env)
        assert entry is not None and entry.version == per_thread
    assert storage.batched - before_batched == threads_n * per_thread
    assert storage.batches - before_batches < threads_n * per_thread  # some commits carried several writes
    report = verify_store(storage, STORE_KEYS)
    assert report.ok, report.problems
