"""Row integrity (SPEC §2): what the database serves is what llm-config wrote.

The tamper suite is a table of SQL edits made with plain `sqlite3` on the store file — what a database
writer without the master key can do. Each edit must be refused when the row is read (an
`IntegrityError` naming the row, never serving it), reported by `audit verify`, and turn `doctor`
unhealthy. Then: listings fail whole, the one-time migration of an older store, and what a store
opened without the key can and cannot check.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from llm_config import audit
from llm_config.core.context import CallContext
from llm_config.core.custody import INSTANCE_SECRET
from llm_config.core.manager import ConfigManager
from llm_config.crypto.aead import Keyring, derive_key
from llm_config.errors import AuthenticationError, IntegrityError, NotFoundError
from llm_config.integrity import entry_subject, entry_subject_sql
from llm_config.models import Environment
from llm_config.storage.migrate import SQLITE, load_migrations
from llm_config.types import AuditQuery

NS = "acme/chatbot"
PROD = Environment.PRODUCTION


def sql(store_dir: Path, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """One statement on a connection of our own, as an attacker with access to the file would run it."""
    conn = sqlite3.connect(store_dir / "config.db", isolation_level=None)
    try:
        return conn.execute(statement, params).fetchall()
    finally:
        conn.close()


def entry_id(store_dir: Path, key: str, env: str = "production") -> str:
    (row,) = sql(store_dir, "SELECT id FROM entries WHERE namespace = ? AND key = ? AND environment = ?",
                 (NS, key, env))
    return str(row[0])


@dataclass
class Seeded:
    """A store with a plain value, a secret with history, and keys — the names a tamper case edits."""

    manager: ConfigManager
    viewer_key: str
    viewer_id: str
    admin_key: str


@pytest.fixture
def seeded(make_manager: Callable[..., ConfigManager]) -> Seeded:
    mgr = make_manager()
    mgr.set(NS, "base_url", "https://api.openai.com/v1", env="production")
    mgr.set(NS, "openai.api_key", "sk-old-one", env="production", secret=True)
    mgr.set(NS, "openai.api_key", "sk-current", env="production", secret=True)
    mgr.set(NS, "model", "gpt-4o", env="production")
    mgr.set(NS, "model", "gpt-4.1", env="production")
    viewer, viewer_key = mgr.create_api_key("viewer", "viewer", namespaces=[NS])
    _, admin_key = mgr.create_api_key("admin", "admin")
    mgr.close()
    return Seeded(make_manager(), viewer_key, viewer.id, admin_key)


# ----------------------------------------------------------------------------- the tamper suite

@dataclass(frozen=True)
class Case:
    name: str
    tamper: Callable[[Path, Seeded, Callable[..., ConfigManager]], None]
    read: Callable[[ConfigManager, Seeded], object]  # must raise IntegrityError
    names: str  # what the refusal and the verify report must name


def _viewer_becomes_admin(d: Path, s: Seeded, _: Callable[..., ConfigManager]) -> None:
    sql(d, "UPDATE api_keys SET role = 'admin', namespaces = '[]' WHERE id = ?", (s.viewer_id,))


def _secret_turned_plain(d: Path, s: Seeded, _: Callable[..., ConfigManager]) -> None:
    eid = entry_id(d, "openai.api_key")
    value = orjson.dumps("sk-attacker").decode()
    sql(d, "UPDATE entries SET value_type = 'plain', stored_value = ? WHERE id = ?", (value, eid))
    sql(d, "UPDATE versions SET value_type = 'plain', stored_value = ? WHERE entry_id = ? AND version = 2",
        (value, eid))


def _base_url_pointed_elsewhere(d: Path, s: Seeded, _: Callable[..., ConfigManager]) -> None:
    value = orjson.dumps("https://evil.example/v1").decode()
    sql(d, "UPDATE entries SET stored_value = ? WHERE id = ?", (value, entry_id(d, "base_url")))
    sql(d, "UPDATE versions SET stored_value = ? WHERE entry_id = ?", (value, entry_id(d, "base_url")))


def _older_ciphertext_over_newer(d: Path, s: Seeded, _: Callable[..., ConfigManager]) -> None:
    eid = entry_id(d, "openai.api_key")
    ((old,),) = sql(d, "SELECT stored_value FROM versions WHERE entry_id = ? AND version = 1", (eid,))
    sql(d, "UPDATE entries SET stored_value = ? WHERE id = ?", (old, eid))
    sql(d, "UPDATE versions SET stored_value = ? WHERE entry_id = ? AND version = 2", (old, eid))


def _author_rewritten(d: Path, s: Seeded, _: Callable[..., ConfigManager]) -> None:
    sql(d, "UPDATE entries SET created_by = 'someone-else', updated_by = 'someone-else' WHERE id = ?",
        (entry_id(d, "model"),))


def _entry_deleted_with_its_versions(d: Path, s: Seeded, _: Callable[..., ConfigManager]) -> None:
    eid = entry_id(d, "model")
    sql(d, "DELETE FROM versions WHERE entry_id = ?", (eid,))
    sql(d, "DELETE FROM entries WHERE id = ?", (eid,))


def _revoked_key_copied_back(d: Path, s: Seeded, make: Callable[..., ConfigManager]) -> None:
    (before,) = sql(d, "SELECT * FROM api_keys WHERE id = ?", (s.viewer_id,))
    s.manager.revoke_api_key(s.viewer_id)
    with pytest.raises(AuthenticationError):
        make().authenticate(s.viewer_key)
    sql(d, "DELETE FROM api_keys WHERE id = ?", (s.viewer_id,))
    sql(d, f"INSERT INTO api_keys VALUES ({', '.join('?' * len(before))})", before)


def _current_row_set_back(d: Path, s: Seeded, _: Callable[..., ConfigManager]) -> None:
    eid = entry_id(d, "model")
    (older,) = sql(d, "SELECT * FROM entries WHERE id = ?", (eid,))  # version 2, once valid
    s.manager.set(NS, "model", "gpt-5", env="production")  # version 3
    sql(d, "DELETE FROM entries WHERE id = ?", (eid,))
    sql(d, f"INSERT INTO entries VALUES ({', '.join('?' * len(older))})", older)
    sql(d, "DELETE FROM versions WHERE entry_id = ? AND version = 3", (eid,))  # make it look consistent


def _version_moved_to_another_entry(d: Path, s: Seeded, _: Callable[..., ConfigManager]) -> None:
    # the stolen ciphertext keeps its own entry_id's MAC input, so it fails in its new place
    source, target = entry_id(d, "openai.api_key"), entry_id(d, "model")
    sql(d, "DELETE FROM versions WHERE entry_id = ? AND version = 1", (target,))
    sql(d, "UPDATE versions SET entry_id = ? WHERE entry_id = ? AND version = 1", (target, source))


def _purged_version_restored(d: Path, s: Seeded, _: Callable[..., ConfigManager]) -> None:
    eid = entry_id(d, "openai.api_key")
    (before,) = sql(d, "SELECT * FROM versions WHERE entry_id = ? AND version = 1", (eid,))
    s.manager.purge(NS, "openai.api_key", 1, env="production")
    sql(d, "DELETE FROM versions WHERE entry_id = ? AND version = 1", (eid,))
    sql(d, f"INSERT INTO versions VALUES ({', '.join('?' * len(before))})", before)


def _forged_entry_inserted(d: Path, s: Seeded, _: Callable[..., ConfigManager]) -> None:
    (row,) = sql(d, "SELECT * FROM entries WHERE id = ?", (entry_id(d, "base_url"),))
    forged = list(row)
    forged[0], forged[1] = "00000000-0000-0000-0000-000000000001", "acme/chatbot"
    forged[2] = "staging"  # table order: id, namespace, environment, key, ...
    sql(d, f"INSERT INTO entries VALUES ({', '.join('?' * len(forged))})", tuple(forged))


def _values_llm_config_never_writes(d: Path, s: Seeded, _: Callable[..., ConfigManager]) -> None:
    # columns a row cannot even be mapped from: they must read as tampering, never as a crash (a 500)
    sql(d, "UPDATE versions SET value_type = 'x' WHERE entry_id = ? AND version = 1", (entry_id(d, "model"),))
    sql(d, "UPDATE entries SET tags = 'not json' WHERE id = ?", (entry_id(d, "base_url"),))
    sql(d, "UPDATE api_keys SET role = 'root' WHERE id = ?", (s.viewer_id,))


CASES = [
    Case("viewer key edited into an unrestricted admin", _viewer_becomes_admin,
         lambda m, s: m.authenticate(s.viewer_key), "API key"),
    Case("secret turned into a plain attacker value", _secret_turned_plain,
         lambda m, s: m.get(NS, "openai.api_key", env=PROD), "openai.api_key"),
    Case("base_url pointed elsewhere", _base_url_pointed_elsewhere,
         lambda m, s: m.get(NS, "base_url", env=PROD), "base_url"),
    Case("older ciphertext copied over the newer version", _older_ciphertext_over_newer,
         lambda m, s: m.get(NS, "openai.api_key", env=PROD, reveal=True), "openai.api_key"),
    Case("created_by / updated_by rewritten", _author_rewritten,
         lambda m, s: m.get(NS, "model", env=PROD), "model"),
    Case("entry deleted with all its versions", _entry_deleted_with_its_versions,
         lambda m, s: m.get(NS, "model", env=PROD), "model"),
    Case("revoked key's row copied back from before its revocation", _revoked_key_copied_back,
         lambda m, s: m.authenticate(s.viewer_key), "API key"),
    Case("current row set back to an earlier version", _current_row_set_back,
         lambda m, s: m.get(NS, "model", env=PROD), "model"),
    Case("a version row moved to another entry", _version_moved_to_another_entry,
         lambda m, s: m.history(NS, "model", env=PROD), "version 1"),
    Case("a purged version's value copied back", _purged_version_restored,
         lambda m, s: m.history(NS, "openai.api_key", env=PROD), "version 1"),
    Case("a forged entry inserted", _forged_entry_inserted,
         lambda m, s: m.get(NS, "base_url", env="staging"), "base_url"),
    Case("a version's type that does not exist", _values_llm_config_never_writes,
         lambda m, s: m.history(NS, "model", env=PROD), "version 1"),
    Case("an entry's tags that are not JSON", _values_llm_config_never_writes,
         lambda m, s: m.get(NS, "base_url", env=PROD), "base_url"),
    Case("a key's role that does not exist", _values_llm_config_never_writes,
         lambda m, s: m.authenticate(s.viewer_key), "API key"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_tampering_is_refused_at_read_and_reported_by_verify(
    case: Case, seeded: Seeded, store_dir: Path, make_manager: Callable[..., ConfigManager],
) -> None:
    assert seeded.manager.audit_verify().ok
    head = seeded.manager.audit_head()
    case.tamper(store_dir, seeded, make_manager)
    fresh = make_manager()  # a process whose cache never saw the rows
    with pytest.raises(IntegrityError) as refused:
        case.read(fresh, seeded)
    message = str(refused.value)
    assert message.startswith("Integrity check failed:") and case.names in message
    for value in ("sk-old-one", "sk-current", "sk-attacker", "evil.example", "gpt-4o", "gpt-4.1"):
        assert value not in message
    report = fresh.audit_verify()
    assert not report.ok
    assert any(case.names in problem for problem in report.problems), report.problems
    if head is not None:  # the anchor cannot be fooled either way
        assert not fresh.audit_verify(anchor=head).ok
    doctor = fresh.doctor()
    assert doctor["status"] == "unhealthy"
    assert doctor["checks"]["integrity"]["status"] == "unhealthy"
    assert doctor["checks"]["audit"]["status"] == "unhealthy"


def test_without_the_key_a_row_llm_config_never_wrote_is_refused_not_crashed_on(
    seeded: Seeded, store_dir: Path, make_manager: Callable[..., ConfigManager]
) -> None:
    _values_llm_config_never_writes(store_dir, seeded, make_manager)
    keyless = make_manager(encryption_key=None)
    for read in (lambda: keyless.get(NS, "base_url", env=PROD), lambda: keyless.list(NS, env=PROD),
                 lambda: keyless.history(NS, "model", env=PROD), keyless.list_api_keys):
        with pytest.raises(IntegrityError, match="holds values llm-config never writes"):
            read()
    assert keyless.get(NS, "openai.api_key", env=PROD).secret  # the untouched rows still read


def test_a_listing_resolve_or_export_that_meets_a_failing_row_fails_whole(
    seeded: Seeded, store_dir: Path, make_manager: Callable[..., ConfigManager]
) -> None:
    _author_rewritten(store_dir, seeded, make_manager)
    fresh = make_manager()
    for read in (lambda: fresh.list(NS, env=PROD), lambda: fresh.resolve(NS, env=PROD),
                 lambda: fresh.export(NS, env=PROD), lambda: fresh.import_(NS, {"x": 1}, env=PROD)):
        with pytest.raises(IntegrityError, match="model"):
            read()
    # the untouched rows still read one by one
    assert fresh.get(NS, "base_url", env=PROD).value == "https://api.openai.com/v1"


def test_a_write_on_a_tampered_row_is_refused_and_changes_nothing(
    seeded: Seeded, store_dir: Path, make_manager: Callable[..., ConfigManager]
) -> None:
    """Compare-and-set and the plain-over-secret rule decide on the row they lock: a forged one must
    not decide anything."""
    _secret_turned_plain(store_dir, seeded, make_manager)
    events = len(sql(store_dir, "SELECT seq FROM audit_events"))
    fresh = make_manager()
    with pytest.raises(IntegrityError):
        fresh.set(NS, "openai.api_key", "plain-now", env=PROD, expected_version=2)
    with pytest.raises(IntegrityError):
        fresh.rollback(NS, "openai.api_key", 1, env=PROD)
    assert len(sql(store_dir, "SELECT seq FROM audit_events")) == events


def test_health_recovers_once_the_row_reads_clean_again(
    seeded: Seeded, store_dir: Path, make_manager: Callable[..., ConfigManager]
) -> None:
    (original,) = sql(store_dir, "SELECT created_by, updated_by FROM entries WHERE id = ?",
                      (entry_id(store_dir, "model"),))
    _author_rewritten(store_dir, seeded, make_manager)
    fresh = make_manager()
    with pytest.raises(IntegrityError):
        fresh.get(NS, "model", env=PROD)
    assert fresh.doctor(public=True)["status"] == "unhealthy"
    sql(store_dir, "UPDATE entries SET created_by = ?, updated_by = ? WHERE id = ?",
        (*original, entry_id(store_dir, "model")))  # the operator restores the row
    assert fresh.doctor(public=True)["status"] == "healthy"
    assert fresh.get(NS, "model", env=PROD).value == "gpt-4.1"


def test_an_invalid_name_can_never_spell_another_entrys_subject(
    make_manager: Callable[..., ConfigManager],
) -> None:
    """(`a`, `b/c`) spells the subject of (`a/b`, `c`): it must be a bad name, not a deleted entry."""
    mgr = make_manager()
    mgr.set("a/b", "c", 1)
    for ns, key in (("a", "b/c"), ("a/b/c@x", "y")):
        with pytest.raises(Exception) as failed:
            mgr.get(ns, key)
        assert not isinstance(failed.value, IntegrityError)
    assert mgr.doctor(public=True)["checks"]["integrity"]["status"] == "healthy"


# ----------------------------------------------------------------------------- without the key

def test_without_the_key_rows_are_served_unchecked_and_doctor_says_so(
    seeded: Seeded, store_dir: Path, make_manager: Callable[..., ConfigManager]
) -> None:
    keyless = make_manager(encryption_key=None)
    assert not keyless.storage.verifying
    assert keyless.get(NS, "model", env=PROD).value == "gpt-4.1"
    check = keyless.doctor()["checks"]["integrity"]
    assert check["status"] == "degraded" and "cannot be checked without the master key" in check["message"]


# ----------------------------------------------------------------------------- migrating an older store

def _old_store(store_dir: Path, key: str) -> None:
    """A store as llm-config wrote it before row MACs: schema 001-002, scheme-1 fingerprints, no subjects."""
    store_dir.mkdir(mode=0o700)
    conn = sqlite3.connect(store_dir / "config.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(SQLITE.create_table)
    for migration in load_migrations("sqlite"):
        if migration.version >= 3:
            continue
        for statement in migration.statements():
            conn.execute(statement)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                     (migration.version, migration.name, "2026-01-01T00:00:00.000000Z"))
    keyring = Keyring.from_text(key)
    secret = bytes(range(32))
    conn.execute("INSERT INTO meta VALUES (?, ?)",
                 (INSTANCE_SECRET, keyring.seal(secret, b"llm-config instance secret v1")))
    audit_key, fp_key = derive_key(secret, "audit-chain"), derive_key(secret, "fingerprint")
    prev, seq = audit.GENESIS_MAC, 0

    def event(**fields: Any) -> None:
        nonlocal prev, seq
        seq += 1
        full = {"seq": seq, "id": f"e{seq}", "timestamp": f"2026-01-01T00:00:0{seq}.000000Z", "outcome": "success",
                "source_ip": None, "request_id": None, "namespace": None, "key": None, "environment": None,
                "old_version": None, "new_version": None, "details": {}, **fields}
        mac = audit.compute_mac(audit_key, prev, full)
        conn.execute("INSERT INTO audit_events (seq, id, timestamp, type, actor, namespace, key, environment, "
                     "old_version, new_version, outcome, source_ip, request_id, details, prev_mac, mac) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (seq, full["id"], full["timestamp"], full["type"], full["actor"], full["namespace"], full["key"],
                      full["environment"], full["old_version"], full["new_version"], full["outcome"], None, None,
                      orjson.dumps(full["details"], option=orjson.OPT_SORT_KEYS).decode(), prev, mac))
        prev = mac

    text = orjson.dumps("gpt-4o").decode()
    fp1 = audit.fingerprint_with(1, fp_key, b"", text.encode())
    event(type="config_created", actor="alice", namespace=NS, key="model", environment="production",
          new_version=1, details={"fingerprint": fp1})
    conn.execute("INSERT INTO entries (id, namespace, environment, key, version, deleted, value_type, stored_value, "
                 "fingerprint, created_at, created_by, updated_at, updated_by, tags, description, revision) "
                 "VALUES ('e-1', ?, 'production', 'model', 1, 0, 'plain', ?, ?, 't', 'alice', 't', 'alice', '[]', "
                 "NULL, 1)", (NS, text, fp1))
    conn.execute("INSERT INTO versions VALUES ('e-1', 1, 0, 0, 'plain', ?, ?, 't', 'alice', 'Created', 1, 1)",
                 (text, fp1))
    conn.execute("UPDATE meta SET value = '1' WHERE name = 'revision'")  # as the write of revision 1 left it
    event(type="key_created", actor="alice", details={"key_id": "key_00000000000000aa", "name": "old",
                                                       "role": "viewer"})
    conn.execute("INSERT INTO api_keys VALUES ('key_00000000000000aa', 'old', 'viewer', '[]', '[]', 'h', 't', "
                 "'alice', NULL, NULL)")
    conn.close()


def test_an_older_store_gets_its_macs_once_audited_as_one_event(
    store_dir: Path, key: str, make_manager: Callable[..., ConfigManager]
) -> None:
    _old_store(store_dir, key)
    keyless = make_manager(encryption_key=None)  # cannot migrate: serves unchecked, says so
    assert keyless.get(NS, "model", env=PROD).value == "gpt-4o"
    assert "not computed yet" in keyless.doctor()["checks"]["integrity"]["message"] or \
        "without the master key" in keyless.doctor()["checks"]["integrity"]["message"]
    keyless.close()

    mgr = make_manager()
    migrated = mgr.storage.audit_events(AuditQuery(type="integrity_migrated"))
    assert len(migrated) == 1
    assert migrated[0].details == {"api_keys": 1, "entries": 1, "fingerprint_scheme": 2, "versions": 1}
    assert mgr.get(NS, "model", env=PROD).value == "gpt-4o"
    report = mgr.audit_verify()
    assert report.ok, report.problems  # scheme-1 events still verify
    mgr.set(NS, "model", "gpt-4.1", env=PROD)
    assert mgr.audit_verify().ok
    mgr.close()
    again = make_manager()  # nothing is pending any more: no second migration
    assert len(again.storage.audit_events(AuditQuery(type="integrity_migrated"))) == 1
    # rows edited after the migration are refused like in any store
    sql(store_dir, "UPDATE entries SET created_by = 'mallory'")
    with pytest.raises(IntegrityError):
        make_manager().get(NS, "model", env=PROD)


def test_a_store_is_never_re_vouched_for_by_a_second_migration(
    seeded: Seeded, store_dir: Path, make_manager: Callable[..., ConfigManager]
) -> None:
    """Adding `integrity_pending` by hand must not make llm-config recompute the MACs of edited rows,
    nor stop it from checking them."""
    _author_rewritten(store_dir, seeded, make_manager)
    sql(store_dir, "INSERT INTO meta VALUES ('integrity_pending', '1')")
    mgr = make_manager()
    assert mgr.integrity_problem is not None and "already written with them" in mgr.integrity_problem
    with pytest.raises(IntegrityError, match="model"):
        mgr.get(NS, "model", env=PROD)
    report = mgr.audit_verify()
    assert not report.ok and any("model" in p and "MAC mismatch" in p for p in report.problems), report.problems
    assert mgr.doctor()["checks"]["integrity"]["status"] == "unhealthy"


def test_an_older_store_with_a_broken_chain_is_not_migrated_and_says_so(
    store_dir: Path, key: str, make_manager: Callable[..., ConfigManager]
) -> None:
    """No dead end: the store opens (so doctor and `audit verify` can say what is wrong), but it serves
    none of its unchecked rows with the key and takes no writes until its chain verifies."""
    _old_store(store_dir, key)
    sql(store_dir, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 1")
    mgr = make_manager()
    assert mgr.integrity_problem is not None and "audit chain does not verify" in mgr.integrity_problem
    integrity = mgr.doctor()["checks"]["integrity"]
    assert integrity["status"] == "unhealthy" and "audit chain does not verify" in integrity["message"]
    report = mgr.audit_verify()
    assert not report.ok and any("MACs are not computed yet" in p for p in report.problems), report.problems
    with pytest.raises(IntegrityError, match="not computed yet"):
        mgr.get(NS, "model", env=PROD)
    with pytest.raises(IntegrityError, match="takes no writes"):
        mgr.set(NS, "model", "gpt-5", env=PROD)
    with pytest.raises(IntegrityError, match="takes no writes"):
        mgr.create_api_key("late", "viewer")
    assert sql(store_dir, "SELECT COUNT(*) FROM meta WHERE name = 'integrity_pending'") == [(1,)]
    with pytest.raises(NotFoundError):  # keyless reads still work, unchecked
        make_manager(encryption_key=None).get(NS, "absent", env=PROD)
    assert make_manager(encryption_key=None).get(NS, "model", env=PROD).value == "gpt-4o"


def test_a_tampered_key_in_the_tree_cannot_keep_its_parent_alive(
    seeded: Seeded, store_dir: Path, make_manager: Callable[..., ConfigManager]
) -> None:
    """Revoking a key revokes its live descendants; one edited row among them must neither block the
    revocation (a stolen parent would stay valid) nor be signed by it (the edit would be blessed)."""
    mgr = seeded.manager
    admin = mgr.authenticate(seeded.admin_key)
    assert admin.key_id is not None
    child, child_key = mgr.as_caller(CallContext(admin)).create_api_key("child", "admin")
    _, grandchild_key = mgr.as_caller(CallContext(mgr.authenticate(child_key))).create_api_key("grandchild", "viewer")
    sql(store_dir, "UPDATE api_keys SET created_by = 'mallory' WHERE id = ?", (child.id,))
    sql(store_dir, "INSERT INTO api_keys (id, name, role, namespaces, environments, key_hash, created_at, "
                   "created_by, expires_at, revoked_at, parent_id, audit_seq, mac) "
                   "SELECT 'forged', 'forged', role, namespaces, environments, 'not-a-hash', created_at, "
                   "created_by, expires_at, revoked_at, ?, audit_seq, mac FROM api_keys WHERE id = ?",
        (admin.key_id, child.id))
    fresh = make_manager()
    revoked = fresh.revoke_api_key(admin.key_id)
    assert revoked.id == admin.key_id and revoked.revoked_at is not None
    for token in (seeded.admin_key, grandchild_key):
        with pytest.raises(AuthenticationError):
            make_manager().authenticate(token)
    with pytest.raises(IntegrityError, match=child.id):  # still refused: the revocation did not sign it
        make_manager().authenticate(child_key)
    assert not fresh.audit_verify().ok


def test_the_subject_spelled_in_sql_is_the_one_spelled_in_python() -> None:
    conn = sqlite3.connect(":memory:")
    try:
        (spelled,) = conn.execute(f"SELECT {entry_subject_sql('?', '?', '?')}", (NS, "model", "production")).fetchone()
    finally:
        conn.close()
    assert spelled == entry_subject(NS, "model", "production")
