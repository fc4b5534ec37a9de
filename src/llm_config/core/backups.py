"""Backup, restore and migrate (SPEC §4, §8): a whole store moved between files and backends.

Owns: who may (admins: `system:export` to back up or migrate, `system:import` to restore, both only with
keys without namespace or environment limits); the events (`backup_created` before the snapshot, so a
backup holds its own event; `store_restored` after a restore, naming the backup's digest, its epoch and
the new one); the checks before anything is touched (the file's manifest, that this master key opens the
backup's instance secret, that the target is empty unless forced); a new store epoch on restore; and the
proof afterwards — `audit verify` on the result, and for `migrate` the same digest and counts read back
from the target. The file format is `storage.backup`'s.

Never: decrypts a value (rows move sealed), or writes a secret anywhere.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import IO, Any

from llm_config.core.access import Access
from llm_config.core.context import CallContext
from llm_config.core.custody import EPOCH, INSTANCE_SECRET, StoreKeys, derive_keys, open_instance_secret, unlock
from llm_config.core.verify import verify_store
from llm_config.crypto.aead import envelope_key_id
from llm_config.crypto.keys import KeySource
from llm_config.errors import ConflictError, IntegrityError, KeyMissingError, SecretKeyError, ValidationError
from llm_config.models import PendingEvent
from llm_config.storage.backup import BackupInfo, Digest, read_rows, scan, write_backup
from llm_config.storage.sql import new_id
from llm_config.types import Storage

__all__ = ["BackupSummary", "Backups", "MigrateSummary", "RestoreSummary"]

log = logging.getLogger("llm_config")
PENDING = "integrity_pending"  # the meta row of a store whose row MACs are still to be computed


@dataclass(frozen=True, slots=True)
class BackupSummary:
    sha256: str
    rows: dict[str, int]
    revision: int
    epoch: str | None

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "rows": self.rows, "revision": self.revision, "epoch": self.epoch}


@dataclass(frozen=True, slots=True)
class RestoreSummary:
    sha256: str
    rows: dict[str, int]
    revision: int
    previous_epoch: str | None
    epoch: str
    verified: bool
    problems: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "rows": self.rows, "revision": self.revision,
                "previous_epoch": self.previous_epoch, "epoch": self.epoch, "verified": self.verified,
                "problems": list(self.problems)}


@dataclass(frozen=True, slots=True)
class MigrateSummary:
    target: str  # masked URL
    sha256: str
    rows: dict[str, int]
    verified: bool
    problems: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "sha256": self.sha256, "rows": self.rows, "verified": self.verified,
                "problems": list(self.problems)}


class Backups:
    """Whole-store copies of one open store."""

    def __init__(self, storage: Storage, keys: StoreKeys | None, source: KeySource | None, access: Access,
                 actor: str) -> None:
        self._storage = storage
        self._keys = keys
        self._source = source
        self._access = access
        self._actor = actor

    def _event(self, ctx: CallContext, type_: str, now: str, details: dict[str, Any]) -> PendingEvent:
        return PendingEvent(type=type_, actor=ctx.actor_or(self._actor), source_ip=ctx.source_ip,
                            request_id=ctx.request_id, details=details, timestamp=now)

    def _need_keys(self, what: str) -> StoreKeys:
        if self._keys is None:
            raise KeyMissingError(f"{what} needs the master key that opens this store")
        return self._keys

    def backup(self, ctx: CallContext, out: IO[bytes], *, now: str) -> BackupSummary:
        """Write a consistent backup of the whole store to `out` (one read snapshot)."""
        self._access.require_unscoped(ctx, "system:export")
        keys = self._need_keys("A backup")
        self._storage.append_audit(self._event(ctx, "backup_created", now, {"format_version": 1}), keys.audit)
        info = write_backup(out, self._storage.export_rows(), created_at=now, source=_backend(self._storage))
        log.info("backup written: %s rows, sha256 %s", sum(info.rows.values()), info.sha256)
        return BackupSummary(info.sha256, info.rows, info.revision, info.epoch)

    def check(self, stream: IO[bytes]) -> BackupInfo:
        """Verify a backup file completely and that this master key opens it; touches nothing."""
        info, _ = self._checked(stream)
        return info

    def _checked(self, stream: IO[bytes]) -> tuple[BackupInfo, StoreKeys]:
        """The backup's info and the keys of the store it holds (from its sealed instance secret)."""
        info = scan(stream)
        if PENDING in info.meta:
            raise ValidationError("Backup file refused: it marks the store as awaiting its one-time row-MAC "
                                  "upgrade, which no backup made by llm-config does; nothing was restored")
        envelope = info.meta.get(INSTANCE_SECRET)
        if envelope is None:
            raise ValidationError("Backup file refused: it holds no instance secret; nothing was restored")
        if self._source is None:
            raise KeyMissingError("Restoring needs the master key the backup was made with")
        try:
            secret = open_instance_secret(self._source.keyring, envelope)
        except SecretKeyError:
            raise ValidationError(
                "Backup file refused: it was made under another master key (its instance secret is sealed by "
                f"key id {envelope_key_id(envelope) or 'unknown'}); restore it with that key; nothing was restored"
            ) from None
        return info, derive_keys(self._source, secret)

    def restore(self, ctx: CallContext, stream: IO[bytes], *, force: bool, now: str) -> tuple[RestoreSummary,
                                                                                           StoreKeys]:
        """Replace the store's contents with a backup's; returns the summary and the store's keys after it
        (the backup's instance secret may differ from the one this store had).

        The loaded rows are verified (row MACs, the audit chain, versions against events) with the
        backup's own keys inside the loading transaction: a backup whose rows were edited — even with its
        manifest recomputed — is refused and the store keeps what it had.
        """
        self._access.require_unscoped(ctx, "system:import")
        info, keys = self._checked(stream)
        if not force and not self._storage.is_empty():
            raise ConflictError("The target store is not empty: restoring would replace everything in it; pass "
                                "--force (force=true) to do so")
        stream.seek(0)
        epoch = new_id()

        def verify_loaded() -> None:  # inside the loading transaction, on its connection
            with self._storage.rows_checked_with(keys.row):
                report = verify_store(self._storage, keys)
            if not report.ok:
                raise IntegrityError("Backup file refused: its rows do not verify under its own keys ("
                                     + "; ".join(report.problems[:3]) + "); nothing was restored")

        self._storage.import_rows(read_rows(stream, info), replace_all=True, settings={EPOCH: epoch},
                                  check=verify_loaded)
        self._storage.set_row_key(keys.row, epoch, keys.audit)  # writes of the new epoch (and keys) may go on
        self._storage.append_audit(self._event(ctx, "store_restored", now, {
            "backup_sha256": info.sha256, "rows": info.rows, "revision": info.revision,
            "previous_epoch": info.epoch, "epoch": epoch, "forced": force,
        }), keys.audit)
        return RestoreSummary(info.sha256, info.rows, info.revision, info.epoch, epoch, True, ()), keys

    def migrate(self, ctx: CallContext, target: Storage, *, force: bool, now: str) -> MigrateSummary:
        """Copy the whole store into `target` (any backend) and prove the copy: the same digest and counts
        read back, and `audit verify` there."""
        self._access.require_unscoped(ctx, "system:export")
        keys = self._need_keys("Migrating")
        if not force and not target.is_empty():
            raise ConflictError(f"The target store {target.url} is not empty: pass --force to replace everything "
                                "in it")
        self._storage.append_audit(self._event(ctx, "backup_created", now, {
            "format_version": 1, "migrate_to": target.url}), keys.audit)
        sent = Digest()

        def rows() -> Any:
            for table, row in self._storage.export_rows():
                sent.add(table, row)
                yield table, row

        target.import_rows(rows(), replace_all=True)
        received = Digest()
        for table, row in target.export_rows():
            received.add(table, row)
        problems: list[str] = []
        if (received.hexdigest, received.rows) != (sent.hexdigest, sent.rows):
            problems.append(f"the copy differs from the source: {received.rows} rows read back, {sent.rows} sent")
        target_keys, warning = unlock(target, self._source, create=False)
        if target_keys is None:
            problems.append(f"the copy cannot be opened with this master key: {warning}")
        else:
            report = verify_store(target, target_keys)
            problems += report.problems
        return MigrateSummary(target.url, sent.hexdigest, dict(sent.rows), not problems, tuple(problems))


def _backend(storage: Storage) -> str:
    return str(getattr(storage, "dialect", "unknown"))
