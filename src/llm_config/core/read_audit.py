"""Batched `config_accessed` events for `--audit-reads` (SPEC §7).

A plain read must stay a dict lookup, so reads are queued in memory and a background thread
appends them to the audit chain in one transaction every `interval` seconds (or sooner when
`max_pending` pile up). The cost of that speed, stated plainly: a read is served before its event
is durable, and a crash can lose the last `interval` of read events. Secret reveals are never
batched: their `secret_accessed` event is written before the value is returned.
"""

from __future__ import annotations

import logging
import threading

from llm_config.models import PendingEvent
from llm_config.types import Storage

__all__ = ["ReadAuditBuffer"]

log = logging.getLogger("llm_config")


class ReadAuditBuffer:
    """Queue of read events flushed by a daemon thread; `close()` flushes what is left."""

    def __init__(self, storage: Storage, audit_key: bytes, *, interval: float = 0.2, max_pending: int = 512) -> None:
        self._storage = storage
        self._audit_key = audit_key
        self._interval = interval
        self._max_pending = max_pending
        self._pending: list[PendingEvent] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self.written = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="llm-config-read-audit", daemon=True)
        self._thread.start()

    def record(self, event: PendingEvent) -> None:
        """Queue one event."""
        self._pending.append(event)  # list.append is atomic under the GIL
        if len(self._pending) >= self._max_pending:
            self._wake.set()

    def flush(self) -> None:
        """Write everything queued so far, in one transaction."""
        with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                self._storage.append_audit_many(batch, self._audit_key)
                self.written += len(batch)
            except Exception as exc:  # the reads were served; say so loudly, never silently
                self.failed += len(batch)
                log.error("could not write %d read-audit events: %s", len(batch), type(exc).__name__)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=5)
        self.flush()
