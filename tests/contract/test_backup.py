"""Backup, restore and migrate (SPEC §4) on every backend: a store moves between files and databases
whole — values, full history, secrets (sealed), API keys, the audit chain — and proves it; a damaged,
truncated or foreign backup and a non-empty target are refused before anything is touched."""

from __future__ import annotations

import gzip
import io
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llm_config.core.manager import ConfigManager
from llm_config.crypto.keys import generate_key
from llm_config.errors import ConflictError, IntegrityError, NotFoundError, ValidationError
from llm_config.models import Role

from .conftest import Backend

NS = "bk/app"
SECRET = "sk-very-secret-0123456789"


def _fill(manager: ConfigManager) -> str:
    manager.set(NS, "model", "gpt-4o", env="production")
    manager.set(NS, "model", "gpt-4.1", env="production", message="upgrade")
    manager.set(NS, "temperature", 0.2)
    manager.set(NS, "api_key", SECRET, secret=True)
    manager.set(NS, "gone", 1)
    manager.delete(NS, "gone")
    manager.set(NS, "big", 2**63 - 1)
    return manager.create_api_key("reader", Role.VIEWER)[1]


def _same_store(a: ConfigManager, b: ConfigManager) -> None:
    for env in ("production", "development"):
        assert [(e.key, e.value, e.version) for e in a.list(NS, env=env)] == \
            [(e.key, e.value, e.version) for e in b.list(NS, env=env)]
    assert [h.to_json() for h in a.history(NS, "model", env="production")] == \
        [h.to_json() for h in b.history(NS, "model", env="production")]
    assert b.get(NS, "api_key", reveal=True).value == SECRET
    with pytest.raises(NotFoundError):
        b.get(NS, "gone")
    assert [h.version for h in b.history(NS, "gone")] == [2, 1]


@pytest.fixture
def source(backend: Backend, key: str) -> ConfigManager:
    manager = ConfigManager.open(backend.target, encryption_key=key, actor="tester")
    yield manager
    manager.close()


def test_backup_then_restore_into_a_fresh_store_keeps_everything(
    source: ConfigManager, key: str, tmp_path: Path
) -> None:
    token = _fill(source)
    buffer = io.BytesIO()
    summary = source.backup(buffer)
    assert summary.rows["entries"] == 5 and summary.rows["api_keys"] == 1
    data = buffer.getvalue()
    assert SECRET.encode() not in gzip.decompress(data)  # secrets stay sealed
    assert token.encode() not in gzip.decompress(data)  # API keys only as their hashes
    with ConfigManager.open(str(tmp_path / "restored"), encryption_key=key, actor="ops") as target:
        result = target.restore(io.BytesIO(data))
        assert result.verified, result.problems
        assert result.sha256 == summary.sha256 and result.previous_epoch == summary.epoch
        assert result.epoch != summary.epoch  # a restore starts a new epoch
        _same_store(source, target)
        assert target.authenticate(token).role is Role.VIEWER  # the key works on the restored store
        events = [e.type for e in target.audit_events()]
        assert events.index("backup_created") < events.index("store_restored")
        assert target.audit_verify().ok
        target.set(NS, "after", "restore")  # and it takes writes
        assert target.audit_verify().ok


