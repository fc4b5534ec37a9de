"""Who is calling, from where, in which request: bound once per call, read by every part of the core.

`principal=None` is the local owner of the store (the CLI and the library): an unrestricted admin
whose actor is the manager's (or the call's `actor=`); the REST edge always sets a principal.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm_config.models import Principal

__all__ = ["CallContext"]


@dataclass(frozen=True, slots=True)
class CallContext:
    """The caller of one operation."""

    principal: Principal | None = None
    source_ip: str | None = None
    request_id: str | None = None
    actor: str | None = None  # the library's `actor=` override; ignored when a principal is set

    def actor_or(self, default: str) -> str:
        """What the audit trail records for this caller."""
        if self.principal is not None:
            return self.principal.actor
        return self.actor or default
