"""The `Storage` contract (types.Storage), run against every backend of conftest.BACKENDS."""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from llm_config import audit
from llm_config.core.custody import StoreKeys, place
from llm_config.core.verify import verify_store
from llm_config.crypto.aead import Keyring
from llm_config.crypto.keys import KeySource
from llm_config.errors import (
    ConflictError,
    NotFoundError,
    StorageError,
    StoreMissingError,
    ValidationError,
)
from llm_config.models import (
    Environment,
    PendingEvent,
    StoredEntry,
    ValueType,
    WriteKind,
    WriteRequest,
    WriteResult,
)
from llm_config.storage import mask_url, open_storage
from llm_config.types import AuditQuery, Storage

from .conftest import ROW_KEY, Backend

AUDIT_KEY = bytes(range(32))
FP_KEY = bytes(range(32, 64))
KEYRING = Keyring([bytes(range(64, 96))])
STORE_KEYS = StoreKeys(source=KeySource(KEYRING, "contract tests"), audit=AUDIT_KEY, fingerprint=FP_KEY,
                       pepper=bytes(range(96, 128)), row=ROW_KEY, cache=bytes(range(128, 160)))
DEV = Environment.DEVELOPMENT
PROD = Environment.PRODUCTION


# -- helpers ---------------------------------------------------------------------------------------


