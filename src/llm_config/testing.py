"""Test doubles for users' own tests: a throwaway manager and a controllable clock.

    from llm_config.testing import temporary_manager
    with temporary_manager() as mgr:
        mgr.set("app", "model", "gpt-4o")

Uses the real embedded store in a temporary directory (no fakes of our own parts), with a fresh
random key that never leaves the process.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from llm_config.core.manager import ConfigManager
from llm_config.crypto.keys import generate_key
from llm_config.models import AuditEvent

__all__ = ["FakeClock", "audit_events", "temporary_manager"]


@dataclass(slots=True)
class FakeClock:
    """A clock you move by hand: pass `clock=FakeClock(...)` to `temporary_manager`."""

    now: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def temporary_manager(*, actor: str = "test", **options: Any) -> Iterator[ConfigManager]:
    """A manager on a fresh store in a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="llm-config-test-") as tmp:
        mgr = ConfigManager.open(f"{tmp}/store", encryption_key=generate_key(), actor=actor, **options)
        try:
            yield mgr
        finally:
            mgr.close()


def audit_events(manager: ConfigManager, type: str | None = None) -> list[AuditEvent]:
    """The manager's audit events (optionally of one type), oldest first — for assertions."""
    events = manager.audit_events()
    return [e for e in events if type is None or e.type == type]
