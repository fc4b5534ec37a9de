"""The write rules of SPEC §3 and §5, once, as pure checks over a request and the row it meets.

Storage calls them inside the write transaction, on the row it locked (so a racing writer cannot slip
past them); the manager calls the same functions where it can refuse earlier with a better message
(an import names every offending key at once). Pure: no I/O, never a value in a message.
"""

from __future__ import annotations

from typing import Final

from llm_config.errors import ConflictError, NotFoundError, SecretOverwriteError, ValidationError
from llm_config.models import StoredEntry, StoredVersion, ValueType, WriteKind, WriteRequest

__all__ = [
    "FOR_IMPORT",
    "FOR_ROLLBACK",
    "FOR_SET",
    "check_expected",
    "check_plain_over_secret",
    "check_purge",
    "check_target",
    "where",
]

FOR_SET: Final = "pass --secret (secret=True) to update it, or --no-secret (secret=False) to store it in plain text"
FOR_ROLLBACK: Final = "pass --no-secret (secret=False) to roll back to a plain version"
FOR_IMPORT: Final = (
    "put it in the document's secrets section, or pass --no-secret (secret=False) to store it in plain text"
)


def where(namespace: str, key: str, env: object) -> str:
    """How messages name an entry: `ns/key [environment]`."""
    return f"{namespace}/{key} [{getattr(env, 'value', env)}]"


def check_plain_over_secret(
    w: WriteRequest, current: StoredEntry | None, new_type: ValueType, hint: str = FOR_SET
) -> None:
    """A live secret becomes a plain value only when the writer said so (`--no-secret`)."""
    if not w.refuse_plain_over_secret or new_type is ValueType.SECRET:
        return
    if current is None or current.deleted or current.value_type is not ValueType.SECRET:
        return
    raise SecretOverwriteError(
        f"{where(w.namespace, w.key, w.environment)} is a secret: {hint}",
        namespace=w.namespace, key=w.key, environment=w.environment.value,
    )


def check_expected(w: WriteRequest, current: StoredEntry | None) -> None:
    """Compare-and-set: `expected_version` 0 means "must not exist or be deleted", N "must be at N"."""
    expected = w.expected_version
    if expected is None:
        return
    if expected == 0:  # noqa: SIM108 - two readable rules beat one long ternary
        ok = current is None or current.deleted
    else:
        ok = current is not None and current.version == expected
    if not ok:
        actual = current.version if current is not None else 0
        raise ConflictError(
            f"Version conflict on {where(w.namespace, w.key, w.environment)}: expected {expected}, current {actual}",
            current_version=actual, namespace=w.namespace, key=w.key, environment=w.environment.value,
        )


def check_target(w: WriteRequest, target: StoredVersion | None) -> StoredVersion:
    """The version a rollback or purge names must exist and still hold a value."""
    if target is None:
        raise NotFoundError(
            f"Version {w.target_version} of {where(w.namespace, w.key, w.environment)} not found",
            namespace=w.namespace, key=w.key, environment=w.environment.value, version=w.target_version,
        )
    if target.deleted or target.purged:
        what = "a deletion (tombstone)" if target.deleted else "purged: its value was destroyed"
        raise NotFoundError(
            f"Version {w.target_version} of {where(w.namespace, w.key, w.environment)} is {what}",
            namespace=w.namespace, key=w.key, environment=w.environment.value, version=w.target_version,
        )
    return target


def check_purge(w: WriteRequest, current: StoredEntry, target: StoredVersion) -> None:
    """Only a version that is not the live value can be destroyed."""
    assert w.kind is WriteKind.PURGE
    if target.version == current.version and not current.deleted:
        raise ValidationError(
            f"Cannot purge the current version {target.version} of {where(w.namespace, w.key, w.environment)}: "
            "delete the key or write a newer version first",
            namespace=w.namespace, key=w.key, environment=w.environment.value, version=target.version,
        )
