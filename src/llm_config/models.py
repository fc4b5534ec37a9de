"""Domain objects: frozen, slotted dataclasses with no I/O (SPEC §3).

Nothing here holds a plaintext secret except `Entry.value` after an explicit reveal.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Final, NamedTuple

__all__ = [
    "ENCRYPTED_PLACEHOLDER",
    "ApiKey",
    "AuditEvent",
    "ChangeRow",
    "Entry",
    "Environment",
    "HistoryItem",
    "Metadata",
    "PendingEvent",
    "Principal",
    "ResealOutcome",
    "Role",
    "SealedValue",
    "StoredEntry",
    "StoredVersion",
    "UnreadableRow",
    "ValueType",
    "WriteKind",
    "WriteRequest",
    "WriteResult",
    "build_entry",
    "entry_etag",
]

ENCRYPTED_PLACEHOLDER: Final = "<encrypted>"


class Environment(enum.StrEnum):
    """The five environments; `base` is what every other one falls back to when resolving."""

    BASE = "base"
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"
    EDGE = "edge"


class ValueType(enum.StrEnum):
    """Explicit type tag stored next to every value (never guessed from its text)."""

    PLAIN = "plain"  # JSON text of the value
    SECRET = "secret"  # noqa: S105 - JSON envelope of an AES-256-GCM ciphertext
    NONE = "none"  # tombstone or purged version: no value at all


class WriteKind(enum.StrEnum):
    """What a write does to an entry."""

    SET = "set"
    DELETE = "delete"
    ROLLBACK = "rollback"
    PURGE = "purge"


@dataclass(frozen=True, slots=True)
class Metadata:
    """Who made an entry and when; survives delete and re-create."""

    created_at: str
    created_by: str
    updated_at: str
    updated_by: str
    tags: tuple[str, ...] = ()
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "created_at": self.created_at,
            "created_by": self.created_by,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
            "tags": list(self.tags),
            "description": self.description,
        }


@dataclass(frozen=True, slots=True)
class Entry:
    """A ConfigResponse: one value of one key in one environment, at one version."""

    id: str
    namespace: str
    key: str
    value: Any
    environment: Environment
    version: int
    secret: bool
    metadata: Metadata
    # store-wide revision of the write that produced this version (commit order; `X-Config-Revision`);
    # 0 where unknown (an older version read from history). Not part of the JSON body.
    revision: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "key": self.key,
            "value": self.value,
            "environment": self.environment.value,
            "version": self.version,
            "secret": self.secret,
            "metadata": self.metadata.to_json(),
        }


def _slot_builder(cls: type[Any]) -> Callable[..., Any]:
    """A positional constructor of the frozen, slotted dataclass `cls` that fills each slot through
    its descriptor: the object `cls(...)` builds, for half the cost of the generated `__init__`
    (which goes through `object.__setattr__` once per field). Only for classes without
    `__post_init__` or defaults that matter: every field is passed.
    """
    names = [f.name for f in fields(cls)]
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    scope.update({f"_set_{name}": cls.__dict__[name].__set__ for name in names})
    body = "".join(f"    _set_{name}(o, {name})\n" for name in names)
    exec(f"def build({', '.join(names)}):\n    o = _new(_cls)\n{body}    return o\n", scope)  # noqa: S102
    built: Callable[..., Any] = scope["build"]
    return built


_new_entry = _slot_builder(Entry)
_new_metadata = _slot_builder(Metadata)


def build_entry(
    id: str, namespace: str, key: str, value: Any, environment: Environment, version: int, secret: bool,
    created_at: str, created_by: str, updated_at: str, updated_by: str, tags: tuple[str, ...],
    description: str | None, revision: int = 0,
) -> Entry:
    """`Entry(...)` with its `Metadata`, built the fast way: every cold read builds one."""
    metadata = _new_metadata(created_at, created_by, updated_at, updated_by, tags, description)
    entry: Entry = _new_entry(id, namespace, key, value, environment, version, secret, metadata, revision)
    return entry


def entry_etag(entry: Entry, revealed: bool) -> str:
    """Strong ETag of a served entry: id, environment, version and reveal state."""
    return f'"{entry.id}.{entry.environment.value}.{entry.version}.{"r" if revealed else "s"}"'


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One version in an entry's history, newest first when listed."""

    version: int
    value: Any
    deleted: bool
    created_at: str
    created_by: str
    change_description: str

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "value": self.value,
            "deleted": self.deleted,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "change_description": self.change_description,
        }


@dataclass(slots=True)
class StoredEntry:
    """The current row of an entry as storage keeps it (secret values still sealed).

    Treat as read-only. Not frozen on purpose: it is built on every cold read, and a frozen
    dataclass pays an `object.__setattr__` per field (~1 µs for these 16, measured) — a fifth of
    the budget of a storage read. The user-facing `Entry` stays frozen.
    """

    id: str
    namespace: str
    key: str
    environment: Environment
    version: int
    deleted: bool
    value_type: ValueType
    stored_value: str | None  # JSON text (plain) or envelope JSON (secret); None for tombstones
    fingerprint: str | None  # keyed fingerprint of the value (secrets and plain alike)
    created_at: str
    created_by: str
    updated_at: str
    updated_by: str
    tags: tuple[str, ...]
    description: str | None
    revision: int  # watch revision of the write that produced this row
    purged_versions: tuple[int, ...] = ()  # versions of this entry whose value was destroyed
    audit_seq: int = 0  # the audit event of the row's last change (bound by its row MAC); 0 before saving


