"""Secrets at rest: no plaintext in any store file, the audit trail, the cache or an error message;
tampered ciphertext and wrong keys fail closed with SecretKeyError (SPEC §2–3, §7)."""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from llm_config.core.manager import ConfigManager
from llm_config.crypto.keys import generate_key
from llm_config.errors import IntegrityError, KeyMissingError, ValidationError
from llm_config.models import ENCRYPTED_PLACEHOLDER

NS = "secrets/at-rest"


def _forms(text: str) -> set[bytes]:
    """Byte patterns a leaked `text` could take inside a file."""
    raw = text.encode()
    forms = {
        raw,
        json.dumps(text).encode(),
        text.encode("utf-16-le"),
        raw.hex().encode(),
        raw.hex().upper().encode(),
    }
    # base64 of the text at every alignment (trim the characters that depend on the neighbours)
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        forms.add(encoded[4 if shift else 0 : -4])
    return forms


def _store_files(store: Path) -> Iterator[Path]:
    return (p for p in sorted(store.rglob("*")) if p.is_file())


def _hits(store: Path, needles: set[bytes]) -> list[str]:
    found = []
    for path in _store_files(store):
        data = path.read_bytes()
        found += [f"{path.name}: {needle[:40]!r}" for needle in needles if needle in data]
    return found


def _tamper(db: Path, key: str, flip_at: int) -> None:
    """Flip one bit of the ciphertext of `key`'s current version, in `entries` and `versions` alike."""
    with sqlite3.connect(db) as conn:
        (entry_id, version, envelope), = conn.execute(
            "SELECT id, version, stored_value FROM entries WHERE namespace = ? AND key = ?", (NS, key)
        ).fetchall()
        doc = json.loads(envelope)
        ct = bytearray(base64.b64decode(doc["ct"]))
        ct[flip_at % len(ct)] ^= 0x01
        doc["ct"] = base64.b64encode(bytes(ct)).decode()
        tampered = json.dumps(doc, separators=(",", ":"))
        conn.execute("UPDATE entries SET stored_value = ? WHERE id = ?", (tampered, entry_id))
        conn.execute(
            "UPDATE versions SET stored_value = ? WHERE entry_id = ? AND version = ?",
            (tampered, entry_id, version),
        )
    conn.close()


@pytest.fixture
def canaries() -> dict[str, Any]:
    return {
        "plain_secret": f"sk-canary-{uuid.uuid4().hex}",
        "object_secret": f"sk-canary-{uuid.uuid4().hex}",
        "old_secret": f"sk-canary-{uuid.uuid4().hex}",
    }


def _write_secrets(manager: ConfigManager, c: dict[str, Any]) -> dict[str, Any]:
    """Store the canaries as secrets in a few shapes and histories; returns {key: final value}."""
    obj = {"api_key": c["object_secret"], "nested": [c["object_secret"], {"k": c["object_secret"]}]}
    manager.set(NS, "openai.api_key", c["old_secret"], secret=True)
    manager.set(NS, "openai.api_key", c["plain_secret"], secret=True)
    manager.set(NS, "provider.creds", obj, secret=True, env="production")
    manager.set(NS, "deleted.secret", c["old_secret"], secret=True)
    manager.delete(NS, "deleted.secret")
    manager.rollback(NS, "openai.api_key", 1)
    manager.rollback(NS, "openai.api_key", 2)
    return {("openai.api_key", "development"): c["plain_secret"], ("provider.creds", "production"): obj}


def _needles(c: dict[str, Any]) -> set[bytes]:
    obj_text = orjson.dumps({"api_key": c["object_secret"]}).decode()
    return set().union(*(_forms(v) for v in c.values()), _forms(obj_text))


