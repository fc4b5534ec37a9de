"""Online master-key rotation (SPEC §2 `rotate-key`, ARCHITECTURE decision 4): every sealed value — history
included — and the instance secret re-sealed under a new master key while the store keeps serving.

Owns: who may (admins: `system:update` on a key without namespace or environment limits); the passes over
every sealed version row in batches — each batch one write transaction of compare-and-set updates
(`Storage.reseal`): a row a concurrent write changed meanwhile is left alone and read again by the next
pass, so no user write is ever overwritten; an entry's current row goes with its newest version, which
holds the same ciphertext — so a run killed at any moment leaves only whole batches behind, and running
again finds what other key ids still seal and goes on (idempotent); re-sealing the instance secret with
the same 32 bytes, so every key derived from it (audit chain, row MACs, fingerprints, API-key pepper)
stays; and one `key_rotated` audit event at the end with the counts and the key ids.

A pass reads every sealed row; rows already sealed by the new key cost one JSON parse. Passes repeat
until one finds nothing left to do (normally the second), at most `MAX_PASSES`: processes still sealing
with another key during the run (replicas whose keyring does not have the new key first yet) leave
`remaining` rows, which the run after the keyrings were updated picks up (SPEC §2, the replica steps).

Never: logs, returns or records a plaintext, a key or a ciphertext (only key ids and counts); imports a
driver.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

from llm_config.core.access import Access
from llm_config.core.context import CallContext
from llm_config.core.custody import (
    INSTANCE_SECRET,
    StoreKeys,
    derive_keys,
    open_instance_secret,
    place,
    seal_instance_secret,
)
from llm_config.crypto.aead import Keyring, envelope_key_id
from llm_config.crypto.keys import KeySource
from llm_config.errors import ConflictError, SecretKeyError, ValidationError
from llm_config.models import PendingEvent, ResealOutcome, SealedValue
from llm_config.types import Storage
from llm_config.writes import where

__all__ = ["BATCH", "MAX_PASSES", "RotationProgress", "RotationSummary", "rotate_master_key"]

BATCH: Final = 200
"""Rows re-sealed per write transaction: short enough that writers queued behind it barely notice."""
MAX_PASSES: Final = 3
_MAX_PROBLEMS: Final = 50
_running: set[int] = set()
_running_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class RotationProgress:
    """Where a rotation is, after each batch (for progress output and tests)."""

    pass_number: int
    batches: int
    resealed: int
    changed: int


@dataclass(frozen=True, slots=True)
class RotationSummary:
    """What a rotation did. Key ids and counts only: never a value, a key or a ciphertext."""

    new_key_id: str
    resealed: int  # version rows re-sealed (each with its entry's current row where that held the same ciphertext)
    by_key_id: dict[str, int]  # of those, how many each old key id had sealed
    instance_secret: bool  # the instance secret was re-sealed by this run (False: it already was)
    batches: int
    passes: int
    changed: int  # rows a concurrent write changed between read and re-seal (read again by the next pass)
    remaining: int  # rows still sealed by other key ids at the end (written meanwhile under another key)
    problems: tuple[str, ...]  # rows that cannot be re-sealed here (a key missing, a failing MAC)

    @property
    def complete(self) -> bool:
        """Whether nothing is left sealed by another key id (the old key can go once every replica agrees)."""
        return self.remaining == 0 and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"new_key_id": self.new_key_id, "resealed": self.resealed, "by_key_id": dict(self.by_key_id),
                "instance_secret": self.instance_secret, "batches": self.batches, "passes": self.passes,
                "changed": self.changed, "remaining": self.remaining, "problems": list(self.problems),
                "complete": self.complete}


class _Run:
    """One rotation's state across its passes."""

    def __init__(self, storage: Storage, keys: StoreKeys, keyring: Keyring, batch_size: int,
                 on_batch: Callable[[RotationProgress], None] | None) -> None:
        self.storage = storage
        self.keys = keys
        self.keyring = keyring
        self.new_kid = keyring.primary_id
        self.batch_size = batch_size
        self.on_batch = on_batch
        self.by_key_id: dict[str, int] = {}
        self.skipped: set[tuple[str, int]] = set()  # rows that cannot be re-sealed here: not tried again
        self.problems: list[str] = []
        self.batches = 0
        self.changed = 0

    @property
    def resealed(self) -> int:
        return sum(self.by_key_id.values())

    def one_pass(self, number: int) -> int:
        """Re-seal what other key ids seal; returns how many rows it found to re-seal."""
        found = 0
        after: tuple[str, int] | None = None
        while True:
            page, after = self.storage.sealed_versions(after, self.batch_size)
            work = [item for item in (self._resealed(value) for value in page) if item is not None]
            if work:
                found += len(work)
                self._write(work)
                if self.on_batch is not None:
                    self.on_batch(RotationProgress(number, self.batches, self.resealed, self.changed))
            if after is None:
                return found

    def left_over(self) -> int:
        """Rows other key ids still seal (those that cannot be re-sealed here apart), counted without writing."""
        left = 0
        after: tuple[str, int] | None = None
        while True:
            page, after = self.storage.sealed_versions(after, 1000)
            left += sum(1 for value in page if envelope_key_id(value.stored_value) != self.new_kid
                        and (value.entry_id, value.version) not in self.skipped)
            if after is None:
                return left

    def _resealed(self, value: SealedValue) -> tuple[SealedValue, str, str] | None:
        """(row, its new envelope, the key id that sealed it) — None when there is nothing to do for it."""
        kid = envelope_key_id(value.stored_value)
        position = (value.entry_id, value.version)
        if kid == self.new_kid or position in self.skipped:
            return None
        aad = place(value.namespace, value.key, value.environment)
        try:
            plaintext = self.keyring.open(value.stored_value, aad)
        except SecretKeyError as exc:
            self._problem(position, value, exc.message)
            return None
        return value, self.keyring.seal(plaintext, aad), kid or "unknown"

    def _write(self, work: list[tuple[SealedValue, str, str]]) -> None:
        outcomes = self.storage.reseal([(value, envelope) for value, envelope, _ in work], self.new_kid,
                                       self.keys.audit)
        self.batches += 1
        changed = 0
        for (value, _, kid), outcome in zip(work, outcomes, strict=True):
            if outcome is ResealOutcome.RESEALED:
                self.by_key_id[kid] = self.by_key_id.get(kid, 0) + 1
            elif outcome is ResealOutcome.CHANGED:
                changed += 1
            else:
                self._problem((value.entry_id, value.version), value,
                              "fails its row MAC (changed outside llm-config), not re-sealed; run 'llm-config audit "
                              "verify'")
        self.changed += changed

    def _problem(self, position: tuple[str, int], value: SealedValue, message: str) -> None:
        self.skipped.add(position)
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(f"version {value.version} of {where(value.namespace, value.key, value.environment)}"
                                 f": {message}")

    def problem_list(self) -> tuple[str, ...]:
        more = len(self.skipped) - len(self.problems)
        return (*self.problems, *([f"and {more} more row(s)"] if more > 0 else []))

    def instance_secret(self) -> bool:
        """Re-seal the instance secret (the same bytes) under the new key; False if it already was."""
        for _ in range(3):  # a compare-and-set: lost only to another rotation writing the same secret
            envelope = self.storage.get_meta(INSTANCE_SECRET)
            if envelope is None or envelope_key_id(envelope) == self.new_kid:
                return False
            secret = open_instance_secret(self.keyring, envelope)
            if derive_keys(self.keys.source, secret).audit != self.keys.audit:  # not the store we hold keys of
                raise ConflictError("The store was restored from a backup during the key rotation: run rotate-key "
                                    "again (it goes on where it stopped)")
            if self.storage.swap_meta(INSTANCE_SECRET, envelope, seal_instance_secret(self.keyring, secret),
                                      sealed_by=self.new_kid):
                return True
        raise ConflictError("The instance secret kept changing during the key rotation: run rotate-key again")


