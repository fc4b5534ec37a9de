"""Online master-key rotation (SPEC §2 `rotate-key`) on every backend: every version of every secret — history
too — and the instance secret re-sealed under the new key, in batches, safe to re-run and to interrupt, never
losing a concurrent write; afterwards the old key can go. Encryptions are counted per key id (NIST SP 800-38D)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator

import pytest

from llm_config.core.context import CallContext
from llm_config.core.custody import INSTANCE_SECRET, place, unlock
from llm_config.core.health import ciphertexts_by_key_id
from llm_config.core.manager import ConfigManager
from llm_config.core.rotation import RotationProgress
from llm_config.crypto.aead import Keyring, envelope_key_id, key_id
from llm_config.crypto.keys import find_keyring, generate_key
from llm_config.errors import PermissionDeniedError, SecretKeyError
from llm_config.models import Role

from .conftest import Backend

NS = "rot/app"


def _raw(key: str) -> bytes:
    return base64.b64decode(key)


def _kid(key: str) -> str:
    return key_id(_raw(key))


class _Store:
    """Managers on one backend's store, all closed at the end."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.opened: list[ConfigManager] = []

    def open(self, keys: str, actor: str = "tester") -> ConfigManager:
        manager = ConfigManager.open(self.backend.target, encryption_key=keys, actor=actor)
        self.opened.append(manager)
        return manager


@pytest.fixture
def store(backend: Backend) -> Iterator[_Store]:
    opened = _Store(backend)
    yield opened
    for manager in opened.opened:
        manager.close()


def _fill(manager: ConfigManager) -> dict[str, str]:
    """Secrets with history (several versions, a rollback copy, a purge, a deletion), plain values beside
    them; returns the current value of every live secret."""
    for i in range(12):
        manager.set(NS, f"s{i % 4}", f"sk-{i}", secret=True)
    manager.set(NS, "s0", "sk-prod", env="production", secret=True)
    manager.rollback(NS, "s1", 1)  # current row = a copy of version 1's ciphertext
    manager.purge(NS, "s2", 1)
    manager.set(NS, "gone", "sk-gone", secret=True)
    manager.delete(NS, "gone")
    manager.set(NS, "plain", {"model": "gpt-4o"})
    return {"s0": "sk-8", "s1": "sk-1", "s2": "sk-10", "s3": "sk-11"}


def _only(manager: ConfigManager, kid: str) -> None:
    """Every stored ciphertext, and the instance secret, is sealed by `kid`."""
    counts = ciphertexts_by_key_id(manager.storage)
    assert set(counts) == {kid}, counts
    instance = manager.storage.get_meta(INSTANCE_SECRET)
    assert instance is not None and envelope_key_id(instance) == kid


def test_rotation_reseals_history_and_instance_secret_then_the_old_key_can_go(store: _Store) -> None:
    old, new = generate_key(), generate_key()
    manager = store.open(old)
    current = _fill(manager)
    before = ciphertexts_by_key_id(manager.storage)
    assert before == {_kid(old): sum(before.values())} and sum(before.values()) >= 15

    summary = manager.rotate_key(_raw(new), batch_size=4)
    assert summary.complete and summary.new_key_id == _kid(new)
    assert summary.by_key_id == {_kid(old): sum(before.values()) - 1}  # every version (the instance secret apart)
    assert summary.instance_secret and summary.batches >= 3 and summary.passes == 2
    _only(manager, _kid(new))
    key_check = manager.doctor()["checks"]["key"]
    assert key_check["ciphertexts_by_key_id"].get(_kid(old), 0) == 0  # doctor: the old key seals nothing
    assert manager.audit_verify().ok
    manager.set(NS, "after", "sk-after", secret=True)  # the rotating manager now seals with the new key
    _only(manager, _kid(new))

    fresh = store.open(new)  # a keyring holding only the new key
    assert fresh.audit_verify().ok
    for name, value in current.items():
        assert fresh.get(NS, name, reveal=True).value == value
    assert fresh.get(NS, "s0", env="production", reveal=True).value == "sk-prod"
    assert fresh.get(NS, "s3", version=1, reveal=True).value == "sk-3"  # history reveals too
    assert fresh.get(NS, "after", reveal=True).value == "sk-after"
    assert fresh.get(NS, "plain").value == {"model": "gpt-4o"}
    assert fresh.doctor()["status"] == "healthy"
    event = [e for e in fresh.audit_events() if e.type == "key_rotated"]
    assert len(event) == 1 and event[0].actor == "tester" and event[0].outcome == "success"
    assert event[0].details["new_key_id"] == _kid(new) and event[0].details["old_key_ids"] == summary.by_key_id
    assert old not in str(event[0].to_json()) and new not in str(event[0].to_json())