@dataclass(frozen=True, slots=True)
class UnreadableRow:
    """A stored row whose columns hold values llm-config never writes (an unknown environment, role or
    type, text where JSON belongs): it cannot even be mapped, so it was changed outside llm-config.
    `label` names it as messages do (`entry ns/key [env]`, `version 3 of …`, `API key <id>`)."""

    label: str


@dataclass(slots=True)
class StoredVersion:
    """One row of the version history as storage keeps it (read-only; not frozen, as StoredEntry)."""

    entry_id: str
    version: int
    deleted: bool
    purged: bool
    value_type: ValueType
    stored_value: str | None
    fingerprint: str | None
    created_at: str
    created_by: str
    change_description: str
    audit_seq: int
    revision: int


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """One change for storage to apply atomically with its audit event.

    `expected_version`: None = no check; 0 = must not exist or be deleted; N = current must be N.
    For SET and ROLLBACK, `value_type`/`stored_value`/`fingerprint` are the new value; for PURGE,
    `target_version` is the version to destroy. `tags`/`description` None means "keep".
    An empty `change_description` on a SET lets storage say `Created` or `Updated` from the row it
    locked; `refuse_plain_over_secret` makes storage refuse a plain SET over a live secret, checked
    inside the transaction so a racing writer cannot slip past it.
    """

    kind: WriteKind
    namespace: str
    key: str
    environment: Environment
    actor: str
    timestamp: str
    change_description: str
    value_type: ValueType = ValueType.NONE
    stored_value: str | None = None
    fingerprint: str | None = None
    expected_version: int | None = None
    target_version: int | None = None
    tags: tuple[str, ...] | None = None
    description: str | None = None
    audit_type: str = ""
    refuse_plain_over_secret: bool = False
    audit_details: dict[str, Any] = field(default_factory=dict)
    source_ip: str | None = None
    request_id: str | None = None


class ChangeRow(NamedTuple):
    """One change as the watch stream reads it from storage: which key moved to which version, at which
    store revision, by what kind of write ("set", "delete", "rollback", "purge")."""

    revision: int
    namespace: str
    key: str
    environment: Environment
    version: int
    kind: str


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write produced: the new current row and the sequence number of its audit event."""

    entry: StoredEntry
    old_version: int | None
    audit_seq: int


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An audit event to append (storage assigns seq, id, the chain MAC and, if missing, the time).

    `subject` names the protected row the event changes (`integrity.entry_subject`, `key_subject`);
    None for events that change no row (reveals, denials, authentication failures).
    """

    type: str
    actor: str
    namespace: str | None = None
    key: str | None = None
    environment: str | None = None
    old_version: int | None = None
    new_version: int | None = None
    outcome: str = "success"
    source_ip: str | None = None
    request_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    timestamp: str | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One link of the audit chain (SPEC §7). `mac` covers every other field and `prev_mac`.

    `subject` (see `PendingEvent`) is covered by the MAC when present, and is not part of the
    SPEC §7 shape of `to_json()`; audit exports carry it so that they verify offline.
    """

    seq: int
    id: str
    timestamp: str
    type: str
    actor: str
    namespace: str | None
    key: str | None
    environment: str | None
    old_version: int | None
    new_version: int | None
    outcome: str
    source_ip: str | None
    request_id: str | None
    details: dict[str, Any]
    prev_mac: str
    mac: str
    subject: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "id": self.id,
            "timestamp": self.timestamp,
            "type": self.type,
            "actor": self.actor,
            "namespace": self.namespace,
            "key": self.key,
            "environment": self.environment,
            "old_version": self.old_version,
            "new_version": self.new_version,
            "outcome": self.outcome,
            "source_ip": self.source_ip,
            "request_id": self.request_id,
            "details": self.details,
        }


class Role(enum.StrEnum):
    """The four roles of SPEC §8."""

    ADMIN = "admin"
    EDITOR = "editor"
    VIEWER = "viewer"
    AUDITOR = "auditor"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a role and optional namespace / environment limits (empty = unlimited).

    `actor` is what the audit trail records: `key:<name>#<id>` for an API key, the OS account for
    the local CLI and library.
    """

    actor: str
    role: Role
    namespaces: tuple[str, ...] = ()
    environments: tuple[Environment, ...] = ()
    key_id: str | None = None

    @property
    def unrestricted(self) -> bool:
        return not self.namespaces and not self.environments


@dataclass(frozen=True, slots=True)
class ApiKey:
    """An API key's record as stored: never the key itself, only its peppered HMAC."""

    id: str
    name: str
    role: Role
    namespaces: tuple[str, ...]
    environments: tuple[Environment, ...]
    key_hash: str
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None
    parent_id: str | None = None  # the key that created this one (None: the store's owner)

    @property
    def actor(self) -> str:
        """How the audit trail names this key: `key:<name>#<id>` (names repeat over time, ids never)."""
        return f"key:{self.name}#{self.id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.value,
            "namespaces": list(self.namespaces),
            "environments": [e.value for e in self.environments],
            "created_at": self.created_at,
            "created_by": self.created_by,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "parent_id": self.parent_id,
        }


# -- master-key rotation (core/rotation.py) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SealedValue:
    """A sealed version row as a key rotation meets it: where it lives (the AAD of its ciphertext), its
    envelope, and whether its entry's current row holds the very same ciphertext (then both are re-sealed
    together, so the current row keeps equalling its newest version)."""

    entry_id: str
    version: int
    namespace: str
    key: str
    environment: Environment
    stored_value: str
    current: bool


class ResealOutcome(enum.StrEnum):
    """What became of one re-seal: written, skipped because a concurrent write changed the row since it
    was read (the next pass reads it again), or refused because the row fails its MAC."""

    RESEALED = "resealed"
    CHANGED = "changed"
    TAMPERED = "tampered"