def rotate_master_key(
    storage: Storage, keys: StoreKeys, keyring: Keyring, access: Access, ctx: CallContext, *, actor: str,
    now: Callable[[], str], batch_size: int = BATCH, on_batch: Callable[[RotationProgress], None] | None = None,
    adopt: Callable[[StoreKeys], None] | None = None,
) -> RotationSummary:
    """Re-seal everything under `keyring`'s first key (the new one; the others open what they sealed).

    `adopt(keys)` is called once the caller is authorized, before the first batch, with the store's keys over
    `keyring`: the calling process seals with the new key from then on. `on_batch` runs after each batch
    (raising from it stops the run there, as a kill would). Refuses a second rotation of the same store
    running in this process (ConflictError).
    """
    access.require_unscoped(ctx, "system:update")
    if batch_size < 1 or batch_size > 10_000:
        raise ValidationError("Invalid batch size: between 1 and 10000 rows")
    with _running_lock:
        if id(storage) in _running:
            raise ConflictError("A key rotation of this store is already running in this process")
        _running.add(id(storage))
    try:
        origin = keys.source.origin.split(" + ")[0]  # where the keys came from, whatever was rotated before
        new_keys = replace(keys, source=KeySource(keyring, f"{origin} + the new key of rotate-key"))
        if adopt is not None:
            adopt(new_keys)
        run = _Run(storage, new_keys, keyring, batch_size, on_batch)
        passes = found = 0
        for number in range(1, MAX_PASSES + 1):
            passes = number
            found = run.one_pass(number)
            if found == 0:
                break
        remaining = run.left_over() if found else 0  # busy writers sealing with another key kept every pass busy
        instance = run.instance_secret()
        summary = RotationSummary(
            new_key_id=run.new_kid, resealed=run.resealed, by_key_id=dict(sorted(run.by_key_id.items())),
            instance_secret=instance, batches=run.batches, passes=passes, changed=run.changed, remaining=remaining,
            problems=run.problem_list(),
        )
        storage.append_audit(PendingEvent(
            type="key_rotated", actor=ctx.actor_or(actor), source_ip=ctx.source_ip, request_id=ctx.request_id,
            timestamp=now(), outcome="success" if summary.complete else "partial",
            details={"new_key_id": summary.new_key_id, "old_key_ids": summary.by_key_id,
                     "resealed": summary.resealed, "instance_secret": instance, "batches": summary.batches,
                     "passes": passes, "changed": summary.changed, "remaining": remaining,
                     "problems": len(run.skipped)},
        ), keys.audit)
        return summary
    finally:
        with _running_lock:
            _running.discard(id(storage))
