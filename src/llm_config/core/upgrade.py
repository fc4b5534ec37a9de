"""One-time upgrades of a store's data that need the master key (schema changes are `storage.migrate`'s).

Row integrity (SPEC §2): a store created before row MACs existed gets them computed once, at the
first open with the key, in one transaction audited as one `integrity_migrated` event — but only if
its audit chain verifies first, so rows edited before the upgrade are never vouched for. Its value
fingerprints are recomputed under the place-bound scheme at the same time.
"""

from __future__ import annotations

import logging

from llm_config import audit
from llm_config.core.custody import StoreKeys, place
from llm_config.core.verify import iter_events
from llm_config.errors import IntegrityError, SecretKeyError
from llm_config.models import Environment, PendingEvent, ValueType
from llm_config.times import utc_now
from llm_config.types import Storage

__all__ = ["upgrade_integrity"]

log = logging.getLogger("llm_config")


def upgrade_integrity(storage: Storage, keys: StoreKeys, actor: str) -> int | None:
    """Compute the row MACs of an older store (once); returns the `integrity_migrated` event's seq.

    None when nothing was pending. Raises IntegrityError, changing nothing, if the chain is broken.
    """
    if not storage.integrity_pending():
        return None
    report = audit.verify_chain(iter_events(storage), keys.audit)
    if not report.ok:
        raise IntegrityError(
            "Integrity check failed: this store's row MACs cannot be computed because its audit chain does not "
            f"verify ({report.problems[0]}); run 'llm-config audit verify'"
        )

    def fingerprint_of(namespace: str, key: str, env: Environment, value_type: ValueType,
                       stored: str | None) -> str | None:
        if stored is None or value_type is ValueType.NONE:
            return None
        where = place(namespace, key, env)
        if value_type is ValueType.SECRET:
            try:
                data = keys.keyring.open(stored, where)
            except SecretKeyError:
                return None
        else:
            data = stored.encode()
        return audit.fingerprint(keys.fingerprint, where, data)

    seq = storage.migrate_integrity(
        PendingEvent(type="integrity_migrated", actor=actor, timestamp=utc_now(),
                     details={"fingerprint_scheme": audit.FINGERPRINT_SCHEME}),
        keys.audit, fingerprint_of,
    )
    if seq:
        log.warning("row MACs computed for this store (audit event %d)", seq)
    return seq or None