def test_rerunning_is_a_no_op(store: _Store) -> None:
    old, new = generate_key(), generate_key()
    manager = store.open(old)
    _fill(manager)
    manager.rotate_key(_raw(new))
    rows = sorted(manager.storage.sealed_values())
    again = manager.rotate_key(_raw(new))
    assert (again.resealed, again.batches, again.instance_secret, again.complete) == (0, 0, False, True)
    assert sorted(manager.storage.sealed_values()) == rows  # nothing rewritten
    assert manager.audit_verify().ok
    assert [e.type for e in manager.audit_events()].count("key_rotated") == 2


def test_an_interrupted_rotation_resumes_where_it_stopped(store: _Store) -> None:
    old, new = generate_key(), generate_key()
    manager = store.open(old)
    current = _fill(manager)
    total = sum(ciphertexts_by_key_id(manager.storage).values())

    def stop_after_two(progress: RotationProgress) -> None:
        if progress.batches == 2:
            raise KeyboardInterrupt  # as a kill would: between two committed batches

    with pytest.raises(KeyboardInterrupt):
        manager.rotate_key(_raw(new), batch_size=3, on_batch=stop_after_two)
    halfway = ciphertexts_by_key_id(manager.storage)
    assert halfway.get(_kid(new)) == 6 and halfway[_kid(old)] == total - 6  # two whole batches, no more
    assert manager.audit_verify().ok  # a half-rotated store is consistent
    assert not [e for e in manager.audit_events() if e.type == "key_rotated"]
    other = store.open(f"{old},{new}")  # meanwhile every value still reveals with both keys
    assert {name: other.get(NS, name, reveal=True).value for name in current} == current

    resumed = store.open(old).rotate_key(_raw(new), batch_size=3)
    assert resumed.complete and resumed.by_key_id == {_kid(old): total - 7}
    _only(manager, _kid(new))
    fresh = store.open(new)
    assert {name: fresh.get(NS, name, reveal=True).value for name in current} == current
    assert fresh.audit_verify().ok


def test_writes_during_a_rotation_are_never_lost(store: _Store) -> None:
    old, new = generate_key(), generate_key()
    rotating = store.open(old, actor="rotator")
    for i in range(150):
        rotating.set(NS, f"w{i % 30}", f"sk-seed-{i}", secret=True)
    # a replica still sealing with the old key (the new one second, SPEC §2), writing all along
    replica = store.open(f"{old},{new}", actor="replica")
    last: dict[str, str] = {}
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        i = 0
        try:
            while not stop.is_set():
                name, value = f"w{i % 30}", f"sk-written-{i}"
                replica.set(NS, name, value, secret=True)
                last[name] = value
                i += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        first = rotating.rotate_key(_raw(new), batch_size=5)
    finally:
        stop.set()
        thread.join(30)
    assert not errors, errors
    assert len(last) == 30 and first.resealed > 0
    # the replica now has the new key first; a second run catches what it sealed with the old one meanwhile
    second = store.open(f"{new},{old}").rotate_key(_raw(new))
    assert second.complete
    _only(rotating, _kid(new))
    fresh = store.open(new)
    for name, value in last.items():
        assert fresh.get(NS, name, reveal=True).value == value  # what the writer wrote last, nothing older
    assert fresh.audit_verify().ok


def test_a_row_that_fails_its_mac_or_a_missing_key_is_reported_never_resealed(store: _Store) -> None:
    old, other, new = generate_key(), generate_key(), generate_key()
    manager = store.open(old)
    _fill(manager)
    store.open(f"{other},{old}").set(NS, "foreign", "sk-foreign", secret=True)  # sealed by a key we lack
    store.backend.raw_execute("UPDATE versions SET mac = ? WHERE version = 1 AND entry_id = "
                              "(SELECT id FROM entries WHERE \"key\" = 's3')", ("0" * 32,))
    summary = manager.rotate_key(_raw(new))
    assert not summary.complete and len(summary.problems) == 2
    text = " ".join(summary.problems)
    assert f"sealed by key id {_kid(other)}" in text and "version 1 of rot/app/s3" in text and "MAC" in text
    counts = ciphertexts_by_key_id(manager.storage)
    assert counts == {_kid(new): counts[_kid(new)], _kid(other): 1, _kid(old): 1}  # those two are left as they were
    assert [e.outcome for e in manager.audit_events() if e.type == "key_rotated"] == ["partial"]


