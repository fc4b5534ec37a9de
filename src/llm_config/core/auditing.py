"""Reading the audit trail (SPEC §7, §8): queries filtered to the caller, the head, verification.

Owns what a caller may see of the trail: events inside its namespace *and* environment limits only
(an environment limit includes `base`, which it may read), and a value's fingerprint only for a
caller allowed to read that value — so no event becomes an oracle for a secret. A caller with any
limit learns only that a verification failed, not which rows of others it names.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from llm_config import audit, rbac
from llm_config.core.access import Access
from llm_config.core.context import CallContext
from llm_config.core.custody import StoreKeys, need
from llm_config.core.verify import verify_store
from llm_config.errors import ValidationError
from llm_config.models import AuditEvent, Environment, Principal
from llm_config.names import validate_namespace
from llm_config.types import AuditQuery, Storage

__all__ = ["AuditTrail", "visible_event"]

_PAGE: Final = 500
_FINGERPRINT_FIELDS: Final = ("fingerprint", "fingerprint_scheme")
_ENVS: Final = {e.value: e for e in Environment}


def visible_event(principal: Principal | None, event: AuditEvent) -> AuditEvent | None:
    """`event` as `principal` may see it: None outside its limits; without a fingerprint of a value
    it may not read. The local owner (None) sees everything."""
    if principal is None:
        return event
    env = _ENVS.get(event.environment) if event.environment is not None else None
    if not rbac.in_scope(principal, event.namespace, env, reading=True):  # an event without a place is out of any limit
        return None
    if "fingerprint" in event.details:
        permission = "secret:read" if event.type == "secret_modified" else "config:read"
        if not rbac.allowed(principal, permission, event.namespace, env):
            details = {k: v for k, v in event.details.items() if k not in _FINGERPRINT_FIELDS}
            return dataclasses.replace(event, details=details)
    return event


class AuditTrail:
    """The audit trail of one store, as each caller may see it."""

    def __init__(self, storage: Storage, keys: StoreKeys | None, access: Access,
                 key_warning: str | None = None) -> None:
        self._storage = storage
        self._keys = keys
        self._access = access
        self._key_warning = key_warning

    def events(self, ctx: CallContext, query: AuditQuery | None = None) -> list[AuditEvent]:
        """Events oldest first, filtered to the caller (works without the key)."""
        query = query or AuditQuery()
        if query.namespace is not None:
            validate_namespace(query.namespace)
        self._access.authorize(ctx, "audit_log:list", query.namespace, None)
        principal = ctx.principal
        if principal is None:
            return self._storage.audit_events(query)
        out: list[AuditEvent] = []
        after = query.after_seq
        while query.limit is None or len(out) < query.limit:
            page = self._storage.audit_events(dataclasses.replace(query, after_seq=after, limit=_PAGE))
            for event in page:
                shown = visible_event(principal, event)
                if shown is not None:
                    out.append(shown)
            if len(page) < _PAGE:
                break
            after = page[-1].seq
        return out if query.limit is None else out[: query.limit]

    def verify(self, ctx: CallContext, anchor: str | None = None) -> audit.VerifyReport:
        """Verify the chain and every row against it (`core.verify`); `anchor` is `SEQ:MAC`."""
        self._access.authorize(ctx, "audit_log:read", None, None)
        keys = need(self._keys, "Verifying the audit trail", self._key_warning)
        parsed = None
        if anchor is not None:
            try:
                parsed = audit.parse_anchor(anchor)
            except ValueError as exc:
                raise ValidationError(f"Invalid anchor: {exc}") from None
        report = verify_store(self._storage, keys, parsed)
        principal = ctx.principal
        if principal is not None and not principal.unrestricted and report.problems:
            # problem lines name rows of other namespaces: a limited caller learns only that it failed
            report.problems = [f"{len(report.problems)} problem(s) found; ask an unrestricted auditor"]
        return report

    def head(self, ctx: CallContext) -> str | None:
        """`SEQ:MAC` of the newest event, to keep outside the database."""
        self._access.authorize(ctx, "audit_log:read", None, None)
        head = self._storage.audit_head()
        return f"{head[0]}:{head[1]}" if head else None
