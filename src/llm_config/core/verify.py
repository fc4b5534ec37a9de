"""`audit verify`: the whole store checked against itself — chain, rows, and how they refer to each other.

Owns the checks that only hold across tables (SPEC §2, §7), each reported as one line naming the row
or event, never a value:

- the audit chain: MACs, links, continuity, an optional anchor (`audit.ChainCheck`);
- every row's MAC and freshness (bound to the newest audit event about it);
- every write event has its version row, and every version row its write event;
- every version's value matches the fingerprint its event recorded (secrets decrypted here: verify
  holds the key), or for a rollback recorded before fingerprints were, the value it rolled back to (two
  secrets compared by plaintext: a key rotation re-seals each copy on its own);
- every purge event's version is purged, and every purged version has its purge event;
- every entry's current row equals its newest version; every `key_created` event has its key row.

Streams the trail and the version rows, keeping only small per-event and per-entry facts in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from llm_config import audit, writes
from llm_config.core.custody import StoreKeys, place
from llm_config.errors import SecretKeyError
from llm_config.models import AuditEvent, Environment, StoredVersion, UnreadableRow, ValueType
from llm_config.types import AuditQuery, Storage

__all__ = ["iter_events", "verify_store"]

_PAGE: Final = 5000
_WRITE_TYPES: Final = frozenset({
    "config_created", "config_updated", "config_deleted", "config_rolled_back", "secret_modified", "schema_changed",
})
_PURGE_TYPES: Final = frozenset({"config_purged", "secret_modified", "schema_changed"})

Place = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class _Write:
    """What verify needs to know of one write event."""

    where: Place
    version: int
    fingerprint: str | None
    scheme: int
    target_version: int | None


def iter_events(storage: Storage) -> Iterator[AuditEvent]:
    """The whole trail, oldest first, a page at a time."""
    after = 0
    while True:
        page = storage.audit_events(AuditQuery(after_seq=after, limit=_PAGE))
        yield from page
        if len(page) < _PAGE:
            return
        after = page[-1].seq


def _shown(at: Place) -> str:
    return writes.where(*at)


def _unreadable(row: UnreadableRow) -> str:
    return f"{row.label}: holds values llm-config never writes (changed outside llm-config)"


class _StoreCheck:
    def __init__(self, storage: Storage, keys: StoreKeys, report: audit.VerifyReport) -> None:
        self.storage = storage
        self.keys = keys
        self.report = report
        self.writes: dict[int, _Write] = {}
        self.purges: set[tuple[str, str, str, int]] = set()
        self.created_keys: set[str] = set()
        self.subjects = False  # whether any event names a protected row (the store was written with row MACs)
        self.latest: dict[Place, StoredVersion] = {}

    def note_event(self, event: AuditEvent) -> None:
        ns, key, env = event.namespace, event.key, event.environment
        self.subjects = self.subjects or event.subject is not None
        if event.type == "key_created" and isinstance(event.details.get("key_id"), str):
            self.created_keys.add(event.details["key_id"])
        if ns is None or key is None or env is None:
            return
        if event.new_version is not None and event.type in _WRITE_TYPES:
            fp = event.details.get("fingerprint")
            target = event.details.get("target_version")
            scheme = event.details.get("fingerprint_scheme", 1)
            self.writes[event.seq] = _Write(
                (ns, key, env), event.new_version, fp if isinstance(fp, str) else None,
                scheme if isinstance(scheme, int) else 0, target if isinstance(target, int) else None,
            )
        elif event.new_version is None and event.old_version is not None and event.type in _PURGE_TYPES:
            self.purges.add((ns, key, env, event.old_version))

    def value_bytes(self, where: Place, version: StoredVersion) -> bytes | None:
        if version.stored_value is None:
            return None
        if version.value_type is ValueType.SECRET:
            try:
                return self.keys.keyring.open(version.stored_value, place(where[0], where[1], Environment(where[2])))
            except SecretKeyError as exc:
                self.report.fail(f"version {version.version} of {_shown(where)}: {exc.message}")
                return None
        return version.stored_value.encode()

    def check_versions(self) -> None:
        seen: set[int] = set()
        group: dict[int, StoredVersion] = {}
        group_where: Place | None = None
        for item in self.storage.iter_versions():
            if isinstance(item, UnreadableRow):
                self.report.fail(_unreadable(item))
                continue
            ns, key, env, version, mac_ok = item
            where = (ns, key, env)
            if where != group_where:
                group, group_where = {}, where
            group[version.version] = version
            self.latest[where] = version
            label = f"version {version.version} of {_shown(where)}"
            if not mac_ok:
                self.report.fail(f"{label}: row MAC mismatch (changed outside llm-config)")
            write = self.writes.get(version.audit_seq)
            if write is None or write.where != where or write.version != version.version:
                self.report.fail(f"{label}: audit event {version.audit_seq} missing or mismatched")
            else:
                seen.add(version.audit_seq)
                self.check_value(where, version, write, group)
            if version.purged != ((*where, version.version) in self.purges):
                what = "purged without a purge event" if version.purged else "has a purge event but is not purged"
                self.report.fail(f"{label}: {what}")
        for seq, write in self.writes.items():
            if seq not in seen:
                self.report.fail(
                    f"audit event {seq} (version {write.version} of {_shown(write.where)}): no version row "
                    "(deleted outside llm-config)"
                )

    def check_value(self, where: Place, version: StoredVersion, write: _Write, group: dict[int, StoredVersion]) -> None:
        if version.deleted or version.purged:
            return
        label = f"version {version.version} of {_shown(where)}"
        if write.fingerprint is not None:
            data = self.value_bytes(where, version)
            if data is None:
                return
            try:
                expected = audit.fingerprint_with(write.scheme, self.keys.fingerprint, place(
                    where[0], where[1], Environment(where[2])), data)
            except ValueError:
                expected = None
            if expected != write.fingerprint:
                self.report.fail(f"{label}: value differs from the one its audit event recorded")
        elif write.target_version is not None:
            target = group.get(write.target_version)
            if target is not None and not target.purged and not self.same_value(where, target, version):
                self.report.fail(f"{label}: value differs from version {write.target_version} it rolled back to")

    def same_value(self, where: Place, a: StoredVersion, b: StoredVersion) -> bool:
        """Whether two versions hold the same value: the same stored text, or two secrets that open to the same
        plaintext (a key rotation re-seals each copy with a nonce of its own)."""
        if a.stored_value == b.stored_value:
            return True
        if a.value_type is not ValueType.SECRET or b.value_type is not ValueType.SECRET:
            return False
        opened = self.value_bytes(where, a), self.value_bytes(where, b)
        return None in opened or opened[0] == opened[1]  # one that cannot be opened is reported as such

    def check_entries(self) -> None:
        for item in self.storage.iter_entries():
            if isinstance(item, UnreadableRow):
                self.report.fail(_unreadable(item))
                continue
            entry, mac_ok, fresh = item
            where = (entry.namespace, entry.key, entry.environment.value)
            label = f"entry {_shown(where)}"
            if not mac_ok:
                self.report.fail(f"{label}: row MAC mismatch (changed outside llm-config)")
            elif not fresh:
                self.report.fail(f"{label}: an older copy of itself (replayed row)")
            latest = self.latest.pop(where, None)
            if latest is None:
                self.report.fail(f"{label}: has no versions")
            elif (latest.version, latest.deleted, latest.value_type, latest.stored_value) != (
                entry.version, entry.deleted, entry.value_type, entry.stored_value
            ):
                self.report.fail(f"{label}: current row differs from its newest version {latest.version}")

    def check_keys(self) -> None:
        stored: set[str] = set()
        for item in self.storage.iter_api_keys():
            if isinstance(item, UnreadableRow):
                self.report.fail(_unreadable(item))
                continue
            record, mac_ok, fresh = item
            stored.add(record.id)
            if not mac_ok:
                self.report.fail(f"API key {record.id}: row MAC mismatch (changed outside llm-config)")
            elif not fresh:
                self.report.fail(f"API key {record.id}: an older copy of itself (replayed row)")
        for key_id in sorted(self.created_keys - stored):
            self.report.fail(f"API key {key_id}: created in the audit trail but has no row "
                             "(deleted outside llm-config)")


def verify_store(storage: Storage, keys: StoreKeys, anchor: tuple[int, str] | None = None) -> audit.VerifyReport:
    """Every check of the module docstring; `report.ok` only if all of them hold."""
    report = audit.VerifyReport()
    with storage.snapshot():  # events and rows of one moment: a write committed meanwhile is not "missing"
        _verify(storage, keys, report, anchor)
    return report


def _verify(storage: Storage, keys: StoreKeys, report: audit.VerifyReport, anchor: tuple[int, str] | None) -> None:
    chain = audit.ChainCheck(keys.audit, report, anchor=anchor)
    store = _StoreCheck(storage, keys, report)
    for event in iter_events(storage):
        chain.feed(event)
        store.note_event(event)
    chain.finish()
    if storage.integrity_pending() and not store.subjects:
        # an older store whose rows have no MACs yet: nothing to check them by (a store written with
        # row MACs is checked whatever its meta says)
        report.fail("rows: their MACs are not computed yet (an older store: opening it with the master key "
                    "where it can be written computes them, once its audit chain verifies)")
        return
    store.check_versions()
    store.check_entries()
    store.check_keys()