def test_only_unscoped_admins_may_rotate(store: _Store) -> None:
    old, new = generate_key(), generate_key()
    manager = store.open(old)
    _fill(manager)
    admin = manager.authenticate(manager.create_api_key("root", Role.ADMIN)[1])
    scoped = manager.authenticate(manager.create_api_key("scoped", Role.ADMIN, namespaces=["rot"])[1])
    editor = manager.authenticate(manager.create_api_key("ed", Role.EDITOR)[1])
    for principal in (scoped, editor):
        with pytest.raises(PermissionDeniedError):
            manager.as_caller(CallContext(principal)).rotate_key(_raw(new))
    _only(manager, _kid(old))  # nothing happened, and the manager still seals with the old key
    manager.set(NS, "x", "sk-x", secret=True)
    _only(manager, _kid(old))
    assert manager.as_caller(CallContext(admin)).rotate_key(_raw(new)).complete
    assert [e.actor for e in manager.audit_events() if e.type == "key_rotated"] == [admin.actor]
    with pytest.raises(SecretKeyError):
        manager.rotate_key(b"\x00" * 32)  # a weak key is refused like any master key


def test_encryptions_are_counted_per_key_id(store: _Store) -> None:
    old, new = generate_key(), generate_key()
    manager = store.open(old)
    assert manager.storage.seal_counts() == {_kid(old): 1}  # the instance secret
    for i in range(5):
        manager.set(NS, f"c{i}", f"sk-{i}", secret=True)
    manager.set(NS, "plain", 1)
    manager.import_(NS, {"secrets": {"i1": "a", "i2": "b"}})
    manager.rollback(NS, "c0", 1)  # a copy: no new encryption
    assert manager.storage.seal_counts() == {_kid(old): 8}
    summary = manager.rotate_key(_raw(new))
    assert manager.storage.seal_counts() == {_kid(old): 8, _kid(new): summary.resealed + 1}
    check = manager.doctor()["checks"]["key"]
    assert check["seals_by_key_id"] == manager.storage.seal_counts()


def test_a_reseal_is_compare_and_set_on_what_was_read(store: _Store) -> None:
    """Between the read of a page and its re-seal, a purge and a new write land: the purged value is never
    brought back, the new current row is never overwritten, and what did not change is re-sealed."""
    old, new = generate_key(), generate_key()
    manager = store.open(old)
    for i in range(3):
        manager.set(NS, "a", f"sk-a{i}", secret=True)
    manager.set(NS, "b", "sk-b", secret=True)
    storage = manager.storage
    page, after = storage.sealed_versions(None, 100)
    assert after is None and len(page) == 4
    assert sorted((v.key, v.version, v.current) for v in page) == [
        ("a", 1, False), ("a", 2, False), ("a", 3, True), ("b", 1, True)]
    manager.purge(NS, "a", 1)  # version 1's value destroyed meanwhile
    manager.set(NS, "b", "sk-b2", secret=True)  # b's current row moved on (version 2, sealed by the old key)
    keys, _ = unlock(storage, find_keyring(encryption_key=old), create=False)
    assert keys is not None
    ring = Keyring([_raw(new), _raw(old)])
    changes = [(v, ring.seal(ring.open(v.stored_value, place(v.namespace, v.key, v.environment)),
                             place(v.namespace, v.key, v.environment))) for v in page]
    outcomes = storage.reseal(changes, ring.primary_id, keys.audit)
    by_place = {(v.key, v.version): o.value for (v, _), o in zip(changes, outcomes, strict=True)}
    assert by_place == {("a", 1): "changed", ("a", 2): "resealed", ("a", 3): "resealed", ("b", 1): "resealed"}
    fresh = store.open(f"{old},{new}")
    assert fresh.get(NS, "b", reveal=True).value == "sk-b2"  # the concurrent write stands
    assert fresh.get(NS, "b", version=1, reveal=True).value == "sk-b"
    assert fresh.get(NS, "a", reveal=True).value == "sk-a2"
    assert [h.change_description for h in fresh.history(NS, "a")][-1] == "Purged"
    assert fresh.audit_verify().ok
    assert storage.seal_counts()[ring.primary_id] == 3