def test_a_backup_is_one_moment_even_under_concurrent_writes(
    source: ConfigManager, key: str, tmp_path: Path
) -> None:
    _fill(source)
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        i = 0
        while not stop.is_set():
            source.set(NS, f"w{i % 7}", i)
            written.append(i)
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        buffers = []
        for _ in range(3):
            buffer = io.BytesIO()
            source.backup(buffer)
            buffers.append(buffer.getvalue())
    finally:
        stop.set()
        thread.join(30)
    assert written
    for i, data in enumerate(buffers):
        with ConfigManager.open(str(tmp_path / f"r{i}"), encryption_key=key) as target:
            result = target.restore(io.BytesIO(data))
            assert result.verified, result.problems  # versions, current rows and events agree


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty", "append"])
def test_a_damaged_backup_is_refused_before_anything_changes(
    source: ConfigManager, key: str, tmp_path: Path, damage: str
) -> None:
    _fill(source)
    buffer = io.BytesIO()
    source.backup(buffer)
    data = bytearray(buffer.getvalue())
    raw = bytearray(gzip.decompress(bytes(data)))
    if damage == "flip":
        raw[len(raw) // 2] ^= 0x01  # one flipped byte inside a row (re-compressed: gzip's CRC is not what catches it)
        data = bytearray(gzip.compress(bytes(raw)))
    elif damage == "truncate":
        data = data[: len(data) * 2 // 3]
    elif damage == "garbage":
        data = bytearray(b"not a backup at all" * 50)
    elif damage == "empty":
        data = bytearray(gzip.compress(b""))
    else:
        data = bytearray(gzip.compress(bytes(raw) + b'["entries", []]\n'))
    with ConfigManager.open(str(tmp_path / "target"), encryption_key=key) as target:
        target.set("keep/me", "k", "original")
        with pytest.raises(ValidationError, match="Backup file refused") as info:
            target.restore(io.BytesIO(bytes(data)), force=True)
        assert "nothing was restored" in str(info.value)
        assert target.get("keep/me", "k").value == "original"
        assert target.audit_verify().ok


def test_a_backup_made_under_another_master_key_is_refused(source: ConfigManager, tmp_path: Path) -> None:
    _fill(source)
    buffer = io.BytesIO()
    source.backup(buffer)
    with ConfigManager.open(str(tmp_path / "other"), encryption_key=generate_key()) as target:
        with pytest.raises(ValidationError, match="another master key"):
            target.restore(io.BytesIO(buffer.getvalue()), force=True)
        assert target.storage.is_empty()


def test_restoring_over_a_non_empty_store_needs_force(source: ConfigManager, key: str, tmp_path: Path) -> None:
    _fill(source)
    buffer = io.BytesIO()
    source.backup(buffer)
    with ConfigManager.open(str(tmp_path / "busy"), encryption_key=key) as target:
        target.set("other/ns", "k", 1)
        with pytest.raises(ConflictError, match="not empty"):
            target.restore(io.BytesIO(buffer.getvalue()))
        assert target.get("other/ns", "k").value == 1
        result = target.restore(io.BytesIO(buffer.getvalue()), force=True)
        assert result.verified
        with pytest.raises(NotFoundError):
            target.get("other/ns", "k")
        _same_store(source, target)


def test_restore_onto_this_backend_from_sqlite(backend: Backend, key: str, tmp_path: Path) -> None:
    with ConfigManager.open(str(tmp_path / "origin"), encryption_key=key, actor="tester") as origin:
        token = _fill(origin)
        buffer = io.BytesIO()
        origin.backup(buffer)
        with ConfigManager.open(backend.target, encryption_key=key) as target:
            result = target.restore(io.BytesIO(buffer.getvalue()))
            assert result.verified, result.problems
            _same_store(origin, target)
            assert target.authenticate(token).role is Role.VIEWER


def _migrate_and_check(origin: ConfigManager, target_url: str, key: str, *, opener: Callable[..., Any]) -> None:
    summary = origin.migrate_to(target_url)
    assert summary.verified, summary.problems
    assert summary.rows["entries"] == 5
    with opener(target_url, encryption_key=key) as copy:
        _same_store(origin, copy)
        assert copy.audit_verify().ok


def test_migrate_to_and_from_this_backend(backend: Backend, key: str, tmp_path: Path) -> None:
    with ConfigManager.open(str(tmp_path / "origin"), encryption_key=key, actor="tester") as origin:
        _fill(origin)
        _migrate_and_check(origin, backend.target, key, opener=ConfigManager.open)
        with pytest.raises(ConflictError, match="not empty"):
            origin.migrate_to(backend.target)
        with ConfigManager.open(backend.target, encryption_key=key) as there:
            _migrate_and_check(there, str(tmp_path / "back-home"), key, opener=ConfigManager.open)


def test_a_backup_whose_rows_were_edited_is_refused_even_with_a_recomputed_manifest(
    source: ConfigManager, key: str, tmp_path: Path
) -> None:
    """The manifest's SHA-256 is not keyed: anyone can recompute it. The rows' MACs and the audit chain are,
    so a restore verifies the loaded rows with the backup's own keys before it commits."""
    import hashlib
    import json

    _fill(source)
    buffer = io.BytesIO()
    source.backup(buffer)
    lines = gzip.decompress(buffer.getvalue()).splitlines(keepends=True)
    edited = []
    for line in lines[1:-1]:
        table, values = json.loads(line)
        if table == "entries" and values[2] == "temperature":
            values[7] = "0.9"  # the stored value of `temperature`, changed outside llm-config
        edited.append((json.dumps([table, values], separators=(",", ":")) + "\n").encode())
    body = [lines[0], *edited]
    manifest = json.loads(lines[-1])
    manifest["manifest"]["sha256"] = hashlib.sha256(b"".join(body)).hexdigest()
    forged = gzip.compress(b"".join(body) + (json.dumps(manifest) + "\n").encode())
    with ConfigManager.open(str(tmp_path / "target"), encryption_key=key) as target:
        target.set("keep/me", "k", "original")
        with pytest.raises(IntegrityError, match="Backup file refused: its rows do not verify"):
            target.restore(io.BytesIO(forged), force=True)
        assert target.get("keep/me", "k").value == "original"  # nothing was replaced
        assert target.audit_verify().ok
        assert target.restore(io.BytesIO(buffer.getvalue()), force=True).verified  # the real one restores


def test_writes_during_a_restore_never_fork_the_chain_here_or_in_another_process(
    backend: Backend, key: str, tmp_path: Path
) -> None:
    """The restored store has another instance secret (another store's backup, same master key): writes
    made meanwhile with the old keys — in this process or another — are refused (503, retry) until their
    process holds the new keys; none is signed with a key the restored chain does not know."""
    from llm_config.errors import StorageUnavailableError

    with ConfigManager.open(str(tmp_path / "elsewhere"), encryption_key=key, actor="tester") as elsewhere:
        elsewhere.set("other/app", "k", "restored")
        buffer = io.BytesIO()
        elsewhere.backup(buffer)
    with ConfigManager.open(backend.target, encryption_key=key) as here, \
            ConfigManager.open(backend.target, encryption_key=key) as there:
        here.set(NS, "k", 0)
        stop = threading.Event()
        outcomes: list[str] = []

        def writer(manager: ConfigManager, name: str) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    manager.set(NS, name, i)
                    outcomes.append("ok")
                except StorageUnavailableError:
                    outcomes.append("retry")
                    time.sleep(0.01)

        threads = [threading.Thread(target=writer, args=(here, "mine")),
                   threading.Thread(target=writer, args=(there, "theirs"))]
        for t in threads:
            t.start()
        try:
            time.sleep(0.2)
            assert here.restore(io.BytesIO(buffer.getvalue()), force=True).verified
            time.sleep(0.5)  # the other manager notices the new epoch and takes up its keys
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        assert "ok" in outcomes
        report = here.audit_verify()
        assert report.ok, report.problems
        assert there.get("other/app", "k").value == "restored"  # the other process serves the restored store
        there.set(NS, "after", 1)  # and writes to it with the new keys
        assert here.audit_verify().ok