def test_no_plaintext_in_store_files_audit_or_cache(
    make_manager: Callable[..., ConfigManager], store_dir: Path, canaries: dict[str, Any]
) -> None:
    manager = make_manager()
    finals = _write_secrets(manager, canaries)
    # a plain value is stored as plain text: proves the scan reads the files the data is in
    plain_canary = f"plain-canary-{uuid.uuid4().hex}"
    manager.set(NS, "plain.value", plain_canary)
    for (k, env), value in finals.items():
        assert manager.get(NS, k, env=env).value == ENCRYPTED_PLACEHOLDER
        assert manager.get(NS, k, env=env, reveal=True).value == value
        # after a reveal, L1 holds the sealed form only
        cached = manager.peek(NS, k, env)
        assert cached is None or cached.value == ENCRYPTED_PLACEHOLDER
    assert manager.resolve(NS, reveal=True)["openai.api_key"] == canaries["plain_secret"]
    assert manager.get(NS, "openai.api_key", version=1, reveal=True).value == canaries["old_secret"]
    assert manager.history(NS, "openai.api_key")[0].value == ENCRYPTED_PLACEHOLDER

    needles = _needles(canaries)
    assert _hits(store_dir, _forms(plain_canary)), "scan found no plain canary: it reads the wrong files"
    assert _hits(store_dir, needles) == []  # open: db, -wal, -shm

    events = orjson.dumps([e.to_json() for e in manager.audit_events()])
    assert not any(n in events for n in needles)
    assert any(e.type == "secret_accessed" for e in manager.audit_events())
    assert any(e.type == "secret_modified" for e in manager.audit_events())
    for entry in manager.list(NS) + manager.list(NS, env="production"):
        if entry.secret:
            assert entry.value == ENCRYPTED_PLACEHOLDER
    export = orjson.dumps(manager.export(NS))
    assert not any(n in export for n in needles)

    # refusing a plain write over a secret must not echo the value it refused
    with pytest.raises(ValidationError) as refused:
        manager.set(NS, "openai.api_key", canaries["plain_secret"])
    assert canaries["plain_secret"] not in str(refused.value)

    manager.close()
    assert _hits(store_dir, needles) == []  # after close and checkpoint
    assert _hits(store_dir, _forms(plain_canary))


@pytest.mark.parametrize("flip_at", [0, 7, -1], ids=["first-byte", "middle", "tag"])
def test_tampered_ciphertext_fails_closed(
    make_manager: Callable[..., ConfigManager], store_dir: Path, canaries: dict[str, Any], flip_at: int
) -> None:
    manager = make_manager()
    _write_secrets(manager, canaries)
    manager.close()
    _tamper(store_dir / "config.db", "openai.api_key", flip_at)

    manager = make_manager()
    # the row MAC refuses the edited rows before AES-GCM is even asked: revealed or not, nothing is served
    for kwargs in ({}, {"reveal": True}, {"version": 4, "reveal": True}):  # v4: the tampered current version
        with pytest.raises(IntegrityError) as failed:
            manager.get(NS, "openai.api_key", **kwargs)
        message = str(failed.value)
        assert "openai.api_key" in message
        assert not any(n.decode(errors="ignore") in message for n in _forms(canaries["plain_secret"]))
        assert canaries["old_secret"] not in message
    with pytest.raises(IntegrityError):
        manager.resolve(NS, reveal=True)
    # other secrets still open
    assert manager.get(NS, "provider.creds", env="production", reveal=True).value["api_key"] == (
        canaries["object_secret"]
    )
    events = orjson.dumps([e.to_json() for e in manager.audit_events()])
    assert not any(n in events for n in _needles(canaries))
    report = manager.audit_verify()
    assert not report.ok
    assert any("openai.api_key" in p and "MAC mismatch" in p for p in report.problems)
    assert manager.doctor()["checks"]["integrity"]["status"] == "unhealthy"