def now(offset_seconds: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def set_req(
    ns: str,
    key: str,
    value: Any,
    *,
    env: Environment = DEV,
    expected: int | None = None,
    secret: bool = False,
    tags: tuple[str, ...] | None = None,
    description: str | None = None,
    message: str = "Updated",
    actor: str = "alice",
    timestamp: str | None = None,
) -> WriteRequest:
    text = orjson.dumps(value)
    stored = KEYRING.seal(text, place(ns, key, env)) if secret else text.decode()  # storage sees envelopes only
    fingerprint = audit.fingerprint(FP_KEY, place(ns, key, env), text)
    return WriteRequest(
        kind=WriteKind.SET,
        namespace=ns,
        key=key,
        environment=env,
        actor=actor,
        timestamp=timestamp or now(),
        change_description=message,
        value_type=ValueType.SECRET if secret else ValueType.PLAIN,
        stored_value=stored,
        fingerprint=fingerprint,
        expected_version=expected,
        tags=tags,
        description=description,
        audit_details={"fingerprint": fingerprint, "fingerprint_scheme": audit.FINGERPRINT_SCHEME},
    )


def delete_req(
    ns: str, key: str, *, env: Environment = DEV, expected: int | None = None, actor: str = "bob"
) -> WriteRequest:
    return WriteRequest(
        kind=WriteKind.DELETE,
        namespace=ns,
        key=key,
        environment=env,
        actor=actor,
        timestamp=now(),
        change_description="Deleted",
        expected_version=expected,
    )


def rollback_req(ns: str, key: str, version: int, *, env: Environment = DEV) -> WriteRequest:
    return WriteRequest(
        kind=WriteKind.ROLLBACK,
        namespace=ns,
        key=key,
        environment=env,
        actor="carol",
        timestamp=now(),
        change_description=f"Rollback to version {version}",
        target_version=version,
    )


def purge_req(ns: str, key: str, version: int, *, env: Environment = DEV) -> WriteRequest:
    return WriteRequest(
        kind=WriteKind.PURGE,
        namespace=ns,
        key=key,
        environment=env,
        actor="admin",
        timestamp=now(),
        change_description=f"Purged version {version}",
        target_version=version,
    )


def write(storage: Storage, *requests: WriteRequest) -> list[WriteResult]:
    return storage.apply(list(requests), AUDIT_KEY)


def put(storage: Storage, ns: str, key: str, value: Any, **kw: Any) -> StoredEntry:
    return write(storage, set_req(ns, key, value, **kw))[0].entry


def value_of(entry: StoredEntry | None) -> Any:
    assert entry is not None
    assert entry.stored_value is not None
    return orjson.loads(entry.stored_value)


def verify(storage: Storage, key: bytes = AUDIT_KEY) -> audit.VerifyReport:
    """`audit verify` of the whole store: chain, row MACs and every cross-reference."""
    return verify_store(storage, dataclasses.replace(STORE_KEYS, audit=key))


def snapshot(storage: Storage, ns: str, key: str, env: Environment = DEV) -> tuple[Any, ...]:
    return (
        storage.get_current(ns, key, env),
        storage.history(ns, key, env),
        storage.audit_head(),
        storage.get_meta("revision"),
    )


# -- versions --------------------------------------------------------------------------------------


def test_create_then_update_writes_versions_1_2_3(storage: Storage) -> None:
    results = [
        write(storage, set_req("app", "model", v, timestamp=now(i), actor=f"user{i}"))[0]
        for i, v in enumerate(["a", "b", "c"])
    ]
    assert [r.entry.version for r in results] == [1, 2, 3]
    assert [r.old_version for r in results] == [None, 1, 2]
    assert len({r.entry.id for r in results}) == 1
    current = storage.get_current("app", "model", DEV)
    assert current is not None
    assert current == results[-1].entry
    assert value_of(current) == "c"
    assert not current.deleted
    assert current.value_type is ValueType.PLAIN
    assert current.environment is DEV
    assert (current.created_by, current.updated_by) == ("user0", "user2")
    assert current.created_at < current.updated_at
    assert [v.version for v in storage.history("app", "model", DEV)] == [3, 2, 1]
    assert [v.version for v in storage.history("app", "model", DEV, limit=2)] == [3, 2]
    v2 = storage.get_version("app", "model", DEV, 2)
    assert v2 is not None
    assert orjson.loads(v2.stored_value or "") == "b"
    assert v2.entry_id == current.id
    assert v2.created_by == "user1"
    assert storage.get_version("app", "model", DEV, 4) is None
    assert storage.get_current("app", "model", PROD) is None
    assert storage.get_current("app", "other", DEV) is None
    types = [e.type for e in storage.audit_events(AuditQuery())]
    assert types == ["config_created", "config_updated", "config_updated"]


def test_tags_and_description_none_keeps_current(storage: Storage) -> None:
    first = put(storage, "app", "k", 1, tags=("a", "b"), description="first")
    assert (first.tags, first.description) == (("a", "b"), "first")
    kept = put(storage, "app", "k", 2)
    assert (kept.tags, kept.description) == (("a", "b"), "first")
    changed = put(storage, "app", "k", 3, tags=(), description="second")
    assert (changed.tags, changed.description) == ((), "second")
    assert storage.get_current("app", "k", DEV) == changed
    fresh = put(storage, "app", "other", 1)
    assert (fresh.tags, fresh.description) == ((), None)


def test_delete_writes_a_tombstone_that_keeps_id_and_created(storage: Storage) -> None:
    created = put(storage, "app", "k", "v", actor="alice")
    result = write(storage, delete_req("app", "k", actor="bob"))[0]
    tomb = result.entry
    assert result.old_version == 1
    assert (tomb.version, tomb.deleted, tomb.stored_value, tomb.value_type) == (2, True, None, ValueType.NONE)
    assert (tomb.id, tomb.created_at, tomb.created_by) == (created.id, created.created_at, "alice")
    assert tomb.updated_by == "bob"
    assert storage.get_current("app", "k", DEV) == tomb
    newest = storage.history("app", "k", DEV)[0]
    assert (newest.version, newest.deleted, newest.stored_value, newest.change_description) == (
        2, True, None, "Deleted",
    )
    assert storage.list_current("app", DEV) == []
    assert storage.audit_events(AuditQuery())[-1].type == "config_deleted"
    with pytest.raises(NotFoundError, match=r"Config not found: app/k \[development\]"):
        write(storage, delete_req("app", "k"))
    with pytest.raises(NotFoundError):
        write(storage, delete_req("app", "never"))


def test_recreate_after_delete_continues_versions_and_keeps_id(storage: Storage) -> None:
    created = put(storage, "app", "k", "v1")
    write(storage, delete_req("app", "k"))
    result = write(storage, set_req("app", "k", "v3", expected=0))[0]
    again = result.entry
    assert (again.version, again.deleted, again.id) == (3, False, created.id)
    assert (again.created_at, again.created_by) == (created.created_at, created.created_by)
    assert result.old_version == 2
    assert value_of(storage.get_current("app", "k", DEV)) == "v3"
    assert storage.audit_events(AuditQuery())[-1].type == "config_created"


def test_versions_are_never_reused(storage: Storage) -> None:
    put(storage, "app", "k", 1)
    put(storage, "app", "k", 2)
    write(storage, delete_req("app", "k"))
    put(storage, "app", "k", 4)
    write(storage, purge_req("app", "k", 2))
    write(storage, rollback_req("app", "k", 1))
    write(storage, delete_req("app", "k"))
    put(storage, "app", "k", 7)
    versions = [v.version for v in storage.history("app", "k", DEV)]
    assert versions == [7, 6, 5, 4, 3, 2, 1]
    current = storage.get_current("app", "k", DEV)
    assert current is not None
    assert current.version == 7


# -- rollback and purge ----------------------------------------------------------------------------


def test_rollback_copies_the_value_and_writes_max_plus_one(storage: Storage) -> None:
    put(storage, "app", "k", "one", secret=True)
    put(storage, "app", "k", "two", secret=True)
    result = write(storage, rollback_req("app", "k", 1))[0]
    assert result.entry.version == 3
    assert result.old_version == 2
    v1 = storage.get_version("app", "k", DEV, 1)
    v3 = storage.get_version("app", "k", DEV, 3)
    assert v1 is not None
    assert v3 is not None
    assert (v3.value_type, v3.stored_value, v3.fingerprint) == (v1.value_type, v1.stored_value, v1.fingerprint)
    assert v3.change_description == "Rollback to version 1"
    assert result.entry.stored_value == v1.stored_value
    assert result.entry.value_type is ValueType.SECRET
    assert storage.audit_events(AuditQuery())[-1].type == "secret_modified"


def test_rollback_after_delete_undeletes(storage: Storage) -> None:
    created = put(storage, "app", "k", "one")
    write(storage, delete_req("app", "k"))
    result = write(storage, rollback_req("app", "k", 1))[0]
    assert (result.entry.version, result.entry.deleted, result.entry.id) == (3, False, created.id)
    assert value_of(storage.get_current("app", "k", DEV)) == "one"
    assert storage.audit_events(AuditQuery())[-1].type == "config_rolled_back"


def test_rollback_to_tombstone_missing_or_purged_is_not_found(storage: Storage) -> None:
    put(storage, "app", "k", 1)
    put(storage, "app", "k", 2)
    write(storage, delete_req("app", "k"))
    put(storage, "app", "k", 4)
    write(storage, purge_req("app", "k", 1))
    before = snapshot(storage, "app", "k")
    for version, why in ((3, "is a deletion"), (1, "is purged"), (99, "not found")):
        with pytest.raises(NotFoundError, match=f"Version {version} of app/k \\[development\\] {why}"):
            write(storage, rollback_req("app", "k", version))
    with pytest.raises(NotFoundError, match="Config not found"):
        write(storage, rollback_req("app", "missing", 1))
    assert snapshot(storage, "app", "k") == before


def test_purge_destroys_one_version_and_leaves_a_marker(storage: Storage) -> None:
    put(storage, "app", "k", "one", secret=True)
    put(storage, "app", "k", "two", secret=True)
    put(storage, "app", "k", "three", secret=True)
    result = write(storage, purge_req("app", "k", 1))[0]
    assert result.entry.version == 3
    purged = storage.get_version("app", "k", DEV, 1)
    assert purged is not None
    assert purged.purged
    assert not purged.deleted
    assert (purged.stored_value, purged.value_type, purged.fingerprint) == (None, ValueType.NONE, None)
    assert [v.version for v in storage.history("app", "k", DEV)] == [3, 2, 1]
    current = storage.get_current("app", "k", DEV)
    assert current is not None
    assert current.version == 3
    event = storage.audit_events(AuditQuery())[-1]
    assert (event.type, event.old_version, event.new_version) == ("secret_modified", 1, None)
    with pytest.raises(NotFoundError, match=r"Version 1 of app/k .* is purged"):
        write(storage, purge_req("app", "k", 1))
    with pytest.raises(NotFoundError, match=r"Version 9 of app/k .* not found"):
        write(storage, purge_req("app", "k", 9))
    with pytest.raises(ValidationError, match="Cannot purge the current version 3"):
        write(storage, purge_req("app", "k", 3))
    write(storage, delete_req("app", "k"))
    with pytest.raises(NotFoundError, match=r"Version 4 .* is a deletion"):  # a tombstone has nothing to purge
        write(storage, purge_req("app", "k", 4))
    write(storage, purge_req("app", "k", 3))  # no longer current once deleted
    put(storage, "plain", "k", 1)
    put(storage, "plain", "k", 2)
    write(storage, purge_req("plain", "k", 1))
    assert storage.audit_events(AuditQuery())[-1].type == "config_purged"
    assert verify(storage).ok


# -- compare-and-set and atomicity ------------------------------------------------------------------


def test_compare_and_set(storage: Storage) -> None:
    assert write(storage, set_req("app", "k", 1, expected=0))[0].entry.version == 1
    before = snapshot(storage, "app", "k")
    with pytest.raises(ConflictError) as info:
        write(storage, set_req("app", "k", "secret-ish", expected=0))
    assert info.value.current_version == 1
    assert str(info.value) == "Version conflict on app/k [development]: expected 0, current 1"
    assert "secret-ish" not in str(info.value)
    assert (info.value.namespace, info.value.key, info.value.environment) == ("app", "k", "development")
    with pytest.raises(ConflictError) as info:
        write(storage, set_req("app", "k", 3, expected=2))
    assert info.value.current_version == 1
    with pytest.raises(ConflictError):
        write(storage, delete_req("app", "k", expected=5))
    with pytest.raises(ConflictError) as info:
        write(storage, set_req("app", "new", 1, expected=1))
    assert info.value.current_version == 0
    assert snapshot(storage, "app", "k") == before
    assert storage.get_current("app", "new", DEV) is None
    assert write(storage, set_req("app", "k", 2, expected=1))[0].entry.version == 2
    write(storage, delete_req("app", "k", expected=2))
    # a tombstone's version counts, and 0 accepts a tombstone
    with pytest.raises(ConflictError):
        write(storage, set_req("app", "k", 4, expected=2))
    assert write(storage, set_req("app", "k", 4, expected=3))[0].entry.version == 4
    write(storage, delete_req("app", "k"))
    assert write(storage, set_req("app", "k", 6, expected=0))[0].entry.version == 6
    assert verify(storage).ok


def test_a_batch_is_all_or_nothing(storage: Storage) -> None:
    put(storage, "app", "existing", 1)
    head = storage.audit_head()
    revision = storage.get_meta("revision")
    with pytest.raises(ConflictError):
        write(
            storage,
            set_req("app", "a", 1),
            set_req("app", "existing", 2),
            delete_req("app", "existing"),
            set_req("app", "b", 1, expected=7),
        )
    assert storage.get_current("app", "a", DEV) is None
    assert storage.get_current("app", "b", DEV) is None
    assert [v.version for v in storage.history("app", "existing", DEV)] == [1]
    assert storage.audit_head() == head
    assert storage.get_meta("revision") == revision
    with pytest.raises(NotFoundError):
        write(storage, set_req("app", "a", 1), delete_req("app", "missing"))
    assert storage.get_current("app", "a", DEV) is None
    assert storage.audit_head() == head


def test_a_batch_applies_in_order_with_one_event_and_revision_each(storage: Storage) -> None:
    start = int(storage.get_meta("revision") or "0")
    results = write(
        storage,
        set_req("app", "a", 1),
        set_req("app", "a", 2, expected=1),
        set_req("app", "b", 1),
        delete_req("app", "a", expected=2),
    )
    assert [(r.entry.key, r.entry.version) for r in results] == [("a", 1), ("a", 2), ("b", 1), ("a", 3)]
    assert [r.audit_seq for r in results] == [1, 2, 3, 4]
    assert [r.entry.revision for r in results] == [start + 1, start + 2, start + 3, start + 4]
    assert storage.get_meta("revision") == str(start + 4)
    assert [v.audit_seq for v in storage.history("app", "a", DEV)] == [4, 2, 1]
    assert storage.apply([], AUDIT_KEY) == []
    assert verify(storage).ok


# -- listing ---------------------------------------------------------------------------------------

NAMESPACES = ["app", "app/sub", "app/sub/deep", "app_x", "app.x", "app-x", "apps", "appx", "other"]
KEYS = ["a_b", "a.b", "axb", "a-b", "ab", "b", "a_bc"]


@pytest.fixture
def populated(storage: Storage) -> Storage:
    write(storage, *[set_req(ns, key, f"{ns}:{key}") for ns in NAMESPACES for key in KEYS])
    write(storage, set_req("app", "prod_only", 1, env=PROD), set_req("app", "gone", 1))
    write(storage, delete_req("app", "gone"), set_req("only_deleted", "x", 1))
    write(storage, delete_req("only_deleted", "x"))
    return storage


def keys_of(entries: list[StoredEntry]) -> list[str]:
    return [e.key for e in entries]


def test_list_is_live_and_ordered_by_key(populated: Storage) -> None:
    entries = populated.list_current("app", DEV)
    assert keys_of(entries) == sorted(KEYS)
    assert {e.namespace for e in entries} == {"app"}
    assert all(not e.deleted and e.environment is DEV for e in entries)
    assert keys_of(populated.list_current("app", PROD)) == ["prod_only"]
    assert populated.list_current("nothing", DEV) == []
    assert populated.list_current("only_deleted", DEV) == []


def test_list_prefix_takes_underscore_and_dot_literally(populated: Storage) -> None:
    assert keys_of(populated.list_current("app", DEV, prefix="a_")) == ["a_b", "a_bc"]
    assert keys_of(populated.list_current("app", DEV, prefix="a.")) == ["a.b"]
    assert keys_of(populated.list_current("app", DEV, prefix="a-")) == ["a-b"]
    assert keys_of(populated.list_current("app", DEV, prefix="a_b")) == ["a_b", "a_bc"]
    assert keys_of(populated.list_current("app", DEV, prefix="%")) == []
    assert keys_of(populated.list_current("app", DEV, prefix="b")) == ["b"]


def test_list_keyset_pagination(populated: Storage) -> None:
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        page = populated.list_current("app", DEV, after_key=after, limit=3)
        if not page:
            break
        pages.append(keys_of(page))
        after = page[-1].key
    assert [k for page in pages for k in page] == sorted(KEYS)
    assert all(len(page) <= 3 for page in pages)
    assert keys_of(populated.list_current("app", DEV, prefix="a", after_key="a.b", limit=2)) == ["a_b", "a_bc"]


def test_list_recursive_includes_only_true_sub_namespaces(populated: Storage) -> None:
    entries = populated.list_current("app", DEV, recursive=True)
    pairs = [(e.namespace, e.key) for e in entries]
    assert pairs == [(ns, key) for ns in ["app", "app/sub", "app/sub/deep"] for key in sorted(KEYS)]
    sub = populated.list_current("app/sub", DEV, recursive=True, prefix="a_")
    assert [(e.namespace, e.key) for e in sub] == [
        ("app/sub", "a_b"), ("app/sub", "a_bc"), ("app/sub/deep", "a_b"), ("app/sub/deep", "a_bc"),
    ]
    assert keys_of(populated.list_current("app_x", DEV, recursive=True)) == sorted(KEYS)
    collected: list[tuple[str, str]] = []
    after: str | None = None
    while True:
        page = populated.list_current("app", DEV, recursive=True, after_key=after, limit=4)
        if not page:
            break
        collected.extend((e.namespace, e.key) for e in page)
        after = page[-1].namespace + "~" + page[-1].key
    assert collected == pairs


def test_namespaces(populated: Storage) -> None:
    expected = sorted(set(NAMESPACES))
    assert populated.namespaces() == expected
    assert populated.namespaces("app") == [ns for ns in expected if ns.startswith("app")]
    assert populated.namespaces("app_") == ["app_x"]
    assert populated.namespaces("app.") == ["app.x"]
    assert populated.namespaces("app/") == ["app/sub", "app/sub/deep"]
    assert populated.namespaces("zzz") == []
    assert "only_deleted" not in populated.namespaces()


# -- audit -----------------------------------------------------------------------------------------


def test_every_write_adds_one_event_and_the_chain_verifies(storage: Storage) -> None:
    assert storage.audit_head() is None
    assert verify(storage).ok
    write(storage, set_req("app", "k", 1, actor="alice"))
    write(storage, set_req("app", "k", 2, actor="bob"), set_req("app/sub", "s", 1, secret=True))
    write(storage, delete_req("app", "k"))
    event = storage.append_audit(PendingEvent(
        type="secret_accessed", actor="carol", namespace="app/sub", key="s",
        environment="development", details={"reason": "reveal", "n": [1, 2]}, request_id="r-1",
    ), AUDIT_KEY)
    events = storage.audit_events(AuditQuery())
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[-1] == event
    assert storage.audit_head() == (5, event.mac)
    assert [e.type for e in events] == [
        "config_created", "config_updated", "secret_modified", "config_deleted", "secret_accessed",
    ]
    first = events[0]
    assert (first.actor, first.namespace, first.key, first.environment) == ("alice", "app", "k", "development")
    assert (first.old_version, first.new_version, first.outcome) == (None, 1, "success")
    assert first.prev_mac == audit.GENESIS_MAC
    assert all(b.prev_mac == a.mac for a, b in itertools.pairwise(events))
    report = verify(storage)
    assert report.ok, report.problems
    assert report.events == 5
    assert not verify(storage, key=b"x" * 32).ok


def test_custom_audit_type_and_details_are_recorded(storage: Storage) -> None:
    request = WriteRequest(
        kind=WriteKind.SET, namespace="app", key="k", environment=PROD, actor="ci", timestamp=now(),
        change_description="Promoted from staging (p-1)", value_type=ValueType.PLAIN, stored_value="1",
        audit_type="config_updated", audit_details={"promotion": "p-1", "from": "staging"}, fingerprint=None,
        source_ip="10.0.0.1", request_id="req-9",
    )
    write(storage, request)
    event = storage.audit_events(AuditQuery())[0]
    assert event.type == "config_updated"
    assert event.details == {"from": "staging", "promotion": "p-1"}
    assert (event.source_ip, event.request_id, event.environment) == ("10.0.0.1", "req-9", "production")
    assert verify(storage).ok


def test_audit_query_filters(storage: Storage) -> None:
    write(storage, set_req("app", "k", 1, actor="alice", timestamp="2024-01-01T00:00:00.000000Z"))
    write(storage, set_req("app/sub", "k", 1, actor="bob", timestamp="2024-01-02T00:00:00.000000Z"))
    write(storage, set_req("app_x", "k", 1, actor="alice", timestamp="2024-01-03T00:00:00.000000Z"))
    write(storage, set_req("apps", "k", 1, actor="bob", timestamp="2024-01-04T00:00:00.000000Z"))
    write(storage, set_req("app", "k", 2, actor="bob", timestamp="2024-01-05T00:00:00.000000Z"))

    def seqs(**kw: Any) -> list[int]:
        return [e.seq for e in storage.audit_events(AuditQuery(**kw))]

    assert seqs() == [1, 2, 3, 4, 5]
    assert seqs(namespace="app") == [1, 2, 5]
    assert seqs(namespace="app/sub") == [2]
    assert seqs(namespace="app_x") == [3]
    assert seqs(actor="alice") == [1, 3]
    assert seqs(type="config_updated") == [5]
    assert seqs(since="2024-01-02T00:00:00.000000Z") == [2, 3, 4, 5]
    assert seqs(until="2024-01-02T00:00:00.000000Z") == [1]
    assert seqs(since="2024-01-02T00:00:00.000000Z", until="2024-01-04T00:00:00.000000Z") == [2, 3]
    assert seqs(after_seq=2, limit=2) == [3, 4]
    assert seqs(after_seq=4, limit=2) == [5]
    assert seqs(actor="bob", namespace="app", after_seq=2) == [5]


def test_editing_an_event_breaks_the_chain(storage: Storage, backend: Backend) -> None:
    write(storage, set_req("app", "k", 1), set_req("app", "k", 2))
    write(storage, set_req("app", "j", 1))
    assert verify(storage).ok
    backend.raw_execute("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    report = verify(storage)
    assert not report.ok
    assert any("seq 2" in problem for problem in report.problems)


def test_removing_the_last_event_shows_through_version_refs(storage: Storage, backend: Backend) -> None:
    write(storage, set_req("app", "k", 1), set_req("app", "k", 2))
    backend.raw_execute("DELETE FROM audit_events WHERE seq = 2")
    report = verify(storage)
    assert not report.ok
    assert any("version 2 of app/k" in problem for problem in report.problems)


# -- meta, change token, lifecycle -----------------------------------------------------------------


def test_meta(storage: Storage) -> None:
    assert storage.get_meta("instance_secret") is None
    assert storage.set_meta("instance_secret", "first", only_if_absent=True)
    assert not storage.set_meta("instance_secret", "second", only_if_absent=True)
    assert storage.get_meta("instance_secret") == "first"
    assert storage.set_meta("instance_secret", "third")
    assert storage.get_meta("instance_secret") == "third"
    assert storage.get_meta("revision") == "0"


def test_change_token_changes_when_another_connection_commits(storage: Storage, backend: Backend) -> None:
    token = storage.change_token()
    assert token is not None
    assert storage.change_token() == token
    other = backend.open(create=False)
    try:
        write(other, set_req("app", "k", 1))
    finally:
        other.close()
    changed = storage.change_token()
    assert changed != token
    assert storage.change_token() == changed
    assert value_of(storage.get_current("app", "k", DEV)) == 1


def test_a_snapshot_sees_one_moment_while_others_commit(storage: Storage, backend: Backend) -> None:
    write(storage, set_req("app", "k", 1))
    other = backend.open(create=False)
    try:
        with storage.snapshot():
            head = storage.audit_head()
            write(other, set_req("app", "k", 2))  # committed by another connection meanwhile
            assert storage.audit_head() == head
            assert value_of(storage.get_current("app", "k", DEV)) == 1
            assert [v.version for v in storage.history("app", "k", DEV)] == [1]
        assert storage.audit_head() != head
        assert value_of(storage.get_current("app", "k", DEV)) == 2
    finally:
        other.close()


def test_closed_storage_raises_storage_error(backend: Backend) -> None:
    store = backend.open(create=True)
    put(store, "app", "k", 1)
    seen: list[BaseException] = []

    def use_in_thread() -> None:
        store.get_current("app", "k", DEV)
        barrier.wait()
        barrier.wait()
        try:
            store.get_current("app", "k", DEV)
        except StorageError as exc:
            seen.append(exc)

    barrier = threading.Barrier(2)
    thread = threading.Thread(target=use_in_thread)
    thread.start()
    barrier.wait()
    store.close()
    barrier.wait()
    thread.join()
    assert len(seen) == 1
    store.close()  # idempotent
    for call in (
        lambda: store.get_current("app", "k", DEV),
        lambda: store.list_current("app", DEV),
        lambda: write(store, set_req("app", "k", 2)),
        store.audit_head,
        store.change_token,
    ):
        with pytest.raises(StorageError):
            call()


def test_concurrent_compare_and_set_increments(backend: Backend) -> None:
    store = backend.open(create=True)
    per_thread, threads = 25, 4
    successes: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            done = 0
            while done < per_thread:
                current = store.get_current("app", "counter", DEV)
                expected = current.version if current is not None else 0
                count = value_of(current) if current is not None else 0
                try:
                    result = write(store, set_req("app", "counter", count + 1, expected=expected, actor=f"t{n}"))
                except ConflictError:
                    continue
                done += 1
                with lock:
                    successes.append(result[0].entry.version)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    try:
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        assert errors == []
        current = store.get_current("app", "counter", DEV)
        assert current is not None
        assert current.version == len(successes) == per_thread * threads
        assert value_of(current) == per_thread * threads
        assert sorted(successes) == list(range(1, per_thread * threads + 1))
        report = verify(store)
        assert report.ok, report.problems
        assert report.events == per_thread * threads
    finally:
        store.close()


def test_reopening_and_concurrent_first_opens_migrate_once(backend: Backend) -> None:
    stores: list[Storage] = []
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            stores.append(backend.open(create=True))
        except BaseException as exc:
            errors.append(exc)

    openers = [threading.Thread(target=opener) for _ in range(4)]
    for t in openers:
        t.start()
    for t in openers:
        t.join()
    try:
        assert errors == []
        put(stores[0], "app", "k", 1)
        for store in stores:
            assert value_of(store.get_current("app", "k", DEV)) == 1
    finally:
        for store in stores:
            store.close()
    again = backend.open(create=False)
    try:
        assert value_of(again.get_current("app", "k", DEV)) == 1
    finally:
        again.close()


# -- opening (SQLite layout) -----------------------------------------------------------------------


def test_open_missing_store_without_create_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(StoreMissingError, match=re.escape(str(missing))):
        open_storage(missing, create=False)
    assert not missing.exists()
    with pytest.raises(StoreMissingError, match=re.escape("absent.db")):
        open_storage(f"sqlite:///{tmp_path}/absent.db", create=False)
    assert not (tmp_path / "absent.db").exists()


def test_created_store_is_private(tmp_path: Path) -> None:
    store = open_storage(tmp_path / "store", create=True)
    store.set_row_key(ROW_KEY)
    try:
        put(store, "app", "k", 1)
        assert stat.S_IMODE(os.stat(tmp_path / "store").st_mode) == 0o700
        files = sorted(p.name for p in (tmp_path / "store").iterdir())
        assert "config.db" in files
        for name in files:
            assert stat.S_IMODE(os.stat(tmp_path / "store" / name).st_mode) == 0o600, name
    finally:
        store.close()


def test_sqlite_url_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = tmp_path / "abs.db"
    store = open_storage(f"sqlite:///{absolute}", create=True)
    store.set_row_key(ROW_KEY)
    try:
        assert store.url == f"sqlite:///{absolute}"
        put(store, "app", "k", 1)
    finally:
        store.close()
    assert stat.S_IMODE(os.stat(absolute).st_mode) == 0o600
    monkeypatch.chdir(tmp_path)
    relative = open_storage("sqlite:///abs.db", create=False)  # three slashes: relative path
    try:
        assert value_of(relative.get_current("app", "k", DEV)) == 1
    finally:
        relative.close()


def test_unsupported_targets(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        open_storage("ftp://example.com/x", create=True)
    with pytest.raises(ValidationError, match="names no host"):
        open_storage("postgresql://", create=True)
    with pytest.raises(ValidationError):
        open_storage("sqlite:///:memory:", create=True)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValidationError, match="not a store directory"):
        open_storage(tmp_path / "afile", create=True)


@pytest.mark.parametrize("url", [
    "postgresql://u:hunter2@127.0.0.1:1/x",  # nothing listens there
    "mysql://u:hunter2@127.0.0.1:1/x",
    "postgresql://nobody_here:hunter2@127.0.0.1:5432/test",  # no such role
    "mysql://root:hunter2@127.0.0.1:3306/test",  # wrong password
    "postgresql://postgres:p%zzhunter2@127.0.0.1:5432/test",  # libpq quotes a token it cannot decode
    "mysql://root:se/hunter2@127.0.0.1:3306/test",  # an unencoded '/' in the password
])
def test_an_unreachable_or_refused_server_is_one_line_without_the_password(url: str) -> None:
    with pytest.raises((StorageError, ValidationError)) as info:
        open_storage(url, create=True)
    text = str(info.value)
    assert "hunter2" not in text and "***" in text
    assert "\n" not in text
    assert text.startswith(("Storage failed while opening the store at ", "Invalid MySQL storage URL"))


def test_a_file_that_is_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "config.db").write_bytes(b"not a database at all, really" * 10)
    with pytest.raises(StorageError):
        open_storage(tmp_path / "store", create=False)


def test_mask_url() -> None:
    assert mask_url("postgresql://user:hunter2@db:5432/cfg") == "postgresql://user:***@db:5432/cfg"
    assert mask_url("mysql://user@db/cfg") == "mysql://user@db/cfg"
    assert mask_url("postgresql://db/cfg?user=u&password=hunter2&x=1") == (
        "postgresql://db/cfg?user=u&password=***&x=1"
    )
    assert mask_url("sqlite:////var/lib/x.db") == "sqlite:////var/lib/x.db"
    assert mask_url(".llm-config") == ".llm-config"


def test_plain_over_secret_is_refused_under_the_write_lock(storage: Storage) -> None:
    write(storage, set_req("ns", "k", "sealed", secret=True))
    guarded = dataclasses.replace(set_req("ns", "k", "plain"), refuse_plain_over_secret=True)
    with pytest.raises(ValidationError, match="is a secret"):
        write(storage, guarded)
    current = storage.get_current("ns", "k", DEV)
    assert current is not None and current.version == 1 and current.value_type is ValueType.SECRET
    write(storage, set_req("ns", "k", "plain"))  # an explicit --no-secret write is allowed
    assert value_of(storage.get_current("ns", "k", DEV)) == "plain"


def test_empty_change_description_lets_storage_say_created_or_updated(storage: Storage) -> None:
    write(storage, set_req("ns", "k", 1, message=""))
    write(storage, set_req("ns", "k", 2, message=""))
    assert [v.change_description for v in storage.history("ns", "k", DEV)] == ["Updated", "Created"]


def test_a_missing_driver_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from llm_config.errors import MissingDependencyError

    for backend_module, driver, url, extra in (
        ("llm_config.storage.postgres", "psycopg", "postgresql://u:hunter2@db/x", "postgres"),
        ("llm_config.storage.mysql", "pymysql", "mysql://u:hunter2@db/x", "mysql"),
    ):
        monkeypatch.delitem(sys.modules, backend_module, raising=False)
        monkeypatch.setitem(sys.modules, driver, None)  # as if it were not installed
        with pytest.raises(MissingDependencyError) as info:
            open_storage(url, create=True)
        assert f"pip install 'llm-config-manager[{extra}]'" in str(info.value)
        assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("name", ["postgresql", "mysql"])
def test_server_databases_log_their_durability_settings(name: str, caplog: pytest.LogCaptureFixture) -> None:
    from tests.databases import private_database

    with private_database(name) as database, caplog.at_level("INFO", logger="llm_config.storage"):
        open_storage(database.url, create=True).close()
    logged = " ".join(r.getMessage() for r in caplog.records)
    expected = "synchronous_commit=" if name == "postgresql" else "innodb_flush_log_at_trx_commit="
    assert expected in logged
