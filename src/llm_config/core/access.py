"""Access control of the core: the RBAC decision of `rbac.py`, with every refusal audited once.

Owns: `authorize` (role, namespace and environment limits; default deny), `authorize_before_body`
(what can be decided before a request body is read), `require_unscoped` (server-wide state) and the
`access_denied` event of a refusal. The local owner (`principal=None`) is never refused.

Never: reads a value, or lets a refusal say whether the target exists.
"""

from __future__ import annotations

from typing import NoReturn

from llm_config import rbac
from llm_config.core.context import CallContext
from llm_config.core.custody import StoreKeys
from llm_config.errors import PermissionDeniedError
from llm_config.models import Environment, PendingEvent, Principal
from llm_config.times import rfc3339
from llm_config.types import Clock, Storage

__all__ = ["Access"]


class Access:
    """Audited RBAC decisions over one store."""

    def __init__(self, storage: Storage, keys: StoreKeys | None, clock: Clock) -> None:
        self._storage = storage
        self._keys = keys
        self._clock = clock

    def authorize(
        self, ctx: CallContext, permission: str, namespace: str | None, env: Environment | None, *,
        key: str | None = None,
    ) -> None:
        """Allow, or audit an `access_denied` event and raise PermissionDeniedError."""
        principal = ctx.principal
        if principal is None or rbac.allowed(principal, permission, namespace, env):
            return
        if namespace is None and env is None and permission in rbac.permissions_of(principal.role):
            return  # an unscoped operation (namespaces, audit list): the caller filters by scope
        where = f"{namespace or '*'}" + (f"/{key}" if key else "") + (f" [{env.value}]" if env else "")
        self.deny(ctx, permission, namespace, env, key=key,
                  message=f"Permission denied: {principal.actor} ({principal.role.value}) may not "
                  f"{permission} on {where}")

    def authorize_before_body(self, ctx: CallContext, permission: str, namespace: str | None) -> None:
        """Role and namespace limit only, for a front end that has not read the request body yet
        (the environment may come from the body; `authorize` checks it once the body is parsed)."""
        principal = ctx.principal
        if principal is None or rbac.allowed_before_body(principal, permission, namespace):
            return
        self.deny(ctx, permission, namespace, None, key=None,
                  message=f"Permission denied: {principal.actor} ({principal.role.value}) may not "
                  f"{permission} on {namespace or '*'}")

    def require_unscoped(self, ctx: CallContext, permission: str) -> None:
        """Server-wide state: only keys without namespace or environment limits pass."""
        principal = ctx.principal
        if principal is not None and not rbac.allowed(principal, permission, None, None):
            self.deny(ctx, permission, None, None, key=None,
                      message=f"Permission denied: {principal.actor} ({principal.role.value}) may not "
                      f"{permission} (needs a key without namespace or environment limits)")

    def deny(
        self, ctx: CallContext, permission: str, namespace: str | None, env: Environment | None, *,
        key: str | None, message: str,
    ) -> NoReturn:
        """Audit an `access_denied` event (when the key is loaded), then raise PermissionDeniedError."""
        principal: Principal | None = ctx.principal
        if self._keys is not None and principal is not None:
            self._storage.append_audit(PendingEvent(
                type="access_denied", actor=principal.actor, namespace=namespace, key=key,
                environment=env.value if env else None, outcome="denied", source_ip=ctx.source_ip,
                request_id=ctx.request_id, details={"permission": permission}, timestamp=rfc3339(self._clock()),
            ), self._keys.audit)
        raise PermissionDeniedError(message, namespace=namespace, key=key, environment=env.value if env else None)