def test_ciphertext_moved_to_another_entry_does_not_open(
    make_manager: Callable[..., ConfigManager], store_dir: Path, canaries: dict[str, Any]
) -> None:
    manager = make_manager()
    manager.set(NS, "source", canaries["plain_secret"], secret=True)
    manager.set(NS, "target", "decoy", secret=True)
    manager.close()
    with sqlite3.connect(store_dir / "config.db") as conn:
        (envelope,), = conn.execute(
            "SELECT stored_value FROM entries WHERE namespace = ? AND key = 'source'", (NS,)
        ).fetchall()
        conn.execute("UPDATE entries SET stored_value = ? WHERE namespace = ? AND key = 'target'",
                     (envelope, NS))
        conn.execute(
            "UPDATE versions SET stored_value = ? WHERE entry_id = "
            "(SELECT id FROM entries WHERE namespace = ? AND key = 'target')",
            (envelope, NS),
        )
    conn.close()
    manager = make_manager()
    with pytest.raises(IntegrityError) as failed:
        manager.get(NS, "target", reveal=True)
    assert canaries["plain_secret"] not in str(failed.value)
    # without the row MACs (a key-less open cannot check them), AES-GCM's AAD still refuses the move
    keyless = make_manager(encryption_key=None)
    assert keyless.get(NS, "target").value == ENCRYPTED_PLACEHOLDER
    assert not keyless.storage.verifying


def test_wrong_key_opens_plain_values_only(
    make_manager: Callable[..., ConfigManager], canaries: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    manager = make_manager()
    _write_secrets(manager, canaries)
    manager.set(NS, "plain.model", "gpt-4o")
    manager.close()
    wrong = make_manager(encryption_key=generate_key())
    assert wrong.key_warning is not None and "does not open this store" in wrong.key_warning
    assert "does not open this store" in caplog.text
    assert wrong.get(NS, "plain.model").value == "gpt-4o"  # plain reads work (SPEC §2)
    for attempt in (lambda: wrong.get(NS, "openai.api_key", reveal=True), lambda: wrong.set(NS, "x", 1)):
        with pytest.raises(KeyMissingError) as failed:
            attempt()
        assert "does not open this store" in str(failed.value)
        assert not any(c in str(failed.value) for c in canaries.values())
    # the right key still opens everything afterwards
    manager = make_manager()
    assert manager.get(NS, "openai.api_key", reveal=True).value == canaries["plain_secret"]



def test_a_purged_value_leaves_no_copy_in_the_store_files(
    make_manager: Callable[..., ConfigManager], store_dir: Path
) -> None:
    """secure_delete zeroes the freed space and a checkpoint truncates the WAL, so the destroyed value
    is gone from config.db and config.db-wal alike — checked while the store is still open."""
    canary = f"purge-canary-{uuid.uuid4().hex}"
    manager = make_manager()
    manager.set(NS, "prompt", canary)
    manager.set(NS, "prompt", "the replacement")
    assert _hits(store_dir, _forms(canary)), "the scan does not see the value before the purge"
    manager.purge(NS, "prompt", 1)
    assert _hits(store_dir, _forms(canary)) == []
    assert manager.history(NS, "prompt")[-1].change_description == "Purged"
    assert manager.audit_verify().ok


def test_a_purge_next_to_a_long_reader_does_not_wait_for_it_and_says_so(
    make_manager: Callable[..., ConfigManager], store_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reader holding an old snapshot (a long `audit verify`, another process) keeps the WAL from
    being emptied: the purge still succeeds without waiting out the 30 s busy timeout, and says
    that the old pages stay in the log until a later checkpoint."""
    manager = make_manager()
    manager.set(NS, "prompt", "to be destroyed")
    manager.set(NS, "prompt", "the replacement")
    reader = sqlite3.connect(store_dir / "config.db", isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM versions").fetchone()  # holds its snapshot
        with caplog.at_level("WARNING", logger="llm_config"):
            manager.purge(NS, "prompt", 1)
    finally:
        reader.close()
    assert "could not be emptied" in caplog.text
    assert manager.history(NS, "prompt")[-1].change_description == "Purged"
